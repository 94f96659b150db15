//! One media shard: a thread that owns some devices' [`LinkCore`]s, their part of the [`Relay`]
//! (the receivers it holds) and their timers. The front ([`super::front`]) hands it the
//! datagrams of its links; it decrypts them, relays each packet to its own receivers directly
//! and to the other shards' receivers with one message per shard, encrypts and sends on the
//! shared media port. Every link's packets therefore take at most one hop between threads, and
//! the switchboard's media work spreads over the cores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::certificate::RTCCertificate;
use tokio::sync::mpsc;

use super::hub::{HubCounters, HubEvent};
use crate::media::link::{LinkCore, LinkEvent, LocalCandidate, Path, Proto, Role, RtpAudio};
use crate::server::relay::{Forward, Relay, RelayStats};
use crate::server::switchboard::ConnId;

/// Messages a shard handles more of at once before it looks at its timers again.
const BURST: usize = 64;

/// What reaches a shard: one closed enum.
pub enum ShardMsg {
    /// Answer a device's offer with these ICE credentials (the front already routes checks
    /// for `ufrag` here).
    Answer {
        conn: ConnId,
        offer_sdp: String,
        announce: Vec<SocketAddr>,
        ufrag: String,
        pwd: String,
    },
    Drop {
        conn: ConnId,
    },
    /// Which shard holds `conn`'s link (`None`: it is gone).
    Placed {
        conn: ConnId,
        shard: Option<usize>,
    },
    Routes(Arc<BTreeMap<ConnId, Vec<ConnId>>>),
    Tap {
        from: ConnId,
        tx: mpsc::Sender<RtpAudio>,
    },
    Untap {
        from: ConnId,
    },
    Inject {
        to: ConnId,
        rtp: RtpAudio,
    },
    /// A datagram for `conn`'s link, as it arrived on the port.
    Datagram {
        conn: ConnId,
        path: Path,
        data: BytesMut,
        at: Instant,
    },
    /// A packet from `from` (on another shard) for receivers this shard holds.
    Forward {
        from: ConnId,
        to: Vec<ConnId>,
        rtp: RtpAudio,
    },
    /// The switchboard is going away: close every link and end.
    Stop,
}

/// Where a shard sends: the media port's sockets, by the announced addresses they serve.
pub struct Port {
    /// Clones of the port's sockets (plain, non-blocking): any thread may send on them.
    pub sockets: Vec<std::net::UdpSocket>,
    pub socket_of: HashMap<SocketAddr, usize>,
}

impl Port {
    fn send(&self, path: &Path, payload: &[u8], counters: &mut HubCounters) {
        let Some(s) = self
            .socket_of
            .get(&path.local)
            .and_then(|i| self.sockets.get(*i))
        else {
            tracing::debug!(local = %path.local, "no media socket for a link's packet");
            return;
        };
        match s.send_to(payload, path.peer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => counters.send_blocked += 1,
            // Unreachable peers, filtered ports: the device's ICE notices; nothing to do here.
            Err(e) => tracing::trace!(peer = %path.peer, "media send: {e}"),
        }
    }
}

pub struct Shard {
    id: usize,
    port: Arc<Port>,
    links: HashMap<ConnId, LinkCore>,
    relay: Relay,
    taps: HashMap<ConnId, mpsc::Sender<RtpAudio>>,
    /// Which shard holds every link.
    owner: HashMap<ConnId, usize>,
    /// The other shards (this one's own slot included, never used).
    peers: Vec<mpsc::UnboundedSender<ShardMsg>>,
    deadline_of: HashMap<ConnId, Instant>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    certificate: Option<RTCCertificate>,
    events: Arc<dyn Fn(HubEvent) + Send + Sync>,
    /// Reused per packet: this shard's deliveries, and the other shards' receivers.
    forwards: Vec<Forward>,
    local: Vec<ConnId>,
    remote: Vec<(usize, ConnId)>,
    counters: HubCounters,
}

impl Shard {
    pub fn new(
        id: usize,
        port: Arc<Port>,
        stats: Arc<RelayStats>,
        peers: Vec<mpsc::UnboundedSender<ShardMsg>>,
        certificate: Option<RTCCertificate>,
        events: Arc<dyn Fn(HubEvent) + Send + Sync>,
    ) -> Shard {
        Shard {
            id,
            port,
            links: HashMap::new(),
            relay: Relay::new(stats),
            taps: HashMap::new(),
            owner: HashMap::new(),
            peers,
            deadline_of: HashMap::new(),
            deadlines: BTreeSet::new(),
            certificate,
            events,
            forwards: Vec::with_capacity(16),
            local: Vec::with_capacity(16),
            remote: Vec::with_capacity(16),
            counters: HubCounters::default(),
        }
    }

