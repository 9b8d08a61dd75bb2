//! A real webhook receiver for the outbound-event tests: an HTTP server on a loopback port that checks every
//! delivery's Standard Webhooks signature with its own implementation (never `payledger::events::signature`, so
//! that a mistake there cannot hide itself), records every request, and answers as the test scripts it to:
//! accept, fail with a status (and `Retry-After`), hang, or go down and come back up on the same port.
//!
//! The server is hyper's HTTP/1 connection driver over our own accept loop rather than `axum::serve`, because
//! going down must also close the connections already open (a client's kept-alive connection, a hanging
//! request), and `axum::serve` keeps those to itself. hyper's `server` feature is switched on by axum, which the
//! server crate depends on.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The path the receiver listens on; any other is recorded as unverified.
pub const HOOK_PATH: &str = "/hook";
/// How far a delivery's `webhook-timestamp` may be from the receiver's clock (the specification's suggestion).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// How often re-binding the port is tried when coming back up, and how long between tries: the port was ours a
/// moment ago, so a failure is another socket taking it meanwhile, which waiting rarely cures.
const REBIND_TRIES: u32 = 20;
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// How the receiver answers from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 204 No Content.
    Accept,
    /// This status, no body (500, 410, 429, 302, …).
    Status(u16),
    /// This status with `Retry-After` of this many seconds.
    StatusWithRetryAfter(u16, u64),
    /// This status with this body (bytes a receiver may send: binary, NUL, anything).
    StatusWithBody(u16, &'static [u8]),
    /// Reads the request, records it, and never answers, holding the connection open.
    Hang,
    /// Not listening: connections are refused and the ones open are closed. Any other mode brings it back up on
    /// the same port.
    Down,
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id` (empty when missing).
    pub webhook_id: String,
    /// `webhook-timestamp` in Unix seconds (0 when missing or not a number).
    pub timestamp: i64,
    /// `webhook-signature` as sent.
    pub signature: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    /// Whether the headers and the signature checked out and the body is JSON.
    pub verified: bool,
    /// Why it was not verified.
    pub problem: Option<String>,
    /// The status answered, or 0 when the receiver hung (or was going down).
    pub answered: u16,
}

/// Checks Standard Webhooks signatures against one or more secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_seconds: i64,
}

impl Verifier {
    /// A verifier of `secrets` (`whsec_…`), accepting timestamps within [`DEFAULT_TOLERANCE`]. Panics on a
    /// secret that is not one: a test that passes one is wrong.
    pub fn new(secrets: &[String]) -> Verifier {
        let keys = secrets.iter().map(|secret| secret_key(secret)).collect();
        Verifier { keys, tolerance_seconds: tolerance_seconds(DEFAULT_TOLERANCE) }
    }

    /// The same verifier, accepting timestamps within `tolerance` of the clock.
    pub fn with_tolerance(self, tolerance: Duration) -> Verifier {
        Verifier { tolerance_seconds: tolerance_seconds(tolerance), ..self }
    }

    /// Checks one delivery's headers and body at Unix time `now`: `Err` says what is wrong.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
        let id = header_text(headers, "webhook-id")?;
        let timestamp = header_text(headers, "webhook-timestamp")?;
        let signature = header_text(headers, "webhook-signature")?;
        self.verify_parts(id, timestamp, signature, body, now)
    }

    /// Checks a delivery given as its three header values and body at Unix time `now`.
    pub fn verify_parts(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), String> {
        if id.is_empty() {
            return Err("webhook-id is empty".into());
        }
        let seconds: i64 = timestamp.parse().map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
        let skew = now.saturating_sub(seconds).saturating_abs();
        if skew > self.tolerance_seconds {
            return Err(format!("webhook-timestamp {seconds} is {skew} s from the receiver's clock"));
        }
        let candidates: Vec<&str> =
            signature.split(' ').filter_map(|entry| entry.strip_prefix("v1,")).filter(|s| !s.is_empty()).collect();
        if candidates.is_empty() {
            return Err(format!("webhook-signature {signature:?} has no v1 signature"));
        }
        // The signed content uses the timestamp exactly as sent, not as re-formatted from the number.
        let matches = candidates.iter().filter_map(|candidate| STANDARD.decode(candidate).ok()).any(|expected| {
            self.keys.iter().any(|key| signer(key, id, timestamp, body).verify_slice(&expected).is_ok())
        });
        if matches { Ok(()) } else { Err(format!("no signature in {signature:?} matches a secret")) }
    }
}

/// The `webhook-signature` entry for a delivery, computed here by hand (to sign test requests).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = signer(&secret_key(secret), id, &timestamp.to_string(), body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(digest))
}

/// An HMAC-SHA256 under `key` fed with `{id}.{timestamp}.{body}`.
fn signer(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac
}

/// The key bytes of a `whsec_…` secret.
fn secret_key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or_else(|| panic!("a secret starts with whsec_"));
    STANDARD.decode(encoded).expect("a secret is whsec_ and base64")
}

fn tolerance_seconds(tolerance: Duration) -> i64 {
    i64::try_from(tolerance.as_secs()).expect("a tolerance of a sane length")
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    let value = headers.get(name).ok_or_else(|| format!("{name} is missing"))?;
    value.to_str().map_err(|_| format!("{name} is not text"))
}

fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}

/// A receiver listening on `127.0.0.1`; dropping it stops it.
pub struct Receiver {
    shared: Arc<Shared>,
    address: SocketAddr,
    /// The running server, `None` while down. An async mutex: changing the mode awaits the server's end.
    serving: tokio::sync::Mutex<Option<Serving>>,
}

/// What the server's tasks and the test share.
struct Shared {
    verifier: Mutex<Verifier>,
    state: Mutex<State>,
    /// How many distinct ids have been delivered, for [`Receiver::wait_for`].
    delivered: watch::Sender<usize>,
}

struct State {
    mode: Mode,
    received: Vec<Received>,
    delivered: HashSet<String>,
}

/// One run of the server between being brought up and going down.
struct Serving {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// A receiver verifying with `secrets` (`whsec_…`), accepting every verified delivery, on a free port.
    pub async fn start(secrets: Vec<String>) -> Receiver {
        Receiver::start_with(Verifier::new(&secrets)).await
    }

    /// A receiver verifying with `verifier` (for a different timestamp tolerance).
    pub async fn start_with(verifier: Verifier) -> Receiver {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind a loopback port");
        let address = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            verifier: Mutex::new(verifier),
            state: Mutex::new(State { mode: Mode::Accept, received: Vec::new(), delivered: HashSet::new() }),
            delivered: watch::Sender::new(0),
        });
        let serving = serve(listener, shared.clone());
        Receiver { shared, address, serving: tokio::sync::Mutex::new(Some(serving)) }
    }

    /// The URL to register as the endpoint: `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}{HOOK_PATH}", self.address)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.state().mode
    }

    /// Answers as `mode` from now on. Going [`Mode::Down`] returns once the port is closed and every open
    /// connection dropped; any other mode from down re-binds the same port first.
    ///
    /// Flakiness: while down, the port is free, and another socket on this machine (a test binding port 0, an
    /// outgoing connection's ephemeral port) could take it; coming back up then fails after about a second of
    /// retries, with a panic that says so. The kernel hands out ports spread over a wide range, so it is rare.
    pub async fn set_mode(&self, mode: Mode) {
        let mut serving = self.serving.lock().await;
        self.shared.state().mode = mode;
        match (mode, serving.take()) {
            (Mode::Down, Some(running)) => {
                // The receiver's end of `stop` lives until the task ends, so sending cannot fail while it runs.
                let _ = running.stop.send(());
                let _ = running.task.await;
            }
            (Mode::Down, None) => {}
            (_, Some(running)) => *serving = Some(running),
            (_, None) => *serving = Some(serve(rebind(self.address).await, self.shared.clone())),
        }
    }

    /// Verifies with `secrets` from now on (to follow a rotation).
    pub fn set_secrets(&self, secrets: Vec<String>) {
        let tolerance = self.shared.verifier().tolerance_seconds;
        *self.shared.verifier() = Verifier { tolerance_seconds: tolerance, ..Verifier::new(&secrets) };
    }

    /// Every request seen, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// The ids answered 2xx with a valid signature.
    pub fn delivered_ids(&self) -> HashSet<String> {
        self.shared.state().delivered.clone()
    }

    /// Waits until at least `count` distinct ids have been delivered: `false` if `timeout` passed first.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let mut delivered = self.shared.delivered.subscribe();
        let reached = tokio::time::timeout(timeout, delivered.wait_for(|seen| *seen >= count)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// The requests that failed verification (should be none in every test).
    pub fn unverified(&self) -> Vec<Received> {
        self.shared.state().received.iter().filter(|received| !received.verified).cloned().collect()
    }

    /// Fails the test if any request failed verification, listing them.
    pub fn assert_all_verified(&self) {
        let unverified = self.unverified();
        assert!(unverified.is_empty(), "the receiver got {} unverified requests: {unverified:#?}", unverified.len());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Aborting the accept loop drops its listener and its set of connections, which aborts them too.
        if let Some(running) = self.serving.get_mut().take() {
            running.task.abort();
        }
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn verifier(&self) -> std::sync::MutexGuard<'_, Verifier> {
        self.verifier.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A listener on `address` with `SO_REUSEADDR`, so that the port can be bound again while connections closed
/// by the last run are still in TIME_WAIT.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn rebind(address: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..REBIND_TRIES {
        match bind(address) {
            Ok(listener) => return listener,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(REBIND_PAUSE).await;
    }
    panic!("the receiver could not bind {address} again (another socket took the port while it was down): {last:?}")
}

/// Starts the accept loop on `listener`.
fn serve(listener: TcpListener, shared: Arc<Shared>) -> Serving {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept(listener, shared, stopped));
    Serving { stop, task }
}

