#!/usr/bin/env bash
# The production topology, end to end, on one machine and without containers: nginx terminating TLS in front of
# two `payledger serve --profile production` instances on one PostgreSQL database, one `payledger worker`, and
# an HTTP payment gateway stub. scripts/topology.py drives it through the proxy (signed webhooks, tokens,
# balance operations, a payout paid through the gateway, the rate limits per real client address, request ids,
# the audit log, a rolling restart under load with nothing lost or applied twice), then `payledger verify`
# checks the ledger.
#
#   bash scripts/topology.sh [PATH_TO_PAYLEDGER_BINARY]
#
# The binary defaults to the debug build in ${CARGO_TARGET_DIR:-$HOME/.cache/payledger-target}. This script
# builds nothing. Settings:
#   TOPOLOGY_PG_SERVER   PostgreSQL server URL without a database (default: TEST_DATABASE_URL's server, else
#                        postgres://postgres@127.0.0.1:5432); a fresh database is created on it and dropped.
#   TOPOLOGY_NGINX_SITE  a server-block file to test instead of the repository's deploy/nginx/site.conf (see
#                        localize_site below for what is adapted).
#   TOPOLOGY_THREADS     client threads during the rolling restart (default 8).
#   TOPOLOGY_KEEP=1      keep the temporary folder (configuration and logs); it is kept anyway on failure.
# Exits 0 when every check passed, 1 when one failed, 2 when the set-up itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

started_at=$EPOCHREALTIME
BIN="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/payledger-target}/debug/payledger}"
if [ ! -x "$BIN" ]; then
  echo "topology: $BIN is not an executable payledger binary (build it, or pass its path)" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

# CI exports TEST_DATABASE_URL for its PostgreSQL (which may be a private cluster on another port): use its server.
if [ -n "${TOPOLOGY_PG_SERVER:-}" ]; then
  PG_SERVER="$TOPOLOGY_PG_SERVER"
elif [ -n "${TEST_DATABASE_URL:-}" ]; then
  PG_SERVER="${TEST_DATABASE_URL%/*}"
else
  PG_SERVER="postgres://postgres@127.0.0.1:5432"
fi
DB="payledger_topology_$(date +%s)_$$_$RANDOM"

WORK="$(mktemp -d /tmp/payledger-topology.XXXXXX)"
NGINX_DIR="$WORK/nginx"
nginx_pid=""
driver_pid=""
db_created=0
status=2

