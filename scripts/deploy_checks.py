"""Consistency checks of the deployment files that no schema or linter knows (run by scripts/deploy-lint.sh).

Each check prints what it found wrong; the exit status is 1 when anything is. The files agree with each other:
compose.yaml with .env.example and the nginx files it mounts, the systemd units with each other and with the
sysusers file, every stop timeout with the shutdown it must wait for, nginx's limits with the server's.
"""

import re
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)


def seconds(text: str) -> float:
    """A duration as compose (`75s`, `1m30s`) or systemd (`75s`, `2min`) writes it."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", str(text)):
        total += float(number) * units.get(unit or "s", 1)
    return total


# ---- .env.example: plain KEY=value lines that compose, systemd and `set -a; .` all read the same ----
env_text = (ROOT / ".env.example").read_text(encoding="utf-8")
env: dict[str, str] = {}
documented: set[str] = set()
for number, line in enumerate(env_text.splitlines(), 1):
    commented = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line)
    if commented:
        documented.add(commented.group(1))
    if not line.strip() or line.startswith("#"):
        continue
    match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=([^\s'\"$#\\]*)", line)
    if not match:
        problem(f".env.example:{number}: not a plain KEY=value line (no quotes, spaces, $ or comments): {line}")
        continue
    key, value = match.groups()
    if key in env:
        problem(f".env.example:{number}: {key} is set twice")
    env[key] = value
    documented.add(key)
shutdown = int(env.get("PAYLEDGER_SHUTDOWN_DRAIN_SECONDS", "0")) + int(env.get("PAYLEDGER_SHUTDOWN_GRACE_SECONDS", "30"))

# ---- compose.yaml ----
compose_text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
compose = YAML(typ="safe").load(compose_text)
services = compose.get("services", {})
if "version" in compose:
    problem("compose.yaml: the obsolete `version:` key")
for name, service in services.items():
    depends = service.get("depends_on") or {}
    for dependency in depends if isinstance(depends, list) else depends.keys():
        if dependency not in services:
            problem(f"compose.yaml: {name} depends on {dependency}, which is no service")
            continue
        condition = depends[dependency].get("condition") if isinstance(depends, dict) else "service_started"
        healthcheck = services[dependency].get("healthcheck") or {}
        if condition == "service_healthy" and (not healthcheck.get("test") or healthcheck.get("disable")):
            problem(f"compose.yaml: {name} waits for {dependency} to be healthy, which has no healthcheck here")
        if condition == "service_completed_successfully" and services[dependency].get("restart", "no") != "no":
            problem(f"compose.yaml: {name} waits for {dependency} to complete, which restarts")
    if "container_name" in service:
        problem(f"compose.yaml: {name} has a container_name, so it cannot be scaled")
    if service.get("restart") == "unless-stopped" and "command" in service and service["command"] != ["migrate"]:
        grace = seconds(service.get("stop_grace_period", "10s"))
        if grace <= shutdown:
            problem(f"compose.yaml: {name}'s stop_grace_period ({grace:g} s) is not above drain + grace ({shutdown} s)")
    for volume in service.get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith("./") and not (ROOT / source).exists():
            problem(f"compose.yaml: {name} mounts {source}, which does not exist")
for variable in sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))):
    if variable not in documented:
        problem(f"compose.yaml uses ${{{variable}}}, which .env.example does not mention")

# The proxy mounts what the nginx files include, where they include it from (/etc/nginx).
proxy_mounts = {}
for volume in services.get("proxy", {}).get("volumes", []):
    source, target = str(volume).split(":")[:2]
    proxy_mounts[target] = source
nginx_dir = ROOT / "deploy" / "nginx"
for conf in ("compose.conf", "payledger.conf"):
    for included in re.findall(r"^\s*include\s+([^;]+);", (nginx_dir / conf).read_text(encoding="utf-8"), re.M):
        if not (nginx_dir / Path(included).name).exists():
            problem(f"deploy/nginx/{conf} includes {included}, which deploy/nginx/ does not have")
        if conf == "compose.conf" and f"/etc/nginx/{included}" not in proxy_mounts:
            problem(f"compose.yaml's proxy does not mount /etc/nginx/{included}, which compose.conf includes")
if proxy_mounts.get("/etc/nginx/conf.d/default.conf") != "./deploy/nginx/compose.conf":
    problem("compose.yaml's proxy does not mount deploy/nginx/compose.conf as /etc/nginx/conf.d/default.conf")
site = (nginx_dir / "site.conf").read_text(encoding="utf-8")
for path in re.findall(r"^\s*ssl_certificate(?:_key)?\s+([^;]+);", site, re.M):
    if f"/etc/nginx/{Path(path).parent}" not in proxy_mounts:
        problem(f"compose.yaml's proxy does not mount /etc/nginx/{Path(path).parent} for site.conf's {path}")

# ---- nginx's limits against the server's ----
def size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", text).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


statement_max = int(env.get("PAYLEDGER_STATEMENT_MAX_BYTES", "67108864"))
json_max = 64 * 1024  # the webhook's and the console forms' limit, the largest of the JSON and form bodies
sizes = re.findall(r"client_max_body_size\s+(\w+);", site)
if not sizes or size(sizes[0]) < json_max:
    problem(f"site.conf: the first client_max_body_size ({sizes[:1]}) is below the server's 64 KiB JSON limit")
for location in ("location ~ ^/api/v1/statements/?$", "location = /admin/reconciliation/upload"):
    block = site.split(location, 1)[1].split("}", 1)[0] if location in site else ""
    limit = re.search(r"client_max_body_size\s+(\w+);", block)
    if not limit or size(limit.group(1)) < statement_max + 64 * 1024:
        problem(f"site.conf: `{location}` does not take a statement of PAYLEDGER_STATEMENT_MAX_BYTES + 64 KiB")
request_timeout = int(env.get("PAYLEDGER_REQUEST_TIMEOUT_SECONDS", "30"))
for directive in ("proxy_read_timeout", "proxy_send_timeout"):
    value = re.search(rf"{directive}\s+(\w+);", site)
    if not value or seconds(value.group(1)) <= request_timeout:
        problem(f"site.conf: {directive} is not above the server's request timeout ({request_timeout} s)")
if "non_idempotent" in re.sub(r"#.*", "", site):
    problem("site.conf: proxy_next_upstream lists non_idempotent (a POST sent once would be sent again)")
if "$proxy_add_x_forwarded_for" not in site:
    problem("site.conf: X-Forwarded-For must append the peer ($proxy_add_x_forwarded_for)")

# ---- systemd ----
systemd_dir = ROOT / "deploy" / "systemd"
users = set(re.findall(r"^u\s+(\S+)", (systemd_dir / "payledger.sysusers").read_text(encoding="utf-8"), re.M))


def sandbox(text: str) -> str:
    start = text.find("# Sandboxing,")
    end = text.find("[Install]", start)
    return text[start:] if end < 0 else text[start:end]


reference = sandbox((systemd_dir / "payledger.service").read_text(encoding="utf-8"))
if not reference.strip():
    problem("deploy/systemd/payledger.service has no `# Sandboxing,` section")
for unit in sorted(systemd_dir.glob("*.service")):
    text = unit.read_text(encoding="utf-8")
    for user in re.findall(r"^User=(\S+)", text, re.M):
        if user not in users:
            problem(f"{unit.name}: User={user} is not created by payledger.sysusers")
    if sandbox(text).strip() != reference.strip():
        problem(f"{unit.name}: its sandbox section differs from payledger.service's")
    stop = re.search(r"^TimeoutStopSec=(\S+)", text, re.M)
    if "Type=oneshot" not in text and (not stop or seconds(stop.group(1)) <= shutdown):
        problem(f"{unit.name}: TimeoutStopSec is not above drain + grace ({shutdown} s)")

for text in problems:
    print(f"deploy-lint: {text}")
print(f"deploy-lint: consistency checks: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
