#!/usr/bin/env bash
# What outbound events cost the ledger, and how fast they are delivered (BENCHMARKS.md, "Outbound events").
# For each store, one after the other on fresh databases and release binaries:
#   1. the HTTP ceiling: `wrk` GETs a path no route serves (the router answers 404, no database);
#   2. webhook intake with no webhook endpoint;
#   3. the same load with one endpoint subscribed to `bank_payment.credited` (payledger-bench
#      --event-receiver: a fast receiver in the bench process, registered before the load), the server's
#      delivery workers sending while it runs, then the wait until every acknowledged notice's event has
#      arrived, which gives the delivery rate;
#   4. the load of 3. against a server without delivery workers (as compose's api runs: what the outbox costs
#      the ledger), then, once it ends, the same database served by one with them, which drains the backlog
#      while the bench waits.
# It prints one Markdown row per store: the rates, their shares of the ceiling, the cost of the endpoint
# (with the deliveries sent elsewhere, and sent by the same process on the same cores), and the delivery
# rates (while the load runs, and draining a backlog).
#
#   scripts/events-bench.sh                                                  # SQLite
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/events-bench.sh   # and PostgreSQL
#
# Settings: DURATION (s, default 10), CONNECTIONS (default 64), ORGS (default 1000), PORT (default 18100),
# EVENT_WORKERS (the server's delivery workers: default 2, the server's default, on SQLite, whose one writer
# gains nothing from more; 8 on PostgreSQL, as issue 15's target says), BIN (a folder with payledger and payledger-bench;
# unset, this tree is built in release mode).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
ORGS="${ORGS:-1000}"
PORT="${PORT:-18100}"
# Throwaway credentials of a throwaway server on loopback: the first admin of every run's fresh database.
BENCH_USER=bench
BENCH_PASSWORD=events-bench-admin-password-2026
command -v wrk >/dev/null || { echo "events-bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -p payledger -p payledger-bench -q
  BIN="$CARGO_TARGET_DIR/release"
fi
work="$(mktemp -d)"
server=""
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
stores=("sqlite://$work/bench.db")
if [ -n "${PG_URL:-}" ]; then stores+=("$PG_URL"); fi

# Starts a server on a fresh database of $store (its URL in $url), with $1 delivery workers if given.
start() {
  url="$store"
  if [[ "$store" == sqlite* ]]; then rm -f "$work"/bench.db*; else
    db="payledger_events_bench_$$"
    psql "$store" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null 2>&1
    url="${store%/*}/$db"
  fi
  serve "${1:-}"
}

# Starts a server on $url with $1 delivery workers (default: 2 on SQLite, 8 on PostgreSQL).
serve() {
  workers="${1:-${EVENT_WORKERS:-$([[ "$store" == sqlite* ]] && echo 2 || echo 8)}}"
  DATABASE_URL="$url" PAYLEDGER_ADMIN_USERNAME="$BENCH_USER" PAYLEDGER_ADMIN_PASSWORD="$BENCH_PASSWORD" \
    PAYLEDGER_LOGIN_RATE_PER_MINUTE=1000 PAYLEDGER_EVENT_WORKERS="$workers" \
    PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8 PAYLEDGER_DATA_DIR="$work/data" \
    "$BIN/payledger" serve --bind "127.0.0.1:$PORT" --demo-organizations 0 --log warn >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/health/" >/dev/null && return; sleep 0.1; done
  echo "events-bench: the server did not start" >&2
  tail -n 20 "$work/server.log" >&2
  exit 2
}

stop() {
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
  if [[ "$store" != sqlite* ]]; then psql "$store" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; fi
}

# The webhook load with the bench's extra arguments; its output in $out.
bench() {
  PAYLEDGER_BENCH_PASSWORD="$BENCH_PASSWORD" "$BIN/payledger-bench" --url "http://127.0.0.1:$PORT" \
    --username "$BENCH_USER" --connections "$CONNECTIONS" --duration "$DURATION" --orgs "$ORGS" \
    "$@" >"$work/bench.out" 2>&1 || true
  out="$(cat "$work/bench.out")"
  if ! grep -q '^throughput:' <<<"$out"; then printf '%s\n' "$out" | tail -n 5 >&2; fi
}

change() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{100 * (b - a) / a:+.1f}%')" "$@" 2>/dev/null || echo "?"; }
share() { python3 -c "import sys; c, r = float(sys.argv[1]), float(sys.argv[2]); print(f'{100 * r / c:.1f}%')" "$@" 2>/dev/null || echo "?"; }

echo "| store | ceiling req/s | intake, no endpoint | one endpoint, no delivery workers | change | one endpoint, delivering in the same process | change | deliveries/s during the load | draining a backlog | events |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for store in "${stores[@]}"; do
  start
  ceiling=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$PORT/nowhere" | grep -oP 'Requests/sec:\s+\K[0-9.]+')
  stop

  start
  bench
  plain=$(grep -oP 'throughput:\s+\K[0-9.]+' <<<"$out" || echo "?")
  plain_check=$(grep -oP '^balances: \K\w+' <<<"$out" || echo "?")
  stop

  start
  bench --event-receiver --converge 300
  with=$(grep -oP 'throughput:\s+\K[0-9.]+' <<<"$out" || echo "?")
  during=$(grep -oP 'during the load: [0-9]+ in [0-9.]+ s, \K[0-9.]+' <<<"$out" || echo "?")
  events=$(grep -oP '^events: \K\w+' <<<"$out" || echo "?")
  grep -E '^(events|delivery):' <<<"$out" >&2 || true
  stop

  # A backlog: the load against a server without delivery workers; once it ends, a second server with them on
  # the same database (and the next port) drains it, while the first still answers the bench.
  start 0
  first="$server"
  bench --event-receiver --converge 300 &
  bench_pid=$!
  sleep $((DURATION + 2))
  PORT=$((PORT + 1)) serve
  second="$server"
  wait "$bench_pid" || true
  out="$(cat "$work/bench.out")"
  outbox=$(grep -oP 'throughput:\s+\K[0-9.]+' <<<"$out" || echo "?")
  drain=$(grep -oP 'after it: [0-9]+ in [0-9.]+ s, \K[0-9.]+' <<<"$out" || echo "?")
  grep -E '^(events|delivery):' <<<"$out" >&2 || true
  drain_events=$(grep -oP '^events: \K\w+' <<<"$out" || echo "?")
  kill "$second"; wait "$second" 2>/dev/null || true
  server="$first"
  stop
  if [ "$drain_events" != OK ]; then events="$events, backlog $drain_events"; fi

  echo "| ${store%%:*} | $ceiling | $plain ($(share "$ceiling" "$plain"), $plain_check) | $outbox ($(share "$ceiling" "$outbox")) | $(change "$plain" "$outbox") | $with ($(share "$ceiling" "$with")) | $(change "$plain" "$with") | $during | $drain | $events |"
done
