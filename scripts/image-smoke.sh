#!/usr/bin/env bash
# Builds the Dockerfile's image around a prebuilt payledger binary (no Rust is compiled) and runs it: the
# process is not root, the server comes up ready inside the container, the README's curl examples answer as
# documented from the host, and SIGTERM stops it cleanly.
#
#   bash scripts/image-smoke.sh [BINARY]     # default: ${CARGO_TARGET_DIR:-$HOME/.cache/payledger-target}/debug/payledger
#
# It needs buildah and debootstrap (installed with apt-get when missing) and runs as root. It uses buildah with
# the vfs storage driver and chroot isolation on the host network, which work inside a container where
# podman's runtime cannot set rlimits. The base image debian:bookworm-slim cannot be pulled here, so the first
# run makes an equivalent one with `debootstrap --variant=minbase bookworm` from the Debian mirror this host's
# apt uses, and stores it in buildah's storage under that name (later runs find it and skip this; remove it
# with `buildah --storage-driver vfs rmi docker.io/library/debian:bookworm-slim`). When that mirror cannot be
# reached, the test prints "SKIPPED: image smoke test (…)" and exits 0 (1 with PAYLEDGER_REQUIRE_IMAGE_SMOKE=1,
# as CI sets it); every other failure exits non-zero.
#
# SMOKE_KEEP=1 keeps the working folder (server log, answers) and the image localhost/payledger:smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

BINARY="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/payledger-target}/debug/payledger}"
BASE_IMAGE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/payledger:smoke
# The uid the Dockerfile gives the user `payledger`.
EXPECTED_UID=10001
ADMIN_USER="admin"
# A throwaway password of a throwaway server on loopback, not a secret.
ADMIN_PASSWORD="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

buildah_vfs() { buildah --storage-driver vfs "$@"; }
fail() { echo "image-smoke: FAILED: $*" >&2; exit 1; }
say() { echo "image-smoke: $*"; }

phase_started=$SECONDS
phase() {
  local now=$SECONDS
  say "phase '$1' took $((now - phase_started)) s"
  phase_started=$now
}

[ "$(id -u)" = 0 ] || fail "run it as root (buildah's vfs storage and chroot isolation need it)"
[ -x "$BINARY" ] || fail "$BINARY is missing or not executable; build it first (cargo build -p payledger)"
if ! command -v buildah >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  say "installing buildah and debootstrap"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
fi

work="$(mktemp -d /tmp/payledger-image-smoke.XXXXXX)"
images_before=""
containers_before=""
container=""
server_pid=""
# The processes below a process: a container's processes are the host's under chroot isolation.
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}
cleanup() {
  local code=$?
  if [ -n "$server_pid" ]; then
    # A failure left the server running: stop buildah run and everything it started.
    local stragglers
    mapfile -t stragglers < <(descendants "$server_pid")
    kill -KILL "$server_pid" "${stragglers[@]}" 2>/dev/null || true
  fi
  if [ -n "$container" ]; then buildah_vfs rm "$container" >/dev/null 2>&1 || true; fi
  if [ "$code" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "image-smoke: the last lines of the server's log:" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then
    say "kept $work and $IMAGE"
  else
    # The image and the stage images its build left (one holds a copy of the binary): vfs stores each whole.
    buildah_vfs rmi "$IMAGE" >/dev/null 2>&1 || true
    if [ -n "$images_before" ]; then
      # buildah 1.28 leaves the working container of a stage without instructions (`binary`) behind.
      comm -13 <(echo "$containers_before") <(buildah_vfs containers --all --quiet --notruncate | sort) |
        xargs -r buildah --storage-driver vfs rm >/dev/null 2>&1 || true
      comm -13 <(echo "$images_before") <(buildah_vfs images --all --quiet --no-trunc | sort) |
        xargs -r buildah --storage-driver vfs rmi >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The Debian mirror apt uses on this host (one-line or deb822 sources), for debootstrap.
debian_mirror() {
  local uri=""
  if [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && / bookworm( |$)/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list)"
  fi
  if [ -z "$uri" ]; then
    for file in /etc/apt/sources.list.d/*.sources; do
      [ -r "$file" ] || continue
      uri="$(awk 'BEGIN { RS = "" } /(^|\n)Types:[^\n]*deb( |\n|$)/ && /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ {
                    if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/.*URIs:[ \t]*/, "", s); print s; exit }
                  }' "$file")"
      [ -n "$uri" ] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# ---- The base image, made once with debootstrap ----
