"""schemathesis hooks for payledger, loaded by scripts/schemathesis.sh.

JSON Schema cannot say everything the server checks. The spec states these rules in words; here generated
cases are brought in line with them, so a "schema-valid" case is one the server can accept. Each fix only
touches a value that already matches its schema and keeps it matching, so a case that breaks the schema
elsewhere (a negative case) stays broken, and one that keeps to it stays valid:

- a card number must pass the Luhn check: its last digit is set to the check digit;
- a bank account's control key (its 9th digit) must match the BIK: it is computed from the BIK;
- a transfer's recipient must differ from its sender: an equal recipient becomes the next id;
- a history cursor belongs to one `sort` and `order`: a valid `sort`/`order` (or an absent one) is set to the
  cursor's;
- an `Idempotency-Key` names one request: schemathesis draws the optional header from a handful of values
  (mostly the spec's example), so after its first use every other body sent with it is 409
  `idempotency_key_reused` and never reaches the ledger engine. A valid key is replaced by a fresh one, except
  in one case out of REUSE_ONE_IN, which keeps the drawn key on purpose so that the reuse refusal is still
  exercised. The `idempotent_replay` check below sends a share of the accepted writes a second time with the
  same key and body and requires the first answer back, marked as a replay.

These fixes run in a `before_call` hook, which schemathesis calls before every request of every phase
(examples, coverage, fuzzing and stateful alike), so no phase sends a case the others would have fixed.

And one case is never sent: a change of the user the run authenticates as. A new password (or disabling it
once another admin exists) is a legitimate request, and every later request of the run would be 401.
"""

import atexit
import datetime
import json
import re
import os
import random
import uuid

import requests
import schemathesis

# One drawn Idempotency-Key in this many is sent as drawn (a deliberate reuse); the rest get a fresh key.
REUSE_ONE_IN = 10
# One accepted write with a fresh key in this many is sent again to check that the answer is replayed.
REPLAY_ONE_IN = 4
# Keys and replay choices follow the run's seed, so a run can be repeated.
_RANDOM = random.Random(os.environ.get("ST_SEED", "0"))
# The keys this module made: only their requests are replayed (a drawn key may already name another body).
_FRESH_KEYS = set()
# How many replays the check sent; written for scripts/schemathesis_report.py, which requires some.
_REPLAYS = [0]


@atexit.register
def _write_replay_count():
    directory = os.environ.get("PAYLEDGER_ST_REPORTS")
    if directory:
        with open(os.path.join(directory, "replays.txt"), "w") as f:
            f.write(f"{_REPLAYS[0]}\n")

I64_MAX = 2**63 - 1


def _luhn_fixed(number):
    """The number with spaces dropped and its last digit set so that it passes the Luhn check."""
    digits = [int(c) for c in number if c != " "]
    body = digits[:-1]
    total = 0
    # From the right of the body, every first digit is doubled (the check digit will sit after it).
    for i, d in enumerate(reversed(body)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    check = (10 - total % 10) % 10
    return "".join(str(d) for d in body) + str(check)


def _account_fixed(account, bik):
    """The account with its control key (9th digit) computed from the BIK, as `account_key_matches` checks it:
    the digits of a 3-digit prefix from the BIK and the account, weighted 7, 1, 3 in turn, sum to a multiple
    of ten."""
    institution = bik[6:]
    prefix = "0" + bik[4:6] if institution in ("000", "001", "002") else institution
    digits = [int(c) for c in prefix + account]
    digits[11] = 0
    rest = sum(d * (7, 1, 3)[i % 3] for i, d in enumerate(digits))
    # The key's weight is 3, and 3 * 7 = 21: multiplying by 7 undoes it modulo 10.
    key = (-rest * 7) % 10
    return account[:8] + str(key) + account[9:]


def _is_digits(value, lengths):
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) in lengths


def _fix_recipient(body):
    details = body.get("recipient_details") if isinstance(body, dict) else None
    if not isinstance(details, dict):
        return
    kind = details.get("type")
    number = details.get("number")
    if kind == "card" and isinstance(number, str) and number.isascii():
        digits = number.replace(" ", "")
        if digits.isdigit() and 13 <= len(digits) <= 19:
            details["number"] = _luhn_fixed(number)
    account, bik = details.get("account_number"), details.get("bik")
    if kind == "bank_account" and _is_digits(account, (20,)) and _is_digits(bik, (9,)):
        details["account_number"] = _account_fixed(account, bik)


