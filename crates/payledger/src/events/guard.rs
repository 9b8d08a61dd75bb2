//! The guard against server-side request forgery: an event endpoint is a URL an administrator types in, and
//! without a guard it could make payledger POST to its own database, a cloud metadata service or anything
//! else on the private network. Only globally routable addresses are reached, plus the networks an operator
//! lists in `PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS` (tests and internal receivers).
//!
//! The check happens twice. At registration, [`check_endpoint_url`] refuses a malformed URL and an address
//! literal outside the allowed networks. At every delivery, the [`GuardedResolver`] drops every resolved
//! address the guard refuses, and the connector connects only to what it returned, so a DNS answer that
//! changes between registration and delivery (rebinding) cannot get around it.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::dns::Name;

use crate::networks::Network;

/// The longest endpoint URL accepted, in bytes: far above any real one, and it bounds the column.
pub const MAX_URL_BYTES: usize = 2_048;

/// The most entries `PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS` may list: every address of every delivery is
/// compared with each of them.
pub const MAX_ALLOWED_NETWORKS: usize = 256;

/// How many refused addresses a resolver error names: enough to diagnose, bounded for the delivery log.
const MAX_NAMED_ADDRESSES: usize = 8;

/// The networks outbound requests may reach besides the globally routable ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundNetworks {
    allowed: Vec<Network>,
}

impl OutboundNetworks {
    /// Parses `PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS`: networks or single addresses separated by commas
    /// (`10.0.0.0/8, 127.0.0.1, fd00::/8`). Blank entries are skipped, so an empty list allows nothing extra;
    /// the error names the entry that is not a network.
    pub fn parse(list: &str) -> Result<OutboundNetworks, String> {
        let mut allowed = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            if allowed.len() == MAX_ALLOWED_NETWORKS {
                return Err(format!("allowed outbound networks: more than {MAX_ALLOWED_NETWORKS} entries"));
            }
            let network: Network = entry.parse().map_err(|error| format!("allowed outbound networks: {error}"))?;
            allowed.push(network);
        }
        Ok(OutboundNetworks { allowed })
    }

    /// The guard with these allowed networks (already parsed, as the settings hold them).
    pub fn from_networks(allowed: Vec<Network>) -> OutboundNetworks {
        OutboundNetworks { allowed }
    }

    /// Whether an outbound request may connect to `ip`: it is globally routable, or inside an allowed network.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_global(ip) || self.allowed.iter().any(|network| network.contains(ip))
    }
}

/// Whether `ip` is reachable on the public internet. `std`'s `IpAddr::is_global` is unstable, hence this
/// table, which follows the IANA special-purpose address registries.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// IPv4 blocks that are not globally routable, as (address, prefix length).
const NOT_GLOBAL_V4: [([u8; 4], u8); 14] = [
    ([0, 0, 0, 0], 8),       // "this network", including the unspecified address
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, where cloud metadata services live
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, including the broadcast address
];

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NOT_GLOBAL_V4.iter().any(|&(network, prefix)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        bits & mask == u32::from(Ipv4Addr::from(network)) & mask
    })
}

/// IPv6 blocks that are not globally routable, as (address, prefix length). Most lie outside `2000::/3` and
/// are refused by that rule too; they are listed so the table reads as the registry does.
const NOT_GLOBAL_V6: [(u128, u8); 12] = [
    (0, 96),                                // ::/96: unspecified, loopback, the deprecated v4-compatible
    (0x0064_ff9b_0001 << 80, 48),           // 64:ff9b:1::/48, local-use NAT64
    (0x0100 << 112, 64),                    // 100::/64, discard-only
    (0x2001 << 112, 32),                    // 2001::/32, Teredo (the client's address is obfuscated)
    ((0x2001 << 112) | (0x0002 << 96), 48), // 2001:2::/48, benchmarking
    ((0x2001 << 112) | (0x0db8 << 96), 32), // 2001:db8::/32, documentation
    (0x3fff << 112, 20),                    // 3fff::/20, documentation
    (0x5f00 << 112, 16),                    // 5f00::/16, segment routing identifiers
    (0xfc00 << 112, 7),                     // fc00::/7, unique local
    (0xfe80 << 112, 10),                    // fe80::/10, link-local
    (0xfec0 << 112, 10),                    // fec0::/10, the deprecated site-local
    (0xff00 << 112, 8),                     // ff00::/8, multicast
];

