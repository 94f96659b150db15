//! What the switchboard tells a device about the network: which of its media addresses to try,
//! and the TURN relays it may use with short-lived credentials. Decisions, so they live in the
//! core; the runtime only binds what the config names.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::protocol::IceServer;

/// One address of the switchboard's media port: what devices send to, and the address of the
/// socket it arrives on (different behind a 1:1 NAT: the public address arrives on the private
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddr {
    pub addr: SocketAddr,
    pub socket_ip: IpAddr,
}

impl MediaAddr {
    /// An address devices reach directly.
    #[must_use]
    pub fn direct(addr: SocketAddr) -> MediaAddr {
        MediaAddr {
            addr,
            socket_ip: addr.ip(),
        }
    }
}

/// TURN relays the switchboard hands to devices, with coturn's `use-auth-secret` shared secret
/// (the "TURN REST API" scheme): username `<expiry unix time>:<user>`, password
/// `base64(HMAC-SHA1(secret, username))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs, e.g. `turn:turn.example.com:3478?transport=tcp`.
    pub urls: Vec<String>,
    pub secret: String,
    /// How long a credential stays valid.
    pub ttl: Duration,
}

/// The media addresses a device should try, best first.
///
/// Loopback addresses only for a device that itself connected over loopback (anyone else would
/// be sending to its own host). First the addresses of the socket on the interface the device's
/// signaling reached us on, which it can evidently reach (a 1:1 NAT's public address before the
/// private one: the device came through the NAT); then the rest in the port's order. If nothing
/// is left, every address: better a candidate that may fail than none.
#[must_use]
pub fn announce_for(
    media: &[MediaAddr],
    loopback: bool,
    signaling_local: Option<IpAddr>,
) -> Vec<SocketAddr> {
    let mut out: Vec<&MediaAddr> = media
        .iter()
        .filter(|m| loopback || !m.addr.ip().is_loopback())
        .collect();
    if out.is_empty() {
        out = media.iter().collect();
    }
    // Stable: keeps the port's order among equals.
    out.sort_by_key(|m| {
        if Some(m.socket_ip) == signaling_local {
            0
        } else if loopback && m.addr.ip().is_loopback() {
            1
        } else {
            2
        }
    });
    out.into_iter().map(|m| m.addr).collect()
}

/// The TURN servers for `user`, with a credential valid from `now_unix` for the TTL.
#[must_use]
pub fn ice_servers(turn: Option<&TurnConfig>, user: &str, now_unix: u64) -> Vec<IceServer> {
    let Some(turn) = turn.filter(|t| !t.urls.is_empty()) else {
        return Vec::new();
    };
    let expiry = now_unix + turn.ttl.as_secs();
    let username = format!("{expiry}:{user}");
    let credential = turn_password(&turn.secret, &username);
    vec![IceServer {
        urls: turn.urls.clone(),
        username,
        credential,
    }]
}

/// coturn's `use-auth-secret` password for `username`.
#[must_use]
pub fn turn_password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<MediaAddr> {
        list.iter()
            .map(|a| MediaAddr::direct(a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn behind_a_one_to_one_nat_the_public_address_comes_first() {
        let private: IpAddr = "10.3.0.2".parse().unwrap();
        let media = vec![
            MediaAddr {
                addr: "198.18.3.2:7451".parse().unwrap(),
                socket_ip: private,
            },
            MediaAddr::direct("10.3.0.2:7451".parse().unwrap()),
            MediaAddr::direct("127.0.0.1:7451".parse().unwrap()),
        ];
        // The device came through the NAT: its signaling arrived on the private address.
        assert_eq!(
            announce_for(&media, false, Some(private)),
            vec![
                "198.18.3.2:7451".parse::<SocketAddr>().unwrap(),
                "10.3.0.2:7451".parse().unwrap()
            ]
        );
    }

    #[test]
    fn loopback_only_for_loopback_devices_and_the_signaling_address_first() {
        let media = addrs(&[
            "203.0.113.5:7451",
            "10.0.0.5:7451",
            "127.0.0.1:7451",
            "192.168.7.2:7451",
        ]);
        let remote = announce_for(&media, false, Some("192.168.7.2".parse().unwrap()));
        assert_eq!(
            remote,
            vec![
                "192.168.7.2:7451".parse::<SocketAddr>().unwrap(),
                "203.0.113.5:7451".parse().unwrap(),
                "10.0.0.5:7451".parse().unwrap(),
            ]
        );
        let local = announce_for(&media, true, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(local[0], "127.0.0.1:7451".parse::<SocketAddr>().unwrap());
        assert_eq!(local.len(), 4);
        // Only loopback bound, and a device that is not on loopback (a proxy): all of it anyway.
        let lo = addrs(&["127.0.0.1:7451"]);
        assert_eq!(announce_for(&lo, false, None).len(), 1);
    }

    #[test]
    fn turn_credentials_follow_the_rest_api_scheme() {
        // Checked against
        // `echo -n "1433900000:alice" | openssl dgst -binary -sha1 -hmac secret | base64`.
        assert_eq!(
            turn_password("secret", "1433900000:alice"),
            "4up8tgIMjrcVql4319kSLcWEbIU="
        );
        let cfg = TurnConfig {
            urls: vec!["turn:192.0.2.1:3478?transport=tcp".into()],
            secret: "s3cret".into(),
            ttl: Duration::from_secs(3600),
        };
        let servers = ice_servers(Some(&cfg), "bob", 1_000);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username, "4600:bob");
        assert_eq!(servers[0].credential, turn_password("s3cret", "4600:bob"));
        assert!(ice_servers(None, "bob", 1_000).is_empty());
    }
}
