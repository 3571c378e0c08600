//! Which address a request comes from: the peer, unless trusted proxies
//! say otherwise.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// How the client's address is found (the key of per-client counters).
///
/// By default it is the TCP peer (axum's `ConnectInfo<SocketAddr>`, or a
/// `SocketAddr` in the request extensions) and `X-Forwarded-For` is
/// ignored: any client can write that header, so trusting it without a
/// proxy lets every request pick its own counter.
///
/// Behind proxies, list them with
/// [`with_trusted_proxies`](Self::with_trusted_proxies): when the peer is
/// one of them, `X-Forwarded-For` is read from the right (each proxy
/// appends the address it saw) and the first address that is not a trusted
/// proxy is the client. Entries to its left were written by the client and
/// are never believed.
///
/// ```
/// use cloakroom::rate_limit::ClientIpSource;
/// use http::HeaderMap;
///
/// let source = ClientIpSource::peer().with_trusted_proxies(["10.0.0.0/8".parse()?]);
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.2".parse()?);
/// let ip = source.resolve(Some("10.0.0.1".parse()?), &headers);
/// assert_eq!(ip, Some("198.51.100.4".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpSource {
    trusted: Vec<IpNet>,
}

impl ClientIpSource {
    /// The TCP peer's address, no header trusted.
    #[must_use]
    pub fn peer() -> Self {
        Self::default()
    }

    /// Trusts `X-Forwarded-For` as written by these proxies (see the type
    /// docs).
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted = proxies.into_iter().map(|n| n.trunc()).collect();
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request whose peer is `peer`, with `headers`. `None`
    /// when the peer is unknown (the server did not record it).
    #[must_use]
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        // Right to left over every X-Forwarded-For header, as if joined.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| {
                let text = v.to_str().unwrap_or("");
                text.rsplit(',').map(str::trim).collect::<Vec<_>>()
            });
        for hop in hops {
            // An unreadable hop was written by someone we cannot vouch for:
            // stop at the last address we could.
            let Some(ip) = parse_hop(hop) else { break };
            client = canonical(ip);
            if !self.is_trusted(client) {
                break;
            }
        }
        Some(client)
    }

    /// The client of `req`: its peer address from the extensions, then
    /// [`resolve`](Self::resolve).
    #[must_use]
    pub fn of_request<B>(&self, req: &http::Request<B>) -> Option<IpAddr> {
        self.resolve(peer_of(req.extensions()), req.headers())
    }
}

/// The peer address the server recorded in the request extensions.
pub(crate) fn peer_of(ext: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    {
        if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
    }
    ext.get::<SocketAddr>().map(SocketAddr::ip)
}

/// One `X-Forwarded-For` entry: an address, with or without a port
/// (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// IPv4-mapped IPv6 addresses as IPv4, so one host has one form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The address a per-client counter counts: an IPv4 address as it is, an
/// IPv6 address as its /64 (the rest zeroed), an IPv4-mapped IPv6 address
/// as IPv4.
///
/// ```
/// use cloakroom::rate_limit::client_prefix;
/// let a = client_prefix("2001:db8:1:2:aaaa::1".parse()?);
/// let b = client_prefix("2001:db8:1:2:ffff::9".parse()?);
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "2001:db8:1:2::");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[must_use]
pub fn client_prefix(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("header"));
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn unreadable_hop_stops_the_walk() {
        let source = ClientIpSource::peer().with_trusted_proxies([ip("10.0.0.1").into()]);
        let got = source.resolve(Some(ip("10.0.0.1")), &xff("1.2.3.4, garbage"));
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn hops_with_ports_and_mapped_addresses() {
        let source =
            ClientIpSource::peer().with_trusted_proxies(["10.0.0.0/8".parse().expect("net")]);
        let got = source.resolve(
            Some(ip("::ffff:10.0.0.1")),
            &xff("[2001:db8::1]:443, 10.1.1.1:80"),
        );
        assert_eq!(got, Some(ip("2001:db8::1")));
    }
}