/// The IPv4 address an IPv6 address carries when it stands for one: IPv4-mapped `::ffff:a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d` (a translator connects to the IPv4 address) and 6to4 `2002:aabb:ccdd::/48`
/// (a relay forwards to `aa.bb.cc.dd`). Those are judged by the IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if bits >> 32 == 0xffff {
        return Some(low32);
    }
    if bits >> 32 == 0x0064_ff9b << 64 {
        return Some(low32);
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_global_v4(v4);
    }
    let bits = u128::from(ip);
    let listed = NOT_GLOBAL_V6.iter().any(|&(network, prefix)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        bits & mask == network & mask
    });
    // Only 2000::/3 is allocated for global unicast; anything else is reserved or special.
    let global_unicast = bits >> 125 == 0b001;
    global_unicast && !listed
}

/// Why an endpoint URL is refused; the message names the reason (the API answers 400 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Longer than [`MAX_URL_BYTES`].
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    /// Contains a space, a tab, a line break or another control character.
    #[error("the URL contains whitespace or a control character")]
    Whitespace,
    /// Carries a `#fragment`, which is never sent to a server and so can only be a mistake.
    #[error("the URL has a fragment (#…), which is never sent")]
    Fragment,
    /// Not an absolute URL.
    #[error("the URL is not an absolute http or https URL")]
    Malformed,
    /// A scheme other than http and https.
    #[error("the URL's scheme must be https or http")]
    Scheme,
    /// Plain http where https is required (the production profile).
    #[error("the URL must use https")]
    HttpsRequired,
    /// No host, or an empty one.
    #[error("the URL has no host")]
    NoHost,
    /// A `user:password@` part: credentials in a URL end up in logs; receivers verify the signature instead.
    #[error("the URL must not carry a user name or password (user:password@)")]
    Userinfo,
    /// Port 0, which nothing listens on.
    #[error("the URL's port must not be 0")]
    PortZero,
    /// The host is an address outside the allowed networks.
    #[error("the URL's host {0} is not a public address and is outside PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS")]
    AddressRefused(IpAddr),
}

impl UrlError {
    /// A stable machine code for the reason, for clients that branch on it.
    pub fn code(&self) -> &'static str {
        match self {
            UrlError::TooLong => "too_long",
            UrlError::Whitespace => "whitespace",
            UrlError::Fragment => "fragment",
            UrlError::Malformed => "malformed",
            UrlError::Scheme => "scheme",
            UrlError::HttpsRequired => "https_required",
            UrlError::NoHost => "no_host",
            UrlError::Userinfo => "userinfo",
            UrlError::PortZero => "port_zero",
            UrlError::AddressRefused(_) => "address_refused",
        }
    }
}

/// Checks an endpoint URL as an administrator registers it, and the sender before each attempt: an absolute
/// `https` URL (or `http` when `require_https` is false), with a host, without credentials or a fragment, at
/// most [`MAX_URL_BYTES`] long, and, when the host is an address literal, one `networks` permits. A host
/// name is checked when it is resolved, at every delivery.
pub fn check_endpoint_url(url: &str, require_https: bool, networks: &OutboundNetworks) -> Result<Uri, UrlError> {
    if url.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Whitespace);
    }
    // Checked on the text: the URI parser drops a fragment silently.
    if url.contains('#') {
        return Err(UrlError::Fragment);
    }
    let uri: Uri = url.parse().map_err(|_| UrlError::Malformed)?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if !require_https => {}
        Some("http") => return Err(UrlError::HttpsRequired),
        Some(_) => return Err(UrlError::Scheme),
        None => return Err(UrlError::Malformed),
    }
    let authority = uri.authority().ok_or(UrlError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(UrlError::Userinfo);
    }
    if authority.port_u16() == Some(0) {
        return Err(UrlError::PortZero);
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if let Some(ip) = literal_address(host)
        && !networks.permits(ip)
    {
        return Err(UrlError::AddressRefused(ip));
    }
    Ok(uri)
}

