#!/usr/bin/env python3
"""The driver of scripts/topology.sh: runs payledger's production topology and checks it through the proxy.

topology.sh has created the database, migrated it, and started nginx (TLS on TOPOLOGY_PROXY_PORT, upstream
instances on TOPOLOGY_INSTANCE_PORTS); it exports the shared secrets as PAYLEDGER_* variables. This driver
starts the rest (two `payledger serve --profile production` instances, one `payledger worker`, and the HTTP
payment gateway stub), runs every check as a client would, stops everything it started, and prints a summary.
Exit status: 0 when every check passed, 1 otherwise.

The standard library only: the script must run on a bare CI machine.
"""

import collections
import contextlib
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import traceback
import uuid
from decimal import Decimal

BIN = os.environ["TOPOLOGY_BIN"]
WORK = os.environ["TOPOLOGY_WORK"]
PROXY_PORT = int(os.environ["TOPOLOGY_PROXY_PORT"])
INSTANCE_PORTS = [int(port) for port in os.environ["TOPOLOGY_INSTANCE_PORTS"].split(",")]
GATEWAY_PORT = int(os.environ["TOPOLOGY_GATEWAY_PORT"])
NGINX_ACCESS_LOG = os.environ["TOPOLOGY_NGINX_ACCESS_LOG"]
WEBHOOK_SECRET = os.environ["PAYLEDGER_WEBHOOK_SECRET"].split(",")[0]
GATEWAY_SECRET = os.environ["PAYLEDGER_GATEWAY_SECRET"]
ADMIN = (os.environ["PAYLEDGER_ADMIN_USERNAME"], os.environ["PAYLEDGER_ADMIN_PASSWORD"])
LOGIN_RATE = int(os.environ["PAYLEDGER_LOGIN_RATE_PER_MINUTE"])
DRAIN_SECONDS = int(os.environ["PAYLEDGER_SHUTDOWN_DRAIN_SECONDS"])
GRACE_SECONDS = int(os.environ["PAYLEDGER_SHUTDOWN_GRACE_SECONDS"])
# At most 200: their source addresses, from 127.0.0.20 on, must stay within the loopback /24.
THREADS = min(int(os.environ.get("TOPOLOGY_THREADS", "8")), 200)
# Payout workers in the one `payledger worker` process (the instances run none).
WORKER_THREADS = 4
# Every how many requests of a load client one is a payout.
PAYOUT_EVERY = 12
# The share of deposits first sent on a connection the client drops before the answer (a client timing out).
ABANDON_SHARE = 0.1

# Every client binds its own loopback address, so that the server's idea of "the client" can be checked. nginx
# itself reaches the instances from 127.0.0.1, the one trusted proxy, so no client uses that address.
MAIN_SOURCE = "127.0.0.10"
LOAD_SOURCE_BASE = 20
# How long one request may go on being resent before the run gives up on it (a client's patience).
DELIVERY_DEADLINE_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 40
# Answers that leave the outcome unknown or say nothing was done: resent with the same key or operation id.
RETRYABLE_STATUSES = {502, 503, 504}
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

TLS = ssl.create_default_context(cafile=os.environ["TOPOLOGY_CA"])


class SetupFailed(Exception):
    """The topology could not be brought up: nothing after it can be checked."""


class Transport(Exception):
    """No HTTP answer came back (refused, reset, timed out): the request's outcome is unknown."""


class Unacknowledged(Exception):
    """A request was resent until the deadline without an answer that says what happened."""


# ---- bookkeeping -------------------------------------------------------------------------------------------


