//! The client IP: the socket's peer, unless that peer is a trusted proxy; then
//! the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
//! A client can never choose its own rate-limit key. Resolved once per
//! request, by the request log's layer, into the [`ClientIp`] extension.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::context::ClientIp;

/// Puts the request's [`ClientIp`] into its extensions, and returns it (none
/// without a socket peer, as for an app driven in process without `ConnectInfo`).
/// Called once per request, by `request_log`.
pub fn resolve_once(req: &mut Request, proxies: &[IpNet]) -> Option<IpAddr> {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| resolve(peer.ip(), req.headers(), proxies))?;
    req.extensions_mut().insert(ClientIp(ip));
    Some(ip)
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: a bare IP, `ip:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut client = peer;
    // Several headers are one list, in order; walk it from the right.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted(client, proxies) {
                    return client;
                }
            }
            // A garbled hop: believe nothing beyond the last trusted one.
            None => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(
                "x-forwarded-for",
                v.parse()
                    .unwrap_or(axum::http::HeaderValue::from_static("")),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|n| n.parse().ok()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_sends() {
        let ip = resolve(
            [203, 0, 113, 9].into(),
            &headers(&["1.2.3.4"]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, IpAddr::from([203, 0, 113, 9]));
    }

    #[test]
    fn trusted_peer_yields_the_rightmost_untrusted_hop() {
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        let ip = resolve([10, 0, 0, 1].into(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(
            ip,
            IpAddr::from([198, 51, 100, 7]),
            "the spoofable leftmost entry is ignored"
        );
    }

    #[test]
    fn garbage_and_ports_are_handled() {
        let proxies = nets(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(
                [10, 0, 0, 1].into(),
                &headers(&["198.51.100.7:5000"]),
                &proxies
            ),
            IpAddr::from([198, 51, 100, 7])
        );
        assert_eq!(
            resolve(
                [10, 0, 0, 1].into(),
                &headers(&["1.1.1.1, nonsense"]),
                &proxies
            ),
            IpAddr::from([10, 0, 0, 1])
        );
        assert_eq!(
            resolve([10, 0, 0, 1].into(), &HeaderMap::new(), &proxies),
            IpAddr::from([10, 0, 0, 1])
        );
    }
}
