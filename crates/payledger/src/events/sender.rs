//! One delivery attempt of an event: a signed POST to an endpoint over HTTP or HTTPS, through the SSRF guard
//! (`guard.rs`), bounded in time and in what it reads back, judged into a [`Verdict`] the delivery worker
//! schedules by. The worker signs (`signature.rs`) and records; this module only talks to the endpoint.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use time::{OffsetDateTime, PrimitiveDateTime};

use super::guard::{GuardedResolver, OutboundNetworks, UrlError, check_endpoint_url};

/// The default limit on a whole attempt (connect, send, the answer's head and its first 4 KiB): the
/// Standard Webhooks guidance, and well under a worker's lease.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// The limit on establishing a connection: an endpoint that cannot accept one in this time is down, and
/// the retry schedule takes over sooner.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of an answer's body is read and kept for the delivery log: enough to show a receiver's error,
/// bounded so a runaway body holds neither memory nor a worker.
pub const MAX_RESPONSE_BYTES: usize = 4_096;

/// The longest wait a `Retry-After` header can ask for: a receiver must not park a delivery for weeks.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How long an idle kept-alive connection stays in the pool: deliveries to one endpoint come in bursts.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most idle connections kept per endpoint host, so many endpoints cannot pile up sockets.
const POOL_MAX_IDLE_PER_HOST: usize = 16;

/// The `User-Agent` of every attempt, so a receiver can tell payledger's requests in its logs.
const USER_AGENT: &str = concat!("payledger/", env!("CARGO_PKG_VERSION"));

/// An HTTP-date in its preferred form (RFC 9110 IMF-fixdate), as `Retry-After` carries it.
const IMF_FIXDATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

type GuardedClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Sends events: one pooled keep-alive client behind the SSRF guard. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Sender {
    client: GuardedClient,
    networks: Arc<OutboundNetworks>,
    timeout: Duration,
}

/// One attempt to send: what goes on the wire, prepared and signed by the caller.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    /// The endpoint's URL as registered (checked by `check_endpoint_url`).
    pub url: &'a str,
    /// The event's id (`evt_…`), the same across retries: the `webhook-id` header.
    pub message_id: &'a str,
    /// When this attempt is made, in unix seconds: the `webhook-timestamp` header.
    pub timestamp: i64,
    /// The event's JSON body.
    pub body: Bytes,
    /// The whole `webhook-signature` header value (`v1,<base64>`, space-separated during a rotation).
    pub signature: String,
}

/// What an attempt came to, for the delivery log and the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The endpoint's status code, when it answered.
    pub status: Option<u16>,
    /// How long the attempt took, connecting included.
    pub duration: Duration,
    /// The first [`MAX_RESPONSE_BYTES`] of the answer's body as text (lossy UTF-8, never cut inside a
    /// character, at most [`MAX_RESPONSE_BYTES`] bytes), when it answered.
    pub response: Option<String>,
    /// Why the attempt failed when the status alone does not say: no answer, a refused address, a redirect,
    /// a body cut off. Never contains the URL.
    pub error: Option<String>,
    /// What the worker does next.
    pub verdict: Verdict,
}

