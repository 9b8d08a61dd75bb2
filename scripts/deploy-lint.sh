#!/usr/bin/env bash
# Checks the deployment files: the Dockerfile (hadolint, with .hadolint.yaml), compose.yaml (the compose-spec
# schema), the deploy scripts (shellcheck), the files' agreement with each other (scripts/deploy_checks.py),
# the nginx configuration (`nginx -t`, as a host installs it and as compose mounts it, with a throwaway
# self-signed certificate), and the systemd units (`systemd-analyze verify`, and `systemd-analyze security`
# with an exposure threshold). It runs every check, then fails if any found anything.
#
#   bash scripts/deploy-lint.sh
#
# The Python tools are pinned in scripts/deploy-lint-requirements.txt and installed into a virtualenv keyed by
# that file's hash (PAYLEDGER_DEPLOY_VENV overrides its path). nginx and systemd-analyze come from Debian's
# packages, installed with apt-get when missing (as root). It compiles nothing and needs no payledger binary.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=scripts/deploy-lint-requirements.txt
VENV="${PAYLEDGER_DEPLOY_VENV:-$HOME/.cache/payledger-venv-deploy-$(sha256sum "$REQUIREMENTS" | cut -c1-16)}"
# The highest overall exposure `systemd-analyze security` may give a unit, times ten: the units' own score
# (1.1 of 10 with Debian 12's systemd 252), so that dropping any setting systemd weighs (ProtectClock=,
# PrivateUsers=, a system call filter, …) fails the check. A systemd that weighs differently may need it
# moved, after a look at what it reports.
SECURITY_THRESHOLD=11

failures=()
check_failed() { failures+=("$1"); echo "deploy-lint: FAILED: $1" >&2; }
started=$SECONDS
step_started=$SECONDS
step_done() {
  echo "deploy-lint: $1 ($((SECONDS - step_started)) s)"
  step_started=$SECONDS
}

apt_install() {
  if [ "$(id -u)" = 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  apt_get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "$@" >/dev/null
}

mkdir -p "$(dirname "$VENV")"
(
  flock 9
  if [ ! -e "$VENV/.complete" ]; then
    echo "deploy-lint: installing $REQUIREMENTS into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    touch "$VENV/.complete"
  fi
) 9>"$VENV.lock"
if ! command -v nginx >/dev/null 2>&1; then
  echo "deploy-lint: installing nginx-light"
  apt_install nginx-light
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "deploy-lint: installing systemd (for systemd-analyze)"
  apt_install systemd
fi
step_done "tools ready"

work="$(mktemp -d /tmp/payledger-deploy-lint.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# ---- Dockerfile, compose.yaml, scripts, and what they say to each other ----
"$VENV/bin/hadolint" --config .hadolint.yaml Dockerfile || check_failed "hadolint Dockerfile"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml ||
  check_failed "compose.yaml against the compose-spec schema"
"$VENV/bin/shellcheck" scripts/deploy-lint.sh scripts/image-smoke.sh || check_failed "shellcheck"
"$VENV/bin/python" scripts/deploy_checks.py || check_failed "consistency of the deployment files"
step_done "hadolint, compose schema, shellcheck, consistency"

# ---- nginx -t: each configuration inside an http{} block, laid out as it is installed under /etc/nginx ----
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/payledger.key" -out "$work/payledger.crt" 2>/dev/null
nginx_test() {
  local id=$1 name=$2 conf=$3
  local root="$work/nginx-$id"
  mkdir -p "$root/conf.d" "$root/payledger" "$root/certs" "$root/logs"
  cp "$conf" "$root/conf.d/payledger.conf"
  cp deploy/nginx/site.conf "$root/payledger/site.conf"
  cp "$work/payledger.key" "$work/payledger.crt" "$root/certs/"
  cat >"$root/nginx.conf" <<EOF
pid $root/nginx.pid;
error_log $root/logs/error.log;
events {}
http {
    include /etc/nginx/mime.types;
    include conf.d/*.conf;
}
EOF
  if nginx -q -t -p "$root" -c "$root/nginx.conf" -e "$root/logs/error.log"; then
    echo "deploy-lint: nginx -t: $name: ok"
  else
    check_failed "nginx -t of $name"
  fi
}
nginx_test host "deploy/nginx/payledger.conf" deploy/nginx/payledger.conf
# compose.conf's upstream is compose's `api` service, which does not resolve here: the same file with that one
# name replaced by a loopback address.
if [ "$(grep -c 'server api:8000 ' deploy/nginx/compose.conf)" = 1 ]; then
  sed 's/server api:8000 /server 127.0.0.1:8000 /' deploy/nginx/compose.conf >"$work/compose.conf"
  nginx_test compose "deploy/nginx/compose.conf (api -> 127.0.0.1)" "$work/compose.conf"
else
  check_failed "deploy/nginx/compose.conf has no single 'server api:8000' line to test"
fi
step_done "nginx -t"

# ---- systemd-analyze: the units as installed, with ExecStart's binary present ----
# verify needs the commands to exist and be executable; a stand-in at the same name under a temporary folder
# is what it checks (payledger itself is not needed to check a unit). A template is checked as an instance.
# verify only warns about an unknown or misspelt key (exit 0), so any output at all fails the check.
mkdir -p "$work/units" "$work/bin"
printf '#!/bin/sh\nexit 0\n' >"$work/bin/payledger"
chmod 0755 "$work/bin/payledger"
for unit in deploy/systemd/*.service; do
  name="$(basename "$unit")"
  case "$name" in *@.service) name="${name%@.service}@8001.service" ;; esac
  sed "s#/usr/local/bin/payledger#$work/bin/payledger#g" "$unit" >"$work/units/$name"
done
for unit in "$work"/units/*.service; do
  name="$(basename "$unit")"
  output="$(cd "$work/units" && systemd-analyze verify --man=no "./$name" 2>&1)" && status=0 || status=$?
  if [ "$status" -ne 0 ] || [ -n "$output" ]; then
    echo "$output" >&2
    check_failed "systemd-analyze verify $name"
  fi
  if ! systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    echo "deploy-lint: this systemd-analyze has no --offline; the exposure of $name is not checked"
    continue
  fi
  security="$(cd "$work/units" && systemd-analyze security --offline=yes --threshold="$SECURITY_THRESHOLD" "./$name" 2>&1)" &&
    status=0 || status=$?
  echo "deploy-lint: systemd-analyze security: $(echo "$security" | grep 'Overall exposure level' | sed 's/^→ *//')"
  if [ "$status" -ne 0 ]; then
    echo "$security" | grep '^✗' >&2 || true
    check_failed "systemd-analyze security $name (exposure over $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10)))"
  fi
done
step_done "systemd-analyze verify and security"

if [ "${#failures[@]}" -gt 0 ]; then
  echo "deploy-lint: FAILED (${#failures[@]}): ${failures[*]}" >&2
  exit 1
fi
echo "deploy-lint: passed ($((SECONDS - started)) s)"
