//! A throwaway stand-in for payledger, for tests only: a hand-written HTTP/1.1 responder on loopback.
//!
//! It implements just the endpoints the bench uses (the liveness probe, and a user's history newest first on
//! one page, among them), keeps balances in kopecks, deduplicates webhook notices by operation_id and
//! user-API requests by Idempotency-Key, keeps a payout queue that one simulated worker drains at a fixed
//! pace, can require Bearer tokens from its own `POST /api/token/`, takes one webhook endpoint and POSTs a
//! `bank_payment.credited` event to it for every newly booked notice, and can misbehave on purpose
//! (answer 503 after applying, drop connections, book duplicates twice, ignore idempotency keys, lose money,
//! lose or fail payouts, never process them, lose, repeat or invent events, misreport or lose balances) so the
//! tests can show the bench tells a correct server from a broken one.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::base64url_encode;
use crate::money::{format_kopecks, parse_kopecks};

/// The operator the mock issues tokens to, with [`MOCK_PASSWORD`].
pub const MOCK_OPERATOR: &str = "bench";

/// A user the mock issues tokens to who may read but not create anything (403), with [`MOCK_PASSWORD`].
pub const MOCK_VIEWER: &str = "viewer";

/// The password of both mock users.
pub const MOCK_PASSWORD: &str = "correct horse battery staple";

/// How the mock misbehaves; the default is a correct server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockConfig {
    /// If > 0, webhook call number `n` with `n % fail_every == 0` is booked but answered 503, and with
    /// `n % fail_every == 1` is refused with 503 without booking; every `fail_every`-th liveness probe is
    /// answered 503.
    pub fail_every: u64,
    /// If > 0, the connection is closed without warning after every `close_every`-th response.
    pub close_every: u64,
    /// Book a repeated operation_id again, the bug the balance check exists to catch.
    pub book_duplicates: bool,
    /// Apply every resent deposit or transfer again instead of replaying the first answer for its key.
    pub ignore_idempotency_keys: bool,
    /// Debit the sender of every applied transfer one kopeck more than the recipient is credited.
    pub skim: bool,
    /// Microseconds the simulated payout worker spends on each payout, one at a time; 0 finishes each at once.
    pub payout_micros: u64,
    /// If > 0, every `lose_payout_every`-th created payout is answered 201 but then vanishes from every count.
    pub lose_payout_every: u64,
    /// If > 0, every `fail_payout_every`-th payout the worker finishes fails instead of completing.
    pub fail_payout_every: u64,
    /// The worker never runs: payouts stay pending forever.
    pub stuck_payouts: bool,
    /// If > 0, every route but the webhook, `POST /api/token/` and (as in payledger's development profile)
    /// balance reads without an Authorization header needs `Authorization: Bearer` with a token from
    /// `POST /api/token/`, valid this many seconds; a viewer's token is refused (403) for any `POST`.
    pub token_ttl_secs: u64,
    /// If > 0, every `drop_event_every`-th event is never sent.
    pub drop_event_every: u64,
    /// If > 0, every `repeat_event_every`-th event is sent twice, with the same webhook-id.
    pub repeat_event_every: u64,
    /// Send one event, right after registration, for an operation that was never notified.
    pub stray_event: bool,
    /// Refuse a loopback endpoint URL with 400 naming `url`, as payledger does without
    /// `PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS`.
    pub refuse_loopback_endpoints: bool,
    /// Report every existing organization's and user's balance one kopeck more than it holds.
    pub misreport_balances: bool,
    /// Answer every balance and history read 404, as if no account existed.
    pub forget_accounts: bool,
    /// If > 0, batch request number `n` books its notices and then, with `n % batch_fail_every == 0`, is
    /// answered 503 as a whole, and with `n % batch_fail_every == 1` one result short.
    pub batch_fail_every: u64,
}

/// The registered webhook endpoint: its id, and the queue of `(webhook-id, body)` its sender task posts.
struct Endpoint {
    id: String,
    outbox: mpsc::UnboundedSender<(String, String)>,
}

/// A token the mock issued.
struct Issued {
    expires: Instant,
    may_write: bool,
}

/// A stored answer to a user-API request, replayed for a resend with the same Idempotency-Key.
struct Stored {
    body: Vec<u8>,
    status: &'static str,
    reply: String,
}

