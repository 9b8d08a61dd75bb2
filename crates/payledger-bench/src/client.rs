//! One keep-alive HTTP/1.1 connection per client, made directly with hyper's connection API.
//!
//! The bench wants exactly `--connections` sockets and one request in flight on each, so it drives
//! `hyper::client::conn::http1` itself instead of going through a pooling client whose pool would decide
//! how many sockets exist. A connection that fails is dropped and the next request dials a new one.
//!
//! Every request of every client goes through [`Client::send`], the one place that adds the
//! `Authorization` header (when the bench has logged in, see [`crate::auth`]) and that notices 401 and 403
//! answers, so no scenario deals with authentication itself.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The header that makes a payledger `POST` safe to resend: the same key and body replay the first answer.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How many characters of a refused request's answer the report quotes.
const REFUSAL_BODY_CHARS: usize = 200;

/// Where the server is: its socket address, the `Host` header to send and any path prefix from `--url`; and,
/// shared by every clone, the `Authorization` value requests carry and the 401/403 answers they got.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    base_path: String,
    auth: Arc<AuthState>,
}

/// What all clients of one target share about authentication.
#[derive(Default)]
struct AuthState {
    /// The `Authorization` value every request carries; `None` sends none. Replaced when a token is renewed.
    header: RwLock<Option<HeaderValue>>,
    /// 401 answers, to any request.
    unauthorized: AtomicU64,
    /// 403 answers, to any request.
    forbidden: AtomicU64,
    /// The first 401 or 403: the request and what the server said.
    first: OnceLock<String>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the header itself: it is a credential.
        let authorized = self.header.read().unwrap_or_else(PoisonError::into_inner).is_some();
        f.debug_struct("AuthState")
            .field("authorized", &authorized)
            .field("unauthorized", &self.unauthorized.load(Ordering::Relaxed))
            .field("forbidden", &self.forbidden.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The 401 and 403 answers a target's clients got: requests the server refused to authenticate or authorize.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// 401 Unauthorized: no, a malformed, a wrong or an expired credential.
    pub unauthorized: u64,
    /// 403 Forbidden: the user's role is too low for the request.
    pub forbidden: u64,
    /// The first of them: method, path, status and the start of the answer.
    pub first: Option<String>,
}

impl Refusals {
    /// 401s and 403s together.
    pub fn total(&self) -> u64 {
        self.unauthorized + self.forbidden
    }
}

impl Target {
    /// Parses an `http://host[:port][/prefix]` URL and resolves the host once, up front.
    ///
    /// Resolving once keeps DNS out of the measured reconnect path; TLS is deliberately unsupported.
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("invalid --url {url:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--url scheme {other:?} is not supported: only plain http"),
            None => bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8000"),
        }
        let authority = uri.authority().with_context(|| format!("--url {url:?} has no host"))?;
        // Uri keeps IPv6 literals bracketed, which the resolver does not accept.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolved to no address"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            auth: Arc::default(),
        })
    }

    /// The resolved socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes every request of every client of this target (and of its clones, past and future) carry
    /// `Authorization: value` from now on.
    pub fn set_authorization(&self, mut value: HeaderValue) {
        value.set_sensitive(true);
        *self.auth.header.write().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    /// The `Authorization` value requests carry now, if any.
    fn authorization(&self) -> Option<HeaderValue> {
        self.auth.header.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The 401 and 403 answers this target's clients have got so far.
    pub fn refusals(&self) -> Refusals {
        Refusals {
            unauthorized: self.auth.unauthorized.load(Ordering::Relaxed),
            forbidden: self.auth.forbidden.load(Ordering::Relaxed),
            first: self.auth.first.get().cloned(),
        }
    }

    /// Counts `response` if it refuses the request's credentials (401) or their role (403).
    fn note_refusal(&self, method: &Method, path: &str, response: &Response) {
        let counter = match response.status {
            StatusCode::UNAUTHORIZED => &self.auth.unauthorized,
            StatusCode::FORBIDDEN => &self.auth.forbidden,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.auth.first.get().is_none() {
            let said: String = String::from_utf8_lossy(&response.body).chars().take(REFUSAL_BODY_CHARS).collect();
            let _ = self.auth.first.set(format!("{method} {path}: HTTP {}: {said}", response.status));
        }
    }
}

/// A hint for an error about an answer with `status`, saying what a 401 or 403 means for the bench.
pub fn auth_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => {
            " (authentication failed: pass --username and --password, or check them; an expired token means the \
             run outlived it)"
        }
        StatusCode::FORBIDDEN => " (the --username's role is too low: the bench needs an operator, or an admin)",
        _ => "",
    }
}