/// The address a URI host names literally (`192.0.2.1`, `[2001:db8::1]`): the connector connects to such a
/// host without resolving it, so the guard must judge it itself.
pub fn literal_address(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

/// Why the guarded resolver gives no address for a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The lookup itself failed (no such name, no DNS server).
    #[error("resolving {host}: {reason}")]
    Lookup {
        /// The name looked up.
        host: String,
        /// The system resolver's error.
        reason: String,
    },
    /// The name has no address at all.
    #[error("{host} has no addresses")]
    NoAddresses {
        /// The name looked up.
        host: String,
    },
    /// Every address of the name is outside the allowed networks.
    #[error("{host} resolves only to addresses outside the allowed networks: {addresses}")]
    Refused {
        /// The name looked up.
        host: String,
        /// The refused addresses, comma-separated (at most eight).
        addresses: String,
    },
}

/// A DNS resolver for hyper-util's `HttpConnector::new_with_resolver` that returns only the addresses the
/// guard permits. The connector connects to nothing else, so the check and the connection use one answer.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    networks: Arc<OutboundNetworks>,
}

impl GuardedResolver {
    /// A resolver that keeps the addresses `networks` permits.
    pub fn new(networks: Arc<OutboundNetworks>) -> GuardedResolver {
        GuardedResolver { networks }
    }

    /// The permitted addresses of `host` (port 0; the connector sets the URL's port).
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|error| ResolveError::Lookup { host: host.to_owned(), reason: error.to_string() })?;
        keep_permitted(&self.networks, host, found)
    }
}

/// The addresses among `found` that `networks` permits, or why there is none.
fn keep_permitted(
    networks: &OutboundNetworks,
    host: &str,
    found: impl Iterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let mut kept = Vec::new();
    let mut refused: Vec<IpAddr> = Vec::new();
    for address in found {
        if networks.permits(address.ip()) {
            kept.push(address);
        } else if !refused.contains(&address.ip()) {
            refused.push(address.ip());
        }
    }
    if !kept.is_empty() {
        return Ok(kept);
    }
    if refused.is_empty() {
        return Err(ResolveError::NoAddresses { host: host.to_owned() });
    }
    let addresses = refused.iter().take(MAX_NAMED_ADDRESSES).map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
    Err(ResolveError::Refused { host: host.to_owned(), addresses })
}

