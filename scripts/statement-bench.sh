#!/usr/bin/env bash
# Times a statement import of LINES lines (default 1,000,000) on SQLite and, with PG_URL, on PostgreSQL, with
# the importing process's peak RSS (the numbers in BENCHMARKS.md come from this script). For each store:
#   1. a fresh, migrated database;
#   2. "empty": the statement imported into a ledger that received none of its notices and knows none of its
#      payers (every customer payment becomes an unknown_payer discrepancy);
#   3. "notices": a second fresh database, a release server that receives the statement's delivered notices
#      (all but LOST of them) through wrk, is stopped, then the statement is imported (most lines match).
#
#   scripts/statement-bench.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/statement-bench.sh
#
# Settings: CASES (default "empty notices"), SQLITE (0 skips SQLite), LINES (default 1000000), DAYS (default 20), PAYERS (default 10000), LOST (default 0.05), FORMAT
# (1c, 1c-utf8, camt053, csv; default 1c), SEED (default 2024), PORT (default 18100), BIN (a folder holding a
# release payledger; unset, this tree is built). Needs wrk (Debian package) for the "notices" case.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
CASES="${CASES:-empty notices}"
SQLITE="${SQLITE:-1}"
LINES="${LINES:-1000000}"
DAYS="${DAYS:-20}"
PAYERS="${PAYERS:-10000}"
LOST="${LOST:-0.05}"
FORMAT="${FORMAT:-1c}"
SEED="${SEED:-2024}"
PORT="${PORT:-18100}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p payledger -q
  BIN="$CARGO_TARGET_DIR/release"
fi
# A million 1C lines are about 545 MB, past the default limit of 512 MiB.
export PAYLEDGER_STATEMENT_MAX_FILE_BYTES="${PAYLEDGER_STATEMENT_MAX_FILE_BYTES:-2147483648}"
work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  if [ -n "${PG_URL:-}" ]; then
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS payledger_statement_bench_empty_$$" \
      -c "DROP DATABASE IF EXISTS payledger_statement_bench_notices_$$" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

per_day=$(( (LINES + DAYS - 1) / DAYS ))
echo "generating $DAYS days × $per_day lines ($FORMAT, seed $SEED, $PAYERS payers, lost $LOST)"
gen_start=$(date +%s.%N)
"$BIN/payledger" statement generate --seed "$SEED" --days "$DAYS" --payers "$PAYERS" --lines-per-day "$per_day" \
  --format "$FORMAT" --lost "$LOST" --out "$work/statement" --notices "$work/notices.jsonl"
gen_end=$(date +%s.%N)
printf 'generated %s bytes, %s notices in %.1f s\n' "$(stat -c %s "$work/statement")" \
  "$(wc -l < "$work/notices.jsonl")" "$(echo "$gen_end - $gen_start" | bc)"

stores=()
if [ "$SQLITE" != 0 ]; then stores+=("sqlite"); fi
if [ -n "${PG_URL:-}" ]; then stores+=("postgres"); fi

# A fresh database for a case; prints its URL.
fresh_db() {
  local store="$1" case="$2"
  if [ "$store" = sqlite ]; then
    rm -f "$work/$case.db"*
    echo "sqlite://$work/$case.db"
  else
    local db="payledger_statement_bench_${case}_$$"
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    echo "${PG_URL%/*}/$db"
  fi
}

# Imports the statement into $1, prints one Markdown row (store, case, lines, matched, discrepancies opened,
# seconds, lines/s, peak RSS of the importing process), and runs verify on the result.
import_row() {
  local url="$1" store="$2" case="$3"
  DATABASE_URL="$url" /usr/bin/time -f '%e %M' -o "$work/time" \
    "$BIN/payledger" statement import "$work/statement" --json > "$work/summary.json"
  read -r seconds rss_kb < "$work/time"
  python3 - "$work/summary.json" "$store" "$case" "$seconds" "$rss_kb" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
store, case, seconds, rss_kb = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
opened = ", ".join(f"{n} {kind}" for kind, n in summary["discrepancies"].items() if n) or "none"
lines = summary["lines_read"]
print(f"| {store} | {case} | {lines:,} | {summary['matched']:,} | {opened} | {seconds} | "
      f"{int(lines / float(seconds)):,} | {rss_kb // 1024} MiB |")
PY
  DATABASE_URL="$url" "$BIN/payledger" verify > /dev/null || { echo "verify failed on $store $case" >&2; exit 1; }
}

echo
echo '| store | case | lines | matched | discrepancies opened | seconds | lines/s | peak RSS |'
echo '|---|---|---|---|---|---|---|---|'
for store in "${stores[@]}"; do
  if [[ " $CASES " == *" empty "* ]]; then
    url=$(fresh_db "$store" empty)
    DATABASE_URL="$url" "$BIN/payledger" migrate > /dev/null
    import_row "$url" "$store" empty
  fi
  [[ " $CASES " == *" notices "* ]] || continue
  url=$(fresh_db "$store" notices)
  DATABASE_URL="$url" PAYLEDGER_WORKERS=0 PAYLEDGER_DATA_DIR="$work/data" "$BIN/payledger" serve --bind "127.0.0.1:$PORT" \
    --demo-organizations 0 > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/health/" > /dev/null && break; sleep 0.1; done
  posted_start=$(date +%s.%N)
  mkdir -p "$work/done"; rm -f "$work/done"/*
  # No request may time out: wrk would not resend it, and its thread would never see its share answered.
  NOTICES="$work/notices.jsonl" THREADS=2 DONE_DIR="$work/done" wrk -t2 -c64 -d3600s --timeout 300s \
    -s scripts/replay-notices.lua "http://127.0.0.1:$PORT/api/webhook/bank/" > "$work/wrk.txt" &
  wrk=$!
  until [ -e "$work/done/1" ] && [ -e "$work/done/2" ]; do
    kill -0 "$wrk" 2>/dev/null || { echo "wrk ended before every notice was answered" >&2; exit 1; }
    sleep 0.2
  done
  kill -INT "$wrk"; wait "$wrk"
  posted_end=$(date +%s.%N)
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  printf '(notices posted in %.1f s: %s)\n' "$(echo "$posted_end - $posted_start" | bc)" "$(grep notices: "$work/wrk.txt")" >&2
  import_row "$url" "$store" notices
done
