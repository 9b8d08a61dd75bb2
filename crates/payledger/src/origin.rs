//! Where a request came from and the id it is known by, for the rate limits, the webhook's allowed networks,
//! the access log and the audit log.
//!
//! Behind a reverse proxy every TCP peer is the proxy. The proxies named in `PAYLEDGER_TRUSTED_PROXIES` are
//! believed about the client: the client is the rightmost address of `X-Forwarded-For` that is not itself a
//! trusted proxy (each proxy appends the address it received the request from, so everything left of the first
//! untrusted hop was written by whoever sent it and proves nothing). Without the setting, or from a peer outside
//! it, the forwarded headers are ignored: nobody can choose their own address, scheme or request id.
//!
//! A request's [`RequestOrigin`] is also kept in a task-local for the duration of its handler, so an audit row
//! written anywhere below the handler, and a command queued for the ledger engine, carry it without every
//! signature in between passing it along.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use rand::TryRngCore;

use crate::networks::Network;

/// The longest request id accepted from a proxy.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The proxies whose forwarded headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

/// What a request says about its client, once the forwarded headers of trusted proxies are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded<'a> {
    /// The client's address (the TCP peer's when it is not a trusted proxy).
    pub client: IpAddr,
    /// Whether the client reached the first proxy over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The request id the proxy gave (`X-Request-Id`), when it is one a log line can carry.
    pub request_id: Option<&'a str>,
}

impl TrustedProxies {
    /// The proxies in `networks` (CIDRs or single addresses); an empty list trusts none.
    pub fn new(networks: Vec<Network>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether a request from `peer` has its forwarded headers believed.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(address))
    }

    /// The client of a request whose TCP peer is `peer`.
    pub fn resolve<'a>(&self, peer: IpAddr, headers: &'a HeaderMap) -> Forwarded<'a> {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return Forwarded { client: peer, https: false, request_id: None };
        }
        Forwarded {
            client: self.client_from(peer, headers),
            https: forwarded_https(headers),
            // The last one, as the nearest proxy's: a proxy that appends instead of replacing leaves the client's
            // own first.
            request_id: headers
                .get_all("x-request-id")
                .iter()
                .next_back()
                .and_then(|value| value.to_str().ok())
                .filter(|id| is_request_id(id)),
        }
    }

    /// Walks `X-Forwarded-For` from the right past trusted proxies. An entry that is not an address ends the
    /// walk at the hop that wrote it (the last address believed), as does the list's end. Entries are read
    /// from bytes: a proxy joins what the client sent (any bytes) and the address it appends into one value,
    /// and that address must not be lost with the rest of the value.
    fn client_from(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        // Several headers are one list in order (RFC 9110 §5.3).
        let values: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|value| value.as_bytes()).collect();
        for entry in values.iter().rev().flat_map(|value| value.rsplit(|byte| *byte == b',')) {
            let Some(address) = std::str::from_utf8(entry).ok().and_then(parse_hop) else { return client };
            client = address;
            if !self.trusts(address) {
                return address;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`192.0.2.1:5000`, `[2001:db8::1]:443`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|socket| canonical(socket.ip()))
}