if buildah_vfs inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE is in buildah's storage (made by an earlier run); not rebuilding it"
else
  mirror="$(debian_mirror)"
  if ! curl -fsS --max-time 30 -o /dev/null "$mirror/dists/bookworm/Release"; then
    echo "SKIPPED: image smoke test (the Debian mirror $mirror cannot be reached, so no base image can be made)"
    # CI sets it, as it does for the PostgreSQL and browser tests: a skip there is a failure.
    if [ "${PAYLEDGER_REQUIRE_IMAGE_SMOKE:-0}" = 1 ]; then exit 1; fi
    exit 0
  fi
  say "making $BASE_IMAGE with debootstrap --variant=minbase bookworm from $mirror"
  rootfs="$work/rootfs"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    fail "debootstrap failed (log above)"
  fi
  # The sources the real image has: the mirror's bookworm, bookworm-updates and bookworm-security, as this
  # host's apt reaches them (debootstrap writes only the first).
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  rm -rf "$rootfs"
  base="$(buildah_vfs from scratch)"
  buildah_vfs add "$base" "$work/rootfs.tar" / >/dev/null
  buildah_vfs config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label org.opencontainers.image.description="debian bookworm minbase made by debootstrap for scripts/image-smoke.sh" \
    "$base"
  buildah_vfs commit --quiet --rm "$base" "$BASE_IMAGE" >/dev/null
  rm -f "$work/rootfs.tar"
fi
phase "base image"

# ---- The image, with the binary injected instead of compiled ----
images_before="$(buildah_vfs images --all --quiet --no-trunc | sort)"
containers_before="$(buildah_vfs containers --all --quiet --notruncate | sort)"
mkdir -p "$work/context"
cp "$BINARY" "$work/context/payledger"
if ! buildah_vfs build --quiet --isolation chroot --network host --pull=never --format docker \
  --build-arg PAYLEDGER_BINARY_STAGE=prebuilt \
  --build-arg PAYLEDGER_REVISION="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --file "$REPO/Dockerfile" --tag "$IMAGE" "$work/context" >"$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  fail "buildah build failed (log above)"
fi
phase "image build"

# ---- What the image says about itself ----
buildah_vfs inspect --type image "$IMAGE" >"$work/image.json"
python3 - "$work/image.json" "$EXPECTED_UID" <<'PY' || fail "the image's configuration is not what the Dockerfile says (above)"
import json, sys
config = json.load(open(sys.argv[1], encoding="utf-8"))["Docker"]["config"]
uid = sys.argv[2]
env = config.get("Env") or []
checks = {
    "ENTRYPOINT is tini -- payledger": config.get("Entrypoint") == ["tini", "--", "payledger"],
    "CMD is serve": config.get("Cmd") == ["serve"],
    f"USER is {uid}:{uid}": config.get("User") == f"{uid}:{uid}",
    "port 8000 is exposed": "8000/tcp" in (config.get("ExposedPorts") or {}),
    "/var/lib/payledger is a volume": "/var/lib/payledger" in (config.get("Volumes") or {}),
    "HEALTHCHECK runs payledger healthcheck":
        (config.get("Healthcheck") or {}).get("Test") == ["CMD", "payledger", "healthcheck"],
    "PAYLEDGER_BIND is 0.0.0.0:8000": "PAYLEDGER_BIND=0.0.0.0:8000" in env,
    "PAYLEDGER_DATA_DIR is /var/lib/payledger": "PAYLEDGER_DATA_DIR=/var/lib/payledger" in env,
    "DATABASE_URL is not set (derived from PAYLEDGER_DATA_DIR)": not any(e.startswith("DATABASE_URL=") for e in env),
    "the OCI title label is payledger": (config.get("Labels") or {}).get("org.opencontainers.image.title") == "payledger",
}
failed = [name for name, ok in checks.items() if not ok]
for name in failed:
    print(f"image-smoke: not so: {name}", file=sys.stderr)
if failed:
    print(json.dumps(config, indent=1), file=sys.stderr)
