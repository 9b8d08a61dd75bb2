//! The first thing every request passes: who sent it (the client behind trusted proxies, `crate::origin`), the
//! id it is known by (`X-Request-Id`, echoed in the answer), a log span that every line of the request carries,
//! and one access line at `info` when it is answered.
//!
//! The access line names the route's template (`/api/v1/payouts/{id}/`), never the path's values, the query,
//! a header or a body: no token, password, CSRF token or card number can reach the log through it.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::AppState;
use crate::origin::{RequestId, RequestOrigin};

/// The header a request's id travels in, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client of a request, as the handlers see it (an extension every request gets here).
#[derive(Debug, Clone)]
pub struct Client {
    /// The request's id and the client's address.
    pub origin: RequestOrigin,
    /// Whether the client reached the first trusted proxy over TLS (so cookies must be `Secure`).
    pub https: bool,
}

impl Client {
    /// The client's address, if the request came over TCP.
    pub fn address(&self) -> Option<IpAddr> {
        self.origin.client
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    /// The client [`observe`] found; a request that did not pass it (a router built without it, in a unit
    /// test) is its TCP peer, without TLS.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Self::Rejection> {
        Ok(Client::of(&parts.extensions))
    }
}

impl Client {
    /// The client [`observe`] found in a request's extensions; a request that did not pass it (a router built
    /// without it, in a unit test) is its TCP peer, without TLS.
    pub fn of(extensions: &Extensions) -> Client {
        match extensions.get::<Client>() {
            Some(client) => client.clone(),
            None => {
                Client { origin: RequestOrigin { id: RequestId::generate(), client: peer(extensions) }, https: false }
            }
        }
    }
}

/// The TCP peer of a request, as the listener recorded it.
fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
}

/// Records the signed-in user on the request's span, so the access line (and every later line) names them.
pub fn record_user(username: &str) {
    tracing::Span::current().record("user", username);
}

/// The middleware: resolves the client, gives the request its id, runs it inside its span and the origin's
/// scope, then writes the access line and echoes the id.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (client, https, id) = match peer(request.extensions()) {
        Some(peer) => {
            warn_of_an_unlisted_proxy(&state.trusted_proxies, peer, request.headers());
            let forwarded = state.trusted_proxies.resolve(peer, request.headers());
            let id = forwarded.request_id.map_or_else(RequestId::generate, RequestId::from_proxy);
            (Some(forwarded.client), forwarded.https, id)
        }
        None => (None, false, RequestId::generate()),
    };
    let origin = RequestOrigin { id, client };
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    // At ERROR level so that whatever the filter lets through (a `warn` line, say) still carries the id; the
    // span's level only decides when it exists, not what is logged.
    let span = tracing::error_span!("request", id = %origin.id, user = tracing::field::Empty);
    request.extensions_mut().insert(Client { origin: origin.clone(), https });
    let header = HeaderValue::from_str(origin.id.as_str()).ok();
    let mut response = origin.scope(next.run(request)).instrument(span.clone()).await;
    if let Some(header) = header {
        response.headers_mut().insert(REQUEST_ID.clone(), header);
    }
    responses_counter(response.status().as_u16()).increment(1);
    let _entered = span.enter();
    tracing::info!(
        target: "payledger::access",
        method = %method,
        route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str),
        status = response.status().as_u16(),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        client = client.map(tracing::field::display),
        "request"
    );
    response
}

/// Says once per process that forwarded headers arrive from a peer that is not a trusted proxy: behind a proxy
/// left out of `PAYLEDGER_TRUSTED_PROXIES`, every client shares its address (one rate limit for all) and the
/// console's cookies lose `Secure`. (A client may send them itself too: hence once, and a warning only.)
fn warn_of_an_unlisted_proxy(proxies: &crate::origin::TrustedProxies, peer: IpAddr, headers: &axum::http::HeaderMap) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.load(std::sync::atomic::Ordering::Relaxed)
        || !(headers.contains_key("x-forwarded-for") || headers.contains_key("x-forwarded-proto"))
        || proxies.trusts(peer)
    {
        return;
    }
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "a request carried X-Forwarded-For or X-Forwarded-Proto from a peer not in PAYLEDGER_TRUSTED_PROXIES: \
             the headers are ignored; if this peer is your reverse proxy, list it (said once)"
        );
    }
}

/// The `status` labels of `payledger_http_responses_total`: the code for the ones an operator watches, else
/// its class, so the series stay few.
const STATUS_LABELS: [&str; 17] = [
    "200", "201", "400", "401", "403", "404", "409", "413", "422", "429", "500", "503", "1xx", "2xx", "3xx", "4xx",
    "5xx",
];

/// The counter of answers with `status`. Registered once per label, not looked up by name per request (the
/// recorder is installed before the first request: `launch` builds the state with it).
fn responses_counter(status: u16) -> &'static metrics::Counter {
    static COUNTERS: std::sync::OnceLock<Vec<metrics::Counter>> = std::sync::OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        STATUS_LABELS
            .iter()
            .map(|label| metrics::counter!("payledger_http_responses_total", "status" => *label))
            .collect()
    });
    let index = match status {
        200 => 0,
        201 => 1,
        400 => 2,
        401 => 3,
        403 => 4,
        404 => 5,
        409 => 6,
        413 => 7,
        422 => 8,
        429 => 9,
        500 => 10,
        503 => 11,
        _ => 11 + usize::from(status / 100).clamp(1, 5),
    };
    &counters[index]
}
