#!/usr/bin/env bash
# Counts the instructions the server spends per request, which repeat from run to run where throughput on
# these shared machines does not (BENCHMARKS.md): the server runs under `valgrind --tool=callgrind` on a fresh
# SQLite database (sync webhooks), once for SMALL and once for LARGE measured requests over 8 connections,
# and the difference of the two totals divided by the difference in requests cancels start-up and shutdown.
#
#   scripts/instructions-per-request.sh /tmp/before /tmp/after      # folders holding payledger + payledger-bench
#
# Settings: SCENARIO (webhook, default; transfers), SMALL (default 500), LARGE (default 5000), PORT (18300).
# Prints one line per folder: instructions per request. Needs valgrind (Debian package).
set -euo pipefail
SCENARIO="${SCENARIO:-webhook}"
SMALL="${SMALL:-500}"
LARGE="${LARGE:-5000}"
PORT="${PORT:-18300}"
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
# Throwaway credentials of a throwaway server on loopback (the transfers scenario logs in as its first admin).
ADMIN_PASSWORD=instructions-bench-admin-password

# Runs $1/payledger under callgrind for $2 requests; prints the program's total instructions.
count() {
  local bin="$1" requests="$2" dir="$work/run"
  rm -rf "$dir"; mkdir -p "$dir"
  DATABASE_URL="sqlite://$dir/db.sqlite" PAYLEDGER_DATA_DIR="$dir/data" PAYLEDGER_WORKERS=0 \
    PAYLEDGER_ADMIN_USERNAME=bench PAYLEDGER_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$bin/payledger" serve --bind "127.0.0.1:$PORT" --demo-organizations 0 > "$dir/server.log" 2>&1 &
  server=$!
  # Another server on the port would answer the bench instead.
  sleep 1
  kill -0 "$server" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/api/health/" > /dev/null && break; sleep 0.2; done
  local login=()
  if [ "$SCENARIO" = transfers ]; then login=(--username bench --password "$ADMIN_PASSWORD"); fi
  "$bin/payledger-bench" --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" "${login[@]}" --connections 8 \
    --requests "$requests" --orgs 1000 --users 1000 --warmup 0 --timeout 60 --seed 7 > "$dir/bench.txt" 2>&1
  grep -q "balances: OK" "$dir/bench.txt" || { cat "$dir/bench.txt" >&2; kill "$server"; exit 1; }
  kill -TERM "$server"; wait "$server" || true; server=""
  grep -m1 -E '^(summary|totals):' "$dir/callgrind.out" | awk '{print $2}'
}

for bin in "$@"; do
  small=$(count "$bin" "$SMALL")
  large=$(count "$bin" "$LARGE")
  echo "$bin: $(( (large - small) / (LARGE - SMALL) )) instructions per $SCENARIO request"
done