    /// Runs until the front goes away, then closes its links (their close alerts are sent).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ShardMsg>) {
        loop {
            let deadline = self.deadlines.first().map(|(t, _)| *t);
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    if !self.handle(msg) {
                        break;
                    }
                    let mut stop = false;
                    for _ in 0..BURST {
                        match rx.try_recv() {
                            Ok(msg) => {
                                if !self.handle(msg) {
                                    stop = true;
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    if stop {
                        break;
                    }
                }
                _ = sleep_until(deadline) => {}
            }
            self.timeouts(Instant::now());
        }
        for (_, mut link) in std::mem::take(&mut self.links) {
            link.close();
            while let Some(t) = link.poll_transmit() {
                self.port.send(&t.path, &t.payload, &mut self.counters);
            }
        }
    }

    /// Handles one message; false when it says to stop.
    fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Stop => return false,
            ShardMsg::Datagram {
                conn,
                path,
                data,
                at,
            } => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.handle_datagram(at, path, data);
                    self.drain(conn, at);
                }
            }
            ShardMsg::Forward { from, to, rtp } => {
                let now = Instant::now();
                self.relay.heard(from, &rtp, now);
                for t in to {
                    if let Some(f) = self.relay.deliver(t, from, &rtp, now) {
                        self.forwards.push(f);
                    }
                }
                self.send_forwards(&rtp, now);
            }
            ShardMsg::Answer {
                conn,
                offer_sdp,
                announce,
                ufrag,
                pwd,
            } => self.answer(conn, &offer_sdp, &announce, ufrag, pwd),
            ShardMsg::Drop { conn } => self.drop_link(conn),
            ShardMsg::Placed { conn, shard } => match shard {
                Some(s) => {
                    self.owner.insert(conn, s);
                }
                None => {
                    self.owner.remove(&conn);
                }
            },
            ShardMsg::Routes(routes) => self.relay.set_routes((*routes).clone()),
            ShardMsg::Tap { from, tx } => {
                self.taps.insert(from, tx);
            }
            ShardMsg::Untap { from } => {
                self.taps.remove(&from);
            }
            ShardMsg::Inject { to, rtp } => {
                let now = Instant::now();
                if let Some(f) = self.relay.inject(to, &rtp, now) {
                    self.forwards.push(f);
                    self.send_forwards(&rtp, now);
                }
            }
        }
        true
    }

    fn answer(
        &mut self,
        conn: ConnId,
        offer: &str,
        announce: &[SocketAddr],
        ufrag: String,
        pwd: String,
    ) {
        // A device that offers again (its link failed) replaces its link.
        self.drop_link(conn);
        let now = Instant::now();
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

    fn drop_link(&mut self, conn: ConnId) {
        let Some(mut link) = self.links.remove(&conn) else {
            return;
        };
        link.close();
        // The DTLS close alert tells the device at once rather than after its consent expires.
        while let Some(t) = link.poll_transmit() {
            self.port.send(&t.path, &t.payload, &mut self.counters);
        }
        self.relay.remove(conn);
        self.taps.remove(&conn);
        self.set_deadline(conn, None);
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
    /// the relay to the receivers' links, here or on their shards.
    fn drain(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            if let Some(t) = link.poll_transmit() {
                self.port.send(&t.path, &t.payload, &mut self.counters);
                continue;
            }
            let Some(ev) = link.poll_event() else {
                break;
            };
            match ev {
                LinkEvent::Connected => (self.events)(HubEvent::Connected { conn, up: true }),
                LinkEvent::Disconnected => (self.events)(HubEvent::Connected { conn, up: false }),
                LinkEvent::Audio(rtp) => self.audio(conn, rtp, now),
            }
        }
        let next = self.links.get_mut(&conn).and_then(LinkCore::poll_timeout);
        self.set_deadline(conn, next);
    }

    fn audio(&mut self, from: ConnId, rtp: RtpAudio, now: Instant) {
        if let Some(tap) = self.taps.get(&from) {
            // A recorder that falls behind loses packets rather than stall the shard.
            let _ = tap.try_send(rtp.clone());
        }
        self.relay.arrived();
        self.relay.heard(from, &rtp, now);
        let mut remote = std::mem::take(&mut self.remote);
        let mut local = std::mem::take(&mut self.local);
        for &to in self.relay.targets(from) {
            if self.relay.holds(to) {
                local.push(to);
            } else if let Some(&s) = self.owner.get(&to)
                && s != self.id
            {
                remote.push((s, to));
            }
        }
        for to in local.drain(..) {
            if let Some(f) = self.relay.deliver(to, from, &rtp, now) {
                self.forwards.push(f);
            }
        }
        self.local = local;
        self.send_forwards(&rtp, now);
        if !remote.is_empty() {
            remote.sort_unstable();
            let mut i = 0;
            while i < remote.len() {
                let shard = remote[i].0;
                let mut to = Vec::with_capacity(2);
                while i < remote.len() && remote[i].0 == shard {
                    to.push(remote[i].1);
                    i += 1;
                }
                if let Some(peer) = self.peers.get(shard) {
                    let _ = peer.send(ShardMsg::Forward {
                        from,
                        to,
                        rtp: rtp.clone(),
                    });
                }
            }
            remote.clear();
        }
        self.remote = remote;
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
                self.port.send(&t.path, &t.payload, &mut self.counters);
            }
            let next = link.poll_timeout();
            self.set_deadline(f.to, next);
        }
        self.forwards = forwards;
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

/// The link's path for a datagram that arrived on announced address `local` from `peer`.
#[must_use]
pub fn udp_path(local: SocketAddr, peer: SocketAddr) -> Path {
    Path {
        local,
        peer,
        proto: Proto::Udp,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
