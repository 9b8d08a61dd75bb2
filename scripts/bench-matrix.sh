#!/usr/bin/env bash
# Runs payledger-bench against a fresh release server for each store: first the ceiling scenario (GET
# /api/health/live/, open and touching no data: what the same client and closed loop get from HTTP alone),
# then each webhook mode × load shape, the transfers scenario (spread over 1000 users, and one hot pair; then
# spread again through the batch API, 100 and 1000 transfers to a request, and bank notices 1000 to a request,
# on 8 connections), the three read scenarios (balance: 1000 organizations' balances, each given one bank
# notice first; balances: 1000 users' balances and history: the first page of 1000 users' histories, each user
# given a deposit first; every answer checked against that set-up) and the payouts scenario. It prints one Markdown table row per
# run, with its rate also as a share of that store's ceiling ("share of ceiling": req/s ÷ the ceiling's req/s
# from the same invocation, so rows compare across days and machines), then a second table with each store's
# payout queue drain rates (the numbers in BENCHMARKS.md come from this script).
#
#   scripts/bench-matrix.sh                       # SQLite only
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-matrix.sh   # and PostgreSQL
#
# Settings: DURATION (s, default 10), CONNECTIONS (default 64), PORT (default 18000), PAYOUT_WORKERS (the
# server's payout workers in the payouts run, default 8), PAYOUT_CONVERGE (s the payout queue may take to
# drain, default 900), PAYOUTS (0 skips the payouts run and its drain table), MODES (the webhook modes to run,
# default "sync async"), BATCHES (0 skips the batch API's rows), BIN (binaries to run instead of building
# this tree: see below).
#
# Every server starts with a first admin, BENCH_USER (the bench logs in as it once per run, but for the
# ceiling, and sends its access token with every request), and a login rate high enough that the bench is
# never throttled.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
PORT="${PORT:-18000}"
PAYOUT_WORKERS="${PAYOUT_WORKERS:-8}"
# Creation outruns the workers by far (on the 2-core machine of BENCHMARKS.md ~10k payouts/s created against
# ~250/s completed by 8 workers), so a 10 s run leaves a queue that takes minutes to drain.
PAYOUT_CONVERGE="${PAYOUT_CONVERGE:-900}"
PAYOUTS="${PAYOUTS:-1}"
# Throwaway credentials of a throwaway server on loopback, not a secret: the first admin of every run's fresh
# database, which the bench logs in as (the password reaches it through the environment, not its command line).
BENCH_USER=bench
BENCH_PASSWORD=bench-matrix-admin-password-2024
# BIN: a folder holding payledger and payledger-bench built elsewhere (a build before a change, say); unset,
# this tree is built in release mode and its binaries are used.
if [ -z "${BIN:-}" ]; then
  cargo build --release --workspace -q
  BIN="$CARGO_TARGET_DIR/release"
fi
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

stores=("sqlite://$work/bench.db")
if [ -n "${PG_URL:-}" ]; then stores+=("$PG_URL"); fi

