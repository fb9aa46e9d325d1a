//! The address a request really came from. Behind a load balancer every
//! connection comes from the balancer, so login throttling and the audit log
//! would see one address for everybody. `server.trusted_proxies` names the
//! balancers (addresses or CIDR ranges); only when the peer is one of them is
//! `X-Forwarded-For` read, from the right, skipping further trusted hops. A
//! client cannot forge its way past this: whatever it puts in the header
//! stands left of the address the trusted proxy appended.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses `"10.0.0.0/8, 127.0.0.1, ::1"`; an empty string trusts nobody.
pub fn parse_trusted(s: &str) -> Result<Vec<Net>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (a, bits) = match p.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (p, None),
            };
            let addr: IpAddr = a
                .parse()
                .map_err(|_| format!("{p:?} is not an IP address or CIDR range"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{p:?}: the prefix length must be 0 to {max}"))?,
            };
            Ok(Net { addr, prefix })
        })
        .collect()
}

fn trusted(nets: &[Net], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client address: the peer, or — when the peer is a trusted proxy —
/// the rightmost untrusted address of `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, nets: &[Net]) -> IpAddr {
    if !trusted(nets, peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last = peer;
    for hop in header.rsplit(',').map(str::trim) {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage: stop at the last address we could trust.
            return last;
        };
        if !trusted(nets, ip) {
            return ip;
        }
        last = ip;
    }
    last
}

/// `client_ip` for an actix request.
pub fn of_request(req: &actix_web::HttpRequest, nets: &[Net]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let header = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    client_ip(peer, header, nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_are_taken_as_they_are() {
        let nets = parse_trusted("10.0.0.0/8").expect("parse");
        assert_eq!(
            client_ip(ip("192.0.2.7"), Some("1.2.3.4"), &nets),
            ip("192.0.2.7")
        );
        assert_eq!(client_ip(ip("192.0.2.7"), None, &[]), ip("192.0.2.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_counts() {
        let nets = parse_trusted("10.0.0.0/8, 127.0.0.1").expect("parse");
        // The client forged "6.6.6.6"; nginx appended the real address.
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("6.6.6.6, 198.51.100.9"), &nets),
            ip("198.51.100.9")
        );
        // Two trusted hops.
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some("198.51.100.9, 10.2.2.2"), &nets),
            ip("198.51.100.9")
        );
        // Only proxies: the leftmost proxy is the best we know.
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some("10.2.2.2"), &nets),
            ip("10.2.2.2")
        );
        // Garbage in the header never yields a forged address.
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some("6.6.6.6, junk"), &nets),
            ip("10.1.1.1")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), None, &nets), ip("127.0.0.1"));
    }

    #[test]
    fn ranges_parse_and_match() {
        let nets = parse_trusted(" 192.168.0.0/16 ,::1, fd00::/8").expect("parse");
        assert!(trusted(&nets, ip("192.168.44.1")));
        assert!(!trusted(&nets, ip("192.169.0.1")));
        assert!(trusted(&nets, ip("::1")));
        assert!(trusted(&nets, ip("fd12::5")));
        assert!(!trusted(&nets, ip("fe80::1")));
        assert!(parse_trusted("0.0.0.0/0").expect("all")[0].contains(ip("8.8.8.8")));
        assert!(parse_trusted("").expect("empty").is_empty());
        for bad in ["nginx", "10.0.0.0/33", "::/129", "1.2.3.4/x"] {
            assert!(parse_trusted(bad).is_err(), "{bad}");
        }
    }
}
