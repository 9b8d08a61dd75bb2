#!/usr/bin/env bash
# Builds the "verify at production size" databases of BENCHMARKS.md with `payledger populate` (through the
# ledger engine) and times `payledger verify --json` twice on each, printing one line per run.
#
#   scripts/verify-at-size.sh                                        # SQLite, in $DIR
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/verify-at-size.sh   # and PostgreSQL
#
# Settings: PAYMENTS (default 1000000), TRANSFERS (default 1000000), USERS (default 1000), RESERVATIONS (of the
# users' money, a third each deducted, released and left open; default 300000), SPREAD (the
# organizations of the spread case, default 1000), DIR (where SQLite files, JSON summaries and /usr/bin/time
# reports go, default a new temporary folder), BIN (a payledger binary to use instead of building this tree).
# Every database is built anew: the SQLite files in $DIR (and their -wal and -shm) are removed first, and the
# PostgreSQL databases, named pl_verify_size_hot and pl_verify_size_spread, are dropped and created again.
set -euo pipefail
cd "$(dirname "$0")/.."
PAYMENTS="${PAYMENTS:-1000000}"
TRANSFERS="${TRANSFERS:-1000000}"
USERS="${USERS:-1000}"
RESERVATIONS="${RESERVATIONS:-300000}"
SPREAD="${SPREAD:-1000}"
DIR="${DIR:-$(mktemp -d)}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p payledger
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/payledger"
fi
export PAYLEDGER_LOG=warn

urls=()
for shape in hot spread; do
  rm -f "$DIR/$shape.db" "$DIR/$shape.db-wal" "$DIR/$shape.db-shm"
  urls+=("$shape sqlite://$DIR/$shape.db")
  if [ -n "${PG_ADMIN_URL:-}" ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS pl_verify_size_$shape" -c "CREATE DATABASE pl_verify_size_$shape"
    urls+=("$shape ${PG_ADMIN_URL%/*}/pl_verify_size_$shape")
  fi
done

for entry in "${urls[@]}"; do
  read -r shape url <<<"$entry"
  organizations=1
  [ "$shape" = spread ] && organizations="$SPREAD"
  echo "== $shape $url"
  DATABASE_URL="$url" "$BIN" populate --payments "$PAYMENTS" --organizations "$organizations" \
    --users "$USERS" --transfers "$TRANSFERS" --reservations "$RESERVATIONS"
  # PostgreSQL's autovacuum analyzes new tables eventually; do it now so the plans are the settled ones.
  case "$url" in postgres*) psql "$url" -qc "VACUUM ANALYZE" ;; esac
done

for run in 1 2; do
  for entry in "${urls[@]}"; do
    read -r shape url <<<"$entry"
    name="${url%%:*}-$shape-$run"
    DATABASE_URL="$url" /usr/bin/time -v "$BIN" verify --json >"$DIR/$name.json" 2>"$DIR/$name.time"
    echo "$name: $(grep -o '^{"ok":[a-z]*' "$DIR/$name.json" | cut -c2-) $(grep -o '"duration_ms":[0-9]*' "$DIR/$name.json" | head -1)," \
      "$(grep -E 'Elapsed|Maximum resident' "$DIR/$name.time" | tr -s ' \t' ' ' | tr '\n' ';')"
  done
done
echo "summaries in $DIR"