class Checks:
    """Every check's verdict, printed as it is made; the run fails if any failed."""

    def __init__(self):
        self.failed = []
        self.passed = 0
        self.lock = threading.Lock()

    def check(self, ok, what, detail=""):
        with self.lock:
            if ok:
                self.passed += 1
                print(f"ok    {what}", flush=True)
            else:
                self.failed.append(what)
                print(f"FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


class Stats:
    """What the clients sent: requests, retries by cause, and each proxied answer's X-Request-Id."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.retries = collections.Counter()
        self.request_ids = []
        self.missing_request_id = []

    def sent_one(self):
        with self.lock:
            self.sent += 1

    def retried(self, reason):
        with self.lock:
            self.retries[reason] += 1

    def proxied_answer(self, method, path, answer):
        """nginx's own error pages (502, 504) come without the upstream's headers; every other answer must
        carry the id nginx gave the request."""
        request_id = answer.headers.get("X-Request-Id")
        with self.lock:
            if request_id is not None:
                self.request_ids.append(request_id)
            elif answer.status not in (502, 504):
                self.missing_request_id.append(f"{method} {path} -> {answer.status}")


class Phases:
    """Wall-clock time of each phase, for the summary."""

    def __init__(self):
        self.durations = []

    @contextlib.contextmanager
    def phase(self, name):
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations.append((name, time.monotonic() - started))


CHECKS = Checks()
STATS = Stats()


# ---- HTTP ----------------------------------------------------------------------------------------------------


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.attempts = 1

    def json(self):
        # Amounts stay exact: a balance is compared to the kopeck.
        return json.loads(self.body, parse_float=Decimal)

    @property
    def code(self):
        try:
            return self.json().get("code")
        except (ValueError, AttributeError):
            return None

    @property
    def request_id(self):
        return self.headers.get("X-Request-Id")

    def __repr__(self):
        return f"{self.status} {self.body[:300]!r}"


class Client:
    """One keep-alive connection from a chosen source address: through nginx over TLS, or straight to an
    instance over plain HTTP."""

    def __init__(self, port=PROXY_PORT, source=MAIN_SOURCE, tls=True, token=None):
        self.port = port
        self.source = source
        self.tls = tls
        self.token = token
        self.connection = None

    def _connect(self):
        if self.tls:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=TLS, timeout=HTTP_TIMEOUT_SECONDS, source_address=(self.source, 0)
            )
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=HTTP_TIMEOUT_SECONDS, source_address=(self.source, 0)
        )

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method, path, body=None, headers=None):
        all_headers = {"Accept": "application/json"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        if self.connection is None:
            self.connection = self._connect()
        STATS.sent_one()
        try:
            self.connection.request(method, path, body=data, headers=all_headers)
            response = self.connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise Transport(f"{type(error).__name__}: {error}") from error
        if response.will_close:
            self.close()
        if self.tls:
            STATS.proxied_answer(method, path, answer)
        return answer

    def abandon(self, method, path, body, headers, wait_seconds):
        """Sends a request on a connection of its own and closes it `wait_seconds` later, unanswered: the
        request may or may not be applied, and the client does not know which."""
        connection = self._connect()
        STATS.sent_one()
        try:
            connection.request(method, path, body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}",
                                        **headers})
            time.sleep(wait_seconds)
        except OSError:
            pass
        finally:
            connection.close()

    def get(self, path):
        """A read is safe to repeat: one resend after a keep-alive connection the server had closed."""
        try:
            return self.request("GET", path)
        except Transport:
            return self.request("GET", path)


def deliver(client, method, path, body=None, headers=None, signer=None, deadline=DELIVERY_DEADLINE_SECONDS):
    """Sends a request until its answer says what happened, as a careful client does: a refused or broken
    connection, a 502/503/504 or `idempotency_key_in_flight` is resent unchanged (the same Idempotency-Key or
    operation_id; `signer` re-signs the same bytes with a fresh timestamp). Any other answer is returned."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    give_up = time.monotonic() + deadline
    attempts = 0
    while True:
        attempts += 1
        all_headers = dict(headers or {})
        if signer is not None:
            all_headers["X-Payledger-Signature"] = signer(data)
        pause = 0.05 * min(attempts, 10)
        try:
            answer = client.request(method, path, data, all_headers)
        except Transport:
            reason = "connection error"
        else:
            if answer.status in RETRYABLE_STATUSES:
                reason = f"{answer.status} {answer.code or ''}".strip()
            elif answer.status == 409 and answer.code == "idempotency_key_in_flight":
                reason = "409 idempotency_key_in_flight"
            else:
                answer.attempts = attempts
                return answer
            retry_after = answer.headers.get("Retry-After")
            if retry_after and retry_after.isdigit():
                # Capped: a test waits less than a polite client, the answer's meaning is the same.
                pause = min(float(retry_after), 1.0)
        STATS.retried(reason)
        if time.monotonic() + pause > give_up:
            raise Unacknowledged(f"{method} {path}: still {reason} after {attempts} attempts")
        time.sleep(pause)


def sign(secret, body, timestamp=None):
    """X-Payledger-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as README "Signed webhooks" says."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def bank_signature(body):
    return sign(WEBHOOK_SECRET, body)


def minor(amount):
    """Roubles (a Decimal or a decimal string) to kopecks, refusing anything finer."""
    value = Decimal(str(amount)) * 100
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than two decimals")
    return int(value)


def roubles(kopecks):
    return f"{kopecks // 100}.{kopecks % 100:02d}"


def valid_inn(rng):
    """A 10-digit INN with its check digit, as a real payer's would be."""
    digits = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(8)]
    weights = [2, 4, 10, 3, 5, 9, 4, 6, 8]
    digits.append(sum(d * w for d, w in zip(digits, weights)) % 11 % 10)
    return "".join(map(str, digits))


def notice(inn, amount_kopecks):
    """A bank notice of a new operation."""
    return {
        "operation_id": str(uuid.uuid4()),
        "amount": roubles(amount_kopecks),
        "payer_inn": inn,
        "document_number": f"TOPO-{random.randrange(10**6)}",
        "document_date": "2024-04-27T21:00:00Z",
    }


# ---- the payment gateway stub ----------------------------------------------------------------------------------