sys.exit(1 if failed else 0)
PY
# The command the image runs when started without arguments, exactly: its ENTRYPOINT, then its CMD.
mapfile -t command_line < <(python3 -c '
import json, sys
config = json.load(open(sys.argv[1], encoding="utf-8"))["Docker"]["config"]
print("\n".join(config["Entrypoint"] + config["Cmd"]))' "$work/image.json")
say "image config: ${command_line[*]} as $EXPECTED_UID:$EXPECTED_UID, port 8000, volume /var/lib/payledger, HEALTHCHECK"

container="$(buildah_vfs from --pull=never "$IMAGE")"
run() { buildah_vfs run --isolation chroot --network host "$@"; }
[ "$(run "$container" -- id -u)" = "$EXPECTED_UID" ] || fail "the container's user is $(run "$container" -- id -u), not $EXPECTED_UID"
[ "$(run "$container" -- id -g)" = "$EXPECTED_UID" ] || fail "the container's group is not $EXPECTED_UID"
volume_owner="$(run "$container" -- stat -c '%u:%g %a' /var/lib/payledger)"
[ "$volume_owner" = "$EXPECTED_UID:$EXPECTED_UID 700" ] || fail "/var/lib/payledger is $volume_owner, not $EXPECTED_UID:$EXPECTED_UID 700"
run "$container" -- tini --version >/dev/null || fail "tini does not run"
run "$container" -- test -s /etc/ssl/certs/ca-certificates.crt || fail "no CA certificates in the image"
version="$(run "$container" -- payledger --version)" || fail "payledger --version failed in the container"
say "inside: uid/gid $EXPECTED_UID, /var/lib/payledger $volume_owner, $version, tini and CA certificates present"
phase "container checks"

# ---- The server, started the way the image's ENTRYPOINT and CMD start it ----
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base_url="http://127.0.0.1:$port"
mkdir -p "$work/data"
chown "$EXPECTED_UID:$EXPECTED_UID" "$work/data"
chmod 0700 "$work/data"
# The development profile (the README's anonymous reads and unsigned webhooks), SQLite in the data volume
# (a host folder here, so that later `buildah run`s and the host see the same database), and a known admin.
# Chroot isolation has no PID namespace, so tini is not PID 1: as a subreaper it reaps as it would be. No
# capabilities at all, as compose.yaml runs it (cap_drop: ALL). buildah itself, not a shell function, so that
# $! is its process.
buildah --storage-driver vfs run --isolation chroot --network host --cap-drop ALL \
  --volume "$work/data:/var/lib/payledger" \
  --env PAYLEDGER_BIND="127.0.0.1:$port" \
  --env PAYLEDGER_ADMIN_USERNAME="$ADMIN_USER" \
  --env PAYLEDGER_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  --env PAYLEDGER_GATEWAY_LATENCY_MS=1 \
  --env TINI_SUBREAPER=1 \
  "$container" -- "${command_line[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 600); do
  if run --env PAYLEDGER_BIND="127.0.0.1:$port" "$container" -- payledger healthcheck >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before it was ready"
  sleep 0.2
done
[ -n "$ready" ] || fail "payledger healthcheck did not pass within 120 s"
run "$container" -- payledger healthcheck --url "$base_url/api/health/ready/" || fail "healthcheck --url failed"
say "ready: payledger healthcheck (PAYLEDGER_BIND and --url) exits 0 inside the container"
phase "server start"

# ---- The README's examples, from the host ----
# request NAME EXPECTED_STATUS CURL_ARGS...: the answer's body goes to $work/NAME.json.
request() {
  local name=$1 expected=$2
  shift 2
  local status
  status="$(curl -sS -o "$work/$name.json" -w '%{http_code}' "$@")" || fail "$name: curl failed"
  [ "$status" = "$expected" ] || fail "$name: answered $status, expected $expected: $(head -c 500 "$work/$name.json")"
}
# expect NAME PYTHON_EXPRESSION: the expression over the answer `a` (parsed JSON) must hold.
expect() {
  python3 - "$work/$1.json" "$2" <<'EOF' || fail "$1: $2 does not hold for $(head -c 500 "$work/$1.json")"
import json, sys
a = json.load(open(sys.argv[1], encoding="utf-8"))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}
notice='{"operation_id": "ccf0a86d-041b-4991-bcf7-e2352f7b8a4a", "amount": 145000, "payer_inn": "1234567890",
       "document_number": "PAY-328", "document_date": "2024-04-27T21:00:00Z"}'