/// The future a [`GuardedResolver`] answers with.
pub type ResolveFuture = Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, ResolveError>> + Send>>;

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> ResolveFuture {
        let resolver = self.clone();
        Box::pin(async move { resolver.resolve(name.as_str()).await.map(Vec::into_iter) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| panic!("{text} is not an address"))
    }

    fn networks(list: &str) -> OutboundNetworks {
        OutboundNetworks::parse(list).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn public_addresses_are_permitted() {
        let none = OutboundNetworks::default();
        for global in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(none.permits(ip(global)), "{global} should be permitted");
        }
    }

    #[test]
    fn every_non_global_ipv4_class_is_refused() {
        let none = OutboundNetworks::default();
        for (class, address) in [
            ("unspecified", "0.0.0.0"),
            ("this network", "0.1.2.3"),
            ("loopback", "127.0.0.1"),
            ("loopback", "127.255.255.254"),
            ("private 10/8", "10.1.2.3"),
            ("private 172.16/12", "172.16.0.1"),
            ("private 172.16/12", "172.31.255.255"),
            ("private 192.168/16", "192.168.1.1"),
            ("link-local", "169.254.169.254"),
            ("carrier-grade NAT", "100.64.0.1"),
            ("carrier-grade NAT", "100.127.255.255"),
            ("IETF assignments", "192.0.0.8"),
            ("TEST-NET-1", "192.0.2.10"),
            ("benchmarking", "198.18.0.1"),
            ("benchmarking", "198.19.255.255"),
            ("TEST-NET-2", "198.51.100.7"),
            ("TEST-NET-3", "203.0.113.9"),
            ("multicast", "224.0.0.1"),
            ("multicast", "239.255.255.250"),
            ("reserved", "240.0.0.1"),
            ("broadcast", "255.255.255.255"),
        ] {
            assert!(!none.permits(ip(address)), "{class} {address} should be refused");
        }
    }

    #[test]
    fn every_non_global_ipv6_class_is_refused() {
        let none = OutboundNetworks::default();
        for (class, address) in [
            ("unspecified", "::"),
            ("loopback", "::1"),
            ("v4-compatible", "::127.0.0.1"),
            ("mapped loopback", "::ffff:127.0.0.1"),
            ("mapped private", "::ffff:10.0.0.1"),
            ("mapped metadata", "::ffff:169.254.169.254"),
            ("NAT64 of loopback", "64:ff9b::7f00:1"),
            ("NAT64 of private", "64:ff9b::192.168.0.1"),
            ("local-use NAT64", "64:ff9b:1::808:808"),
            ("6to4 of loopback", "2002:7f00:1::1"),
            ("6to4 of private", "2002:a00:1::"),
            ("discard", "100::1"),
            ("Teredo", "2001::1"),
            ("Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("benchmarking", "2001:2::1"),
            ("documentation", "2001:db8::1"),
            ("documentation", "3fff::1"),
            ("unique local", "fc00::1"),
            ("unique local", "fd12:3456:789a::1"),
            ("link-local", "fe80::1"),
            ("site-local", "fec0::1"),
            ("multicast", "ff02::1"),
            ("multicast", "ff0e::1"),
            ("unallocated", "4000::1"),
        ] {
            assert!(!none.permits(ip(address)), "{class} {address} should be refused");
        }
    }

    #[test]
    fn allowed_networks_override_the_refusal() {
        let allowed = networks("127.0.0.0/8, 10.1.0.0/16,fd00::/8, 169.254.169.254");
        assert!(allowed.permits(ip("127.0.0.1")));
        assert!(allowed.permits(ip("::ffff:127.0.0.1")), "a mapped address matches its IPv4 network");
        assert!(allowed.permits(ip("10.1.200.3")));
        assert!(!allowed.permits(ip("10.2.0.1")));
        assert!(allowed.permits(ip("fd00::5")));
        assert!(!allowed.permits(ip("fc00::5")));
        assert!(allowed.permits(ip("169.254.169.254")));
        assert!(!allowed.permits(ip("169.254.169.253")));
        assert!(!allowed.permits(ip("::1")), "allowing 127.0.0.0/8 does not allow IPv6 loopback");
        assert!(allowed.permits(ip("8.8.8.8")));
    }

    #[test]
    fn the_allowed_list_parses_or_names_its_bad_entry() {
        assert_eq!(networks(""), OutboundNetworks::default());
        assert_eq!(networks(" , "), OutboundNetworks::default());
        assert_eq!(networks("10.0.0.0/8,"), networks("10.0.0.0/8"));
        let error = OutboundNetworks::parse("10.0.0.0/8, localhost").err().unwrap_or_default();
        assert!(error.contains("\"localhost\""), "{error}");
        let error = OutboundNetworks::parse("10.0.0.0/33").err().unwrap_or_default();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        let long = vec!["10.0.0.1"; MAX_ALLOWED_NETWORKS + 1].join(",");
        assert!(OutboundNetworks::parse(&long).is_err());
    }

    fn check(url: &str) -> Result<Uri, UrlError> {
        check_endpoint_url(url, true, &OutboundNetworks::default())
    }

    #[test]
    fn good_endpoint_urls_are_accepted() {
        for url in [
            "https://hooks.example.com/payledger",
            "https://hooks.example.com:8443/in?source=payledger&x=1",
            "https://8.8.8.8/hook",
            "https://[2606:4700:4700::1111]/hook",
            "https://localhost/hook",
        ] {
            assert!(check(url).is_ok(), "{url}: {:?}", check(url));
        }
        let uri = check_endpoint_url("http://hooks.example.com/x", false, &OutboundNetworks::default());
        assert_eq!(uri.map(|uri| uri.to_string()), Ok("http://hooks.example.com/x".to_owned()));
    }

    #[test]
    fn bad_endpoint_urls_are_refused_with_their_reason() {
        let too_long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        for (url, expected) in [
            (too_long.as_str(), UrlError::TooLong),
            ("https://example.com/a b", UrlError::Whitespace),
            (" https://example.com/", UrlError::Whitespace),
            ("https://example.com/\n", UrlError::Whitespace),
            ("https://example.com/\u{7f}", UrlError::Whitespace),
            ("https://example.com/#top", UrlError::Fragment),
            ("example.com/hook", UrlError::Malformed),
            ("/hook", UrlError::Malformed),
            ("", UrlError::Malformed),
            ("ftp://example.com/hook", UrlError::Scheme),
            ("http://example.com/hook", UrlError::HttpsRequired),
            ("https://user:pass@example.com/hook", UrlError::Userinfo),
            ("https://user@example.com/hook", UrlError::Userinfo),
            ("https://example.com:0/hook", UrlError::PortZero),
            ("https://127.0.0.1/hook", UrlError::AddressRefused(ip("127.0.0.1"))),
            ("https://[::1]:8080/hook", UrlError::AddressRefused(ip("::1"))),
            ("https://[::ffff:10.0.0.1]/", UrlError::AddressRefused(ip("::ffff:10.0.0.1"))),
            ("https://169.254.169.254/latest/meta-data/", UrlError::AddressRefused(ip("169.254.169.254"))),
        ] {
            assert_eq!(check(url).map(|_| ()), Err(expected.clone()), "{url}");
            assert!(!expected.to_string().is_empty() && !expected.code().is_empty());
        }
        assert!(matches!(check("https:///hook"), Err(UrlError::Malformed | UrlError::NoHost)));
    }

    #[test]
    fn an_allowed_address_literal_is_accepted_at_registration() {
        let allowed = networks("127.0.0.0/8");
        assert!(check_endpoint_url("http://127.0.0.1:8080/hook", false, &allowed).is_ok());
        let refused = check_endpoint_url("http://10.0.0.1/hook", false, &allowed);
        assert_eq!(refused.map(|_| ()), Err(UrlError::AddressRefused(ip("10.0.0.1"))));
        let message = UrlError::AddressRefused(ip("10.0.0.1")).to_string();
        assert!(message.contains("10.0.0.1") && message.contains("PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS"), "{message}");
    }

    #[test]
    fn the_resolver_keeps_only_permitted_addresses() {
        let found = || {
            ["127.0.0.1:0", "10.0.0.2:0", "93.184.216.34:0", "[::1]:0", "127.0.0.1:0"]
                .into_iter()
                .map(|text| text.parse::<SocketAddr>().unwrap_or_else(|_| panic!("{text}")))
        };
        let kept = keep_permitted(&OutboundNetworks::default(), "mixed.example", found());
        assert_eq!(kept, Ok(vec!["93.184.216.34:0".parse().unwrap_or_else(|_| panic!("address"))]));

        let local = found().filter(|address| !is_global(address.ip()));
        let refused = keep_permitted(&OutboundNetworks::default(), "evil.example", local);
        let message = refused.err().map(|error| error.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "evil.example resolves only to addresses outside the allowed networks: 127.0.0.1, 10.0.0.2, ::1"
        );
        let nothing = keep_permitted(&OutboundNetworks::default(), "empty.example", std::iter::empty());
        assert_eq!(nothing, Err(ResolveError::NoAddresses { host: "empty.example".to_owned() }));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let refused = GuardedResolver::new(Arc::new(OutboundNetworks::default())).resolve("localhost").await;
        let message = refused.err().map(|error| error.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("localhost resolves only to addresses outside the allowed networks: "),
            "{message}"
        );

        let allowed = GuardedResolver::new(Arc::new(networks("127.0.0.0/8, ::1")));
        let addresses = allowed.resolve("localhost").await.unwrap_or_default();
        assert!(!addresses.is_empty() && addresses.iter().all(|address| address.ip().is_loopback()), "{addresses:?}");
    }
}