/// What the delivery worker does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx answer: the event is delivered.
    Delivered,
    /// 410 Gone: the receiver asks never to be sent to again; the endpoint is to be disabled.
    Gone,
    /// Anything else: try again on the schedule.
    Retry {
        /// How long the receiver asked to wait (`Retry-After` on 429 and 5xx), capped at [`MAX_RETRY_AFTER`].
        after: Option<Duration>,
    },
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("networks", &self.networks)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender that reaches only what `networks` permits and gives up on an attempt after `timeout`.
    /// Fails when the timeout is zero or the system's root certificates cannot be loaded.
    pub fn new(networks: OutboundNetworks, timeout: Duration) -> Result<Sender, String> {
        if timeout.is_zero() {
            return Err("the event delivery timeout must be longer than zero".to_owned());
        }
        let networks = Arc::new(networks);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(Arc::clone(&networks)));
        // The TLS layer wraps this connector, so it must let https URLs through to it.
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                crate::client_tls::config(true)
                    .map_err(|error| format!("configuring TLS for event delivery: {error}"))?,
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            // Without a timer the pool never evicts idle connections on its own.
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Sender { client, networks, timeout })
    }

    /// Makes one attempt: POSTs the event and judges the answer. Never fails: every failure is an
    /// [`Attempt`] with [`Verdict::Retry`] and an error.
    pub async fn send(&self, outbound: &Outbound<'_>) -> Attempt {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut attempt = match self.request(outbound) {
            Ok(request) => self.exchange(request, deadline).await,
            Err(error) => failed(error),
        };
        attempt.duration = started.elapsed();
        attempt
    }

    /// The HTTP request of an attempt. The stored URL is checked again: an address literal never reaches
    /// the resolver, so the guard must refuse it here, before any connection.
    fn request(&self, outbound: &Outbound<'_>) -> Result<Request<Full<Bytes>>, String> {
        let uri = check_endpoint_url(outbound.url, false, &self.networks).map_err(|error| match error {
            UrlError::AddressRefused(_) => format!("refused before connecting: {error}"),
            other => format!("the endpoint URL is not usable: {other}"),
        })?;
        let id = HeaderValue::from_str(outbound.message_id).map_err(|_| "the event id is not a header value")?;
        let signature =
            HeaderValue::from_str(&outbound.signature).map_err(|_| "the signature is not a header value")?;
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .header("webhook-id", id)
            .header("webhook-timestamp", outbound.timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(outbound.body.clone()))
            .map_err(|error| format!("building the request: {error}"))
    }

    /// Sends `request` and reads the answer's head and the start of its body, all before `deadline`.
    async fn exchange(&self, request: Request<Full<Bytes>>, deadline: tokio::time::Instant) -> Attempt {
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_elapsed) => {
                return failed(format!("the endpoint did not answer within {} ms", self.timeout.as_millis()));
            }
            Ok(Err(error)) => return failed(format!("sending failed: {}", crate::client_tls::error_chain(&error))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let after = retry_after(response.headers(), OffsetDateTime::now_utc());
        let prefix = read_prefix(response.into_body(), deadline).await;
        let (verdict, judged) = judge(status, after);
        let body_error = prefix.error.map(|error| match error {
            BodyError::Timeout => format!("the response body did not end within {} ms", self.timeout.as_millis()),
            BodyError::Read(reason) => format!("reading the response body: {reason}"),
        });
        Attempt {
            status: Some(status.as_u16()),
            duration: Duration::ZERO,
            response: Some(response_text(&prefix.bytes, prefix.truncated)),
            error: judged.or(body_error),
            verdict,
        }
    }
}

/// An attempt that got no answer.
fn failed(error: String) -> Attempt {
    Attempt {
        status: None,
        duration: Duration::ZERO,
        response: None,
        error: Some(error),
        verdict: Verdict::Retry { after: None },
    }
}

/// The verdict on an answer's status, and an error when the status needs explaining.
fn judge(status: StatusCode, after: Option<Duration>) -> (Verdict, Option<String>) {
    if status.is_success() {
        (Verdict::Delivered, None)
    } else if status.is_redirection() {
        // Following would send the signed event somewhere the administrator never registered.
        let error = format!("the endpoint answered {}; redirects are not followed", status.as_u16());
        (Verdict::Retry { after: None }, Some(error))
    } else if status == StatusCode::GONE {
        (Verdict::Gone, None)
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        (Verdict::Retry { after }, None)
    } else {
        (Verdict::Retry { after: None }, None)
    }
}

/// The wait a `Retry-After` header asks for at `now`: delay-seconds or an IMF-fixdate, capped at
/// [`MAX_RETRY_AFTER`]; a date already past asks for no wait. Anything unreadable is ignored (`None`), and
/// the schedule decides.
fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Only digits, so a parse failure is an overflow: a wait longer than the cap.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = PrimitiveDateTime::parse(value, IMF_FIXDATE).ok()?.assume_utc();
    let seconds = u64::try_from((date - now).whole_seconds()).unwrap_or(0);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The start of an answer's body.
struct Prefix {
    bytes: Vec<u8>,
    /// Whether the body went on past what was kept.
    truncated: bool,
    error: Option<BodyError>,
}