/// An IPv4 address seen in its IPv6-mapped form (a dual-stack listener's peers) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the nearest proxy says the client used TLS. A chain of proxies that each append gives a list; the
/// rightmost entry is the trusted peer's own.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .next_back()
        .and_then(|value| value.rsplit(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A request id a log line and the audit log can carry verbatim: 1 to 128 of `A-Z a-z 0-9 - _ . : /`.
fn is_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A request's id: the trusted proxy's, or made here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new id, unique to this process's requests and, with overwhelming likelihood, across processes: 64
    /// random bits chosen at start-up, then a counter (32 hex digits, as nginx's `$request_id`).
    pub fn generate() -> RequestId {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // Without the OS's randomness, the time still separates processes enough for a log's id.
            match rand::rngs::OsRng.try_fill_bytes(&mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                Err(_) => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64),
            }
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        // By hand rather than `format!`: this runs for every request.
        let mut text = [0u8; 32];
        for (index, digit) in text.iter_mut().enumerate() {
            let (word, shift) = if index < 16 { (prefix, 60 - 4 * index) } else { (count, 60 - 4 * (index - 16)) };
            *digit = b"0123456789abcdef"[((word >> shift) & 0xf) as usize];
        }
        RequestId(String::from_utf8_lossy(&text).into())
    }

    /// The id a trusted proxy sent, already checked by [`TrustedProxies::resolve`].
    pub fn from_proxy(id: &str) -> RequestId {
        RequestId(id.into())
    }

    /// An id read back from the audit log.
    pub fn stored(id: String) -> RequestId {
        RequestId(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request's id and client, as the audit log records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The request's id (`X-Request-Id`).
    pub id: RequestId,
    /// The client's address, when the request came over TCP (always, outside unit tests).
    pub client: Option<IpAddr>,
}

tokio::task_local! {
    static CURRENT: RequestOrigin;
}

impl RequestOrigin {
    /// The origin of the request whose handler is running on this task, if any (none on the ledger writer's
    /// thread, in workers and in the CLI).
    pub fn current() -> Option<RequestOrigin> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` (a request's handler) with this origin as [`RequestOrigin::current`].
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// `future` with the current request's origin, if any, for a task it is spawned on: a task-local does not
    /// follow `spawn`, and a command submitted from that task would lose its request.
    pub fn carried<F: Future>(future: F) -> impl Future<Output = F::Output> {
        let origin = RequestOrigin::current();
        async move {
            match origin {
                Some(origin) => origin.scope(future).await,
                None => future.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|text| text.parse().unwrap_or_else(|e| panic!("{e}"))).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| panic!("{text}"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap_or_else(|_| panic!("{value}")));
        }
        map
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let map = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https"), ("x-request-id", "a")]);
        let none = TrustedProxies::default();
        assert_eq!(
            none.resolve(ip("198.51.100.1"), &map),
            Forwarded { client: ip("198.51.100.1"), https: false, request_id: None }
        );
        let other = proxies(&["10.0.0.0/8"]);
        assert_eq!(other.resolve(ip("198.51.100.1"), &map).client, ip("198.51.100.1"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        let client = |value: &str| trusted.resolve(peer, &headers(&[("x-forwarded-for", value)])).client;
        assert_eq!(client("203.0.113.9"), ip("203.0.113.9"));
        // The client wrote the leftmost entry itself: it is not believed.
        assert_eq!(client("1.1.1.1, 203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(client("1.1.1.1, 203.0.113.9, 10.1.2.3"), ip("203.0.113.9"));
        assert_eq!(client("203.0.113.9:5123"), ip("203.0.113.9"));
        assert_eq!(client("[2001:db8::7]:443"), ip("2001:db8::7"));
        assert_eq!(client("::ffff:203.0.113.9"), ip("203.0.113.9"));
        // Only trusted hops: the leftmost of them. Garbage: the hop right of it, which wrote it.
        assert_eq!(client("10.9.9.9, 10.1.2.3"), ip("10.9.9.9"));
        assert_eq!(client("unknown, 10.1.2.3"), ip("10.1.2.3"));
        assert_eq!(client(""), peer);
        // Two headers are one list, in order.
        let two = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "10.1.2.3")]);
        assert_eq!(trusted.resolve(peer, &two).client, ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(trusted.resolve(peer, &HeaderMap::new()).client, peer);
        // Bytes that are not text, which nginx joins with the address it appends into one value: the
        // appended address still counts, and the walk stops at the bytes.
        let mut joined = HeaderMap::new();
        joined.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xff, 203.0.113.9").expect("bytes"));
        assert_eq!(trusted.resolve(peer, &joined).client, ip("203.0.113.9"));
        let mut behind = HeaderMap::new();
        behind.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xff, 10.1.2.3").expect("bytes"));
        assert_eq!(trusted.resolve(peer, &behind).client, ip("10.1.2.3"));
        // An untrusted peer in its IPv6-mapped form (a dual-stack listener) is its IPv4 address.
        assert_eq!(
            TrustedProxies::default().resolve(ip("::ffff:198.51.100.1"), &HeaderMap::new()).client,
            ip("198.51.100.1")
        );
    }

    #[test]
    fn scheme_and_request_id_come_only_from_a_trusted_proxy() {
        let trusted = proxies(&["127.0.0.1"]);
        let peer = ip("127.0.0.1");
        let map = headers(&[("x-forwarded-proto", "HTTPS"), ("x-request-id", "7f3e9a")]);
        let forwarded = trusted.resolve(peer, &map);
        assert!(forwarded.https);
        assert_eq!(forwarded.request_id, Some("7f3e9a"));
        assert!(!trusted.resolve(peer, &headers(&[("x-forwarded-proto", "https, http")])).https);
        let two = headers(&[("x-request-id", "from-the-client"), ("x-request-id", "from-the-proxy")]);
        assert_eq!(trusted.resolve(peer, &two).request_id, Some("from-the-proxy"));
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "two words", "a\"b", long.as_str()] {
            assert_eq!(trusted.resolve(peer, &headers(&[("x-request-id", bad)])).request_id, None, "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|byte| byte.is_ascii_hexdigit()));
        // The same process prefix, then a counter: the second is the first plus one.
        let number = |id: &RequestId| u64::from_str_radix(&id.as_str()[16..], 16).unwrap_or(0);
        assert_eq!((a.as_str()[..16].to_owned(), number(&a) + 1), (b.as_str()[..16].to_owned(), number(&b)));
    }

    #[tokio::test]
    async fn the_origin_is_current_only_inside_its_scope() {
        assert_eq!(RequestOrigin::current(), None);
        let origin = RequestOrigin { id: RequestId::from_proxy("r1"), client: Some(ip("192.0.2.4")) };
        let seen = origin.clone().scope(async { RequestOrigin::current() }).await;
        assert_eq!(seen, Some(origin.clone()));
        // A spawned task has none of its own; carried, it has the request's.
        let (lost, kept) = origin
            .clone()
            .scope(async {
                let lost = tokio::spawn(async { RequestOrigin::current() });
                let kept = tokio::spawn(RequestOrigin::carried(async { RequestOrigin::current() }));
                (lost.await.ok().flatten(), kept.await.ok().flatten())
            })
            .await;
        assert_eq!((lost, kept), (None, Some(origin)));
    }
}
