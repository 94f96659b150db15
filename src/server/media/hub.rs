//! The media hub: one task that owns the media port's sockets, every device's [`LinkCore`] and
//! the [`Relay`]. A packet is read, routed to its link by [`Demux`], decrypted, handed to the
//! relay, re-encrypted on each receiver's link and sent, all in one pass of one task: no
//! channel hop per packet.
//!
//! The switchboard's loop talks to it with [`HubCmd`]s and hears back through a callback of
//! [`HubEvent`]s. It decides nothing about calls: which candidates a device is offered and who
//! hears whom come from the switchboard core.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::certificate::RTCCertificate;
use tokio::sync::mpsc;

use super::demux::Demux;
use super::sockets::MediaSocket;
use crate::media::link::{
    LinkCore, LinkEvent, LocalCandidate, Path, Proto, Role, RtpAudio, random_credentials,
};
use crate::media::net::udp::{recv_any, try_recv_any};
use crate::server::relay::{Forward, Relay, RelayStats};
use crate::server::switchboard::ConnId;

/// Largest datagram read; anything longer is truncated (and then fails its checks).
const RECV_BUF: usize = 2048;
/// Datagrams read from the sockets in one wake-up before timers and commands get a turn.
const BURST: usize = 64;

/// What the switchboard loop asks of the hub.
pub enum HubCmd {
    /// Answer a device's offer, announcing these media addresses, best first.
    Answer {
        conn: ConnId,
        offer_sdp: String,
        announce: Vec<SocketAddr>,
    },
    /// The device is gone: close its link.
    Drop {
        conn: ConnId,
    },
    /// Who hears whom (source → receivers).
    Routes(BTreeMap<ConnId, Vec<ConnId>>),
    /// Also hand what `from` sends to a server-side listener (a voicemail recording).
    Tap {
        from: ConnId,
        tx: mpsc::Sender<RtpAudio>,
    },
    Untap {
        from: ConnId,
    },
    /// Audio the switchboard itself plays to `to` (a greeting).
    Inject {
        to: ConnId,
        rtp: RtpAudio,
    },
}

/// What the hub reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    Answered {
        conn: ConnId,
        sdp: String,
    },
    Failed {
        conn: ConnId,
        error: String,
    },
    /// The device's link came up or went down.
    Connected {
        conn: ConnId,
        up: bool,
    },
}

/// Counters beyond the relay's.
#[derive(Debug, Default, Clone, Copy)]
pub struct HubCounters {
    /// Datagrams from an address and username no link knows.
    pub unrouted: u64,
    /// Datagrams the kernel would not take right now (dropped: real-time).
    pub send_blocked: u64,
}

pub struct Hub {
    sockets: Vec<MediaSocket>,
    /// Every announced address → the socket it arrives on.
    socket_of: HashMap<SocketAddr, usize>,
    links: HashMap<ConnId, LinkCore>,
    demux: Demux,
    relay: Relay,
    taps: HashMap<ConnId, mpsc::Sender<RtpAudio>>,
    /// Each link's next deadline, and the same ordered for the earliest.
    deadline_of: HashMap<ConnId, Instant>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    certificate: Option<RTCCertificate>,
    events: Box<dyn Fn(HubEvent) + Send>,
    /// Reused per packet: where the relay sends it.
    forwards: Vec<Forward>,
    counters: HubCounters,
}

