//! Payout gateways: what a payout worker calls to send money to a recipient.
//!
//! A worker claims a payout, decrypts the recipient's details, builds a [`GatewayRequest`] and awaits
//! [`PayoutGateway::pay`]. The answer decides the payout's fate:
//!
//! - `Ok(`[`GatewayOutcome::Completed`]`)` → the payout is completed with the gateway's reference;
//! - `Ok(`[`GatewayOutcome::Declined`]`)` → the payout fails with the gateway's reason;
//! - `Err(`[`GatewayError::Transient`]`)` → we do not know what happened: retry later with backoff;
//! - `Err(`[`GatewayError::Permanent`]`)` → retrying cannot help (misconfiguration, a rejected request):
//!   the payout fails.
//!
//! Every call carries the payout id as its idempotency key, so a retry after a timeout, or a second
//! worker picking up an expired lease, can never pay twice: the gateway answers a key it has seen with the
//! first final outcome.
//!
//! Two implementations exist: [`SimulatedGateway`] (the default, with documented test cards) and
//! [`HttpGateway`] (signed JSON over HTTP or HTTPS). [`build`] picks one from a [`GatewayConfig`] at
//! start-up, which is why the trait is dyn-compatible.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::config::redact_url;

/// The largest number of minor digits an ISO 4217 currency has (4, e.g. CLF); more is a caller's bug.
///
/// Checked before formatting so a corrupt value becomes a permanent error instead of an overflow.
pub const MAX_MINOR_DIGITS: u8 = 4;

/// What a worker asks the gateway to pay.
///
/// It holds the recipient's full details (the worker decrypts them for this call only); its `Debug`
/// output masks card and account numbers to their last 4 digits, so logging a request is safe.
#[derive(Clone, Debug)]
pub struct GatewayRequest {
    /// The payout being paid; also the idempotency key of the call.
    pub payout_id: Uuid,
    /// The amount in minor units (kopecks for RUB); must be positive.
    pub amount_minor: i64,
    /// The ISO 4217 alphabetic code, upper-case (`RUB`).
    pub currency: String,
    /// How many minor digits the currency has (2 for RUB), which fixes how `amount_minor` is printed.
    pub minor_digits: u8,
    /// Where the money goes, in full.
    pub recipient: GatewayRecipient,
    /// The payout's description, passed on as is.
    pub description: String,
}

impl GatewayRequest {
    /// The amount as an exact decimal string with the currency's minor digits, e.g. `1500.00`.
    ///
    /// Fails permanently for a non-positive amount or an impossible number of minor digits: both mean
    /// the caller built a wrong request, and sending it again would not fix it.
    pub fn amount_decimal(&self) -> Result<String, GatewayError> {
        if self.amount_minor <= 0 {
            return Err(GatewayError::Permanent(format!(
                "amount must be positive, got {} minor units",
                self.amount_minor
            )));
        }
        if self.minor_digits > MAX_MINOR_DIGITS {
            return Err(GatewayError::Permanent(format!(
                "currency {} cannot have {} minor digits",
                self.currency, self.minor_digits
            )));
        }
        Ok(payledger_core::money::format_minor(self.amount_minor, self.minor_digits))
    }
}

/// Where a payout's money goes, with full (unmasked) details.
///
/// Deliberately not `Serialize`: the only serialisation is the gateway's wire format, so these details
/// cannot leak into an API response by accident. `Debug` masks the numbers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum GatewayRecipient {
    /// A bank card.
    Card {
        /// The card number, digits only.
        number: String,
        /// The cardholder's name.
        holder: String,
    },
    /// A Russian bank account.
    BankAccount {
        /// The 20-digit account number.
        account_number: String,
        /// The bank's 9-digit BIK.
        bik: String,
        /// The account holder's name.
        holder: String,
    },
}

impl GatewayRecipient {
    /// The card or account number masked to its last 4 digits (`•••• 1111`), for logs and messages.
    pub fn masked_number(&self) -> String {
        match self {
            GatewayRecipient::Card { number, .. } => mask_number(number),
            GatewayRecipient::BankAccount { account_number, .. } => mask_number(account_number),
        }
    }
}

impl fmt::Debug for GatewayRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayRecipient::Card { number, holder } => {
                f.debug_struct("Card").field("number", &mask_number(number)).field("holder", holder).finish()
            }
            GatewayRecipient::BankAccount { account_number, bik, holder } => f
                .debug_struct("BankAccount")
                .field("account_number", &mask_number(account_number))
                .field("bik", bik)
                .field("holder", holder)
                .finish(),
        }
    }
}

