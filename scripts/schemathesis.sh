#!/usr/bin/env bash
# Runs schemathesis (pinned below) against the OpenAPI spec of a payledger server it starts itself: the debug
# binary already built in $CARGO_TARGET_DIR, on a free port, with a fresh SQLite database and an admin. All
# phases, every check; exits non-zero on any failure. Settings that do not fit the product are in
# scripts/schemathesis.toml, each with its reason.
#
#   CARGO_TARGET_DIR=target bash scripts/schemathesis.sh        # after `cargo build -p payledger`
#
# ST_MAX_EXAMPLES (default 100) and ST_SEED (default 20261205) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${PAYLEDGER_VENV:-$HOME/.cache/payledger-venv}"
BINARY="${CARGO_TARGET_DIR:-target}/debug/payledger"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
SEED="${ST_SEED:-20261205}"

if [ ! -x "$BINARY" ]; then
  echo "schemathesis: $BINARY is missing; build it first (cargo build -p payledger)" >&2
  exit 2
fi
if [ "$("$VENV/bin/st" --version 2>/dev/null || true)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  echo "schemathesis: installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d /tmp/payledger-schemathesis.XXXXXX)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="schemathesis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The development profile (anonymous reads, as documented), the simulated gateway, and a login rate far above
# what the run sends: thousands of requests with deliberately wrong credentials must each be answered 401, as
# the ignored_auth check expects; the rate limit itself is tested in tests/api.
PAYLEDGER_DATA_DIR="$work/data" \
PAYLEDGER_BIND="127.0.0.1:$port" \
PAYLEDGER_ADMIN_USERNAME=admin \
PAYLEDGER_ADMIN_PASSWORD="$password" \
PAYLEDGER_LOGIN_RATE_PER_MINUTE=1000000 \
PAYLEDGER_LOGIN_FAILURES_PER_USERNAME_PER_MINUTE=1000000 \
PAYLEDGER_PAYOUT_MAX_ATTEMPTS=2 \
PAYLEDGER_PAYOUT_RETRY_BASE_MS=50 \
PAYLEDGER_GATEWAY_LATENCY_MS=1 \
PAYLEDGER_LOG=warn \
  "$BINARY" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/api/health/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/server.log" >&2; exit 2; fi
  sleep 0.1
done

# A little data for the operations that need some to get past 404: two users with money, so a transfer
# between small ids can go through, and a dead payout job (the simulated gateway's always-timing-out test
# card, retried twice) for the job list to link to its retry.
api() { curl -sS -o /dev/null -w '%{http_code}' -u "admin:$password" -H 'Content-Type: application/json' "$@"; }
for user in 1 2; do
  api -X POST "http://127.0.0.1:$port/api/add_funds/" -d "{\"user_id\": $user, \"amount\": \"100000.00\"}" >/dev/null
done
api -X POST "http://127.0.0.1:$port/api/v1/payouts/" -d '{"amount": "10.00", "currency": "RUB",
  "recipient_details": {"type": "card", "number": "4000000000009995", "holder": "Dead Job"}}' >/dev/null
for _ in $(seq 1 100); do
  if curl -sS -u "admin:$password" "http://127.0.0.1:$port/api/v1/jobs/?status=dead" | grep -q '"id"'; then break; fi
  sleep 0.1
done

echo "schemathesis: st run --checks all --phases examples,coverage,fuzzing,stateful --max-examples $MAX_EXAMPLES --seed $SEED against 127.0.0.1:$port"
started=$(date +%s)
status=0
# One worker: Hypothesis parses lambda sources with `ast.parse`, which is not thread-safe in CPython 3.11
# ("AST constructor recursion depth mismatch" with two workers).
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$PWD/scripts" PAYLEDGER_ST_USERNAME=admin \
  "$VENV/bin/st" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/api/schema/" \
  --auth "admin:$password" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --no-color \
  --workers 1 \
  --request-timeout 20 \
  --report junit --report-dir "$work/report" \
  || status=$?
echo "schemathesis: finished in $(( $(date +%s) - started )) s with exit status $status"
if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis: the server panicked:" >&2
  grep -B2 -A5 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
