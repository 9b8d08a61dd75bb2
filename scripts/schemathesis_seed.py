"""Prints the seeded statement import's id and the ids of its discrepancies (comma-separated), for
scripts/schemathesis.sh: `ID DISCREPANCY,DISCREPANCY,…`. The discrepancies are read from the reconciliation
report over the import's own days. Standard library only.

    python3 scripts/schemathesis_seed.py BASE_URL USER:PASSWORD SUMMARY.json
"""

import base64
import json
import sys
import urllib.request


def main(base, credentials, summary_path):
    with open(summary_path) as f:
        summary = json.load(f)
    days = [day for account in summary["accounts"] for day in (account["period_start"], account["period_end"])]
    query = f"from={min(days)}&to={max(days)}&limit=500"
    request = urllib.request.Request(f"{base}/api/v1/reconciliation/?{query}")
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    with urllib.request.urlopen(request, timeout=20) as answer:
        report = json.load(answer)
    ids = [str(item["id"]) for item in report["discrepancies"]]
    print(f"{summary['id']} {','.join(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