/// A final answer from the gateway: the same payout id always gets the same one back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// The money was sent.
    Completed {
        /// The gateway's identifier of the transfer, stored on the payout.
        reference: String,
    },
    /// The gateway refused the payout for good.
    Declined {
        /// Why, as the gateway put it (e.g. `card_declined`); becomes the payout's failure reason.
        reason: String,
    },
}

/// A gateway call that produced no final outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Timeouts, connection errors, 408, 429, 5xx, or an answer we cannot interpret: the payout may or may
    /// not have been sent, so retry with backoff; the idempotency key makes the retry safe.
    #[error("transient gateway error: {0}")]
    Transient(String),
    /// Misconfiguration or a request the gateway rejected (a 4xx other than 408/429): retrying cannot
    /// help, so the payout fails with this message.
    #[error("gateway error: {0}")]
    Permanent(String),
}

impl GatewayError {
    /// Whether the call should be retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, GatewayError::Transient(_))
    }

    /// The message without the kind prefix, for a payout's failure reason.
    pub fn message(&self) -> &str {
        match self {
            GatewayError::Transient(message) | GatewayError::Permanent(message) => message,
        }
    }
}

/// The future a [`PayoutGateway`] returns, boxed so the trait can be used as `Arc<dyn PayoutGateway>`.
pub type GatewayFuture<'a> = Pin<Box<dyn Future<Output = Result<GatewayOutcome, GatewayError>> + Send + 'a>>;

/// Something that can pay a payout.
///
/// Implementations must be idempotent by `request.payout_id`: once a final outcome has been given for an
/// id, every later call with that id returns it again without paying again.
pub trait PayoutGateway: Send + Sync {
    /// Asks the gateway to pay `request`.
    fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a>;
}