#[derive(Default)]
struct Ledger {
    balances: HashMap<String, i64>,
    seen: HashSet<String>,
    webhook_calls: u64,
    batch_calls: u64,
    responses: u64,
    users: HashMap<u64, i64>,
    /// Each user's history lines as JSON objects, oldest first.
    lines: HashMap<u64, Vec<String>>,
    live_calls: u64,
    answered_keys: HashMap<String, Stored>,
    user_calls: u64,
    transactions: u64,
    payouts: PayoutQueue,
    tokens: HashMap<String, Issued>,
    logins: u64,
    endpoint: Option<Endpoint>,
    events: u64,
}

/// The payout queue: counts by status and the simulated worker's progress.
#[derive(Default)]
struct PayoutQueue {
    pending: u64,
    completed: u64,
    failed: u64,
    /// Payouts created (201 or not), lost ones included.
    created: u64,
    /// Payout creation requests received.
    posts: u64,
    /// Payouts the worker has finished, to pick the ones that fail.
    finished: u64,
    /// Up to when the worker's time has been spent on payouts.
    worked_until: Option<Instant>,
}

impl PayoutQueue {
    /// Lets the worker finish what it could have since the last call: one payout per `payout_micros`.
    fn advance(&mut self, config: MockConfig, now: Instant) {
        if config.stuck_payouts {
            return;
        }
        let since = *self.worked_until.get_or_insert(now);
        let micros = u64::try_from(now.saturating_duration_since(since).as_micros()).unwrap_or(u64::MAX);
        // No time per payout finishes everything at once.
        let due = micros.checked_div(config.payout_micros).unwrap_or(u64::MAX).min(self.pending);
        for _ in 0..due {
            self.pending -= 1;
            self.finished += 1;
            if config.fail_payout_every > 0 && self.finished.is_multiple_of(config.fail_payout_every) {
                self.failed += 1;
            } else {
                self.completed += 1;
            }
        }
        // An idle worker banks no time; a busy one carries the part of a payout it is in the middle of.
        self.worked_until =
            Some(if self.pending == 0 { now } else { since + Duration::from_micros(due * config.payout_micros) });
    }

    /// The counts as the API shows them: the payout the worker is on is processing.
    fn count(&self, config: MockConfig, status: &str) -> Option<u64> {
        let processing = u64::from(self.pending > 0 && config.payout_micros > 0 && !config.stuck_payouts);
        match status {
            "pending" => Some(self.pending - processing),
            "processing" => Some(processing),
            "completed" => Some(self.completed),
            "failed" => Some(self.failed),
            "cancelled" | "returned" => Some(0),
            _ => None,
        }
    }
}

/// A running mock server; it stops when dropped.
pub struct Mock {
    addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    acceptor: JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Mock {
    /// Starts listening on an ephemeral loopback port.
    pub async fn start(config: MockConfig) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let shared = Arc::clone(&ledger);
        let acceptor = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            // Connections live in the JoinSet so aborting the acceptor closes them too.
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, Arc::clone(&shared), config));
            }
        });
        Mock { addr, ledger, acceptor }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sum of all balances, in kopecks.
    pub fn total(&self) -> i64 {
        self.ledger.lock().unwrap().balances.values().sum()
    }

    /// The sum of all user balances, in kopecks.
    pub fn user_total(&self) -> i64 {
        self.ledger.lock().unwrap().users.values().sum()
    }

    /// Deposit and transfer requests received, resends included.
    pub fn user_calls(&self) -> u64 {
        self.ledger.lock().unwrap().user_calls
    }

    /// Payout creation requests received.
    pub fn payout_posts(&self) -> u64 {
        self.ledger.lock().unwrap().payouts.posts
    }

    /// Payouts that exist (whatever was answered), lost ones included.
    pub fn payouts_created(&self) -> u64 {
        self.ledger.lock().unwrap().payouts.created
    }

    /// Tokens issued by `POST /api/token/`.
    pub fn logins(&self) -> u64 {
        self.ledger.lock().unwrap().logins
    }

    /// Whether a webhook endpoint is registered (and not deleted).
    pub fn has_endpoint(&self) -> bool {
        self.ledger.lock().unwrap().endpoint.is_some()
    }

    /// Events created for booked notices, dropped ones included.
    pub fn events(&self) -> u64 {
        self.ledger.lock().unwrap().events
    }

    /// Liveness probes received.
    pub fn live_calls(&self) -> u64 {
        self.ledger.lock().unwrap().live_calls
    }
}

