//! The HTTP gateway's client: one signed POST per call over HTTP or HTTPS, with TLS, timeouts and a bounded
//! answer. What goes on the wire is in `wire.rs`.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use super::wire::{IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, interpret, wire_body};
use super::{GatewayConfigError, GatewayError, GatewayFuture, GatewayOutcome, GatewayRequest, PayoutGateway};
use crate::redact::redact_url;

/// The default limit on a whole HTTP gateway call. Payment APIs can take several seconds; a worker's lease
/// must stay well above this so a slow call is not taken over by another worker mid-flight.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The default limit on establishing the connection: a gateway that cannot even accept a connection in
/// this time is down, and failing fast lets the backoff schedule take over.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a response body we read: a gateway's answer is a few hundred bytes, and a runaway body
/// must not hold a worker or its memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

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
            .with_tls_config(crate::client_tls::config(https).map_err(GatewayConfigError::Tls)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpGateway { client, url: uri, secret: secret.to_owned(), timeout })
    }

    /// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (unix seconds).
    fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        crate::webhook::signature::sign(&self.secret, timestamp, body)
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
            let response = self.client.request(http_request).await.map_err(|error| {
                GatewayError::Transient(format!("gateway request failed: {}", crate::client_tls::error_chain(&error)))
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

/// Whether `host` is this machine: plain http to it never crosses the network, so it is not warned about.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

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
