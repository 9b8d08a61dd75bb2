#!/usr/bin/env bash
# Runs schemathesis (every package pinned in scripts/schemathesis-requirements.txt) against the OpenAPI spec of
# a payledger server it starts itself: the debug binary already built in $CARGO_TARGET_DIR, on a free port,
# with a fresh SQLite database and an admin. All phases, every check (and the hooks' own, in
# scripts/schemathesis_hooks.py); exits non-zero on any failure, on a setup step that did not work, and when
# the run reached too little (scripts/schemathesis_report.py). Settings that do not fit the product are in
# scripts/schemathesis.toml, each with its reason. The reports (JUnit, HAR of every request, JSON summary, the
# console output) stay in $CARGO_TARGET_DIR/schemathesis/.
#
#   CARGO_TARGET_DIR=target bash scripts/schemathesis.sh        # after `cargo build -p payledger`
#
# ST_MAX_EXAMPLES (default 100), ST_SEED (default 20261205) and ST_PHASES (default all four) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every package of the run is pinned (scripts/schemathesis-requirements.txt, schemathesis 4.32.5 among them), and
# the venv's path is keyed by that file's hash: concurrent runs share a complete venv, a changed pin gets a new
# one, and the lock makes one run build it while the others wait.
REQUIREMENTS=scripts/schemathesis-requirements.txt
VENV="${PAYLEDGER_VENV:-$HOME/.cache/payledger-venv-$(sha256sum "$REQUIREMENTS" | cut -c1-16)}"
BINARY="${CARGO_TARGET_DIR:-target}/debug/payledger"
REPORTS="${CARGO_TARGET_DIR:-target}/schemathesis"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
SEED="${ST_SEED:-20261205}"
PHASES="${ST_PHASES:-examples,coverage,fuzzing,stateful}"

if [ ! -x "$BINARY" ]; then
  echo "schemathesis: $BINARY is missing; build it first (cargo build -p payledger)" >&2
  exit 2
fi
mkdir -p "$(dirname "$VENV")"
(
  flock 9
  if [ ! -e "$VENV/.complete" ]; then
    echo "schemathesis: installing $REQUIREMENTS into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    touch "$VENV/.complete"
  fi
) 9>"$VENV.lock"

work="$(mktemp -d /tmp/payledger-schemathesis.XXXXXX)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="schemathesis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""
# On failure the server's log is the first thing to read, and it goes with the temporary directory.
cleanup() {
  local code=$?
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$code" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "schemathesis: the last lines of the server's log:" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "schemathesis: $*" >&2; exit 2; }

# A receiver of outbound events on loopback that takes everything (204), so a delivery can succeed and the
# delivery operations have a finished one to replay.
receiver_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 - "$receiver_port" <<'PY' &
import http.server
import sys


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
receiver_pid=$!

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
PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8 \
PAYLEDGER_EVENT_RETRY_SCHEDULE=1s \
PAYLEDGER_EVENT_TIMEOUT_SECONDS=2 \
PAYLEDGER_LOG=warn \
  "$BINARY" serve >"$work/server.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/api/health/" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before answering /api/health/"
  sleep 0.1
done
[ -n "$ready" ] || fail "the server did not answer /api/health/ within 30 s"

# A little data for the operations that need some to get past 404: two users with money, so a transfer
# between small ids can go through, a reservation to deduct, and a dead payout job (the simulated gateway's always-timing-out test
# card, retried twice) for the job list to link to its retry. Each must be created (201), or the run would
# test an empty server and pass anyway.
seed() {
  local code
  code="$(curl -sS -o "$work/seed.json" -w '%{http_code}' -u "admin:$password" -H 'Content-Type: application/json' \
    -X POST "http://127.0.0.1:$port$1" -d "$2")"
  [ "$code" = 201 ] || fail "seeding POST $1 answered $code, not 201: $(cat "$work/seed.json")"
}
for user in 1 2; do
  seed /api/add_funds/ "{\"user_id\": $user, \"amount\": \"100000.00\"}"
done
# The deduct example's reservation (the examples phase sends deducts before reserves): a deduct must name a
# held reservation of exactly its amount, which no generated body does; the stateful phase reaches more
# through the reserve → deduct link, but not in every run.
seed /api/reserve_funds/ '{"user_id": 1, "service_id": 101, "order_id": 1001, "amount": "50.00"}'
seed /api/v1/payouts/ '{"amount": "10.00", "currency": "RUB",
  "recipient_details": {"type": "card", "number": "4000000000009995", "holder": "Dead Job"}}'