/// Accepts connections until `stop`, then closes the listener and drops every connection, answered or not.
async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors or a connection reset before it was accepted: pause, do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = shared.clone();
                let service = hyper::service::service_fn(move |request| answer(shared.clone(), request));
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    connections.shutdown().await;
}

/// Verifies and records one request, then answers as the mode says.
async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|collected| collected.to_bytes());
    let now = unix_now();
    let mut checked = match &body {
        Ok(_) if parts.method != Method::POST || parts.uri.path() != HOOK_PATH => {
            Err(format!("{} {} is not POST {HOOK_PATH}", parts.method, parts.uri.path()))
        }
        Ok(bytes) => shared.verifier().verify(&parts.headers, bytes, now),
        Err(error) => Err(format!("the body could not be read: {error}")),
    };
    let bytes = body.unwrap_or_default();
    let json = serde_json::from_slice::<Value>(&bytes);
    if checked.is_ok()
        && let Err(error) = &json
    {
        checked = Err(format!("the body is not JSON: {error}"));
    }
    let header_of = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let (mode, status) = {
        let mut state = shared.state();
        let mode = state.mode;
        let status = match (mode, &checked) {
            // A request that slipped in as the receiver went down gets no answer: its connection is about to close.
            (Mode::Hang | Mode::Down, _) => None,
            // A real receiver refuses what it cannot verify; the sender then retries, and the test fails anyway.
            (_, Err(_)) => Some(StatusCode::UNAUTHORIZED),
            (Mode::Accept, Ok(())) => Some(StatusCode::NO_CONTENT),
            (Mode::Status(code) | Mode::StatusWithRetryAfter(code, _) | Mode::StatusWithBody(code, _), Ok(())) => {
                Some(StatusCode::from_u16(code).expect("a scripted status is a valid one"))
            }
        };
        let webhook_id = header_of("webhook-id").to_owned();
        let answered = status.map_or(0, |status| status.as_u16());
        if checked.is_ok() && status.is_some_and(|status| status.is_success()) {
            state.delivered.insert(webhook_id.clone());
            shared.delivered.send_replace(state.delivered.len());
        }
        state.received.push(Received {
            webhook_id,
            timestamp: header_of("webhook-timestamp").parse().unwrap_or(0),
            signature: header_of("webhook-signature").to_owned(),
            body: json.unwrap_or(Value::Null),
            verified: checked.is_ok(),
            problem: checked.err(),
            answered,
        });
        (mode, status)
    };
    let Some(status) = status else {
        // Holds the connection until the client gives up or the receiver goes down.
        match std::future::pending::<Infallible>().await {}
    };
    let body = if let Mode::StatusWithBody(_, body) = mode { Bytes::from_static(body) } else { Bytes::new() };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Mode::StatusWithRetryAfter(_, seconds) = mode {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const VECTOR_TIMESTAMP: i64 = 1649367553;
    const VECTOR_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const VECTOR_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    /// A second secret (24 bytes of 0x01), for rotation and wrong-key cases.
    const OTHER_SECRET: &str = "whsec_AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";

    fn new_client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
    }

    /// A request signed with `secret` at the current time, ready to send.
    fn signed(client: &reqwest::Client, url: &str, secret: &str, id: &str, body: &str) -> reqwest::RequestBuilder {
        let timestamp = unix_now();
        client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(secret, id, timestamp, body.as_bytes()))
            .body(body.to_owned())
    }

    async fn post(client: &reqwest::Client, url: &str, secret: &str, id: &str, body: &str) -> reqwest::Response {
        signed(client, url, secret, id, body).send().await.expect("the receiver answers")
    }

    #[test]
    fn the_independent_signer_matches_the_published_vector() {
        assert_eq!(sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);
    }

    #[test]
    fn the_verifier_accepts_the_published_vector_at_its_time_only() {
        let verifier = Verifier::new(&[VECTOR_SECRET.to_owned()]);
        let timestamp = VECTOR_TIMESTAMP.to_string();
        let verify = |signature: &str, now: i64| {
            verifier.verify_parts(VECTOR_ID, &timestamp, signature, VECTOR_BODY.as_bytes(), now)
        };
        assert_eq!(verify(VECTOR_SIGNATURE, VECTOR_TIMESTAMP), Ok(()));
        assert_eq!(verify(VECTOR_SIGNATURE, VECTOR_TIMESTAMP + 300), Ok(()));
        // During a rotation the header carries two signatures; one good one suffices, and unknown versions are
        // skipped.
        assert_eq!(verify(&format!("v1,AAAA v2,xyz {VECTOR_SIGNATURE}"), VECTOR_TIMESTAMP), Ok(()));
        assert!(verify(VECTOR_SIGNATURE, VECTOR_TIMESTAMP + 301).expect_err("stale").contains("301 s"));
        assert!(verify(VECTOR_SIGNATURE, VECTOR_TIMESTAMP - 301).is_err(), "from the future");
        assert!(verify("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkx=", VECTOR_TIMESTAMP).is_err());
        assert!(verify("v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", VECTOR_TIMESTAMP).is_err());
        let body = verifier.verify_parts(VECTOR_ID, &timestamp, VECTOR_SIGNATURE, b"{}", VECTOR_TIMESTAMP);
        assert!(body.is_err(), "another body");
        let other = Verifier::new(&[OTHER_SECRET.to_owned()]);
        let wrong_key = other.verify_parts(VECTOR_ID, &timestamp, VECTOR_SIGNATURE, VECTOR_BODY.as_bytes(), 0);
        assert!(wrong_key.is_err(), "another key");
        let rotated = Verifier::new(&[OTHER_SECRET.to_owned(), VECTOR_SECRET.to_owned()]);
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(rotated.verify_parts(VECTOR_ID, &timestamp, VECTOR_SIGNATURE, body, VECTOR_TIMESTAMP), Ok(()));
        // A wide tolerance accepts the vector today, as a receiver with a slow clock would.
        let lenient = rotated.with_tolerance(Duration::from_secs(100 * 365 * 24 * 3600));
        assert_eq!(lenient.verify_parts(VECTOR_ID, &timestamp, VECTOR_SIGNATURE, body, unix_now()), Ok(()));
    }

    #[tokio::test]
    async fn a_fresh_signed_request_is_verified_and_a_wrongly_signed_one_is_not() {
        let receiver = Receiver::start(vec![VECTOR_SECRET.to_owned()]).await;
        let client = new_client();
        let url = receiver.url();
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/hook"), "{url}");

        let good = post(&client, &url, VECTOR_SECRET, "msg_good", r#"{"type":"ping"}"#).await;
        assert_eq!(good.status(), StatusCode::NO_CONTENT);
        assert!(receiver.wait_for(1, Duration::from_secs(1)).await);
        receiver.assert_all_verified();

        let bad = post(&client, &url, OTHER_SECRET, "msg_bad", r#"{"type":"ping"}"#).await;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        let unsigned = client.post(&url).body("{}").send().await.expect("answered");
        assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

        let received = receiver.received();
        assert_eq!(received.len(), 3);
        assert_eq!(received[0].webhook_id, "msg_good");
        assert_eq!(received[0].body, serde_json::json!({"type": "ping"}));
        assert!(received[0].verified && received[0].answered == 204);
        assert!(received[0].signature.starts_with("v1,") && !received[0].signature.contains(' '));
        assert!((received[0].timestamp - unix_now()).abs() <= 5);
        let unverified = receiver.unverified();
        assert_eq!(unverified.len(), 2);
        assert_eq!(unverified[0].webhook_id, "msg_bad");
        assert_eq!(unverified[0].answered, 401);
        assert!(unverified[0].problem.as_deref().is_some_and(|p| p.contains("matches")), "{unverified:?}");
        assert!(unverified[1].problem.as_deref().is_some_and(|p| p.contains("webhook-id is missing")));
        assert_eq!(receiver.delivered_ids(), HashSet::from(["msg_good".to_owned()]));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| receiver.assert_all_verified()));
        assert!(panicked.is_err(), "assert_all_verified fails on a wrongly signed request");

        // After a rotation the old secret's signatures no longer verify.
        receiver.set_secrets(vec![OTHER_SECRET.to_owned()]);
        let rotated = post(&client, &url, OTHER_SECRET, "msg_rotated", "{}").await;
        assert_eq!(rotated.status(), StatusCode::NO_CONTENT);
        let old = post(&client, &url, VECTOR_SECRET, "msg_old", "{}").await;
        assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_receiver_answers_as_scripted_and_goes_down_and_up_on_the_same_port() {
        let receiver = Receiver::start(vec![OTHER_SECRET.to_owned()]).await;
        let client = new_client();
        let url = receiver.url();
        let send = |id: &'static str| post(&client, &url, OTHER_SECRET, id, "{}");

        receiver.set_mode(Mode::Status(500)).await;
        assert_eq!(send("msg_1").await.status(), StatusCode::INTERNAL_SERVER_ERROR);
        receiver.set_mode(Mode::StatusWithRetryAfter(429, 7)).await;
        let limited = send("msg_1").await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
        receiver.set_mode(Mode::Status(410)).await;
        assert_eq!(send("msg_1").await.status(), StatusCode::GONE);
        assert!(receiver.delivered_ids().is_empty(), "no 2xx yet");
        assert!(!receiver.wait_for(1, Duration::from_millis(50)).await);

        receiver.set_mode(Mode::Hang).await;
        assert_eq!(receiver.mode(), Mode::Hang);
        let hung = client
            .post(&url)
            .timeout(Duration::from_millis(300))
            .header("webhook-id", "msg_hung")
            .send()
            .await
            .expect_err("no answer");
        assert!(hung.is_timeout(), "{hung:?}");
        // A second request hangs on a connection of its own and stays open while the receiver goes down.
        let pending = tokio::spawn(signed(&client, &url, OTHER_SECRET, "msg_2", "{}").send());
        tokio::time::sleep(Duration::from_millis(100)).await;

        receiver.set_mode(Mode::Down).await;
        let closed = pending.await.expect("the request task ends");
        assert!(closed.is_err(), "the hung request fails when its connection closes: {closed:?}");
        // A new client, so that the answer cannot come from a kept-alive connection: there is none to reuse.
        let refused = new_client().post(&url).body("{}").send().await.expect_err("nothing listens");
        assert!(refused.is_connect(), "{refused:?}");
        assert!(client.post(&url).body("{}").send().await.is_err(), "the old client's connections are closed too");

        receiver.set_mode(Mode::Accept).await;
        assert_eq!(send("msg_1").await.status(), StatusCode::NO_CONTENT);
        assert!(receiver.wait_for(1, Duration::from_secs(1)).await);
        assert_eq!(receiver.url(), url, "back on the same port");

        let answered: Vec<u16> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [500, 429, 410, 0, 0, 204]);
        assert_eq!(receiver.unverified().len(), 1, "the hung request carried no signature");
    }
}