/// Why a gateway could not be built from its configuration (reported at start-up).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayConfigError {
    /// The URL does not parse as an absolute URL with a host.
    #[error("payout gateway URL {0:?} is not an absolute http:// or https:// URL")]
    InvalidUrl(String),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("payout gateway URL {url:?} has scheme {scheme:?}; only http and https are supported")]
    UnsupportedScheme {
        /// The URL, with any password redacted.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// The signing secret is unusable (empty, which would make the signature worthless).
    #[error("the payout gateway signing secret {0}")]
    InvalidSecret(&'static str),
    /// A timeout of zero would fail every call.
    #[error("the payout gateway {0} timeout must be greater than zero")]
    ZeroTimeout(&'static str),
    /// TLS could not be set up (for example, no root certificates were found for an https URL).
    #[error("setting up TLS for the payout gateway: {0}")]
    Tls(String),
}

/// Which gateway to use, chosen from the server's configuration at start-up.
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayConfig {
    /// The in-process [`SimulatedGateway`].
    Simulated {
        /// How long every call takes.
        latency: Duration,
    },
    /// The [`HttpGateway`].
    Http {
        /// Where payouts are POSTed (`http://` or `https://`).
        url: String,
        /// The shared secret the body is signed with (HMAC-SHA256); never logged.
        secret: String,
        /// The limit on a whole call: connecting, sending and reading the answer.
        timeout: Duration,
        /// The limit on establishing the TCP connection alone.
        connect_timeout: Duration,
    },
}

impl GatewayConfig {
    /// An HTTP gateway configuration with the default timeouts.
    pub fn http(url: impl Into<String>, secret: impl Into<String>) -> GatewayConfig {
        GatewayConfig::Http {
            url: url.into(),
            secret: secret.into(),
            timeout: DEFAULT_HTTP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Default for GatewayConfig {
    /// The simulated gateway with [`DEFAULT_SIMULATED_LATENCY`].
    fn default() -> GatewayConfig {
        GatewayConfig::Simulated { latency: DEFAULT_SIMULATED_LATENCY }
    }
}

impl fmt::Debug for GatewayConfig {
    // Hand-written so that printing the configuration at start-up never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayConfig::Simulated { latency } => f.debug_struct("Simulated").field("latency", latency).finish(),
            GatewayConfig::Http { url, secret: _, timeout, connect_timeout } => f
                .debug_struct("Http")
                .field("url", &redact_url(url))
                .field("secret", &"***")
                .field("timeout", timeout)
                .field("connect_timeout", connect_timeout)
                .finish(),
        }
    }
}

/// Builds the gateway `config` describes.
pub fn build(config: &GatewayConfig) -> Result<Arc<dyn PayoutGateway>, GatewayConfigError> {
    match config {
        GatewayConfig::Simulated { latency } => Ok(Arc::new(SimulatedGateway::new(*latency))),
        GatewayConfig::Http { url, secret, timeout, connect_timeout } => {
            Ok(Arc::new(HttpGateway::new(url, secret, *timeout, *connect_timeout)?))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Simulated gateway
// ---------------------------------------------------------------------------------------------------------

/// A test card the simulated gateway always declines, with reason [`DECLINED_REASON`].
pub const DECLINED_CARD: &str = "4000000000000002";

/// A test card whose first call for a payout id fails with a transient timeout; the next call completes.
pub const TIMEOUT_ONCE_CARD: &str = "4000000000000119";

/// A test card that always fails with a transient timeout, so its payout fails once its retries run out.
pub const ALWAYS_TIMEOUT_CARD: &str = "4000000000009995";

/// The reason the simulated gateway gives for [`DECLINED_CARD`].
pub const DECLINED_REASON: &str = "card_declined";

/// The reason the simulated gateway gives for a card number that is not 13–19 digits passing the Luhn
/// check (the API refuses such numbers, so only a bug gets one this far; a real gateway would decline it).
pub const INVALID_CARD_REASON: &str = "invalid_card_number";

/// The simulated gateway's latency when the configuration names none: long enough that concurrent
/// workers really overlap, short enough that a demo feels instant.
pub const DEFAULT_SIMULATED_LATENCY: Duration = Duration::from_millis(20);

/// An in-process gateway with deterministic outcomes, the default for development and tests.
///
/// - [`DECLINED_CARD`] is declined with [`DECLINED_REASON`];
/// - [`TIMEOUT_ONCE_CARD`] times out (transiently) on the first call for a payout id, then completes;
/// - [`ALWAYS_TIMEOUT_CARD`] always times out (transiently);
/// - a card number that fails validation is declined with [`INVALID_CARD_REASON`];
/// - every other card, and every bank account, completes with reference `sim-<payout id, simple form>`.
///
/// Like a real gateway it remembers idempotency keys: a repeated payout id gets the first final outcome
/// again (a transient failure is not final), and a repeated id with a different amount, currency or
/// recipient is refused permanently. It counts calls per payout id, so tests can prove that a payout was
/// sent exactly once. Its memory is per process and grows by one small entry per payout, which is fine for
/// the development server and tests it is meant for.
pub struct SimulatedGateway {
    latency: Duration,
    state: Mutex<SimulatedState>,
}

#[derive(Default)]
struct SimulatedState {
    keys: HashMap<Uuid, KeyRecord>,
    total_calls: u64,
}

/// What the simulated gateway remembers about one idempotency key. It keeps a hash of the request rather
/// than the request, so the full recipient details do not linger in memory.
struct KeyRecord {
    calls: u32,
    fingerprint: u64,
    outcome: Option<GatewayOutcome>,
}

impl SimulatedGateway {
    /// A simulated gateway whose every call takes `latency`.
    pub fn new(latency: Duration) -> SimulatedGateway {
        SimulatedGateway { latency, state: Mutex::new(SimulatedState::default()) }
    }

    /// How long every call takes.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// How many times `pay` was called with this payout id (replays and failures included).
    pub fn calls(&self, payout_id: Uuid) -> u32 {
        self.lock().keys.get(&payout_id).map_or(0, |record| record.calls)
    }

    /// How many times `pay` was called in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().total_calls
    }

    /// The final outcome recorded for this payout id, if it has one yet.
    pub fn final_outcome(&self, payout_id: Uuid) -> Option<GatewayOutcome> {
        self.lock().keys.get(&payout_id).and_then(|record| record.outcome.clone())
    }

    /// How many payout ids have a final outcome: with [`SimulatedGateway::calls`], what a test needs to
    /// show that every payout was paid exactly once.
    pub fn final_outcome_count(&self) -> usize {
        self.lock().keys.values().filter(|record| record.outcome.is_some()).count()
    }

    fn lock(&self) -> MutexGuard<'_, SimulatedState> {
        // Nothing panics while the lock is held, and every update leaves the counters consistent, so a
        // poisoned lock still holds valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the answer to one call and records it, all under the lock, so two concurrent calls with
    /// the same key can never both be "first".
    fn answer(&self, request: &GatewayRequest) -> Result<GatewayOutcome, GatewayError> {
        let fingerprint = fingerprint(request);
        let mut state = self.lock();
        state.total_calls = state.total_calls.saturating_add(1);
        let record = state.keys.entry(request.payout_id).or_insert(KeyRecord { calls: 0, fingerprint, outcome: None });
        record.calls = record.calls.saturating_add(1);
        if record.fingerprint != fingerprint {
            return Err(GatewayError::Permanent(format!(
                "idempotency key {} was first used for a different request",
                request.payout_id
            )));
        }
        if let Some(outcome) = &record.outcome {
            return Ok(outcome.clone());
        }
        let result = simulate(request, record.calls);
        if let Ok(outcome) = &result {
            record.outcome = Some(outcome.clone());
        }
        result
    }
}

impl Default for SimulatedGateway {
    /// A simulated gateway with [`DEFAULT_SIMULATED_LATENCY`].
    fn default() -> SimulatedGateway {
        SimulatedGateway::new(DEFAULT_SIMULATED_LATENCY)
    }
}

impl fmt::Debug for SimulatedGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimulatedGateway")
            .field("latency", &self.latency)
            .field("keys", &state.keys.len())
            .field("total_calls", &state.total_calls)
            .finish()
    }
}

impl PayoutGateway for SimulatedGateway {
    fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a> {
        Box::pin(async move {
            // Decide first, then wait: the key is claimed at once, as a real gateway locks it on arrival.
            let result = self.answer(request);
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            result
        })
    }
}

/// The simulated answer to a request whose key has no final outcome yet; `call` counts from 1.
fn simulate(request: &GatewayRequest, call: u32) -> Result<GatewayOutcome, GatewayError> {
    request.amount_decimal()?;
    let completed = || GatewayOutcome::Completed { reference: format!("sim-{}", request.payout_id.simple()) };
    let number = match &request.recipient {
        GatewayRecipient::BankAccount { .. } => return Ok(completed()),
        GatewayRecipient::Card { number, .. } => digits_only(number),
    };
    if !is_valid_card_number(&number) {
        return Ok(GatewayOutcome::Declined { reason: INVALID_CARD_REASON.to_owned() });
    }
    match number.as_str() {
        DECLINED_CARD => Ok(GatewayOutcome::Declined { reason: DECLINED_REASON.to_owned() }),
        TIMEOUT_ONCE_CARD if call == 1 => {
            Err(GatewayError::Transient("simulated gateway timeout (first call for this payout)".to_owned()))
        }
        ALWAYS_TIMEOUT_CARD => Err(GatewayError::Transient("simulated gateway timeout".to_owned())),
        _ => Ok(completed()),
    }
}

/// A hash of what must not change between calls with the same idempotency key. The description is left
/// out: it is informational, and a real gateway would not reject a retry over it.
fn fingerprint(request: &GatewayRequest) -> u64 {
    let mut hasher = DefaultHasher::new();
    request.amount_minor.hash(&mut hasher);
    request.currency.hash(&mut hasher);
    request.minor_digits.hash(&mut hasher);
    request.recipient.hash(&mut hasher);
    hasher.finish()
}

/// The card number without the spaces clients may type between groups.
fn digits_only(number: &str) -> String {
    number.chars().filter(|c| !c.is_whitespace()).collect()
}

/// 13–19 ASCII digits passing the Luhn check.
fn is_valid_card_number(number: &str) -> bool {
    if !(13..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------------------
// HTTP gateway
// ---------------------------------------------------------------------------------------------------------

/// The default limit on a whole HTTP gateway call. Payment APIs can take several seconds; a worker's lease
/// must stay well above this so a slow call is not taken over by another worker mid-flight.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The default limit on establishing the connection: a gateway that cannot even accept a connection in
/// this time is down, and failing fast lets the backoff schedule take over.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The header carrying the payout id, so the gateway can answer a retry with the first outcome.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
///
/// The timestamp is signed with the body so a receiver can refuse replays of old requests.
pub const SIGNATURE_HEADER: &str = "X-Payledger-Signature";

/// The most of a response body we read: a gateway's answer is a few hundred bytes, and a runaway body
/// must not hold a worker or its memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How much of an error body goes into an error message (which may end up in a payout's failure reason).
const MAX_ERROR_EXCERPT_CHARS: usize = 200;

/// How long a gateway's decline reason may be before it is cut, for the same reason.
const MAX_REASON_CHARS: usize = 200;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A gateway reached over HTTP(S): each call POSTs signed JSON to one URL.
///
/// The request body is
/// `{"payout_id": "…", "amount": "1500.00", "currency": "RUB", "recipient": {…}, "description": "…"}`,
/// with the recipient in the API's shape (`{"type": "card", "number", "holder"}` or
/// `{"type": "bank_account", "account_number", "bik", "holder"}`) and in full. Headers:
/// `Content-Type: application/json`, [`IDEMPOTENCY_KEY_HEADER`] with the payout id, and
/// [`SIGNATURE_HEADER`].
///
/// Answers: a 2xx with `{"status": "completed", "reference": "…"}` completes, and a 2xx with
/// `{"status": "declined", "reason": "…"}` declines. Any other 2xx, 408, 429, 5xx, a timeout or a
/// connection error is transient (the idempotency key makes the retry safe). Any other status (other 4xx,
/// and 3xx, which are not followed because the body carries card details) is permanent.
///
/// TLS uses rustls with the ring provider and the system's root certificates.
pub struct HttpGateway {
    client: HttpsClient,
    url: Uri,
    /// The signing secret; never printed (see the `Debug` impl).
    secret: String,
    timeout: Duration,
}

impl HttpGateway {
    /// A gateway POSTing to `url`, signing with `secret`, giving up on a call after `timeout` and on a
    /// connection attempt after `connect_timeout`.
    pub fn new(
        url: &str,
        secret: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<HttpGateway, GatewayConfigError> {
        let uri: Uri = url.parse().map_err(|_| GatewayConfigError::InvalidUrl(redact_url(url)))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(GatewayConfigError::InvalidUrl(redact_url(url)));
        };
        let https = match scheme {
            "https" => true,
            "http" => false,
            other => {
                return Err(GatewayConfigError::UnsupportedScheme { url: redact_url(url), scheme: other.to_owned() });
            }
        };
        if secret.is_empty() {
            return Err(GatewayConfigError::InvalidSecret("is empty"));
        }
        if timeout.is_zero() {
            return Err(GatewayConfigError::ZeroTimeout("request"));
        }
        if connect_timeout.is_zero() {
            return Err(GatewayConfigError::ZeroTimeout("connect"));
        }
        if !https && !is_loopback_host(authority.host()) {
            tracing::warn!(
                url = %redact_url(url),
                "the payout gateway URL is plain http: recipients' card and account numbers will cross the network unencrypted"
            );
        }
        Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| GatewayConfigError::InvalidSecret("cannot key HMAC-SHA256"))?;

        let mut http = HttpConnector::new();
        // The TLS layer wraps this connector, so it must accept https URLs too.
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(https)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpGateway { client, url: uri, secret: secret.to_owned(), timeout })
    }

    /// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (unix seconds).
    fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        crate::signature::sign(&self.secret, timestamp, body)
    }

    async fn send(&self, request: &GatewayRequest) -> Result<GatewayOutcome, GatewayError> {
        let body = wire_body(request)?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = self.signature(timestamp, &body);
        let http_request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("payledger/", env!("CARGO_PKG_VERSION")))
            .header(IDEMPOTENCY_KEY_HEADER, request.payout_id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| GatewayError::Permanent(format!("building the gateway request: {error}")))?;

        // One deadline covers connecting, sending and reading the whole answer, so a gateway that trickles
        // its body cannot hold a worker past the timeout.
        let exchange = async {
            let response =
                self.client.request(http_request).await.map_err(|error| {
                    GatewayError::Transient(format!("gateway request failed: {}", error_chain(&error)))
                })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await.map(|b| b.to_bytes());
            Ok::<_, GatewayError>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_elapsed) => {
                Err(GatewayError::Transient(format!("gateway did not answer within {} ms", self.timeout.as_millis())))
            }
            Ok(Err(error)) => Err(error),
            Ok(Ok((status, body))) => interpret(status, body.map_err(|error| error.to_string())),
        }
    }
}