dead=""
for _ in $(seq 1 300); do
  if curl -sS -u "admin:$password" "http://127.0.0.1:$port/api/v1/jobs/?status=dead" | grep -q '"id"'; then dead=1; break; fi
  sleep 0.1
done
[ -n "$dead" ] || fail "the seeded payout's job did not become dead within 30 s"
# A statement for the reconciliation operations: an import and its discrepancies, whose ids the hooks give
# to the operations on `{id}` (a generated id names nothing, and every answer would be 404).
statement_code="$(curl -sS -o "$work/statement.json" -w '%{http_code}' -u "admin:$password" \
  -H 'Content-Type: application/octet-stream' --data-binary @docs/samples/statement-1c-cp1251.txt \
  -X POST "http://127.0.0.1:$port/api/v1/statements/?file_name=statement-1c-cp1251.txt")"
[ "$statement_code" = 201 ] || fail "seeding the statement answered $statement_code, not 201: $(cat "$work/statement.json")"
statement_ids="$(python3 scripts/schemathesis_seed.py "http://127.0.0.1:$port" "admin:$password" "$work/statement.json")" \
  || fail "reading the seeded statement's discrepancies failed"
export PAYLEDGER_ST_STATEMENT_ID="${statement_ids%% *}"
export PAYLEDGER_ST_DISCREPANCY_IDS="${statement_ids#* }"
export PAYLEDGER_ST_STATEMENT_FILE="$PWD/docs/samples/statement-1c-cp1251.txt"
# A webhook endpoint at the receiver above and a delivered ping, whose ids the hooks give to the operations on
# `{id}` and `{delivery_id}` (but DELETE: the stateful phase deletes the endpoints it creates).
endpoint_code="$(curl -sS -o "$work/endpoint.json" -w '%{http_code}' -u "admin:$password" -H 'Content-Type: application/json' \
  -X POST "http://127.0.0.1:$port/api/v1/webhook-endpoints/" \
  -d "{\"url\": \"http://127.0.0.1:$receiver_port/events\", \"event_types\": [\"payout.created\"]}")"
[ "$endpoint_code" = 201 ] || fail "seeding a webhook endpoint answered $endpoint_code, not 201: $(cat "$work/endpoint.json")"
endpoint_id="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$work/endpoint.json")"
curl -fsS -o "$work/ping.json" -u "admin:$password" -X POST "http://127.0.0.1:$port/api/v1/webhook-endpoints/$endpoint_id/test/" \
  || fail "seeding a ping failed"
delivered=""
for _ in $(seq 1 300); do
  if curl -sS -u "admin:$password" "http://127.0.0.1:$port/api/v1/webhook-endpoints/$endpoint_id/deliveries/?status=succeeded" \
    | grep -q '"id"'; then delivered=1; break; fi
  sleep 0.1
done
[ -n "$delivered" ] || fail "the seeded ping was not delivered within 30 s"
export PAYLEDGER_ST_ENDPOINT_ID="$endpoint_id"
PAYLEDGER_ST_DELIVERY_ID="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["delivery_id"])' "$work/ping.json")"
export PAYLEDGER_ST_DELIVERY_ID

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
curl -fsS -u "admin:$password" "http://127.0.0.1:$port/api/schema/" >"$REPORTS/openapi.json" || fail "no spec at /api/schema/"
echo "schemathesis: st run --checks all (but use_after_free) --phases $PHASES --max-examples $MAX_EXAMPLES --seed $SEED against 127.0.0.1:$port"
started=$(date +%s)
status=0
# One worker: Hypothesis parses lambda sources with `ast.parse`, which is not thread-safe in CPython 3.11
# ("AST constructor recursion depth mismatch" with two workers).
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$PWD/scripts" PAYLEDGER_ST_USERNAME=admin ST_SEED="$SEED" PAYLEDGER_ST_REPORTS="$REPORTS" \
  "$VENV/bin/st" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/api/schema/" \
  --auth "admin:$password" \
  --checks all \
  --exclude-checks use_after_free \
  --phases "$PHASES" \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --no-color \
  --workers 1 \
  --request-timeout 20 \
  --report junit,har,json \
  --report-junit-path "$REPORTS/junit.xml" --report-har-path "$REPORTS/requests.har" \
  --report-json-path "$REPORTS/run.json" \
  2>&1 | tee "$REPORTS/output.txt" || status=$?
echo "schemathesis: reports in $REPORTS; finished in $(( $(date +%s) - started )) s with exit status $status"
# What the run reached, per operation, and whether it reached enough (scripts/schemathesis_report.py).
python3 scripts/schemathesis_report.py "$REPORTS" || status=1
if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis: the server panicked:" >&2
  grep -B2 -A5 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