request webhook 200 -X POST "$base_url/api/webhook/bank/" -H 'Content-Type: application/json' -d "$notice"
expect webhook 'a["message"] == "Payment processed successfully"'
request webhook-again 200 -X POST "$base_url/api/webhook/bank/" -H 'Content-Type: application/json' -d "$notice"
expect webhook-again 'a["message"] == "Payment already processed"'
request balance 200 "$base_url/api/organizations/1234567890/balance/"
expect balance 'a["inn"] == "1234567890" and a["balance"] == 145000'
grep -q '"balance":145000.00' "$work/balance.json" || fail "balance: not printed as 145000.00: $(cat "$work/balance.json")"
request balance-log 200 "$base_url/api/organizations/1234567890/balance-log/?limit=50"
expect balance-log 'len(a["results"]) == 1 and a["results"][0]["amount"] == 145000 and a["results"][0]["operation_id"] == "ccf0a86d-041b-4991-bcf7-e2352f7b8a4a" and a["results"][0]["new_balance"] == 145000 and a["next_cursor"] is None'
say "webhook 200 (and its replay), organization balance 145000.00, balance log of one line"

request deposit 201 -u "$ADMIN_USER:$ADMIN_PASSWORD" -X POST "$base_url/api/add_funds/" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: smoke-deposit-1' -d '{"user_id": 1, "amount": 2000}'
expect deposit 'a["transaction_type"] == "deposit" and a["amount"] == "2000.00" and a["user_id"] == 1'
request deposit-anonymous 401 -X POST "$base_url/api/add_funds/" -H 'Content-Type: application/json' \
  -d '{"user_id": 1, "amount": 1}'
request user-balance 200 "$base_url/api/balances/?user_id=1"
expect user-balance 'a["user_id"] == 1 and a["amount"] == 2000 and a["reserved"] == 0'
request payout 201 -u "$ADMIN_USER:$ADMIN_PASSWORD" -X POST "$base_url/api/v1/payouts/" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: smoke-payout-1' -d '{
  "amount": "1500.00", "currency": "RUB",
  "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Иван Иванов"},
  "description": "Тестовая выплата", "source": {"user_id": 1}}'
expect payout 'a["status"] == "pending" and a["amount"] == "1500.00" and a["recipient_details"]["number"] == "•••• 1111"'
payout_id="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1], encoding="utf-8"))["id"])' "$work/payout.json")"
completed=""
for _ in $(seq 1 100); do
  request payout-read 200 -u "$ADMIN_USER:$ADMIN_PASSWORD" "$base_url/api/v1/payouts/$payout_id/"
  if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1], encoding="utf-8"))["status"] != "completed")' "$work/payout-read.json"; then
    completed=1
    break
  fi
  sleep 0.1
done
[ -n "$completed" ] || fail "payout $payout_id did not complete in 10 s: $(cat "$work/payout-read.json")"
expect payout-read 'a["status_history"][-1]["to"] == "completed" and a["attempts"] == 1'
request user-balance-after 200 "$base_url/api/balances/?user_id=1"
expect user-balance-after 'a["amount"] == 500 and a["reserved"] == 0'
say "deposit 201 (anonymous 401), payout 201 pending -> completed by the image's workers, balance 2000.00 -> 500.00"
phase "README examples"

# ---- SIGTERM: the server stops by itself and exits 0 ----
# With chroot isolation the container's processes are the host's: tini (PID 1 of a real container) is a
# descendant of this run's `buildah run`, and forwards the signal to the server, as it does under docker stop.
tini_pid=""
for pid in $(descendants "$server_pid"); do
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tini ]; then tini_pid=$pid; break; fi
done
[ -n "$tini_pid" ] || fail "cannot find the container's tini process under buildah run ($server_pid)"
kill -TERM "$tini_pid"
stopped=""
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then stopped=1; break; fi
  sleep 0.2
done
[ -n "$stopped" ] || fail "the server did not stop within 60 s of SIGTERM"
set +e
wait "$server_pid"
exit_code=$?
set -e
server_pid=""
[ "$exit_code" = 0 ] || fail "the server exited with $exit_code after SIGTERM"
if grep -Ei 'panic|ERROR' "$work/server.log" >/dev/null; then
  grep -Ei 'panic|ERROR' "$work/server.log" | head -n 10 >&2
  fail "the server's log has errors (above)"
fi
# The database it left is whole and current: verify and migrate --check inside the image, on the same volume.
run --volume "$work/data:/var/lib/payledger" "$container" -- payledger verify >"$work/verify.log" 2>&1 ||
  { cat "$work/verify.log" >&2; fail "payledger verify failed after the shutdown"; }
run --volume "$work/data:/var/lib/payledger" "$container" -- payledger migrate --check >/dev/null ||
  fail "payledger migrate --check did not exit 0 after the shutdown"
say "SIGTERM: exit 0, no error in the log; payledger verify and migrate --check pass on the data it left"
phase "shutdown"
say "passed"
