//! The local addresses a link can gather candidates on, and a switchboard can announce.

use std::net::IpAddr;

/// The addresses of this host's interfaces that a peer could reach: IPv4 and global IPv6,
/// without link-local ones (an IPv6 link-local address is useless to a peer without its scope)
/// and without loopback unless `loopback` (a peer on the same host). Sorted, deduplicated.
#[must_use]
pub fn usable_ips(loopback: bool) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = match rtc::shared::ifaces::ifaces() {
        Ok(list) => list
            .into_iter()
            .filter_map(|i| i.addr.map(|a| a.ip()))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    };
    ips.retain(|ip| usable(*ip, loopback));
    ips.sort();
    ips.dedup();
    ips
}

/// Whether `ip` can carry media to a peer (see [`usable_ips`]).
#[must_use]
pub fn usable(ip: IpAddr, loopback: bool) -> bool {
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if ip.is_loopback() {
        return loopback;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_broadcast(),
        // fe80::/10
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_what_no_peer_can_use() {
        for (ip, lo, ok) in [
            ("10.1.2.3", false, true),
            ("127.0.0.1", false, false),
            ("127.0.0.1", true, true),
            ("169.254.1.1", false, false),
            ("0.0.0.0", true, false),
            ("224.0.0.1", false, false),
            ("fe80::1", false, false),
            ("2001:db8::1", false, true),
            ("::1", true, true),
        ] {
            assert_eq!(usable(ip.parse().unwrap(), lo), ok, "{ip} loopback={lo}");
        }
    }

    #[test]
    fn this_host_has_loopback() {
        assert!(usable_ips(true).iter().any(IpAddr::is_loopback));
        assert!(!usable_ips(false).iter().any(IpAddr::is_loopback));
    }
}