cleanup() {
  # Interrupted: the driver stops the processes it started (SIGTERM unwinds it); give it the time their
  # shutdowns take, then make sure.
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$driver_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$driver_pid" 2>/dev/null || true
  fi
  # A driver killed hard leaves its pid files behind. A pid is signalled only while it is still a payledger
  # process (not a recycled number).
  for file in "$WORK"/pids/*.pid; do
    [ -e "$file" ] || continue
    pid="$(cat "$file")"
    if grep -qa payledger "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$nginx_pid" ]; then
    kill -QUIT "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  if [ "$db_created" = 1 ]; then
    psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
      echo "topology: could not drop the database $DB" >&2
  fi
  if [ "$status" -ne 0 ] || [ "${TOPOLOGY_KEEP:-0}" = 1 ]; then
    if [ "$status" -ne 0 ] && [ -d "$WORK/logs" ]; then
      for log in "$WORK"/logs/*.log "$NGINX_DIR"/logs/error.log; do
        [ -s "$log" ] || continue
        echo "---- last lines of $log"
        tail -n 15 "$log"
      done
    fi
    echo "topology: configuration and logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit' INT TERM

# Phase timings: the set-up phases here, the driver's own in its summary.
phase_started=0
phase_name=""
timings=()
phase() {
  phase_done
  phase_name="$1"
  phase_started=$EPOCHREALTIME
  echo "topology: $phase_name"
}
phase_done() {
  if [ -n "$phase_name" ]; then
    timings+=("$(printf '%-28s %6.2f s' "$phase_name" "$(elapsed "$phase_started")")")
  fi
  phase_name=""
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# Free loopback ports, chosen by the kernel, all at once so that they differ (a tiny race with other processes
# binding meanwhile is accepted: a taken port fails loudly at start).
free_ports() {
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

phase "database"
pg_isready -d "$PG_SERVER/postgres" -q || { echo "topology: PostgreSQL at $PG_SERVER does not answer" >&2; exit 2; }
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $DB" >/dev/null
db_created=1
export DATABASE_URL="$PG_SERVER/$DB"

phase "migrate"
mkdir -p "$WORK/logs" "$WORK/pids"
"$BIN" migrate >"$WORK/logs/migrate.log" 2>&1 || { cat "$WORK/logs/migrate.log" >&2; exit 2; }

phase "certificate and nginx"
# Mirrors deploy/nginx's layout (certs/ and payledger/site.conf beside the main file), so that the repo's site
# file can be tested in place of the generated one.
mkdir -p "$NGINX_DIR/certs" "$NGINX_DIR/payledger" "$NGINX_DIR/conf.d" "$NGINX_DIR/logs" "$NGINX_DIR/temp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$NGINX_DIR/certs/payledger.key" -out "$NGINX_DIR/certs/payledger.crt" 2>"$WORK/logs/openssl.log"
chmod 600 "$NGINX_DIR/certs/payledger.key"

read -r PROXY_PORT PROXY_HTTP_PORT INSTANCE1_PORT INSTANCE2_PORT GATEWAY_PORT <<<"$(free_ports 5)"

NGINX="$(command -v nginx || true)"
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
  echo "topology: installing nginx-light"
  if [ "$(id -u)" = 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  apt_get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq nginx-light >/dev/null
  NGINX=/usr/sbin/nginx
fi

# The site: the part of nginx's configuration a deployment owns (TLS, headers to the upstream, retries). The
# repository's own deploy/nginx/site.conf by default, so the file operators install is the one tested;
# TOPOLOGY_NGINX_SITE tests another file instead.
SITE_FILE="${TOPOLOGY_NGINX_SITE:-$(cd "$(dirname "$0")/.." && pwd)/deploy/nginx/site.conf}"

# A deployment's site file listens on 80/443 and logs under /var/log/nginx; here it must listen on this run's
# loopback ports and log into the temporary folder. Only those lines change: everything else is tested as
# written. A listen line this cannot place, or a log without the request id, fails the run with the reason.
localize_site() {
  sed -E \
    -e "s/^([[:space:]]*)listen[[:space:]]+443[[:space:]]+ssl/\1listen 127.0.0.1:$PROXY_PORT ssl/" \
    -e "s/^([[:space:]]*)listen[[:space:]]+80;/\1listen 127.0.0.1:$PROXY_HTTP_PORT;/" \
    -e "s#/var/log/nginx/#$NGINX_DIR/logs/#g"
}
echo "topology: testing the site file $SITE_FILE"
localize_site <"$SITE_FILE" >"$NGINX_DIR/payledger/site.conf"
if grep -E '^[[:space:]]*listen[[:space:]]' "$NGINX_DIR/payledger/site.conf" | grep -qv '127\.0\.0\.1:'; then
  echo "topology: the site file listens somewhere other than 80 or 443 ssl; cannot place it on a test port" >&2
  exit 2
fi
# shellcheck disable=SC2016 # nginx's variable, literally
if ! grep -qF 'request_id=$request_id' "$NGINX_DIR/payledger/site.conf"; then
  echo "topology: the site file's access log must carry request_id=\$request_id (the driver checks ids against it)" >&2
  exit 2
fi

# The includer's part, like deploy/nginx/payledger.conf: this run's two instances. A short fail_timeout lets a
# restarted instance back in quickly; the driver waits until it really receives requests before going on.
cat >"$NGINX_DIR/conf.d/payledger.conf" <<EOF
upstream payledger {
    server 127.0.0.1:$INSTANCE1_PORT max_fails=1 fail_timeout=2s;
    server 127.0.0.1:$INSTANCE2_PORT max_fails=1 fail_timeout=2s;
    keepalive 16;
}

include payledger/site.conf;
EOF

# The temp paths are compiled in under /var/lib/nginx; a test must not share them with a system nginx.
nginx_build="$("$NGINX" -V 2>&1)"
temp_paths=""
for kind in client_body proxy fastcgi uwsgi scgi; do
  # A module left out of the build (nginx-light's) has no temp path directive.
  case "$nginx_build" in *"--without-http_${kind}_module"*) continue ;; esac
  temp_paths+="    ${kind}_temp_path $NGINX_DIR/temp/$kind;"$'\n'
done
cat >"$NGINX_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/logs/error.log notice;
events {
    worker_connections 1024;
}
http {
$temp_paths    default_type application/octet-stream;
    access_log $NGINX_DIR/logs/unmatched.log;
    include conf.d/payledger.conf;
}
EOF
# nginx's workers run as nobody when started by root: they must be able to reach the temp folders.
chmod 711 "$WORK" "$NGINX_DIR"
"$NGINX" -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" ||
  { cat "$NGINX_DIR/logs/error.log" >&2; exit 2; }
"$NGINX" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" &
nginx_pid=$!
for _ in $(seq 1 50); do
  if (: <"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null; then break; fi
  kill -0 "$nginx_pid" 2>/dev/null || { echo "topology: nginx exited" >&2; exit 2; }
  sleep 0.1
done

# One set of secrets for every process: tokens made by one instance are checked by the other, and the worker
# decrypts card numbers the API encrypted. Exported for the driver, which starts the payledger processes.
export PAYLEDGER_JWT_SECRET PAYLEDGER_WEBHOOK_SECRET PAYLEDGER_CARD_KEYS PAYLEDGER_GATEWAY_SECRET
export PAYLEDGER_ADMIN_PASSWORD
PAYLEDGER_JWT_SECRET="$(openssl rand -hex 32)"
PAYLEDGER_WEBHOOK_SECRET="$(openssl rand -hex 24)"
PAYLEDGER_CARD_KEYS="$(openssl rand -hex 32)"
PAYLEDGER_GATEWAY_SECRET="$(openssl rand -hex 32)"
PAYLEDGER_ADMIN_PASSWORD="$(openssl rand -hex 16)"
export PAYLEDGER_ADMIN_USERNAME=root
export PAYLEDGER_WORKERS=0
export PAYLEDGER_TRUSTED_PROXIES=127.0.0.1
export PAYLEDGER_SHUTDOWN_DRAIN_SECONDS=2
export PAYLEDGER_SHUTDOWN_GRACE_SECONDS=10
# Every loopback address but 127.0.0.0/29 may post bank notices: nginx's own (.1) and the rate-limit clients
# (.2 to .5) are outside, so a notice is accepted only if the instance sees the client behind nginx.
export PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS=127.0.0.8/29,127.0.0.16/28,127.0.0.32/27,127.0.0.64/26,127.0.0.128/25
# Low, so that the rate-limit checks need few wrong passwords.
export PAYLEDGER_LOGIN_RATE_PER_MINUTE=3
export PAYLEDGER_DEMO_ORGANIZATIONS=0
export PAYLEDGER_GATEWAY=http
export PAYLEDGER_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT/pay"
export PAYLEDGER_GATEWAY_TIMEOUT_SECONDS=5
export PAYLEDGER_JOB_LEASE_SECONDS=15
export PAYLEDGER_PAYOUT_RETRY_BASE_MS=200
# JSON lines, so that the driver can read each request's access line (its client and id).
export PAYLEDGER_LOG_FORMAT=json
export PAYLEDGER_LOG=info
export PAYLEDGER_DATA_DIR="$WORK/data"

export TOPOLOGY_BIN="$BIN" TOPOLOGY_WORK="$WORK" TOPOLOGY_PROXY_PORT="$PROXY_PORT"
export TOPOLOGY_INSTANCE_PORTS="$INSTANCE1_PORT,$INSTANCE2_PORT" TOPOLOGY_GATEWAY_PORT="$GATEWAY_PORT"
export TOPOLOGY_CA="$NGINX_DIR/certs/payledger.crt" TOPOLOGY_NGINX_ACCESS_LOG="$NGINX_DIR/logs/access.log"
phase_done

echo "topology: driver (scripts/topology.py)"
driver_started=$EPOCHREALTIME
driver_status=0
# In the background and waited for, so that a signal to this script runs the trap at once.
python3 scripts/topology.py &
driver_pid=$!
wait "$driver_pid" || driver_status=$?
driver_pid=""
timings+=("$(printf '%-28s %6.2f s' "driver (phases above)" "$(elapsed "$driver_started")")")

phase "payledger verify"
verify_status=0
"$BIN" verify >"$WORK/logs/verify.log" 2>&1 || verify_status=$?
if [ "$verify_status" -eq 0 ]; then
  echo "ok    payledger verify exits 0"
else
  echo "FAIL  payledger verify exits $verify_status"
  cat "$WORK/logs/verify.log"
fi
phase_done

echo
echo "topology: set-up and verify phases"
printf '  %s\n' "${timings[@]}"
printf '  %-28s %6.2f s\n' "total" "$(elapsed "$started_at")"
if [ "$driver_status" -eq 0 ] && [ "$verify_status" -eq 0 ]; then
  status=0
  echo "topology: PASSED"
else
  status=1
  echo "topology: FAILED (driver exit $driver_status, verify exit $verify_status)"
fi