impl Hub {
    /// A hub over bound sockets. The DTLS certificate is made once here and shared by every
    /// link; without one (key generation failed) each link makes its own.
    pub fn new(
        sockets: Vec<MediaSocket>,
        stats: Arc<RelayStats>,
        events: Box<dyn Fn(HubEvent) + Send>,
    ) -> Hub {
        let socket_of = sockets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.announce.iter().map(move |a| (*a, i)))
            .collect();
        let certificate = crate::media::link::server_certificate()
            .map_err(|e| tracing::warn!("{e}; each link will make its own"))
            .ok();
        Hub {
            sockets,
            socket_of,
            links: HashMap::new(),
            demux: Demux::default(),
            relay: Relay::new(stats),
            taps: HashMap::new(),
            deadline_of: HashMap::new(),
            deadlines: BTreeSet::new(),
            certificate,
            events,
            forwards: Vec::with_capacity(16),
            counters: HubCounters::default(),
        }
    }

    /// Runs until the command channel closes.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<HubCmd>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let deadline = self.deadlines.first().map(|(t, _)| *t);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => break,
                },
                (i, r) = recv_any(&self.sockets, &mut buf) => {
                    self.received(i, r, &buf, Instant::now());
                    // Drain what else is waiting before timers and commands get a turn.
                    for _ in 0..BURST {
                        let Some((i, r)) = try_recv_any(&self.sockets, &mut buf) else { break };
                        self.received(i, r, &buf, Instant::now());
                    }
                }
                _ = sleep_until(deadline) => self.timeouts(Instant::now()),
            }
        }
        for (_, mut link) in std::mem::take(&mut self.links) {
            link.close();
            while let Some(t) = link.poll_transmit() {
                self.transmit(&t.path, &t.payload);
            }
        }
    }

    fn received(
        &mut self,
        i: usize,
        r: std::io::Result<(usize, SocketAddr)>,
        buf: &[u8],
        now: Instant,
    ) {
        match r {
            Ok((n, peer)) => self.datagram(i, peer, &buf[..n], now),
            // ICMP errors for earlier sends (a device that went away) surface on the next
            // read of an unconnected socket; they say nothing about this read.
            Err(e) => tracing::trace!(socket = %self.sockets[i].bound, "media read: {e}"),
        }
    }

    fn datagram(&mut self, i: usize, peer: SocketAddr, data: &[u8], now: Instant) {
        let local = self.sockets[i].ice_local();
        let Some(conn) = self.demux.route(local, peer, data) else {
            self.counters.unrouted += 1;
            return;
        };
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let path = Path {
            local,
            peer,
            proto: Proto::Udp,
        };
        link.handle_datagram(now, path, BytesMut::from(data));
        self.drain(conn, now);
    }

    fn command(&mut self, cmd: HubCmd, now: Instant) {
        match cmd {
            HubCmd::Answer {
                conn,
                offer_sdp,
                announce,
            } => self.answer(conn, &offer_sdp, &announce, now),
            HubCmd::Drop { conn } => self.drop_link(conn, now),
            HubCmd::Routes(routes) => self.relay.set_routes(routes),
            HubCmd::Tap { from, tx } => {
                self.taps.insert(from, tx);
            }
            HubCmd::Untap { from } => {
                self.taps.remove(&from);
            }
            HubCmd::Inject { to, rtp } => {
                if let Some(f) = self.relay.inject(to, &rtp, now) {
                    self.forwards.push(f);
                    self.send_forwards(&rtp, now);
                }
            }
        }
    }

    fn answer(&mut self, conn: ConnId, offer: &str, announce: &[SocketAddr], now: Instant) {
        // A device that offers again (its link failed) replaces its link.
        self.drop_link(conn, now);
        let (ufrag, pwd) = random_credentials();
        let role = Role::Server {
            ufrag,
            pwd,
            certificate: self.certificate.clone(),
        };
        let n = announce.len();
        let candidates: Vec<LocalCandidate> = announce
            .iter()
            .enumerate()
            .map(|(i, a)| LocalCandidate::Host {
                addr: *a,
                preference: u16::try_from(65535 - i.min(n)).unwrap_or(0),
            })
            .collect();
        match LinkCore::answer(&role, offer, &candidates, now) {
            Ok((link, sdp)) => {
                self.demux.add(conn, link.local_ufrag());
                self.relay.add(conn, link.slots());
                self.links.insert(conn, link);
                self.drain(conn, now);
                (self.events)(HubEvent::Answered { conn, sdp });
            }
            Err(e) => (self.events)(HubEvent::Failed {
                conn,
                error: e.to_string(),
            }),
        }
    }

    fn drop_link(&mut self, conn: ConnId, now: Instant) {
        let Some(mut link) = self.links.remove(&conn) else {
            return;
        };
        link.close();
        // The DTLS close alert tells the device at once rather than after its consent expires.
        while let Some(t) = link.poll_transmit() {
            self.transmit(&t.path, &t.payload);
        }
        self.demux.remove(conn);
        self.relay.remove(conn);
        self.taps.remove(&conn);
        self.set_deadline(conn, None);
        let _ = now;
    }

    fn timeouts(&mut self, now: Instant) {
        while let Some(&(t, conn)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            self.deadline_of.remove(&conn);
            if let Some(link) = self.links.get_mut(&conn) {
                link.handle_timeout(now);
                self.drain(conn, now);
            }
        }
    }

    /// Sends what `conn`'s link has queued and acts on its events; received audio goes through
    /// the relay to the receivers' links.
    fn drain(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            if let Some(t) = link.poll_transmit() {
                self.transmit(&t.path, &t.payload);
                continue;
            }
            let Some(ev) = link.poll_event() else {
                break;
            };
            match ev {
                LinkEvent::Connected => (self.events)(HubEvent::Connected { conn, up: true }),
                LinkEvent::Disconnected => (self.events)(HubEvent::Connected { conn, up: false }),
                LinkEvent::Audio(rtp) => {
                    if let Some(tap) = self.taps.get(&conn) {
                        // A recorder that falls behind loses packets rather than stall the hub.
                        let _ = tap.try_send(rtp.clone());
                    }
                    let mut forwards = std::mem::take(&mut self.forwards);
                    self.relay.packet(conn, &rtp, now, |f| forwards.push(f));
                    self.forwards = forwards;
                    self.send_forwards(&rtp, now);
                }
            }
        }
        let next = self.links.get_mut(&conn).and_then(LinkCore::poll_timeout);
        self.set_deadline(conn, next);
    }

    /// Sends `rtp` as the relay decided (`self.forwards`), on each receiver's link.
    fn send_forwards(&mut self, rtp: &RtpAudio, now: Instant) {
        let mut forwards = std::mem::take(&mut self.forwards);
        for f in forwards.drain(..) {
            let Some(link) = self.links.get_mut(&f.to) else {
                continue;
            };
            if let Err(e) = link.send_audio(
                f.slot,
                (f.seq, f.timestamp, f.marker),
                rtp.payload.clone(),
                rtp.level,
                now,
            ) {
                tracing::debug!(to = f.to, "forwarding failed: {e}");
            }
            while let Some(t) = link.poll_transmit() {
                let (path, payload) = (t.path, t.payload);
                let link_socket = self.socket_of.get(&path.local).copied();
                send_on(
                    &self.sockets,
                    link_socket,
                    &path,
                    &payload,
                    &mut self.counters,
                );
            }
            let next = link.poll_timeout();
            self.set_deadline(f.to, next);
        }
        self.forwards = forwards;
    }

    fn transmit(&mut self, path: &Path, payload: &[u8]) {
        let i = self.socket_of.get(&path.local).copied();
        send_on(&self.sockets, i, path, payload, &mut self.counters);
    }

    fn set_deadline(&mut self, conn: ConnId, next: Option<Instant>) {
        let old = self.deadline_of.get(&conn).copied();
        if old == next {
            return;
        }
        if let Some(old) = old {
            self.deadlines.remove(&(old, conn));
        }
        match next {
            Some(t) => {
                self.deadline_of.insert(conn, t);
                self.deadlines.insert((t, conn));
            }
            None => {
                self.deadline_of.remove(&conn);
            }
        }
    }
}

fn send_on(
    sockets: &[MediaSocket],
    i: Option<usize>,
    path: &Path,
    payload: &[u8],
    counters: &mut HubCounters,
) {
    let Some(s) = i.and_then(|i| sockets.get(i)) else {
        tracing::debug!(local = %path.local, "no media socket for a link's packet");
        return;
    };
    match s.socket.try_send_to(payload, path.peer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => counters.send_blocked += 1,
        // Unreachable peers, filtered ports: the device's ICE notices; nothing to do here.
        Err(e) => tracing::trace!(peer = %path.peer, "media send: {e}"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
