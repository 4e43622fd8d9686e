//! Who a request comes from: the TCP peer, or, when the peer is a proxy listed in
//! `trusted_proxies`, the address that proxy (and any trusted proxy before it) saw, from
//! `X-Forwarded-For`. Per-address limits and the access log use it.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::error::ApiError;

/// One trusted proxy: an address, or a block of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network = addr.trim().parse::<IpAddr>().ok()?.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    fn contains(self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        // An IPv4 address sits in the top 32 bits, so one mask fits both families.
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        bits(ip) & mask == bits(self.network) & mask
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Block>);

impl TrustedProxies {
    /// Parses the `trusted_proxies` setting: addresses or CIDR blocks.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .map(|e| {
                Block::parse(e).ok_or_else(|| {
                    anyhow::anyhow!(
                        "trusted_proxies: {e:?} is not an IP address or a CIDR block such as \
                         10.0.0.0/8"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    /// The client a request from `peer` with `headers` comes from: `peer` unless it is a
    /// trusted proxy; then, walking `X-Forwarded-For` from its end (each proxy appends the
    /// address it saw), the first address that is not a trusted proxy. Addresses before it
    /// were written by the client and are never believed. An entry that is no address stops
    /// the walk at the last proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for entry in entries.into_iter().rev() {
            let Some(ip) = forwarded_address(entry) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry's address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:5678`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let host = match entry.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => entry.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Whether a request says it passed through a proxy.
fn forwarded(headers: &HeaderMap) -> bool {
    ["x-forwarded-for", "forwarded", "via"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// The client of a request, and whether a proxy stands between it and this server (so that a
/// response may only be what that proxy can pass on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address (see [`TrustedProxies::client`]).
    pub ip: IpAddr,
    /// The peer is a trusted proxy, or the request names a hop (`X-Forwarded-For`,
    /// `Forwarded`, `Via`).
    pub proxied: bool,
}

impl ClientAddr {
    /// The client of a request from `peer`.
    pub fn resolve(proxies: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> Self {
        Self {
            ip: proxies.client(peer, headers),
            proxied: proxies.trusts(peer.to_canonical()) || forwarded(headers),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    /// The address the request middleware resolved (it runs on every request with connection
    /// info, which every listener of the server gives).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .copied()
            .ok_or_else(|| ApiError::Internal("no client address".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn only_trusted_proxies_are_believed_and_only_for_what_they_appended() {
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).expect("parse");
        // Direct: the header is the client's own word.
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
        // Through one proxy: what it appended.
        assert_eq!(
            proxies.client(ip("192.0.2.1"), &headers(&["6.6.6.6, 203.0.113.9"])),
            ip("203.0.113.9")
        );
        // Through two (two header lines), the client's forged entry ignored.
        assert_eq!(
            proxies.client(
                ip("10.1.2.3"),
                &headers(&["6.6.6.6, 203.0.113.9", "192.0.2.1"])
            ),
            ip("203.0.113.9")
        );
        // Ports, brackets, IPv4-mapped peers.
        assert_eq!(
            proxies.client(ip("::ffff:192.0.2.1"), &headers(&["[2001:db8::7]:443"])),
            ip("2001:db8::7")
        );
        assert_eq!(
            proxies.client(ip("192.0.2.1"), &headers(&["203.0.113.9:5000"])),
            ip("203.0.113.9")
        );
        // No header, or nonsense: the proxy itself.
        assert_eq!(
            proxies.client(ip("192.0.2.1"), &headers(&[])),
            ip("192.0.2.1")
        );
        assert_eq!(
            proxies.client(ip("192.0.2.1"), &headers(&["203.0.113.9, unknown"])),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn blocks_parse_and_match_by_prefix() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nginx".into()]).is_err());
        let proxies =
            TrustedProxies::parse(&["172.28.0.0/24".into(), "fd00::/8".into()]).expect("parse");
        assert!(proxies.trusts(ip("172.28.0.10")));
        assert!(!proxies.trusts(ip("172.28.1.10")));
        assert!(proxies.trusts(ip("fd12::1")));
        assert!(!proxies.trusts(ip("fe80::1")));
        let everyone = TrustedProxies::parse(&["0.0.0.0/0".into()]).expect("parse");
        assert!(everyone.trusts(ip("8.8.8.8")));
        assert!(!everyone.trusts(ip("::1")));
    }
}
