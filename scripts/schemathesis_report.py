"""What a schemathesis run of scripts/schemathesis.sh reached, and whether that is enough.

schemathesis passes a run in which every write was refused before the ledger engine saw it (a reused
Idempotency-Key, a user without money, a missing reservation): every refusal is a documented answer. This
reads the run's HAR recording and JSON report (written by the script into one directory, with the spec it
ran against) and prints, per operation, how many requests it answered 2xx and how many were refused as a
reused Idempotency-Key, and the stateful phase's scenarios and links. It exits non-zero when:

- a write operation (one that takes an Idempotency-Key) accepted nothing, or refused more than
  MAX_REUSE_SHARE of its requests as a reused key (the key then hides the bodies from the engine);
- an operation in REQUIRED_2XX (reached only through a link) was never answered 2xx;
- the `idempotent_replay` check (scripts/schemathesis_hooks.py) replayed no write;
- schemathesis reported missing test data or failed authentication for an operation it may not.

Standard library only: it runs with the system's python3.

    python3 scripts/schemathesis_report.py DIR
"""

import json
import re
import sys
from collections import defaultdict
from urllib.parse import urlparse

MAX_REUSE_SHARE = 0.2
# Reached only through the stateful phase's links (a deduct needs a reservation of exactly its amount, a
# PATCH a payout that exists): a 2xx shows the links carried usable data.
REQUIRED_2XX = ("POST /api/deduct_funds/", "PATCH /api/v1/payouts/{id}/")
# These answer only 401 to the admin by design (scripts/schemathesis.toml says why).
AUTH_EXEMPT = {"POST /api/token/", "POST /api/token/refresh/", "POST /api/v1/gateway/events/"}


def _templates(spec):
    """(method, compiled path pattern, label) for every operation of the spec; the spec's servers are bare."""
    out = []
    for path, item in spec["paths"].items():
        parts = re.split(r"(\{[^}]+\})", path)
        pattern = re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            params = operation.get("parameters", [])
            keyed = any(p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key" for p in params)
            out.append((method.upper(), pattern, f"{method.upper()} {path}", keyed))
    return out


def _label(templates, method, url):
    path = urlparse(url).path
    for candidate_method, pattern, label, _ in templates:
        if candidate_method == method and pattern.match(path):
            return label
    # The `unsupported_method` check's requests, and any other request off the spec.
    return "(methods and paths not in the spec)"


def main(directory):
    with open(f"{directory}/openapi.json") as f:
        templates = _templates(json.load(f))
    with open(f"{directory}/requests.har") as f:
        entries = json.load(f)["log"]["entries"]
    with open(f"{directory}/run.json") as f:
        run = json.load(f)
    with open(f"{directory}/output.txt") as f:
        output = f.read()
    try:
        with open(f"{directory}/replays.txt") as f:
            replays = int(f.read())
    except (OSError, ValueError):
        replays = 0

    total, accepted, reused = defaultdict(int), defaultdict(int), defaultdict(int)
    for entry in entries:
        label = _label(templates, entry["request"]["method"], entry["request"]["url"])
        status = entry["response"]["status"]
        total[label] += 1
        if 200 <= status < 300:
            accepted[label] += 1
        if status == 409 and '"idempotency_key_reused"' in entry["response"]["content"].get("text", ""):
            reused[label] += 1

    problems = []
    keyed = {label for _, _, label, has_key in templates if has_key}
    print(f"{'operation':<48} {'requests':>8} {'2xx':>6} {'key reused (409)':>18}")
    for label in sorted(total):
        share = reused[label] / total[label]
        print(f"{label:<48} {total[label]:>8} {accepted[label]:>6} {reused[label]:>8} = {share:>6.1%}")
        if label in keyed and share > MAX_REUSE_SHARE:
            problems.append(f"{label}: {share:.0%} of its requests were refused as a reused Idempotency-Key")
    for label in sorted(keyed | set(REQUIRED_2XX)):
        if accepted[label] == 0:
            problems.append(f"{label}: no request was accepted (2xx), so its effect was never tested")

    warnings = run.get("warnings", {})
    for label in warnings.get("missing_test_data", []):
        problems.append(f"{label}: schemathesis reports missing test data (only 404, or never reached by links)")
    for label in warnings.get("missing_auth", []):
        if label not in AUTH_EXEMPT:
            problems.append(f"{label}: answered only 401/403 to the admin")

    scenarios = re.search(r"Scenarios:\s+(\d+)", output)
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", output)
    print(
        f"cases: {run.get('test_cases', {}).get('generated')}, recorded requests: {len(entries)}, "
        f"stateful scenarios: {scenarios.group(1) if scenarios else '?'}, "
        f"links covered: {links.group(1) + ' / ' + links.group(2) if links else '?'}, "
        f"schemathesis time: {run.get('running_time', 0):.0f} s"
    )
    print(f"idempotent replays checked: {replays}")
    if replays == 0:
        problems.append("the idempotent_replay check replayed no write (scripts/schemathesis_hooks.py)")
    if scenarios is None or links is None:
        problems.append("the stateful phase's summary (scenarios, links) is missing from the output")
    for problem in problems:
        print(f"schemathesis: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