impl fmt::Debug for HttpGateway {
    // Hand-written: the keyed MAC must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGateway")
            .field("url", &redact_url(&self.url.to_string()))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PayoutGateway for HttpGateway {
    fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.send(request).await;
            // Only the id, the kind of answer and the time: never the recipient or the signature.
            let answer = match &result {
                Ok(GatewayOutcome::Completed { .. }) => "completed",
                Ok(GatewayOutcome::Declined { .. }) => "declined",
                Err(GatewayError::Transient(_)) => "transient error",
                Err(GatewayError::Permanent(_)) => "permanent error",
            };
            tracing::debug!(
                payout_id = %request.payout_id,
                answer,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "payout gateway answered"
            );
            result
        })
    }
}

/// The rustls configuration: the system's roots for https, none for plain http (the connector then never
/// starts TLS, and a missing certificate bundle must not stop a plain-http test setup).
fn tls_config(https: bool) -> Result<rustls::ClientConfig, GatewayConfigError> {
    // The provider is passed explicitly rather than installed process-wide, so nothing else in the
    // process changes, and the build never needs aws-lc-rs (rustls' default, which wants cmake).
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| GatewayConfigError::Tls(error.to_string()))?;
    if https {
        use hyper_rustls::ConfigBuilderExt;
        let builder = builder
            .with_native_roots()
            .map_err(|error| GatewayConfigError::Tls(format!("loading the system's root certificates: {error}")))?;
        Ok(builder.with_no_client_auth())
    } else {
        Ok(builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The request body on the wire.
#[derive(Serialize)]
struct WireRequest<'a> {
    payout_id: Uuid,
    amount: String,
    currency: &'a str,
    recipient: WireRecipient<'a>,
    description: &'a str,
}

/// The recipient on the wire, in the same shape as the API's `recipient_details`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireRecipient<'a> {
    Card { number: &'a str, holder: &'a str },
    BankAccount { account_number: &'a str, bik: &'a str, holder: &'a str },
}

fn wire_body(request: &GatewayRequest) -> Result<Vec<u8>, GatewayError> {
    let recipient = match &request.recipient {
        GatewayRecipient::Card { number, holder } => WireRecipient::Card { number, holder },
        GatewayRecipient::BankAccount { account_number, bik, holder } => {
            WireRecipient::BankAccount { account_number, bik, holder }
        }
    };
    let wire = WireRequest {
        payout_id: request.payout_id,
        amount: request.amount_decimal()?,
        currency: &request.currency,
        recipient,
        description: &request.description,
    };
    serde_json::to_vec(&wire).map_err(|error| GatewayError::Permanent(format!("encoding the gateway request: {error}")))
}

/// A 2xx answer's body. Every field is optional so that any JSON object parses, and the checks below
/// decide what it means.
#[derive(Deserialize)]
struct WireAnswer {
    status: Option<String>,
    reference: Option<String>,
    reason: Option<String>,
}

/// Maps an HTTP answer to the gateway's verdict.
fn interpret(status: StatusCode, body: Result<Bytes, String>) -> Result<GatewayOutcome, GatewayError> {
    if status.is_success() {
        let body = body.map_err(|error| {
            GatewayError::Transient(format!("gateway answered {status} but its body could not be read: {error}"))
        })?;
        let unrecognised = || {
            GatewayError::Transient(format!("gateway answered {status} with an unrecognised body: {}", excerpt(&body)))
        };
        let answer: WireAnswer = serde_json::from_slice(&body).map_err(|_| unrecognised())?;
        return match answer.status.as_deref() {
            // Without a reference we cannot prove the payment later; asking again with the same key is safe.
            Some("completed") => match answer.reference {
                Some(reference) if !reference.trim().is_empty() => Ok(GatewayOutcome::Completed { reference }),
                _ => Err(unrecognised()),
            },
            // A decline is final even when the gateway gives no reason; retrying would only be declined again.
            Some("declined") => {
                let reason = answer.reason.filter(|reason| !reason.trim().is_empty());
                let reason = reason
                    .map_or_else(|| "declined".to_owned(), |r| truncate_chars(&mask_digit_runs(&r), MAX_REASON_CHARS));
                Ok(GatewayOutcome::Declined { reason })
            }
            _ => Err(unrecognised()),
        };
    }
    let text = body.map_or_else(|_| "(body unreadable)".to_owned(), |body| excerpt(&body));
    let message = format!("gateway answered {status}: {text}");
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(GatewayError::Transient(message))
    } else {
        Err(GatewayError::Permanent(message))
    }
}