/// Why reading a body stopped early.
enum BodyError {
    Timeout,
    Read(String),
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of `body` before `deadline`, then stops: the rest is never read,
/// and dropping the body closes that connection rather than draining it.
async fn read_prefix(mut body: Incoming, deadline: tokio::time::Instant) -> Prefix {
    let mut prefix = Prefix { bytes: Vec::new(), truncated: false, error: None };
    while prefix.bytes.len() < MAX_RESPONSE_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => {
                prefix.error = Some(BodyError::Timeout);
                return prefix;
            }
            Ok(None) => return prefix,
            Ok(Some(Err(error))) => {
                prefix.error = Some(BodyError::Read(error.to_string()));
                return prefix;
            }
            Ok(Some(Ok(frame))) => {
                // Trailers carry no body bytes.
                if let Ok(data) = frame.into_data() {
                    let room = MAX_RESPONSE_BYTES - prefix.bytes.len();
                    prefix.truncated = data.len() > room;
                    prefix.bytes.extend_from_slice(data.get(..room).unwrap_or(&data));
                }
            }
        }
    }
    // Exactly full: whether more follows is not worth another read; the cut is treated as one.
    prefix.truncated = true;
    prefix
}

/// The kept bytes as text: a character the cut split is dropped rather than shown as U+FFFD, and the text
/// stays within [`MAX_RESPONSE_BYTES`] even when invalid bytes become three-byte replacement characters.
fn response_text(bytes: &[u8], truncated: bool) -> String {
    let whole = if truncated { without_split_character(bytes) } else { bytes };
    let mut text = String::from_utf8_lossy(whole).into_owned();
    if text.len() > MAX_RESPONSE_BYTES {
        let mut end = MAX_RESPONSE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `bytes` without a UTF-8 character that starts in its last three bytes but does not end in them.
fn without_split_character(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        let Some(&byte) = bytes.get(start) else { break };
        // A continuation byte: the character starts further back.
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let width = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if width > back { bytes.get(..start).unwrap_or(bytes) } else { bytes };
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;

    /// What a test receiver does with each request.
    #[derive(Clone)]
    enum Answer {
        /// Writes these bytes (a whole HTTP/1.1 response) and closes.
        Close(Vec<u8>),
        /// Writes these bytes (nothing, or a response's start) and then keeps the connection open, silent.
        Hang(Vec<u8>),
    }

    /// A real HTTP receiver on 127.0.0.1, written on bare TCP so the test sees exactly what arrives.
    struct Receiver {
        address: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: mpsc::UnboundedReceiver<String>,
    }

    impl Receiver {
        async fn start(answer: Answer) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let (sent, requests) = mpsc::unbounded_channel();
            let counter = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(socket, answer.clone(), sent.clone()));
                }
            });
            Receiver { address, accepted, requests }
        }

        fn url(&self, host: &str, path: &str) -> String {
            format!("http://{host}:{}{path}", self.address.port())
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    async fn serve(mut socket: TcpStream, answer: Answer, sent: mpsc::UnboundedSender<String>) {
        let request = read_request(&mut socket).await;
        let _ = sent.send(request);
        match answer {
            Answer::Close(bytes) => {
                let _ = socket.write_all(&bytes).await;
                let _ = socket.shutdown().await;
            }
            Answer::Hang(bytes) => {
                let _ = socket.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }

    /// The request's head and body as text (the sender always sends a `content-length`).
    async fn read_request(socket: &mut TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&bytes).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&bytes).into_owned();
                }
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&bytes).into_owned(),
                Ok(read) => bytes.extend_from_slice(&chunk[..read]),
            }
        }
    }

    fn response(head: &str, body: &[u8]) -> Answer {
        let mut bytes = format!("HTTP/1.1 {head}\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        Answer::Close(bytes)
    }

    fn sender(allowed: &str, timeout: Duration) -> Sender {
        Sender::new(OutboundNetworks::parse(allowed).unwrap(), timeout).unwrap()
    }

    fn loopback_sender() -> Sender {
        sender("127.0.0.0/8", Duration::from_secs(5))
    }

    fn event(url: &str) -> Outbound<'_> {
        Outbound {
            url,
            message_id: "evt_2mXbYp0Q",
            timestamp: 1_700_000_000,
            body: Bytes::from_static(br#"{"type":"ping","timestamp":"2023-11-14T22:13:20Z","data":{}}"#),
            signature: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,c2lnbmF0dXJl".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_2xx_answer_delivers_with_the_standard_webhooks_headers() {
        let mut receiver = Receiver::start(response("204 No Content", b"")).await;
        let url = receiver.url("127.0.0.1", "/hooks/in?source=payledger");
        let attempt = loopback_sender().send(&event(&url)).await;
        assert_eq!(attempt.verdict, Verdict::Delivered, "{attempt:?}");
        assert_eq!((attempt.status, attempt.error, attempt.response.as_deref()), (Some(204), None, Some("")));

        let request = receiver.requests.recv().await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let head = head.to_lowercase();
        assert!(head.starts_with("post /hooks/in?source=payledger http/1.1\r\n"), "{head}");
        for expected in [
            "content-type: application/json".to_owned(),
            format!("user-agent: payledger/{}", env!("CARGO_PKG_VERSION")),
            "webhook-id: evt_2mxbyp0q".to_owned(),
            "webhook-timestamp: 1700000000".to_owned(),
            "webhook-signature: v1,k5ozfzn95z9uvu1esfqmfvnqhnkz2pj9o9ndn/h/pi4= v1,c2lnbmf0dxjl".to_owned(),
        ] {
            assert!(head.lines().any(|line| line == expected), "{expected} missing from\n{head}");
        }
        assert_eq!(body.as_bytes(), &event(&url).body[..]);
    }

    #[tokio::test]
    async fn a_500_with_retry_after_is_retried_after_that_wait() {
        let receiver = Receiver::start(response("500 Internal Server Error\r\nretry-after: 7", b"down")).await;
        let attempt = loopback_sender().send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!(attempt.verdict, Verdict::Retry { after: Some(Duration::from_secs(7)) });
        assert_eq!((attempt.status, attempt.response.as_deref()), (Some(500), Some("down")));
    }

    #[tokio::test]
    async fn a_410_means_the_endpoint_is_gone() {
        let receiver = Receiver::start(response("410 Gone", b"")).await;
        let attempt = loopback_sender().send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Gone, Some(410)));
    }

    #[tokio::test]
    async fn other_client_errors_are_retried_on_the_schedule() {
        let receiver = Receiver::start(response("400 Bad Request\r\nretry-after: 7", b"no")).await;
        let attempt = loopback_sender().send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, Some(400)));
    }

    #[tokio::test]
    async fn a_redirect_is_a_failure_and_is_not_followed() {
        let elsewhere = Receiver::start(response("200 OK", b"")).await;
        let location = elsewhere.url("127.0.0.1", "/");
        let receiver = Receiver::start(response(&format!("302 Found\r\nlocation: {location}"), b"")).await;
        let attempt = loopback_sender().send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, Some(302)));
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("redirects are not followed"), "{error}");
        assert_eq!(elsewhere.accepted(), 0);
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let receiver = Receiver::start(Answer::Hang(Vec::new())).await;
        let timeout = Duration::from_millis(300);
        let attempt = sender("127.0.0.0/8", timeout).send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, None));
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("did not answer within 300 ms"), "{error}");
        assert!(attempt.duration >= timeout && attempt.duration < Duration::from_secs(3), "{:?}", attempt.duration);
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_off_by_the_same_timeout() {
        // The head promises a body that never comes: the attempt still ends at the deadline.
        let answer = Answer::Hang(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100000\r\n\r\nslow".to_vec());
        let receiver = Receiver::start(answer).await;
        let timeout = Duration::from_millis(300);
        let attempt = sender("127.0.0.0/8", timeout).send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert!(attempt.duration < Duration::from_secs(3), "{:?}", attempt.duration);
        assert_eq!(attempt.status, Some(503));
        assert_eq!(attempt.response.as_deref(), Some("slow"));
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("did not end within 300 ms"), "{error}");
    }

    #[tokio::test]
    async fn only_the_first_4096_bytes_of_a_huge_body_are_kept() {
        let body: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let receiver = Receiver::start(response("200 OK", &body)).await;
        let attempt = loopback_sender().send(&event(&receiver.url("127.0.0.1", "/"))).await;
        assert_eq!(attempt.verdict, Verdict::Delivered);
        let kept = attempt.response.unwrap_or_default();
        assert_eq!(kept.as_bytes(), &body[..MAX_RESPONSE_BYTES]);
    }

    #[tokio::test]
    async fn an_address_literal_outside_the_allowed_networks_is_never_connected_to() {
        let receiver = Receiver::start(response("200 OK", b"")).await;
        let refusing = sender("", Duration::from_secs(5));
        for host in ["127.0.0.1", "[::ffff:127.0.0.1]"] {
            let attempt = refusing.send(&event(&receiver.url(host, "/hook?token=s3cret"))).await;
            assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, None));
            let error = attempt.error.unwrap_or_default();
            assert!(error.starts_with("refused before connecting") && error.contains("127.0.0.1"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert_eq!(receiver.accepted(), 0);
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_its_network_is_allowed() {
        let receiver = Receiver::start(response("200 OK", b"")).await;
        let url = receiver.url("localhost", "/hook?token=s3cret");
        let attempt = sender("", Duration::from_secs(5)).send(&event(&url)).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, None));
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("localhost resolves only to addresses outside the allowed networks: "), "{error}");
        assert!(error.contains("127.0.0.1") && !error.contains("s3cret"), "{error}");
        assert_eq!(receiver.accepted(), 0);

        let attempt = loopback_sender().send(&event(&url)).await;
        assert_eq!(attempt.verdict, Verdict::Delivered, "{attempt:?}");
        assert_eq!(receiver.accepted(), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_its_error_hides_the_query() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/hook?token=s3cret");
        let attempt = loopback_sender().send(&event(&url)).await;
        assert_eq!((attempt.verdict, attempt.status, attempt.response), (Verdict::Retry { after: None }, None, None));
        let error = attempt.error.unwrap_or_default();
        assert!(error.starts_with("sending failed: ") && !error.contains("s3cret"), "{error}");
    }

    #[tokio::test]
    async fn an_https_endpoint_that_does_not_speak_tls_is_retried() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let attempt = loopback_sender().send(&event(&format!("https://127.0.0.1:{port}/hook"))).await;
        assert_eq!((attempt.verdict, attempt.status), (Verdict::Retry { after: None }, None));
        let error = attempt.error.unwrap_or_default();
        assert!(error.starts_with("sending failed: "), "{error}");
    }

    #[tokio::test]
    async fn an_unusable_stored_url_fails_without_naming_it() {
        let attempt = loopback_sender().send(&event("http://user:s3cret@127.0.0.1:1/")).await;
        let error = attempt.error.unwrap_or_default();
        assert!(error.contains("user name or password") && !error.contains("s3cret"), "{error}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // Sun, 06 Nov 1994 08:49:37 GMT
        let after = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(after("7"), Some(Duration::from_secs(7)));
        assert_eq!(after(" 0 "), Some(Duration::ZERO));
        assert_eq!(after("86401"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("Sun, 06 Nov 1994 08:51:37 GMT"), Some(Duration::from_secs(120)));
        assert_eq!(after("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(after("Sun, 20 Nov 1994 08:49:37 GMT"), Some(MAX_RETRY_AFTER));
        for unreadable in ["-5", "1.5", "soon", "Sunday, 06-Nov-94 08:49:37 GMT", ""] {
            assert_eq!(after(unreadable), None, "{unreadable}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_are_judged_as_the_issue_says() {
        let seven = Some(Duration::from_secs(7));
        let verdict = |code: u16| judge(StatusCode::from_u16(code).unwrap(), seven).0;
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(299), Verdict::Delivered);
        assert_eq!(verdict(301), Verdict::Retry { after: None });
        assert_eq!(verdict(410), Verdict::Gone);
        assert_eq!(verdict(429), Verdict::Retry { after: seven });
        assert_eq!(verdict(503), Verdict::Retry { after: seven });
        assert_eq!(verdict(404), Verdict::Retry { after: None });
        assert_eq!(verdict(408), Verdict::Retry { after: None });
    }

    #[test]
    fn kept_text_never_ends_inside_a_character() {
        let mut bytes = vec![b'a'; MAX_RESPONSE_BYTES - 1];
        bytes.push(0xc3); // the first byte of "é", whose second byte was cut
        assert_eq!(response_text(&bytes, true), "a".repeat(MAX_RESPONSE_BYTES - 1));
        assert_eq!(response_text("ab€".as_bytes(), true), "ab€");
        assert_eq!(response_text(&"ab€".as_bytes()[..4], true), "ab");
        assert_eq!(response_text(&[b'a', 0xff], false), "a\u{fffd}");
        let binary = vec![0xff; MAX_RESPONSE_BYTES];
        let text = response_text(&binary, true);
        assert!(text.len() <= MAX_RESPONSE_BYTES && text.chars().all(|c| c == '\u{fffd}'), "{}", text.len());
    }
}