/// Why a request got no HTTP response.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made, so the request was certainly never sent.
    Connect(anyhow::Error),
    /// The connection broke while the request was under way: the server may or may not have acted on it.
    Transport(anyhow::Error),
    /// No complete response within the timeout: as with [`Failure::Transport`], the outcome is unknown.
    Timeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e:#}"),
            Failure::Transport(e) => write!(f, "connection failed: {e:#}"),
            Failure::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Failure {}

/// An HTTP response with its body read in full.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// A live connection: the request half and the task that drives the socket.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A timed-out exchange can leave the driver waiting on the server forever; closing the socket is
        // the point of dropping the connection.
        self.driver.abort();
    }
}

/// A client owning at most one connection, redialled on demand.
pub struct Client {
    target: Target,
    timeout: Duration,
    conn: Option<Connection>,
    connects: u64,
}

impl Client {
    /// A client that has not connected yet; `timeout` bounds each connect and each request/response.
    pub fn new(target: Target, timeout: Duration) -> Client {
        Client { target, timeout, conn: None, connects: 0 }
    }

    /// How many connections this client has opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Makes sure a usable connection exists, dialling one if needed.
    ///
    /// Callers use this before committing to a request so that an unreachable server is told apart from
    /// a request whose fate is unknown.
    pub async fn ensure_connected(&mut self) -> Result<(), Failure> {
        if let Some(conn) = &mut self.conn {
            // The server may have closed an idle keep-alive connection; `ready` notices that without sending.
            let alive = tokio::time::timeout(self.timeout, conn.sender.ready()).await;
            if matches!(alive, Ok(Ok(()))) {
                return Ok(());
            }
            self.conn = None;
        }
        let conn = tokio::time::timeout(self.timeout, dial(self.target.addr))
            .await
            .map_err(|_| Failure::Connect(anyhow::anyhow!("connect to {} timed out", self.target.addr)))?
            .map_err(Failure::Connect)?;
        self.connects += 1;
        self.conn = Some(conn);
        Ok(())
    }

    /// Sends a JSON `POST` to `path` (below the URL's prefix) and reads the whole response.
    pub async fn post_json(&mut self, path: &str, body: Bytes) -> Result<Response, Failure> {
        self.send(Method::POST, path, Some(body), None).await
    }

    /// Like [`Client::post_json`], with an `Idempotency-Key` header, so a resend cannot be applied twice.
    pub async fn post_json_idempotent(
        &mut self,
        path: &str,
        body: Bytes,
        idempotency_key: HeaderValue,
    ) -> Result<Response, Failure> {
        self.send(Method::POST, path, Some(body), Some(idempotency_key)).await
    }

    /// Sends a `GET` to `path` (below the URL's prefix) and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<Response, Failure> {
        self.send(Method::GET, path, None, None).await
    }

    /// Sends a `DELETE` to `path` (below the URL's prefix) and reads the whole response.
    pub async fn delete(&mut self, path: &str) -> Result<Response, Failure> {
        self.send(Method::DELETE, path, None, None).await
    }

    /// Sends one request, with the target's `Authorization` value if it has one, and reads the whole answer;
    /// a 401 or 403 is counted in the target's [`Refusals`].
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<HeaderValue>,
    ) -> Result<Response, Failure> {
        self.ensure_connected().await?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.target.base_path))
            .header(HOST, self.target.host.clone());
        if let Some(authorization) = self.target.authorization() {
            request = request.header(AUTHORIZATION, authorization);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Failure::Connect(anyhow::Error::new(e).context("building the request")))?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Connect(anyhow::anyhow!("no connection")));
        };
        let exchange = async {
            let response = conn.sender.send_request(request).await?;
            let status = response.status();
            // Reading the body to the end is what lets the connection carry the next request.
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Response { status, body })
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        match outcome {
            Ok(Ok(response)) => {
                self.target.note_refusal(&method, path, &response);
                Ok(response)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(Failure::Transport(e.into()))
            }
            Err(_) => {
                // The response may still arrive later on this socket, so it cannot carry another request.
                self.conn = None;
                Err(Failure::Timeout)
            }
        }
    }
}

/// Opens a TCP connection with Nagle off and performs the HTTP/1.1 handshake.
async fn dial(addr: SocketAddr) -> anyhow::Result<Connection> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    // Requests are small and latency is what we measure: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        // A connection error also fails the pending request, which is where it is counted and handled.
        let _ = connection.await;
    });
    Ok(Connection { sender, driver })
}