/// A short, safe excerpt of a response body for an error message: cut to a bounded length, and with long
/// digit runs masked in case the gateway echoed a card or account number back.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    truncate_chars(&mask_digit_runs(text), MAX_ERROR_EXCERPT_CHARS)
}

/// Cuts `text` to at most `max` characters (never inside a character), marking the cut with `…`.
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The shortest digit run treated as a card or account number (card numbers have 13–19 digits); shorter
/// numbers, such as amounts or codes, stay readable.
const MIN_SENSITIVE_DIGITS: usize = 12;

/// Replaces every run of [`MIN_SENSITIVE_DIGITS`] or more ASCII digits with its masked form.
fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= MIN_SENSITIVE_DIGITS {
            out.push_str(&mask_number(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `•••• 1111`: the last 4 digits only, as the API shows them. A number of 4 or fewer characters is
/// hidden entirely, since showing its "last 4" would show all of it.
fn mask_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() <= 4 {
        return "••••".to_owned();
    }
    let last4: String = digits[digits.len() - 4..].iter().collect();
    format!("•••• {last4}")
}

/// Walks an error's source chain: hyper's top-level message ("client error (Connect)") alone does not
/// say whether the connection was refused or timed out.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_request(number: &str) -> GatewayRequest {
        GatewayRequest {
            payout_id: Uuid::from_u128(0x1234),
            amount_minor: 150_000,
            currency: "RUB".to_owned(),
            minor_digits: 2,
            recipient: GatewayRecipient::Card { number: number.to_owned(), holder: "Иван Иванов".to_owned() },
            description: "Тестовая выплата".to_owned(),
        }
    }

    #[test]
    fn debug_output_of_a_request_never_contains_the_full_card_number() {
        for number in ["4111111111111111", "4000000000000002", "4111 1111 1111 1111", "5555555555554444"] {
            let request = card_request(number);
            let printed = format!("{request:?}");
            let pretty = format!("{request:#?}");
            let digits = digits_only(number);
            for text in [&printed, &pretty] {
                assert!(!text.contains(number), "{text}");
                assert!(!text.contains(&digits), "{text}");
                assert!(!text.contains(&digits[..digits.len() - 4]), "{text}");
                assert!(text.contains(&format!("•••• {}", &digits[digits.len() - 4..])), "{text}");
            }
        }
    }

    #[test]
    fn debug_output_of_a_bank_account_masks_the_account_number() {
        let recipient = GatewayRecipient::BankAccount {
            account_number: "40817810099910004312".to_owned(),
            bik: "044525225".to_owned(),
            holder: "ООО Ромашка".to_owned(),
        };
        let printed = format!("{recipient:?}");
        assert!(!printed.contains("40817810099910004312"), "{printed}");
        assert!(printed.contains("•••• 4312"), "{printed}");
        assert!(printed.contains("044525225"), "{printed}");
        assert_eq!(recipient.masked_number(), "•••• 4312");
    }

    #[test]
    fn short_numbers_are_hidden_entirely() {
        assert_eq!(mask_number("1234"), "••••");
        assert_eq!(mask_number(""), "••••");
        assert_eq!(mask_number("12345"), "•••• 2345");
    }

    #[test]
    fn configuration_debug_never_shows_the_secret() {
        let config = GatewayConfig::http("https://user:pw@gateway.example/payouts", "whsec_very_secret");
        let printed = format!("{config:?}");
        assert!(!printed.contains("whsec_very_secret"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
    }

    #[test]
    fn amounts_are_printed_exactly_from_minor_units() {
        let mut request = card_request("4111111111111111");
        assert_eq!(request.amount_decimal(), Ok("1500.00".to_owned()));
        request.amount_minor = 1;
        assert_eq!(request.amount_decimal(), Ok("0.01".to_owned()));
        request.minor_digits = 0;
        request.amount_minor = 1500;
        assert_eq!(request.amount_decimal(), Ok("1500".to_owned()));
        request.minor_digits = 3;
        request.amount_minor = 1_234_567;
        assert_eq!(request.amount_decimal(), Ok("1234.567".to_owned()));
        request.amount_minor = 0;
        assert!(matches!(request.amount_decimal(), Err(GatewayError::Permanent(_))));
        request.amount_minor = 1;
        request.minor_digits = 40;
        assert!(matches!(request.amount_decimal(), Err(GatewayError::Permanent(_))));
    }

    #[test]
    fn the_wire_body_carries_full_details_and_an_exact_amount() {
        let request = card_request("4111111111111111");
        let body: serde_json::Value = serde_json::from_slice(&wire_body(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "payout_id": "00000000-0000-0000-0000-000000001234",
                "amount": "1500.00",
                "currency": "RUB",
                "recipient": {"type": "card", "number": "4111111111111111", "holder": "Иван Иванов"},
                "description": "Тестовая выплата",
            })
        );
    }

    #[test]
    fn the_signature_matches_a_reference_hmac() {
        // Computed independently: python3 -c "import hmac,hashlib;
        //   print(hmac.new(b'whsec_test', b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
        let gateway =
            HttpGateway::new("http://127.0.0.1:9/pay", "whsec_test", DEFAULT_HTTP_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
                .unwrap();
        assert_eq!(
            gateway.signature(1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        let printed = format!("{gateway:?}");
        assert!(!printed.contains("whsec_test"), "{printed}");
    }

    #[test]
    fn the_test_cards_pass_the_luhn_check() {
        for card in [DECLINED_CARD, TIMEOUT_ONCE_CARD, ALWAYS_TIMEOUT_CARD, "4111111111111111"] {
            assert!(is_valid_card_number(card), "{card}");
        }
        assert!(!is_valid_card_number("4111111111111112"));
        assert!(!is_valid_card_number("411111111111"));
        assert!(!is_valid_card_number("4111-1111-1111-1111"));
    }

    #[test]
    fn long_digit_runs_are_masked_in_error_text() {
        assert_eq!(mask_digit_runs("card 4111111111111111 refused, code 4031"), "card •••• 1111 refused, code 4031");
        assert_eq!(mask_digit_runs("40817810099910004312"), "•••• 4312");
        assert_eq!(mask_digit_runs("no digits"), "no digits");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("абвгд", 3), "абв…");
        assert_eq!(truncate_chars("абв", 3), "абв");
        assert_eq!(truncate_chars("", 3), "");
    }

    #[test]
    fn answers_are_interpreted_by_status_and_body() {
        let ok = |body: &str| interpret(StatusCode::OK, Ok(Bytes::from(body.to_owned())));
        assert_eq!(
            ok(r#"{"status":"completed","reference":"gw-1"}"#),
            Ok(GatewayOutcome::Completed { reference: "gw-1".to_owned() })
        );
        assert_eq!(
            ok(r#"{"status":"declined","reason":"insufficient_funds"}"#),
            Ok(GatewayOutcome::Declined { reason: "insufficient_funds".to_owned() })
        );
        assert_eq!(ok(r#"{"status":"declined"}"#), Ok(GatewayOutcome::Declined { reason: "declined".to_owned() }));
        for garbage in [r#"{"status":"completed"}"#, r#"{"status":"pending"}"#, "[]", "oops", ""] {
            assert!(matches!(ok(garbage), Err(GatewayError::Transient(_))), "{garbage}");
        }
        let status = |code: u16| interpret(StatusCode::from_u16(code).unwrap(), Ok(Bytes::from_static(b"nope")));
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(status(code), Err(GatewayError::Transient(_))), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 409, 422] {
            assert!(matches!(status(code), Err(GatewayError::Permanent(_))), "{code}");
        }
        assert!(matches!(interpret(StatusCode::OK, Err("reset".to_owned())), Err(GatewayError::Transient(_))));
    }

    #[test]
    fn bad_configurations_are_refused() {
        let build_http = |url: &str, secret: &str| {
            HttpGateway::new(url, secret, DEFAULT_HTTP_TIMEOUT, DEFAULT_CONNECT_TIMEOUT).map(|_| ())
        };
        assert!(matches!(build_http("not a url", "s"), Err(GatewayConfigError::InvalidUrl(_))));
        assert!(matches!(build_http("/relative/path", "s"), Err(GatewayConfigError::InvalidUrl(_))));
        assert!(matches!(build_http("ftp://host/x", "s"), Err(GatewayConfigError::UnsupportedScheme { .. })));
        assert_eq!(build_http("http://127.0.0.1:1/x", ""), Err(GatewayConfigError::InvalidSecret("is empty")));
        assert_eq!(
            HttpGateway::new("http://127.0.0.1:1/x", "s", Duration::ZERO, DEFAULT_CONNECT_TIMEOUT).map(|_| ()),
            Err(GatewayConfigError::ZeroTimeout("request"))
        );
        assert_eq!(
            HttpGateway::new("http://127.0.0.1:1/x", "s", DEFAULT_HTTP_TIMEOUT, Duration::ZERO).map(|_| ()),
            Err(GatewayConfigError::ZeroTimeout("connect"))
        );
    }
}