def _as_id(value):
    """The id a JSON integer or a digit string names, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _fix_transfer(body):
    if not isinstance(body, dict):
        return
    sender, recipient = _as_id(body.get("sender_id")), _as_id(body.get("recipient_id"))
    if sender is not None and sender == recipient and 1 <= sender:
        body["recipient_id"] = sender + 1 if sender < I64_MAX else sender - 1


def _fix_cursor(query):
    if not isinstance(query, dict) or not isinstance(query.get("cursor"), str):
        return
    try:
        sort, order, _, _ = bytes.fromhex(query["cursor"]).decode("ascii").split(":")
    except ValueError:
        return
    if query.get("sort", "date") in ("date", "amount"):
        query["sort"] = sort
    if query.get("order", "desc") in ("asc", "desc"):
        query["order"] = order


def _is_valid_key(value):
    """Whether the server would accept `value` as a key (`IdempotencyKey::parse`): 1 to 255 visible ASCII
    characters or spaces. Only such keys are replaced: an invalid one is a negative case and stays as drawn."""
    return isinstance(value, str) and 1 <= len(value) <= 255 and all(" " <= c <= "~" for c in value)


def _key_header(headers):
    for name in headers or {}:
        if name.lower() == "idempotency-key":
            return name
    return None


# The requests each drawn key kept as drawn was sent with: (method, path, body).
_KEPT_DRAWN = {}


def _fresh_key(headers, request):
    name = _key_header(headers)
    if name is None or not _is_valid_key(headers[name]):
        return
    # A kept key exercises the reuse refusal, which needs ANOTHER request under it. The same request again is
    # a replay: the server answers the first answer (201 for a payout since cancelled and deleted, say),
    # which schemathesis' stateful checks read as a resource created and then missing. Replays are checked by
    # `idempotent_replay` below, on keys of this module's own.
    seen = _KEPT_DRAWN.setdefault(headers[name], set())
    if _RANDOM.randrange(REUSE_ONE_IN) == 0 and request not in seen:
        seen.add(request)
        return
    key = str(uuid.UUID(int=_RANDOM.getrandbits(128), version=4))
    headers[name] = key
    _FRESH_KEYS.add(key)


# The statement import and discrepancies scripts/schemathesis.sh seeded; a generated id names nothing.
_STATEMENT_ID = os.environ.get("PAYLEDGER_ST_STATEMENT_ID", "")
_DISCREPANCY_IDS = [i for i in os.environ.get("PAYLEDGER_ST_DISCREPANCY_IDS", "").split(",") if i]
# The seeded webhook endpoint and its delivered ping (scripts/schemathesis.sh).
_ENDPOINT_ID = os.environ.get("PAYLEDGER_ST_ENDPOINT_ID", "")
_DELIVERY_ID = os.environ.get("PAYLEDGER_ST_DELIVERY_ID", "")
# One generated statement id (or discrepancy id) in this many is kept as drawn, so 404 stays exercised.
KEEP_DRAWN_ID_ONE_IN = 4
# Uploads keep their generated bodies (no statement grammar accepts them: 400 `statement_invalid`). The seeded
# sample file is not sent in their place: schemathesis cannot tell such a case from a negative one, and
# scripts/schemathesis.sh's own seeding upload already checks the 201.


def _seeded_delivery(case):
    """A delivery's operations need a finished delivery of an existing endpoint, which no generated pair of ids
    names: most schema-valid cases get the seeded ones. Invalid ids stay as drawn (they must be refused), and so
    do the other operations' endpoint ids (the stateful phase follows them from the endpoints it creates)."""
    params = case.path_parameters
    if not _ENDPOINT_ID or not _DELIVERY_ID or not isinstance(params, dict):
        return
    endpoint, delivery = params.get("id"), params.get("delivery_id")
    valid = isinstance(endpoint, str) and re.fullmatch(r"ep_[0-9a-f]{32}", endpoint) is not None
    valid = valid and isinstance(delivery, int) and not isinstance(delivery, bool) and delivery >= 1
    if valid and _RANDOM.randrange(KEEP_DRAWN_ID_ONE_IN) != 0:
        params["id"] = _ENDPOINT_ID
        params["delivery_id"] = int(_DELIVERY_ID)