async fn serve(stream: TcpStream, ledger: Arc<Mutex<Ledger>>, config: MockConfig) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        let mut key = None;
        let mut authorization = None;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("idempotency-key") {
                    key = Some(value.trim().to_owned());
                } else if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_owned());
                }
            }
        }
        let mut body = vec![0; content_length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, reply, close) = {
            let mut ledger = ledger.lock().unwrap();
            let (status, reply) = match authenticate(&mut ledger, config, method, path, authorization.as_deref(), &body)
            {
                Some(refusal_or_token) => refusal_or_token,
                None => route(&mut ledger, config, method, path, key.as_deref(), &body),
            };
            ledger.responses += 1;
            let close = config.close_every > 0 && ledger.responses.is_multiple_of(config.close_every);
            (status, reply, close)
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// With `token_ttl_secs`, answers `POST /api/token/`, and refuses a request to any other route but the
/// webhook and anonymous balance reads without a live token (401) or with a viewer's token on a `POST` (403);
/// `None` lets it through.
fn authenticate(
    ledger: &mut Ledger,
    config: MockConfig,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Option<(&'static str, String)> {
    if config.token_ttl_secs == 0 || path == "/api/webhook/bank/" || path == "/api/health/live/" {
        return None;
    }
    let now = Instant::now();
    if path == "/api/token/" {
        let fields: HashMap<String, String> = serde_json::from_slice(body).unwrap_or_default();
        let user = fields.get("username").map(String::as_str);
        if method != "POST" || fields.get("password").map(String::as_str) != Some(MOCK_PASSWORD) {
            return Some(("401 Unauthorized", r#"{"error":"Invalid username or password"}"#.to_owned()));
        }
        let may_write = match user {
            Some(MOCK_OPERATOR) => true,
            Some(MOCK_VIEWER) => false,
            _ => return Some(("401 Unauthorized", r#"{"error":"Invalid username or password"}"#.to_owned())),
        };
        ledger.logins += 1;
        let iat = 1_700_000_000 + ledger.logins;
        let claims = format!("{{\"iat\":{iat},\"exp\":{}}}", iat + config.token_ttl_secs);
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{}.sig{}", base64url_encode(claims.as_bytes()), ledger.logins);
        let expires = now + Duration::from_secs(config.token_ttl_secs);
        ledger.tokens.insert(token.clone(), Issued { expires, may_write });
        return Some(("200 OK", format!("{{\"access\":\"{token}\",\"refresh\":\"r{}\"}}", ledger.logins)));
    }
    let balance_read = method == "GET"
        && ["/api/balances/", "/api/organizations/", "/api/users/"].iter().any(|prefix| path.starts_with(prefix));
    if authorization.is_none() && balance_read {
        return None;
    }
    let issued = authorization.and_then(|value| value.strip_prefix("Bearer ")).and_then(|t| ledger.tokens.get(t));
    match issued {
        Some(issued) if issued.expires > now => (method == "POST" && !issued.may_write)
            .then(|| ("403 Forbidden", r#"{"error":"This needs the operator role","code":"forbidden"}"#.to_owned())),
        Some(_) => Some(("401 Unauthorized", r#"{"error":"The access token has expired"}"#.to_owned())),
        None => Some(("401 Unauthorized", r#"{"error":"Authentication required"}"#.to_owned())),
    }
}

fn message(text: &str) -> String {
    format!("{{\"message\":\"{text}\"}}")
}

fn route(
    ledger: &mut Ledger,
    config: MockConfig,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (&'static str, String) {
    if let Some(rest) = path.strip_prefix("/api/v1/webhook-endpoints/") {
        return endpoints(ledger, config, method, rest, body);
    }
    if path == "/api/v1/payouts/" || path.starts_with("/api/v1/payouts/?") {
        return payouts(&mut ledger.payouts, config, method, path, body);
    }
    if method == "POST" && (path == "/api/add_funds/" || path == "/api/transfer_funds/") {
        return user_post(ledger, config, path, key, body);
    }
    if method == "GET" && path == "/api/health/live/" {
        ledger.live_calls += 1;
        if config.fail_every > 0 && ledger.live_calls.is_multiple_of(config.fail_every) {
            return ("503 Service Unavailable", message("busy"));
        }
        return ("200 OK", r#"{"status":"ok"}"#.to_owned());
    }
    if let Some(user) = path.strip_prefix("/api/balances/?user_id=") {
        let found = user.parse::<u64>().ok().and_then(|id| Some((id, *ledger.users.get(&id)?)));
        return match (method, found.filter(|_| !config.forget_accounts)) {
            ("GET", Some((id, kopecks))) => (
                "200 OK",
                format!(
                    "{{\"user_id\": {id}, \"amount\": {}, \"reserved\": 0.00}}",
                    format_kopecks(kopecks + i64::from(config.misreport_balances))
                ),
            ),
            _ => ("404 Not Found", message("not found")),
        };
    }
    if let Some(user) = path.strip_prefix("/api/users/").and_then(|rest| rest.strip_suffix("/transactions/")) {
        let lines = user.parse::<u64>().ok().and_then(|id| ledger.lines.get(&id));
        return match (method, lines.filter(|_| !config.forget_accounts)) {
            ("GET", Some(lines)) => {
                let newest_first: Vec<&str> = lines.iter().rev().map(String::as_str).collect();
                ("200 OK", format!("{{\"results\": [{}], \"next_cursor\": null}}", newest_first.join(", ")))
            }
            _ => ("404 Not Found", message("not found")),
        };
    }
    if method == "POST" && path == "/api/webhook/bank/" {
        return notice(ledger, config, body);
    }
    if method == "POST" && path == "/api/v1/batch/" {
        return batch(ledger, config, body);
    }
    let inn = path.strip_prefix("/api/organizations/").and_then(|rest| rest.strip_suffix("/balance/"));
    match (method, inn) {
        ("GET", Some(inn)) => match ledger.balances.get(inn).filter(|_| !config.forget_accounts) {
            Some(&kopecks) => {
                let said = format_kopecks(kopecks + i64::from(config.misreport_balances));
                ("200 OK", format!("{{\"inn\": \"{inn}\", \"balance\": {said}}}"))
            }
            None => ("404 Not Found", message("not found")),
        },
        _ => ("404 Not Found", message("no such route")),
    }
}

/// A bank notice. With `fail_every`, notice number `n` is refused with 503 when `n % fail_every == 1` and
/// booked but answered 503 when `n % fail_every == 0`.
fn notice(ledger: &mut Ledger, config: MockConfig, body: &[u8]) -> (&'static str, String) {
    let Some((operation_id, inn, kopecks)) = parse_notice(body) else {
        return ("400 Bad Request", message("invalid"));
    };
    ledger.webhook_calls += 1;
    let call = ledger.webhook_calls;
    if config.fail_every > 0 && call % config.fail_every == 1 {
        return ("503 Service Unavailable", message("busy"));
    }
    if ledger.seen.insert(operation_id.clone()) {
        *ledger.balances.entry(inn).or_default() += kopecks;
        emit(ledger, config, &operation_id);
    } else if config.book_duplicates {
        *ledger.balances.entry(inn).or_default() += kopecks;
    }
    if config.fail_every > 0 && call.is_multiple_of(config.fail_every) {
        return ("503 Service Unavailable", message("busy"));
    }
    ("200 OK", message("accepted"))
}

/// The batch API, for bank notices only (the operations the bench's webhook scenario batches): each answered in
/// its place as the webhook would answer it, failures included, and two notices with one operation_id refused
/// as the whole request's 400, as payledger does. Operations stay raw JSON text: an amount is never a float
/// here either.
fn batch(ledger: &mut Ledger, config: MockConfig, body: &[u8]) -> (&'static str, String) {
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).unwrap_or_default();
    let Some(operations) =
        fields.get("operations").and_then(|raw| serde_json::from_str::<Vec<Box<RawValue>>>(raw.get()).ok())
    else {
        return ("400 Bad Request", message("not a batch"));
    };
    let mut ids = HashSet::new();
    if !operations
        .iter()
        .all(|operation| parse_notice(operation.get().as_bytes()).is_none_or(|(id, ..)| ids.insert(id)))
    {
        return ("400 Bad Request", message("an operation_id repeated"));
    }
    ledger.batch_calls += 1;
    let call = ledger.batch_calls;
    let mut results = Vec::with_capacity(operations.len());
    for operation in operations {
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(operation.get()).unwrap_or_default();
        let (status, reply) = match fields.get("type").map(|raw| raw.get()) {
            Some("\"bank_notice\"") => notice(ledger, config, operation.get().as_bytes()),
            _ => ("400 Bad Request", message("unknown type")),
        };
        let status = status.split_whitespace().next().unwrap_or("500");
        results.push(format!("{{\"status\":{status},\"replayed\":false,\"body\":{reply}}}"));
    }
    if config.batch_fail_every > 0 && call.is_multiple_of(config.batch_fail_every) {
        return ("503 Service Unavailable", message("unconfirmed"));
    }
    if config.batch_fail_every > 1 && call % config.batch_fail_every == 1 {
        results.pop();
    }
    ("200 OK", format!("{{\"results\":[{}]}}", results.join(",")))
}

/// Payout creation and counting. With `fail_every`, creation number `n` is refused with 503 `overloaded`
/// when `n % fail_every == 1` and created but answered 503 `unconfirmed` when `n % fail_every == 0`.
fn payouts(
    queue: &mut PayoutQueue,
    config: MockConfig,
    method: &str,
    path: &str,
    body: &[u8],
) -> (&'static str, String) {
    queue.advance(config, Instant::now());
    if method == "GET" {
        let mut status = None;
        let mut page_size = None;
        for pair in path.split_once('?').map_or("", |(_, query)| query).split('&') {
            match pair.split_once('=') {
                Some(("status", value)) => status = Some(value),
                Some(("page_size", value)) => page_size = value.parse::<u32>().ok(),
                _ => {}
            }
        }
        return match (status.and_then(|s| queue.count(config, s)), page_size) {
            (Some(count), Some(1..=100)) => {
                ("200 OK", format!("{{\"count\": {count}, \"next\": null, \"previous\": null, \"results\": []}}"))
            }
            _ => ("400 Bad Request", r#"{"error":"Invalid data","code":"invalid_data"}"#.to_owned()),
        };
    }
    if method != "POST" {
        return ("405 Method Not Allowed", message("method"));
    }
    queue.posts += 1;
    let call = queue.posts;
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).unwrap_or_default();
    let valid = fields
        .get("amount")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .and_then(|text| parse_kopecks(&text).ok())
        .is_some_and(|kopecks| kopecks > 0)
        && fields.get("currency").map(|raw| raw.get()) == Some("\"RUB\"")
        && fields.contains_key("recipient_details");
    if !valid {
        return ("400 Bad Request", r#"{"error":"Invalid data","code":"invalid_data"}"#.to_owned());
    }
    if config.fail_every > 0 && call % config.fail_every == 1 {
        return ("503 Service Unavailable", r#"{"error":"busy","code":"overloaded"}"#.to_owned());
    }
    queue.created += 1;
    if !(config.lose_payout_every > 0 && queue.created.is_multiple_of(config.lose_payout_every)) {
        queue.pending += 1;
    }
    if config.fail_every > 0 && call.is_multiple_of(config.fail_every) {
        return ("503 Service Unavailable", r#"{"error":"not confirmed","code":"unconfirmed"}"#.to_owned());
    }
    ("201 Created", format!("{{\"id\": \"00000000-0000-7000-8000-{:012x}\", \"status\": \"pending\"}}", queue.created))
}

/// Registration (`POST`, with `rest` empty) and deletion (`DELETE`, `rest` the id and a slash) of the one
/// webhook endpoint; registration starts a sender task posting to its URL.
fn endpoints(ledger: &mut Ledger, config: MockConfig, method: &str, rest: &str, body: &[u8]) -> (&'static str, String) {
    if method == "DELETE" {
        let id = rest.strip_suffix('/').unwrap_or(rest);
        return match ledger.endpoint.take_if(|endpoint| endpoint.id == id) {
            Some(_) => ("204 No Content", String::new()),
            None => ("404 Not Found", message("no such endpoint")),
        };
    }
    let fields: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let url = fields["url"].as_str().unwrap_or_default();
    let target = url.strip_prefix("http://").and_then(|rest| rest.split_once('/'));
    let Some((addr, path)) = target.and_then(|(addr, path)| Some((addr.parse::<SocketAddr>().ok()?, path))) else {
        return ("400 Bad Request", r#"{"error":"Invalid data","details":{"url":["not a URL"]}}"#.to_owned());
    };
    if method != "POST" || !rest.is_empty() || fields["event_types"] != serde_json::json!(["bank_payment.credited"]) {
        return ("400 Bad Request", message("the bench registers bank_payment.credited only"));
    }
    if config.refuse_loopback_endpoints {
        return (
            "400 Bad Request",
            r#"{"error":"Invalid data","details":{"url":["not a global address"]}}"#.to_owned(),
        );
    }
    let (outbox, queue) = mpsc::unbounded_channel();
    tokio::spawn(deliver(addr, format!("/{path}"), queue));
    let id = format!("ep_{}", ledger.logins);
    ledger.endpoint = Some(Endpoint { id: id.clone(), outbox });
    if config.stray_event {
        emit(ledger, config, "00000000-0000-4000-8000-000000000000");
    }
    ("201 Created", format!("{{\"id\":\"{id}\",\"secret\":\"whsec_c2VjcmV0c2VjcmV0c2VjcmV0\",\"url\":\"{url}\"}}"))
}

/// Queues the `bank_payment.credited` event of `operation_id` for the endpoint, if there is one, unless
/// `drop_event_every` loses it; `repeat_event_every` queues it twice.
fn emit(ledger: &mut Ledger, config: MockConfig, operation_id: &str) {
    let Some(endpoint) = &ledger.endpoint else { return };
    ledger.events += 1;
    let n = ledger.events;
    if config.drop_event_every > 0 && n.is_multiple_of(config.drop_event_every) {
        return;
    }
    let body = format!(
        "{{\"type\":\"bank_payment.credited\",\"timestamp\":\"2024-04-27T21:00:00Z\",\
         \"data\":{{\"operation_id\":\"{operation_id}\",\"source\":\"webhook\",\"version\":{n}}}}}"
    );
    let times = if config.repeat_event_every > 0 && n.is_multiple_of(config.repeat_event_every) { 2 } else { 1 };
    for _ in 0..times {
        let _ = endpoint.outbox.send((format!("msg_{n}"), body.clone()));
    }
}

/// Posts each queued event to `addr`/`path` on one keep-alive connection, reconnecting (and resending) when
/// the connection fails, until the endpoint is gone; a hand-written client, like the rest of the mock.
async fn deliver(addr: SocketAddr, path: String, mut queue: mpsc::UnboundedReceiver<(String, String)>) {
    let mut connection: Option<BufReader<TcpStream>> = None;
    while let Some((webhook_id, body)) = queue.recv().await {
        for _attempt in 0..20 {
            if connection.is_none() {
                connection = TcpStream::connect(addr).await.ok().map(BufReader::new);
            }
            let Some(stream) = connection.as_mut() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let request = format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nwebhook-id: {webhook_id}\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.get_mut().write_all(request.as_bytes()).await.is_ok() && read_answer(stream).await {
                break;
            }
            connection = None;
        }
    }
}

/// Reads one answer to the end of its headers (the receiver answers 204, without a body); whether it was 2xx.
async fn read_answer(stream: &mut BufReader<TcpStream>) -> bool {
    let mut status_line = String::new();
    if stream.read_line(&mut status_line).await.unwrap_or(0) == 0 {
        return false;
    }
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
            return false;
        }
        if header.trim_end().is_empty() {
            return status_line.split_whitespace().nth(1).is_some_and(|status| status.starts_with('2'));
        }
    }
}

fn parse_notice(body: &[u8]) -> Option<(String, String, i64)> {
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    let text = |name: &str| serde_json::from_str::<String>(fields.get(name)?.get()).ok();
    let raw_amount = fields.get("amount")?.get();
    let amount = match raw_amount.strip_prefix('"') {
        Some(_) => serde_json::from_str::<String>(raw_amount).ok()?,
        None => raw_amount.to_owned(),
    };
    Some((text("operation_id")?, text("payer_inn")?, parse_kopecks(&amount).ok()?))
}

/// A deposit or transfer. With `fail_every`, request number `n` (both kinds counted together) is refused with
/// 503 when `n % fail_every == 1`, applied but answered 503 when `n % fail_every == 0`, and, if
/// `fail_every > 2`, answered 409 `idempotency_key_in_flight` without applying when `n % fail_every == 2`.
fn user_post(
    ledger: &mut Ledger,
    config: MockConfig,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (&'static str, String) {
    ledger.user_calls += 1;
    let call = ledger.user_calls;
    if config.fail_every > 0 && call % config.fail_every == 1 {
        return ("503 Service Unavailable", message("busy"));
    }
    if config.fail_every > 2 && call % config.fail_every == 2 {
        return ("409 Conflict", r#"{"error":"in flight","code":"idempotency_key_in_flight"}"#.to_owned());
    }
    let replayed = key.and_then(|key| ledger.answered_keys.get(key)).filter(|_| !config.ignore_idempotency_keys);
    let (status, reply) = match replayed {
        Some(stored) if stored.body == body => (stored.status, stored.reply.clone()),
        Some(_) => ("422 Unprocessable Entity", message("key reused with another body")),
        None => {
            let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).unwrap_or_default();
            let id = |name: &str| fields.get(name).and_then(|raw| raw.get().parse::<u64>().ok());
            let amount = fields
                .get("amount")
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
                .and_then(|text| parse_kopecks(&text).ok())
                .filter(|&kopecks| kopecks > 0);
            let answer = if path == "/api/add_funds/" {
                match (id("user_id"), amount) {
                    (Some(user), Some(kopecks)) => deposit(ledger, user, kopecks),
                    _ => ("400 Bad Request", message("invalid")),
                }
            } else {
                match (id("sender_id"), id("recipient_id"), amount) {
                    (Some(sender), Some(recipient), Some(kopecks)) if sender != recipient => {
                        transfer(ledger, config, sender, recipient, kopecks)
                    }
                    _ => ("400 Bad Request", message("invalid")),
                }
            };
            if let Some(key) = key {
                let stored = Stored { body: body.to_vec(), status: answer.0, reply: answer.1.clone() };
                ledger.answered_keys.insert(key.to_owned(), stored);
            }
            answer
        }
    };
    if config.fail_every > 0 && call.is_multiple_of(config.fail_every) {
        return ("503 Service Unavailable", message("busy"));
    }
    (status, reply)
}

/// A history line moving `kopecks` (negative: out of) the user's available balance, recorded in their history.
fn transaction(ledger: &mut Ledger, user: u64, kopecks: i64, kind: &str) -> String {
    ledger.transactions += 1;
    let line = format!(
        "{{\"id\": {}, \"user\": {user}, \"user_id\": {user}, \"amount\": \"{amount}\", \
         \"available_change\": \"{amount}\", \"reserved_change\": \"0.00\", \"transaction_type\": \"{kind}\", \
         \"created_at\": \"2024-04-27T21:00:00Z\"}}",
        ledger.transactions,
        amount = format_kopecks(kopecks)
    );
    ledger.lines.entry(user).or_default().push(line.clone());
    line
}

fn deposit(ledger: &mut Ledger, user: u64, kopecks: i64) -> (&'static str, String) {
    *ledger.users.entry(user).or_default() += kopecks;
    ("201 Created", transaction(ledger, user, kopecks, "deposit"))
}

fn transfer(
    ledger: &mut Ledger,
    config: MockConfig,
    sender: u64,
    recipient: u64,
    kopecks: i64,
) -> (&'static str, String) {
    let debit = kopecks + i64::from(config.skim);
    if ledger.users.get(&sender).copied().unwrap_or(0) < debit {
        return (
            "409 Conflict",
            r#"{"error":"Insufficient funds","code":"insufficient_funds","available":"0.00"}"#.to_owned(),
        );
    }
    *ledger.users.entry(sender).or_default() -= debit;
    *ledger.users.entry(recipient).or_default() += kopecks;
    let sent = transaction(ledger, sender, -kopecks, "transfer");
    let received = transaction(ledger, recipient, kopecks, "transfer");
    ("201 Created", format!("{{\"sender_transaction\": {sent}, \"recipient_transaction\": {received}}}"))
}
