//! Which link a datagram on the switchboard's shared media port belongs to.
//!
//! Every device's link shares one UDP port, so the port cannot tell them apart. ICE can: a
//! device's first packet from any address is a STUN Binding request whose USERNAME is
//! `<switchboard ufrag>:<device ufrag>` (RFC 8445 §7.2.2), and each link has its own switchboard
//! ufrag. After that check, the address is remembered and DTLS/SRTP from it goes to the same
//! link. A device that moves (a NAT rebinding, a new network) sends checks from its new address,
//! which re-learns it. This is what mediasoup's `WebRtcServer` and LiveKit's UDP mux do.
//!
//! Pure: no sockets, no clock. Unknown senders are dropped by the caller; a forged check cannot
//! steal a link because the link's ICE agent verifies MESSAGE-INTEGRITY with the link's password
//! before it answers, and DTLS/SRTP authenticate everything after.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::server::switchboard::ConnId;

/// STUN's magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// A Binding request's message type.
const BINDING_REQUEST: u16 = 0x0001;
/// The USERNAME attribute.
const ATTR_USERNAME: u16 = 0x0006;
/// Longest USERNAME we look at (RFC 5389 limits it to 513 bytes).
const MAX_USERNAME: usize = 513;

/// The switchboard's half of the USERNAME of a STUN Binding request (the text before `:`),
/// or `None` if `data` is not a well-formed Binding request with a USERNAME.
#[must_use]
pub fn binding_request_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    let msg_type = u16::from_be_bytes([data[0], data[1]]);
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if msg_type != BINDING_REQUEST || len % 4 != 0 || 20 + len > data.len() {
        return None;
    }
    let mut attrs = &data[20..20 + len];
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let padded = alen.div_ceil(4) * 4;
        if 4 + alen > attrs.len() {
            return None;
        }
        if typ == ATTR_USERNAME {
            if alen > MAX_USERNAME {
                return None;
            }
            let name = std::str::from_utf8(&attrs[4..4 + alen]).ok()?;
            return name.split_once(':').map(|(ours, _)| ours);
        }
        attrs = attrs.get(4 + padded..).unwrap_or(&[]);
    }
    None
}

/// The address book of the shared port.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, ConnId>,
    /// (our socket's local address, the sender) → link.
    by_addr: HashMap<(SocketAddr, SocketAddr), ConnId>,
    /// Every address learned for a link, to forget them with it.
    addrs_of: HashMap<ConnId, Vec<(SocketAddr, SocketAddr)>>,
}

impl Demux {
    /// A new link answers checks for `ufrag`.
    pub fn add(&mut self, conn: ConnId, ufrag: &str) {
        self.by_ufrag.insert(ufrag.to_owned(), conn);
    }

    /// Forgets a link, its ufrag and every address learned for it.
    pub fn remove(&mut self, conn: ConnId) {
        self.by_ufrag.retain(|_, c| *c != conn);
        for key in self.addrs_of.remove(&conn).unwrap_or_default() {
            if self.by_addr.get(&key) == Some(&conn) {
                self.by_addr.remove(&key);
            }
        }
    }

    /// The link a datagram from `peer` arriving on `local` belongs to. A Binding request is
    /// routed by its username (and teaches the address); anything else by its address.
    pub fn route(&mut self, local: SocketAddr, peer: SocketAddr, data: &[u8]) -> Option<ConnId> {
        let key = (local, peer);
        if let Some(ufrag) = binding_request_ufrag(data) {
            let conn = *self.by_ufrag.get(ufrag)?;
            if self.by_addr.insert(key, conn) != Some(conn) {
                self.addrs_of.entry(conn).or_default().push(key);
            }
            return Some(conn);
        }
        self.by_addr.get(&key).copied()
    }

    /// Number of links known (for tests and stats).
    #[must_use]
    pub fn links(&self) -> usize {
        self.by_ufrag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request with the given USERNAME (and a PRIORITY attribute before it).
    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn reads_our_half_of_the_username() {
        assert_eq!(binding_request_ufrag(&binding("srv1:dev9")), Some("srv1"));
        assert_eq!(binding_request_ufrag(&binding("abc:")), Some("abc"));
        assert_eq!(binding_request_ufrag(&binding("nocolon")), None);
    }

    #[test]
    fn anything_else_is_not_a_binding_request() {
        let good = binding("a:b");
        let mut response = good.clone();
        response[0] = 0x01; // success response
        response[1] = 0x01;
        assert_eq!(binding_request_ufrag(&response), None);
        let mut cookie = good.clone();
        cookie[4] = 0;
        assert_eq!(binding_request_ufrag(&cookie), None);
        // DTLS, RTP, truncations and lies about lengths never panic.
        assert_eq!(binding_request_ufrag(&[22, 254, 253, 0, 0]), None);
        assert_eq!(binding_request_ufrag(&[0x80, 111, 0, 1]), None);
        for cut in 0..good.len() {
            let _ = binding_request_ufrag(&good[..cut]);
        }
        let mut long = good.clone();
        long[2] = 0xff;
        assert_eq!(binding_request_ufrag(&long), None);
        let mut attr_len = good.clone();
        attr_len[22] = 0x7f; // PRIORITY claims more than there is
        assert_eq!(binding_request_ufrag(&attr_len), None);
    }

    #[test]
    fn fuzzed_input_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = binding("server:device");
        for _ in 0..20_000 {
            let mut m = base.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % m.len();
                m[i] = (x >> 32) as u8;
            }
            let _ = binding_request_ufrag(&m);
            m.truncate((x as usize >> 8) % (m.len() + 1));
            let _ = binding_request_ufrag(&m);
        }
    }

    #[test]
    fn routes_by_username_then_by_address_and_follows_a_move() {
        let port: SocketAddr = "10.0.0.1:7451".parse().unwrap();
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let mut d = Demux::default();
        d.add(1, "one");
        d.add(2, "two");
        assert_eq!(
            d.route(port, a, b"\x17\xfe\xfd dtls"),
            None,
            "unknown sender"
        );
        assert_eq!(d.route(port, a, &binding("one:x")), Some(1));
        assert_eq!(d.route(port, a, b"\x17\xfe\xfd dtls"), Some(1));
        assert_eq!(d.route(port, a, &binding("zzz:x")), None, "unknown ufrag");
        // The same address now checks for link 2 (a device signed in again from one port).
        assert_eq!(d.route(port, a, &binding("two:x")), Some(2));
        assert_eq!(d.route(port, a, b"\x80rtp"), Some(2));
        // Link 2 moves.
        assert_eq!(d.route(port, b, &binding("two:y")), Some(2));
        d.remove(2);
        assert_eq!(d.route(port, a, b"\x80rtp"), None);
        assert_eq!(d.route(port, b, &binding("two:y")), None);
        assert_eq!(d.links(), 1);
    }
}