class GatewayStub:
    """A payment gateway as payledger's HTTP gateway expects one (crates/payledger/src/gateway/http.rs, wire.rs):
    it checks the request's signature and idempotency key, pays each payout once, and answers a key it has
    seen with the first outcome."""

    def __init__(self, port, secret):
        self.secret = secret
        self.lock = threading.Lock()
        self.calls = collections.Counter()
        self.refused = []
        self.bodies = {}
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                problem = stub.refusal(self.path, self.headers, body)
                if problem:
                    with stub.lock:
                        stub.refused.append(problem)
                    self.answer(401, {"error": problem})
                    return
                self.answer(200, {"status": "completed", "reference": stub.pay(json.loads(body))})

            def answer(self, status, document):
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)
        self.thread.start()

    def refusal(self, path, headers, body):
        """Why a real gateway would refuse this request, or None."""
        if path != "/pay":
            return f"unknown path {path}"
        if headers.get("Content-Type") != "application/json":
            return "not JSON"
        header = headers.get("X-Payledger-Signature") or ""
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > 300:
            return "signature missing or expired"
        expected = sign(self.secret, body, int(parts["t"])).split("v1=")[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            return "bad signature"
        try:
            request = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if headers.get("Idempotency-Key") != request.get("payout_id"):
            return "Idempotency-Key is not the payout id"
        if not re.fullmatch(r"\d+\.\d{2}", str(request.get("amount"))):
            return f"amount {request.get('amount')!r} is not an exact decimal"
        return None

    def pay(self, request):
        payout = request["payout_id"]
        with self.lock:
            self.calls[payout] += 1
            self.bodies[payout] = request
        return f"gw-{payout[:8]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- payledger processes -----------------------------------------------------------------------------------------


class Payledger:
    """One payledger process (an instance or the worker), restartable, logging JSON lines to its own file."""

    def __init__(self, name, arguments, port=None, environment=None):
        self.name = name
        self.arguments = arguments
        self.port = port
        self.environment = environment or {}
        self.log_path = os.path.join(WORK, "logs", f"{name}.log")
        self.pid_path = os.path.join(WORK, "pids", f"{name}.pid")
        self.process = None
        self.terminated = False

    def start(self):
        environment = {**os.environ, **self.environment}
        if self.port is not None:
            environment["PAYLEDGER_BIND"] = f"127.0.0.1:{self.port}"
        self.terminated = False
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [BIN, *self.arguments], env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        with open(self.pid_path, "w") as pid_file:
            pid_file.write(str(self.process.pid))

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def terminate(self):
        """SIGTERM, once: the shutdown starts (readiness 503 `draining`, then the listener closes)."""
        if self.alive() and not self.terminated:
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout):
        """SIGTERM, then the exit status (None if it had to be killed after `timeout`)."""
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log_size(self):
        return os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0

    def access_lines(self, since=0):
        """The access lines (target payledger::access) written after byte `since`."""
        lines = []
        with open(self.log_path, "rb") as log:
            log.seek(since)
            for raw in log:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if entry.get("target") == "payledger::access":
                    lines.append(entry)
        return lines

    def tail(self, count=20):
        with open(self.log_path, "rb") as log:
            return b"".join(log.readlines()[-count:]).decode(errors="replace")

    def wait_ready(self, timeout=30):
        """Until the instance's own /api/health/ready/ answers 200."""
        give_up = time.monotonic() + timeout
        probe = Client(self.port, "127.0.0.1", tls=False)
        while time.monotonic() < give_up:
            if not self.alive():
                raise SetupFailed(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if probe.request("GET", "/api/health/ready/").status == 200:
                    probe.close()
                    return
            except Transport:
                pass
            time.sleep(0.1)
        raise SetupFailed(f"{self.name} was not ready within {timeout} s:\n{self.tail()}")


def stop_all(processes):
    """SIGTERM to all at once (their drains overlap), then each one's exit status."""
    codes = {}
    for process in processes:
        process.terminate()
    for process in processes:
        if process.process is not None:
            codes[process.name] = process.stop(DRAIN_SECONDS + GRACE_SECONDS + 10)
    return codes


# ---- the checks ----------------------------------------------------------------------------------------------------


class Expected:
    """What the ledger must hold at the end: every acknowledged credit and deposit, once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.organizations = collections.defaultdict(int)
        self.notices = collections.defaultdict(list)
        self.users = {}

    def credited(self, inn, operation_id, kopecks):
        with self.lock:
            self.organizations[inn] += kopecks
            self.notices[inn].append(operation_id)

    def user_balance(self, user, available, reserved=0):
        with self.lock:
            self.users[user] = (available, reserved)

    def deposited(self, user, kopecks):
        with self.lock:
            available, reserved = self.users.get(user, (0, 0))
            self.users[user] = (available + kopecks, reserved)


EXPECTED = Expected()


def token_for(client):
    answer = deliver(client, "POST", "/api/token/", {"username": ADMIN[0], "password": ADMIN[1]})
    if answer.status != 200:
        raise SetupFailed(f"the admin's token request answered {answer!r}")
    return answer.json()["access"]


def organization_balance(client, inn):
    answer = client.get(f"/api/organizations/{inn}/balance/")
    return minor(answer.json()["balance"]) if answer.status == 200 else answer


def user_balance(client, user):
    answer = client.get(f"/api/balances/?user_id={user}")
    if answer.status != 200:
        return answer
    document = answer.json()
    return (minor(document["amount"]), minor(document["reserved"]))


def check_webhooks(client, rng):
    """Signed notices credit; a replay credits nothing; unsigned, wrongly signed and stale ones are 401."""
    organizations = [valid_inn(rng) for _ in range(3)]
    for index, inn in enumerate(organizations):
        body = json.dumps(notice(inn, 100_000 + index * 1_234)).encode()
        answer = deliver(client, "POST", "/api/webhook/bank/", body, signer=bank_signature)
        CHECKS.check(answer.status == 200 and answer.json().get("status") == "processed",
                     f"a signed webhook for {inn} is processed", repr(answer))
        EXPECTED.credited(inn, json.loads(body)["operation_id"], 100_000 + index * 1_234)
        again = deliver(client, "POST", "/api/webhook/bank/", body, signer=bank_signature)
        CHECKS.check(again.status == 200 and again.json().get("status") == "duplicate",
                     "the same notice again is a duplicate", repr(again))
    inn = organizations[0]
    # PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS leaves out 127.0.0.0/29 (topology.sh): the check is on the client behind
    # nginx, which a client cannot rewrite.
    outsider = Client(source="127.0.0.3")
    for spoof in (None, MAIN_SOURCE):
        body = json.dumps(notice(inn, 999_999)).encode()
        answer = deliver(outsider, "POST", "/api/webhook/bank/", body, {"X-Forwarded-For": spoof} if spoof else {},
                         signer=bank_signature)
        CHECKS.check(answer.status == 403, "a signed webhook from 127.0.0.3, outside the allowed networks, is 403"
                     + (f" (even claiming X-Forwarded-For: {spoof})" if spoof else ""), repr(answer))
    refused = {
        "unsigned": None,
        "signed with another secret": lambda data: sign("not-the-bank-secret-at-all", data),
        "signed 10 minutes ago": lambda data: sign(WEBHOOK_SECRET, data, int(time.time()) - 600),
    }
    for what, signer in refused.items():
        answer = deliver(client, "POST", "/api/webhook/bank/", json.dumps(notice(inn, 999_999)).encode(), signer=signer)
        CHECKS.check(answer.status == 401, f"a webhook {what} is refused 401", repr(answer))
    for inn in organizations:
        balance = organization_balance(client, inn)
        CHECKS.check(balance == EXPECTED.organizations[inn], f"organization {inn} holds exactly its credits",
                     f"{balance} != {EXPECTED.organizations[inn]}")
    return organizations


def check_balance_operations(client, token):
    """Deposit, replay, key reuse, reserve + capture, reserve + release, transfer: README "User balances"."""
    key = f"deposit-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    deposit = deliver(client, "POST", "/api/add_funds/", {"user_id": 1, "amount": "1000.00"}, headers)
    CHECKS.check(deposit.status == 201 and deposit.headers.get("Idempotent-Replayed") is None,
                 "a deposit with an Idempotency-Key is applied (201)", repr(deposit))
    replay = deliver(client, "POST", "/api/add_funds/", {"amount": 1000, "user_id": 1}, headers)
    CHECKS.check(replay.status == 201 and replay.headers.get("Idempotent-Replayed") == "true"
                 and replay.body == deposit.body, "the same key and request replay the first answer", repr(replay))
    reused = deliver(client, "POST", "/api/add_funds/", {"user_id": 1, "amount": "5.00"}, headers)
    CHECKS.check(reused.status == 409 and reused.code == "idempotency_key_reused",
                 "the same key with another request is 409 idempotency_key_reused", repr(reused))
    second = deliver(client, "POST", "/api/add_funds/", {"user_id": 2, "amount": "10.00"},
                     {"Idempotency-Key": f"deposit-{uuid.uuid4()}"})
    steps = [
        ("/api/reserve_funds/", {"user_id": 1, "service_id": 101, "order_id": 1001, "amount": "300.00"}, "reservation"),
        ("/api/deduct_funds/", {"user_id": 1, "service_id": 101, "order_id": 1001, "amount": "300.00"},
         "revenue_recognition"),
        ("/api/reserve_funds/", {"user_id": 1, "service_id": 101, "order_id": 1002, "amount": "50.00"}, "reservation"),
        ("/api/unreserve_funds/", {"user_id": 1, "service_id": 101, "order_id": 1002}, None),
        ("/api/transfer_funds/", {"sender_id": 1, "recipient_id": 2, "amount": "100.00"}, None),
    ]
    for path, body, kind in steps:
        answer = deliver(client, "POST", path, body, {"Idempotency-Key": f"op-{uuid.uuid4()}"})
        ok = answer.status == 201 and (kind is None or answer.json().get("transaction_type") == kind)
        CHECKS.check(ok, f"POST {path} is applied (201)", repr(answer))
    EXPECTED.user_balance(1, minor("600.00"))
    EXPECTED.user_balance(2, minor("110.00"))
    CHECKS.check(second.status == 201, "a second user's deposit is applied", repr(second))
    for user in (1, 2):
        balance = user_balance(client, user)
        CHECKS.check(balance == EXPECTED.users[user], f"user {user}'s balance is exact after the operations",
                     f"{balance} != {EXPECTED.users[user]}")
    # Tokens are checked with the shared secret: each instance accepts the one the proxy handed out.
    for port in INSTANCE_PORTS:
        direct = Client(port, MAIN_SOURCE, tls=False, token=token).get("/api/balances/?user_id=1")
        CHECKS.check(direct.status == 200, f"the instance on {port} accepts the token", repr(direct))
    # The audit row of the deposit names the request nginx gave an id to, and the client behind nginx.
    audit = client.get("/api/v1/audit/?action=balance.deposit&target=balance-user:1")
    rows = audit.json()["results"] if audit.status == 200 else []
    CHECKS.check(len(rows) == 1, "one audit row for the deposit and its replay", repr(audit))
    if rows:
        CHECKS.check(rows[0].get("request_id") == deposit.request_id and REQUEST_ID.match(deposit.request_id or ""),
                     "the audit row carries the deposit's X-Request-Id (nginx's $request_id)",
                     f"{rows[0].get('request_id')} vs {deposit.request_id}")
        CHECKS.check(rows[0].get("client_address") == MAIN_SOURCE,
                     f"the audit row's client_address is the client behind nginx ({MAIN_SOURCE})",
                     str(rows[0].get("client_address")))


def check_payout(client, gateway):
    """A payout created through the API is paid by the worker through the gateway, once; the gateway's signed
    `returned` callback gives the money back."""
    body = {
        "amount": "150.00", "currency": "RUB", "description": "topology payout", "source": {"user_id": 1},
        "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Ivan Ivanov"},
    }
    created = deliver(client, "POST", "/api/v1/payouts/", body, {"Idempotency-Key": f"payout-{uuid.uuid4()}"})
    if not CHECKS.check(created.status == 201 and created.json().get("status") == "pending",
                        "a payout is created pending", repr(created)):
        return
    payout = created.json()["id"]
    CHECKS.check("4111111111111111" not in created.body.decode(), "the answer masks the card number")
    give_up = time.monotonic() + 30
    status = None
    while time.monotonic() < give_up:
        answer = client.get(f"/api/v1/payouts/{payout}/")
        status = answer.json().get("status") if answer.status == 200 else answer.status
        if status in ("completed", "failed"):
            break
        time.sleep(0.2)
    CHECKS.check(status == "completed", "the worker completes the payout through the gateway stub", str(status))
    CHECKS.check(gateway.calls[payout] == 1 and not gateway.refused,
                 "the gateway was called once, signed, with the payout id as Idempotency-Key",
                 f"calls {gateway.calls[payout]}, refused {gateway.refused}")
    sent = gateway.bodies.get(payout, {})
    CHECKS.check(sent.get("amount") == "150.00" and sent.get("recipient", {}).get("number") == "4111111111111111",
                 "the gateway received the amount and the decrypted card number", repr(sent))
    balance = user_balance(client, 1)
    CHECKS.check(balance == (minor("450.00"), 0), "the payout's amount left the user's balance", str(balance))
    event = json.dumps({"payout_id": payout, "event": "returned", "reason": "account closed"}).encode()
    returned = deliver(client, "POST", "/api/v1/gateway/events/", event,
                       signer=lambda data: sign(GATEWAY_SECRET, data))
    CHECKS.check(returned.status == 200 and returned.json().get("status") == "returned",
                 "the gateway's signed `returned` callback is accepted through nginx", repr(returned))
    balance = user_balance(client, 1)
    CHECKS.check(balance == (minor("600.00"), 0), "the returned payout is credited back", str(balance))


def wrong_logins(client, count, spoof=None, stop_at_429=True):
    """Up to `count` token requests with a wrong password; the statuses, and the answers."""
    answers = []
    for attempt in range(count):
        headers = {}
        if spoof is not None:
            headers["X-Forwarded-For"] = spoof(attempt)
            headers["X-Request-Id"] = f"chosen-by-the-client-{attempt}"
        answers.append(deliver(client, "POST", "/api/token/", {"username": "intruder", "password": "not-it-at-all"},
                               headers))
        if stop_at_429 and answers[-1].status == 429:
            break
    return [answer.status for answer in answers], answers


def limited_after(statuses, most):
    return bool(statuses) and statuses[-1] == 429 and len(statuses) <= most and all(s == 401 for s in statuses[:-1])


def check_rate_limits(instances):
    """The login limit counts per real client address: behind nginx the client is the rightmost untrusted
    X-Forwarded-For hop; straight to an instance from an untrusted peer, the peer."""
    # Each instance limits on its own (auth/ratelimit.rs), and nginx spreads one client's requests over both, so
    # a client is refused at the latest on its (2 × rate + 1)-th request.
    bound = 2 * LOGIN_RATE + 1
    statuses, answers = wrong_logins(Client(source="127.0.0.2"), bound)
    CHECKS.check(limited_after(statuses, bound), f"127.0.0.2 through nginx is refused 429 within {bound} wrong logins",
                 str(statuses))
    CHECKS.check(answers[-1].headers.get("Retry-After") is not None, "the 429 says Retry-After")
    refused_by = [instance for instance in instances
                  if any(line.get("span", {}).get("id") == answers[-1].request_id for line in instance.access_lines())]
    if refused_by:
        # The instance that refused 127.0.0.2 behind nginx refuses it face to face too, whatever it forwards.
        statuses, _ = wrong_logins(Client(refused_by[0].port, "127.0.0.2", tls=False), 1,
                                   spoof=lambda n: "127.0.0.9")
        CHECKS.check(statuses == [429], f"127.0.0.2 straight to {refused_by[0].name} with X-Forwarded-For: "
                     "127.0.0.9 is still limited as 127.0.0.2", str(statuses))
    else:
        CHECKS.check(False, "the 429 is in an instance's access log")
    statuses, _ = wrong_logins(Client(source="127.0.0.3"), 1)
    CHECKS.check(statuses == [401], "127.0.0.3 through nginx is still answered 401 meanwhile", str(statuses))

    # A client writing its own X-Forwarded-For (a new address each time) is still counted as itself.
    statuses, answers = wrong_logins(Client(source="127.0.0.4"), bound, spoof=lambda n: f"127.0.0.{9 + n}")
    CHECKS.check(limited_after(statuses, bound),
                 "127.0.0.4 spoofing X-Forwarded-For through nginx is limited as itself", str(statuses))
    seen = {line["span"]["id"]: line["fields"].get("client")
            for instance in instances for line in instance.access_lines() if "span" in line}
    clients = {seen.get(answer.request_id) for answer in answers}
    CHECKS.check(clients == {"127.0.0.4"}, "the instances logged those requests' client as 127.0.0.4", str(clients))
    CHECKS.check(all(REQUEST_ID.match(answer.request_id or "") for answer in answers),
                 "a client's own X-Request-Id is replaced by nginx's", str([a.request_id for a in answers][:3]))

    # Straight to an instance, 127.0.0.5 is no trusted proxy: its forwarded headers are ignored, and one
    # instance's limit is exact.
    direct = Client(INSTANCE_PORTS[0], "127.0.0.5", tls=False)
    statuses, answers = wrong_logins(direct, LOGIN_RATE + 1, spoof=lambda n: f"203.0.113.{n + 1}", stop_at_429=False)
    CHECKS.check(statuses == [401] * LOGIN_RATE + [429],
                 f"127.0.0.5 straight to an instance with a spoofed X-Forwarded-For: {LOGIN_RATE} × 401, then 429",
                 str(statuses))
    CHECKS.check(all(REQUEST_ID.match(a.request_id or "") and not a.request_id.startswith("chosen") for a in answers),
                 "an untrusted peer's X-Request-Id is not taken", str([a.request_id for a in answers][:3]))
    seen = {line["span"]["id"]: line["fields"].get("client") for line in instances[0].access_lines() if "span" in line}
    clients = {seen.get(answer.request_id) for answer in answers}
    CHECKS.check(clients == {"127.0.0.5"}, "the instance logged those requests' client as the peer", str(clients))


def check_forwarded_scheme():
    """X-Forwarded-Proto from nginx makes the console's cookies Secure; plain HTTP straight to an instance not."""
    through_nginx = Client().get("/admin/login").headers.get("Set-Cookie") or ""
    CHECKS.check("payledger_login_csrf=" in through_nginx and "; Secure" in through_nginx,
                 "the console's cookie is Secure through nginx over TLS", through_nginx)
    direct = Client(INSTANCE_PORTS[0], MAIN_SOURCE, tls=False).get("/admin/login").headers.get("Set-Cookie") or ""
    CHECKS.check("payledger_login_csrf=" in direct and "Secure" not in direct,
                 "and not Secure straight to an instance over plain HTTP", direct)


class Load:
    """Clients sending signed webhooks (each a new operation_id), deposits and payouts (each a new
    Idempotency-Key) through nginx until told to stop, resending whatever got no clear answer, and recording
    what was acknowledged. Some deposits are first sent on a connection dropped before the answer, as a client
    that timed out would."""

    def __init__(self, token, organizations, threads):
        self.token = token
        self.organizations = organizations
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged = collections.Counter()
        self.deposits = []
        self.payouts = []
        self.problems = []
        # Daemons: a driver interrupted mid-load must be able to exit without them.
        self.threads = [threading.Thread(target=self.run, args=(index,), name=f"load-{index}", daemon=True)
                        for index in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(DELIVERY_DEADLINE_SECONDS + 30)

    def run(self, index):
        source = f"127.0.0.{LOAD_SOURCE_BASE + index}"
        client = Client(source=source, token=self.token)
        rng = random.Random(index)
        sent = 0
        while not self.stop.is_set():
            try:
                if sent % PAYOUT_EVERY == PAYOUT_EVERY - 1:
                    self.payout(client)
                elif sent % 2 == 0:
                    self.webhook(client, rng)
                else:
                    self.deposit(client, rng, index, source)
            except Unacknowledged as error:
                with self.lock:
                    self.problems.append(str(error))
            sent += 1

    def webhook(self, client, rng):
        inn = rng.choice(self.organizations)
        kopecks = rng.randrange(100, 100_000)
        body = json.dumps(notice(inn, kopecks)).encode()
        answer = deliver(client, "POST", "/api/webhook/bank/", body, signer=bank_signature)
        status = answer.json().get("status") if answer.status == 200 else None
        # A new operation_id is "processed"; only a resend of one the server applied before may be "duplicate".
        if status == "processed" or (status == "duplicate" and answer.attempts > 1):
            EXPECTED.credited(inn, json.loads(body)["operation_id"], kopecks)
            with self.lock:
                self.acknowledged["webhook"] += 1
                # The first attempt was applied but its answer lost: the case idempotency is for.
                self.acknowledged["applied before a resend"] += status == "duplicate"
        else:
            with self.lock:
                self.problems.append(f"webhook answered {answer!r} after {answer.attempts} attempts")

    def deposit(self, client, rng, index, source):
        user = 1000 + index * 10 + rng.randrange(3)
        kopecks = rng.randrange(100, 100_000)
        body = {"user_id": user, "amount": roubles(kopecks)}
        headers = {"Idempotency-Key": f"load-{uuid.uuid4()}"}
        if rng.random() < ABANDON_SHARE:
            client.abandon("POST", "/api/add_funds/", body, headers, rng.uniform(0, 0.03))
            with self.lock:
                self.acknowledged["abandoned first"] += 1
        answer = deliver(client, "POST", "/api/add_funds/", body, headers)
        if answer.status != 201:
            with self.lock:
                self.problems.append(f"deposit answered {answer!r} after {answer.attempts} attempts")
            return
        EXPECTED.deposited(user, kopecks)
        replayed = answer.headers.get("Idempotent-Replayed") == "true"
        with self.lock:
            self.acknowledged["deposit"] += 1
            self.acknowledged["applied before a resend"] += replayed
            self.deposits.append((user, answer.request_id, replayed, source))

    def payout(self, client):
        # No source: the payout moves no money, so the balances stay the webhooks' and deposits' alone; what is
        # checked is that a resent creation creates nothing and that each payout is paid once.
        body = {"amount": "10.00", "currency": "RUB", "description": "topology load",
                "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Load Test"}}
        answer = deliver(client, "POST", "/api/v1/payouts/", body, {"Idempotency-Key": f"payout-{uuid.uuid4()}"})
        with self.lock:
            if answer.status == 201:
                self.acknowledged["payout"] += 1
                self.acknowledged["applied before a resend"] += answer.headers.get("Idempotent-Replayed") == "true"
                self.payouts.append(answer.json()["id"])
            else:
                self.problems.append(f"payout answered {answer!r} after {answer.attempts} attempts")


def restart_worker(worker):
    """SIGTERM lets the worker finish the job in hand and exit; a new one takes the queue on."""
    stopped_at = time.monotonic()
    code = worker.stop(GRACE_SECONDS + 10)
    CHECKS.check(code == 0, f"worker: exits 0 after SIGTERM ({time.monotonic() - stopped_at:.1f} s)", f"exit {code}")
    worker.start()
    time.sleep(0.5)
    CHECKS.check(worker.alive(), "worker: runs again after its restart", worker.tail() if not worker.alive() else "")


def wait_serving(instance, offset, what):
    """Until nginx sends the instance requests again: it skips one for fail_timeout after a refused connection."""
    give_up = time.monotonic() + 20
    while not any(line["fields"].get("route") != "/api/health/ready/" for line in instance.access_lines(offset)):
        if time.monotonic() > give_up:
            CHECKS.check(False, f"{instance.name}: receives requests through nginx again after its {what}")
            return
        time.sleep(0.2)


def crash(instance, load_started):
    """kill -9 under load: the requests it had in hand get nginx's 502 (a POST already sent is not passed on),
    and their clients resend them; whatever the dead instance had committed must not be applied again."""
    killed_at = time.monotonic()
    offset = instance.log_size()
    instance.process.kill()
    instance.process.wait()
    instance.start()
    instance.wait_ready()
    wait_serving(instance, offset, "crash")
    print(f"      {instance.name}: killed, serving again {time.monotonic() - killed_at:.1f} s later "
          f"(t+{time.monotonic() - load_started:.1f} s)")


def restart(instance, load_started):
    """SIGTERM, readiness 503 `draining` while it still serves, a clean exit, a start, ready again, and nginx
    sending it requests again."""
    stopped_at = time.monotonic()
    instance.terminate()
    draining = live = False
    probe = Client(instance.port, "127.0.0.1", tls=False)
    while instance.alive() and time.monotonic() - stopped_at < DRAIN_SECONDS + 1:
        try:
            ready = probe.request("GET", "/api/health/ready/")
            draining |= ready.status == 503 and "draining" in ready.json().get("reasons", [])
            live |= probe.request("GET", "/api/health/live/").status == 200
        except Transport:
            break
        time.sleep(0.2)
    probe.close()
    code = instance.stop(DRAIN_SECONDS + GRACE_SECONDS + 10)
    down_after = time.monotonic() - stopped_at
    CHECKS.check(draining and live, f"{instance.name}: readiness says `draining` while live still answers")
    CHECKS.check(code == 0, f"{instance.name}: exits 0 after SIGTERM ({down_after:.1f} s)", f"exit {code}")
    offset = instance.log_size()
    instance.start()
    instance.wait_ready()
    wait_serving(instance, offset, "restart")
    print(f"      {instance.name}: stopped in {down_after:.1f} s, serving again "
          f"{time.monotonic() - stopped_at:.1f} s after SIGTERM (t+{time.monotonic() - load_started:.1f} s)")


def check_rolling_restart(instances, worker, token, rng):
    """Under load: each instance restarted in turn, the worker restarted, then one instance killed -9."""
    organizations = [valid_inn(rng) for _ in range(4)]
    load = Load(token, organizations, THREADS)
    started = time.monotonic()
    load.start()
    time.sleep(2)
    for instance in instances:
        restart(instance, started)
    restart_worker(worker)
    time.sleep(1)
    crash(instances[0], started)
    time.sleep(2)
    load.finish()
    CHECKS.check(not any(thread.is_alive() for thread in load.threads), "every client thread finished")
    CHECKS.check(not load.problems, "every request was acknowledged, each with the answer it should have",
                 "; ".join(load.problems[:5]))
    print(f"      acknowledged {load.acknowledged['webhook']} webhooks, {load.acknowledged['deposit']} deposits and "
          f"{load.acknowledged['payout']} payouts in {time.monotonic() - started:.1f} s")
    CHECKS.check(load.acknowledged["webhook"] > 0 and load.acknowledged["deposit"] > 0, "the load got through")
    return load


def all_rows(client, path, cursor):
    """Every page's `results`, following the `cursor` field of each page as the next one's `before`."""
    rows = []
    before = None
    while True:
        answer = client.get(path + (f"&before={before}" if before else ""))
        if answer.status != 200:
            raise Unacknowledged(f"GET {path}: {answer!r}")
        document = answer.json()
        rows.extend(document["results"])
        before = document.get(cursor)
        if not before:
            return rows


def check_ledger(client, load):
    """Every acknowledged credit and deposit is in the balances exactly once."""
    for inn, kopecks in sorted(EXPECTED.organizations.items()):
        balance = organization_balance(client, inn)
        CHECKS.check(balance == kopecks, f"organization {inn}: balance = sum of its {len(EXPECTED.notices[inn])} "
                     f"acknowledged notices", f"{balance} != {kopecks}")
        rows = all_rows(client, f"/api/organizations/{inn}/balance-log/?limit=500", "next_cursor")
        logged = collections.Counter(row["operation_id"] for row in rows)
        CHECKS.check(logged == collections.Counter(EXPECTED.notices[inn]),
                     f"organization {inn}: its balance log has each acknowledged operation_id once, and no other",
                     f"{sum(logged.values())} rows for {len(EXPECTED.notices[inn])} notices")
    wrong = {}
    for user, expected in sorted(EXPECTED.users.items()):
        balance = user_balance(client, user)
        if balance != expected:
            wrong[user] = (balance, expected)
    CHECKS.check(not wrong, f"{len(EXPECTED.users)} users' balances equal their acknowledged deposits", str(wrong))

    rows = all_rows(client, "/api/v1/audit/?action=balance.deposit&limit=500", "next_before")
    per_user = collections.Counter(row["target"] for row in rows)
    deposits_per_user = collections.Counter(f"balance-user:{user}" for user, _, _, _ in load.deposits)
    CHECKS.check(all(per_user[target] == count for target, count in deposits_per_user.items()),
                 "one audit row per acknowledged deposit", f"{sum(per_user.values())} rows")
    by_request = {row["request_id"]: row for row in rows}
    mismatched = [(request_id, source, by_request.get(request_id, {}).get("client_address"))
                  for _, request_id, replayed, source in load.deposits
                  if not replayed and by_request.get(request_id, {}).get("client_address") != source]
    CHECKS.check(not mismatched, "each deposit's audit row carries its X-Request-Id and its client's address",
                 str(mismatched[:5]))


def check_payouts_paid_once(client, gateway, load):
    """Every acknowledged payout completes, none was created twice by a resend, and the gateway was asked to
    pay each one once (the worker's restart included)."""
    give_up = time.monotonic() + 60
    completed = None
    while time.monotonic() < give_up:
        completed = client.get("/api/v1/payouts/?status=completed&page_size=1").json()["count"]
        if completed >= len(load.payouts):
            break
        time.sleep(0.5)
    CHECKS.check(completed == len(load.payouts), f"all {len(load.payouts)} payouts created under load complete",
                 f"{completed} completed")
    total = client.get("/api/v1/payouts/?page_size=1").json()["count"]
    # The payout phase's one payout, returned since, is the only other.
    CHECKS.check(total == len(load.payouts) + 1, "no resent creation made a second payout",
                 f"{total} payouts for {len(load.payouts) + 1} acknowledged")
    with gateway.lock:
        calls = dict(gateway.calls)
        refused = list(gateway.refused)
    twice = {payout: n for payout, n in calls.items() if n != 1}
    never = set(load.payouts) - set(calls)
    CHECKS.check(not twice and not never and not refused,
                 "the gateway was asked once for each payout, every request signed",
                 f"{len(twice)} asked more than once, {len(never)} never, refused {refused[:3]}")


def read_nginx_log():
    """The request ids nginx logged, and how many requests went to each upstream (or list of upstreams)."""
    logged = set()
    upstreams = collections.Counter()
    with open(NGINX_ACCESS_LOG) as log:
        for line in log:
            found = re.search(r"request_id=([0-9a-f]{32})", line)
            if found:
                logged.add(found.group(1))
            upstream = re.search(r"upstream=([^ ,]+(?:, [^ ,]+)*)", line)
            if upstream:
                upstreams[upstream.group(1)] += 1
    return logged, upstreams


def check_request_ids():
    """Every answer through nginx carried the id nginx logged for that request."""
    ids = STATS.request_ids
    # nginx writes a request's log line once it has sent the answer: the last few may lag behind the client.
    give_up = time.monotonic() + 3
    logged, upstreams = read_nginx_log()
    while not set(ids) <= logged and time.monotonic() < give_up:
        time.sleep(0.2)
        logged, upstreams = read_nginx_log()
    CHECKS.check(not STATS.missing_request_id, "every answer from an instance through nginx has an X-Request-Id",
                 str(STATS.missing_request_id[:5]))
    CHECKS.check(all(REQUEST_ID.match(request_id) for request_id in ids), "every X-Request-Id is 32 hex digits")
    CHECKS.check(set(ids) <= logged, f"all {len(ids)} X-Request-Ids are nginx's $request_id of that request",
                 f"{len(set(ids) - logged)} not in nginx's log")
    CHECKS.check(len(set(ids)) == len(ids), "no two answers share an id")
    return upstreams


def main():
    phases = Phases()
    gateway = GatewayStub(GATEWAY_PORT, GATEWAY_SECRET)
    instances = [Payledger(f"instance{n + 1}", ["serve", "--profile", "production"], port)
                 for n, port in enumerate(INSTANCE_PORTS)]
    worker = Payledger("worker", ["worker"], environment={"PAYLEDGER_WORKERS": str(WORKER_THREADS)})
    processes = [*instances, worker]
    rng = random.Random()
    load = None
    upstreams = collections.Counter()
    started = time.monotonic()
    try:
        with phases.phase("start two production instances and a worker"):
            # Started together, as an orchestrator would: both find an empty users table and create the admin.
            for process in processes:
                process.start()
            for instance in instances:
                instance.wait_ready()
            client = Client()
            give_up = time.monotonic() + 15
            while client.get("/api/health/ready/").status != 200:
                if time.monotonic() > give_up:
                    raise SetupFailed("nginx does not answer ready")
                time.sleep(0.1)
            CHECKS.check(worker.alive(), "the worker runs")
            anonymous = client.get("/api/balances/?user_id=1")
            CHECKS.check(anonymous.status == 401, "production refuses an anonymous balance read (401)", repr(anonymous))
            token = token_for(client)
            client.token = token
            users = client.get("/api/v1/users/").json()
            created = client.get("/api/v1/audit/?action=user.create").json()["results"]
            CHECKS.check([user["username"] for user in users] == [ADMIN[0]] and len(created) == 1,
                         "two instances starting at once on an empty database create the admin once",
                         f"users {users}, user.create rows {len(created)}")

        with phases.phase("signed webhooks"):
            check_webhooks(client, rng)
        with phases.phase("balance operations with a token"):
            check_balance_operations(client, token)
        with phases.phase("payout through the worker and the gateway"):
            check_payout(client, gateway)
        with phases.phase("client address, scheme, request id"):
            check_rate_limits(instances)
            check_forwarded_scheme()
        with phases.phase("rolling restart under load"):
            load = check_rolling_restart(instances, worker, token, rng)
        with phases.phase("nothing lost, nothing twice"):
            check_ledger(client, load)
            check_payouts_paid_once(client, gateway, load)
            upstreams = check_request_ids()
        with phases.phase("stop"):
            client.close()
            codes = stop_all(processes)
            CHECKS.check(all(code == 0 for code in codes.values()), "every payledger process exits 0 on SIGTERM",
                         str(codes))
    except SetupFailed as error:
        CHECKS.check(False, "the topology came up", str(error))
    except (Transport, Unacknowledged) as error:
        CHECKS.check(False, "a request got an answer", str(error))
    except Exception:  # a bug in a check must still stop the processes and fail the run
        traceback.print_exc()
        CHECKS.check(False, "the driver ran to its end")
    finally:
        stop_all(processes)
        gateway.close()

    print("\n== summary")
    retried = sum(STATS.retries.values())
    print(f"  requests sent {STATS.sent}, resent {retried} "
          f"({', '.join(f'{reason}: {n}' for reason, n in STATS.retries.most_common()) or 'none'})")
    if load is not None:
        print(f"  under the rolling restart: {THREADS} clients, acknowledged {load.acknowledged['webhook']} webhooks, "
              f"{load.acknowledged['deposit']} deposits and {load.acknowledged['payout']} payouts;\n"
              f"    {load.acknowledged['abandoned first']} deposits were first sent and abandoned unanswered; "
              f"{load.acknowledged['applied before a resend']} requests had been applied by an attempt whose answer "
              "was lost (answered duplicate or replayed)")
    if upstreams:
        passed_on = sum(n for name, n in upstreams.items() if "," in name)
        print("  nginx sent " + ", ".join(f"{n} to {name}" for name, n in upstreams.most_common() if "," not in name)
              + f"; {passed_on} passed on to the other instance after a refused connection")
    for name, seconds in phases.durations:
        print(f"  {name:<44} {seconds:6.2f} s")
    print(f"  {'driver total':<44} {time.monotonic() - started:6.2f} s")
    print(f"  checks passed {CHECKS.passed}, failed {len(CHECKS.failed)}")
    for what in CHECKS.failed:
        print(f"    FAILED: {what}")
    return 1 if CHECKS.failed else 0


if __name__ == "__main__":
    # SIGTERM (the shell's trap) unwinds through main's `finally`, which stops the processes it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