# One run: a fresh database, a server on it in webhook mode $1, the bench with the remaining arguments, and
# a table row labelled with mode $2 and load $3, its rate also as a share of $ceiling. Set run_workers to give
# the server that many payout workers, and run_converge for the bench's --converge (default 60). The bench's
# output stays in $out and its rate in $rps.
run() {
  local mode="$1" label_mode="$2" label_load="$3"
  shift 3
  # A fresh database for every run.
  url="$store"
  if [[ "$store" == sqlite* ]]; then rm -f "$work"/bench.db*; else
    db="payledger_bench_$$"
    psql "$store" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
    url="${store%/*}/$db"
  fi
  env ${run_workers:+PAYLEDGER_WORKERS="$run_workers"} DATABASE_URL="$url" \
    PAYLEDGER_ADMIN_USERNAME="$BENCH_USER" PAYLEDGER_ADMIN_PASSWORD="$BENCH_PASSWORD" \
    PAYLEDGER_LOGIN_RATE_PER_MINUTE=1000 \
    "$BIN/payledger" serve --bind "127.0.0.1:$PORT" --webhook-mode "$mode" \
    --demo-organizations 0 --log warn >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/health/" >/dev/null && break; sleep 0.1; done
  out="$(PAYLEDGER_BENCH_PASSWORD="$BENCH_PASSWORD" "$BIN/payledger-bench" --url "http://127.0.0.1:$PORT" \
    --username "$BENCH_USER" --connections "${run_connections:-$CONNECTIONS}" --duration "$DURATION" \
    --converge "${run_converge:-60}" --server-pid "$server" "$@" 2>&1 || true)"
  kill "$server"; wait "$server" 2>/dev/null || true
  rps=$(grep -oP 'throughput:\s+\K[0-9.]+' <<<"$out" || echo "?")
  # A batch run also reports the operations its requests carried ("12345.6 transfers/s").
  ops=$(grep -oP 'operations:\s+\K[0-9.]+ \w+/s' <<<"$out" || true)
  p50=$(grep -oP 'p50 \K[0-9.]+' <<<"$out" || echo "?")
  p99=$(grep -oP 'p99 \K[0-9.]+' <<<"$out" || echo "?")
  p999=$(grep -oP 'p99\.9 \K[0-9.]+' <<<"$out" || echo "?")
  errors=$(grep -oP '5xx: \K[0-9]+' <<<"$out" || echo "?")
  rss=$(grep -oP 'peak RSS: \K[0-9.]+ MiB' <<<"$out" || echo "?")
  # The payouts scenario ends with "payouts: OK|MISMATCH" instead of "balances: ...", and the ceiling, which
  # has nothing to verify, with "check: not applicable" (or "check: FAILED" when answers were not all 2xx).
  balances=$(grep -oP '^(balances|payouts): \K\w+' <<<"$out" || echo "?")
  if grep -q '^check: not applicable' <<<"$out"; then balances="n/a"; fi
  if grep -q '^check: FAILED' <<<"$out"; then balances="FAILED"; fi
  # The ceiling's own row sets the store's ceiling (and so reads 100.0%); one with failed answers is no
  # ceiling, and leaves every share of its store as "?".
  if [ "$label_load" = ceiling ]; then
    ceiling="?"
    if [ "$balances" = "n/a" ]; then ceiling="$rps"; else
      echo "bench-matrix: the ceiling run failed on ${store%%:*}; its shares are left as ?" >&2
    fi
  fi
  # A run whose requests were refused (401/403) measured the refusals, not the server's work: say so.
  if grep -q '^auth: *FAILED' <<<"$out"; then
    balances="$balances, AUTH FAILED"
    grep '^auth:' <<<"$out" >&2
  fi
  # A failed login (or any other error before the load) leaves no summary at all.
  if ! grep -q '^throughput:' <<<"$out"; then printf '%s\n' "$out" | tail -n 3 >&2; fi
  pct=$(share "$rps" "$ceiling")
  echo "| ${store%%:*} | $label_mode | $label_load | ${run_connections:-$CONNECTIONS} | $rps${ops:+ ($ops)} | $pct | $p50 | $p99 | $p999 | $errors | $rss | $balances |"
  if [[ "$store" != sqlite* ]]; then psql "$store" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; fi
}

# A rate as a share of the ceiling with one decimal ("23.4%"), or "?" when either is unknown. Throughput is a
# statistic, not money: awk's floating point is fine here.
share() {
  awk -v rate="$1" -v ceiling="$2" 'BEGIN {
    number = "^[0-9]+(\\.[0-9]+)?$"
    if (rate ~ number && ceiling ~ number && ceiling > 0) printf "%.1f%%", 100 * rate / ceiling
    else printf "?"
  }'
}

