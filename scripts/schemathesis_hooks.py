"""schemathesis hooks for payledger, loaded by scripts/schemathesis.sh.

JSON Schema cannot say everything the server checks. The spec states these rules in words; here generated
cases are brought in line with them, so a "schema-valid" case is one the server can accept. Each fix only
touches a value that already matches its schema and keeps it matching, so a case that breaks the schema
elsewhere (a negative case) stays broken, and one that keeps to it stays valid:

- a card number must pass the Luhn check: its last digit is set to the check digit;
- a bank account's control key (its 9th digit) must match the BIK: it is computed from the BIK;
- a transfer's recipient must differ from its sender: an equal recipient becomes the next id;
- a history cursor belongs to one `sort` and `order`: a valid `sort`/`order` (or an absent one) is set to the
  cursor's.

And one case is never sent: a change of the user the run authenticates as. A new password (or disabling it
once another admin exists) is a legitimate request, and every later request of the run would be 401.
"""

import os

import schemathesis

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


@schemathesis.hook
def map_case(context, case):
    path = case.operation.path
    method = case.operation.method.upper()
    if method == "POST" and path in ("/api/v1/payouts/", "/api/payouts/"):
        _fix_recipient(case.body)
    elif method == "POST" and path == "/api/transfer_funds/":
        _fix_transfer(case.body)
    elif method == "GET" and path == "/api/users/{user_id}/transactions/":
        _fix_cursor(case.query)
    return case


# The user the run authenticates as (set by scripts/schemathesis.sh).
RUN_USERNAME = os.environ.get("PAYLEDGER_ST_USERNAME", "admin")


@schemathesis.hook
def filter_case(context, case):
    if case.operation.method.upper() == "PATCH" and case.operation.path == "/api/v1/users/{username}/":
        return (case.path_parameters or {}).get("username") != RUN_USERNAME
    return True