def _seeded_id(case, seeded):
    params = case.path_parameters
    if not seeded or not isinstance(params, dict) or "id" not in params:
        return
    if _RANDOM.randrange(KEEP_DRAWN_ID_ONE_IN) == 0:
        return
    params["id"] = _RANDOM.choice(seeded) if isinstance(seeded, list) else seeded


def _fix_report_days(query):
    """`from` after `to`, or more than a year apart, is 400; JSON Schema cannot compare two parameters."""
    if not isinstance(query, dict):
        return
    # Without `to`, a `from` after today is 400 (the report would end before it starts): move it to today.
    if "to" not in query:
        try:
            if datetime.date.fromisoformat(query.get("from", "")) > datetime.date.today():
                query["from"] = datetime.date.today().isoformat()
        except (TypeError, ValueError):
            pass
        return
    try:
        start = datetime.date.fromisoformat(query.get("from", ""))
        end = datetime.date.fromisoformat(query.get("to", ""))
    except (TypeError, ValueError):
        return
    if start > end:
        query["from"], query["to"] = query["to"], query["from"]
        start, end = end, start
    if (end - start).days > 366:
        query["from"] = (end - datetime.timedelta(days=30)).isoformat()


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    method = case.operation.method.upper()
    if path.startswith("/api/v1/statements/{id}/"):
        _seeded_id(case, _STATEMENT_ID)
    elif path.startswith("/api/v1/reconciliation/discrepancies/{id}/"):
        _seeded_id(case, _DISCREPANCY_IDS)
    elif path.startswith("/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/"):
        _seeded_delivery(case)
    elif method == "GET" and path == "/api/v1/reconciliation/":
        _fix_report_days(case.query)
    if method == "POST" and path in ("/api/v1/payouts/", "/api/payouts/"):
        _fix_recipient(case.body)
    elif method == "POST" and path == "/api/transfer_funds/":
        _fix_transfer(case.body)
    elif method == "GET" and path == "/api/users/{user_id}/transactions/":
        _fix_cursor(case.query)
    _fresh_key(case.headers, (method, case.formatted_path, json.dumps(case.body, sort_keys=True, default=str)))


def _json_or_text(content):
    try:
        return json.loads(content)
    except ValueError:
        return content


@schemathesis.check
def idempotent_replay(ctx, response, case):
    """An accepted write sent again with the same Idempotency-Key and body gets the first answer back, marked
    `Idempotent-Replayed: true`, and changes nothing (the ledger would otherwise show the write twice, which
    `payledger verify` and the balance checks of tests/api catch; here the answer is what is checked)."""
    name = _key_header(case.headers)
    if name is None or case.headers[name] not in _FRESH_KEYS or not 200 <= response.status_code < 300:
        return None
    if _RANDOM.randrange(REPLAY_ONE_IN) != 0:
        return None
    # The request exactly as it was sent (credentials included), outside schemathesis so no hook changes it.
    with requests.Session() as session:
        again = session.send(response.request, timeout=20)
    _REPLAYS[0] += 1
    replayed = again.headers.get("Idempotent-Replayed")
    if again.status_code != response.status_code or replayed != "true":
        raise AssertionError(
            f"Replay with the same Idempotency-Key answered {again.status_code} (Idempotent-Replayed: {replayed}); "
            f"the first answer was {response.status_code}"
        )
    if _json_or_text(again.content) != _json_or_text(response.content):
        raise AssertionError(
            f"Replay with the same Idempotency-Key answered another body: {again.text!r}, "
            f"the first was {response.content.decode(errors='replace')!r}"
        )
    return None


# The user the run authenticates as (set by scripts/schemathesis.sh).
RUN_USERNAME = os.environ.get("PAYLEDGER_ST_USERNAME", "admin")


@schemathesis.hook
def filter_case(context, case):
    if case.operation.method.upper() == "PATCH" and case.operation.path == "/api/v1/users/{username}/":
        return (case.path_parameters or {}).get("username") != RUN_USERNAME
    return True