drain_rows=()
ceiling="?"
echo "| store | mode | load | connections | req/s | share of ceiling | p50 ms | p99 ms | p99.9 ms | errors | peak RSS | balances |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for store in "${stores[@]}"; do
  # The ceiling first, once per store, on a fresh server like every row. The bench does not log in for it
  # (the route is open); the webhook mode does not matter: sync, "-" in the mode column.
  run sync - ceiling --scenario ceiling
  for mode in ${MODES:-sync async}; do
    for load in spread hot duplicates; do
      case "$load" in
        spread) args=(--orgs 1000) ;;
        hot) args=(--orgs 1) ;;
        duplicates) args=(--orgs 100 --duplicate-share 20) ;;
      esac
      run "$mode" "$mode" "$load" "${args[@]}"
    done
  done
  # User-to-user transfers do not depend on the webhook mode: sync, and "-" in the mode column.
  for load in spread "hot pair"; do
    case "$load" in
      spread) args=(--users 1000) ;;
      "hot pair") args=(--users 2) ;;
    esac
    run sync - "transfers $load" --scenario transfers "${args[@]}"
  done
  # The same transfers through the batch API, 100 or 1000 to a request, each with its own key, and bank
  # notices 1000 to a request: the rate of operations is the batch API's, and req/s is requests. 8
  # connections: 64 requests of 1000 would ask the ledger's queue (32,768 commands) for twice its room and be
  # refused 503 `overloaded`. BATCHES=0 leaves these rows out (a build before the batch API). A bench built
  # before e3e504f has no --batch for notices: its "batches of 1000" notice row would be single webhooks (it
  # prints no "operations:" line, so the row shows no operations rate).
  if [ "${BATCHES:-1}" != 0 ]; then
    for size in 100 1000; do
      run_connections=8 run sync - "transfers spread, batches of $size" --scenario transfers --users 1000 --batch "$size"
    done
    run_connections=8 run sync sync "webhooks spread, batches of 1000" --orgs 1000 --batch 1000
  fi
  # Reads, authenticated like every row but the ceiling, of accounts the bench sets up first (not measured):
  # one bank notice into each of 1000 organizations (sync mode, so each is booked when acknowledged), or one
  # deposit into each of 1000 users. The webhook mode does not matter: sync, "-" in the mode column.
  run sync - "read balance (1000 orgs)" --scenario balance --orgs 1000
  run sync - "read balances (1000 users)" --scenario balances --users 1000
  run sync - "read history (1000 users)" --scenario history --users 1000
  # Payouts: creation measured like the rows above, then the queue drain. The server runs with
  # PAYLEDGER_WORKERS=8 (PAYOUT_WORKERS) instead of its default of 2: each worker handles one payout at a time
  # and waits 20 ms on the simulated gateway, so 2 workers could never drain faster than 100 payouts/s; the
  # drain would measure little but that sleep, and a run's queue (~100k payouts) would take over 15 minutes.
  # 8 workers raise the ceiling to 400/s, so the rate also shows the server's own cost per payout (claiming
  # the job, the status changes). The webhook mode does not matter: sync, "-" in the mode column.
  if [ "$PAYOUTS" = 0 ]; then continue; fi
  run_workers="$PAYOUT_WORKERS" run_converge="$PAYOUT_CONVERGE" run sync - payouts --scenario payouts
  created=$(grep -oP '^created: +\K[0-9]+' <<<"$out" || echo "?")
  drain=$(grep -oP '^drain: .*, \K[0-9.-]+(?= payouts/s)' <<<"$out" || echo "?")
  if grep -qP '^drain: +still ' <<<"$out"; then drain="$drain (not drained in $PAYOUT_CONVERGE s)"; fi
  overall=$(grep -oP '^overall: .*, \K[0-9.-]+(?= payouts/s)' <<<"$out" || echo "?")
  failed=$(grep -oP '^by status: .*failed [0-9]+ \(\+\K[0-9]+' <<<"$out" || echo "?")
  drain_rows+=("| ${store%%:*} | $PAYOUT_WORKERS | $created | $drain | $overall | $failed |")
done

if [ "$PAYOUTS" = 0 ]; then exit 0; fi
echo
echo "| store | workers | created | drain payouts/s | overall payouts/s | failed |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${drain_rows[@]}"
