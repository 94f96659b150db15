//! One media thread (shard): it reads its own socket of the media port's `SO_REUSEPORT` group,
//! and owns some devices' [`LinkCore`]s, their part of the [`Relay`] (the receivers it holds)
//! and their timers. The kernel hands each device address's datagrams always to the same
//! shard, and a link moves to the shard its DTLS and SRTP arrive on, so a packet is normally
//! read, decrypted, relayed, encrypted and sent by one thread without a hop. It takes one hop
//! when its receiver's link lives on another shard (one message per shard), and while a link
//! is still on its way to its shard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::certificate::RTCCertificate;
use tokio::sync::mpsc;

use super::demux::Demux;
use super::hub::HubEvent;
use crate::media::link::{LinkCore, LinkEvent, LocalCandidate, Path, Proto, Role, RtpAudio};
use crate::media::net::udp::{HasSocket, recv_any, try_recv_any};
use crate::server::relay::{Forward, Held, Relay, RelayStats};
use crate::server::switchboard::ConnId;

/// Datagrams or messages handled in one wake-up before the other source and the timers get a
/// turn.
const BURST: usize = 64;
/// Largest datagram read; anything longer is truncated (and then fails its checks).
const RECV_BUF: usize = 2048;
/// A link moves at most this often: a device whose datagrams arrive on two shards at once (two
/// paths in use) stays put rather than bounce.
const MOVE_EVERY: Duration = Duration::from_secs(2);
/// Hops a message may take chasing a link that moved, before it is dropped.
const MAX_HOPS: u8 = 3;

/// What reaches a shard: one closed enum.
pub enum ShardMsg {
    /// A link for `conn` is coming on `shard`, with switchboard ICE username `ufrag`: route its
    /// checks, and close an older link of the same device if this shard holds one.
    Expect {
        conn: ConnId,
        ufrag: Arc<str>,
        shard: usize,
    },
    /// Answer a device's offer with these ICE credentials.
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
    /// `conn`'s link now lives on `shard`.
    Placed {
        conn: ConnId,
        shard: usize,
    },
    /// A link moving here, with the datagram that called it.
    Adopt(Box<Adopted>),
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
    /// A datagram read by another shard.
    Datagram(Arrived),
    /// A packet from `from` (on another shard) for receivers this shard holds.
    Forward {
        from: ConnId,
        to: Vec<ConnId>,
        rtp: RtpAudio,
        hops: u8,
    },
    /// The switchboard is going away: close every link and end.
    Stop,
}

/// A datagram for `conn`'s link that shard `via` read, `hops` shards ago.
pub struct Arrived {
    conn: ConnId,
    path: Path,
    data: BytesMut,
    at: Instant,
    via: usize,
    hops: u8,
}

/// A link handed from one shard to another.
pub struct Adopted {
    conn: ConnId,
    link: LinkCore,
    held: Option<Held>,
    tap: Option<mpsc::Sender<RtpAudio>>,
    path: Path,
    data: BytesMut,
    at: Instant,
}

/// Where a shard sends: the media port's sockets, by the announced addresses they serve.
pub struct Port {
    /// The port's sockets (plain, non-blocking): any thread may send on them.
    pub sockets: Vec<std::net::UdpSocket>,
    pub socket_of: HashMap<SocketAddr, usize>,
}

impl Port {
    fn send(&self, path: &Path, payload: &[u8], stats: &RelayStats) {
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
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stats.send_blocked.fetch_add(1, Ordering::Relaxed);
            }
            // Unreachable peers, filtered ports: the device's ICE notices; nothing to do here.
            Err(e) => tracing::trace!(peer = %path.peer, "media send: {e}"),
        }
    }
}

/// This shard's member of one media socket's `SO_REUSEPORT` group.
pub struct ShardSocket {
    socket: tokio::net::UdpSocket,
    /// The address a link's ICE agent sees as the local end of a datagram read here.
    local: SocketAddr,
}

impl ShardSocket {
    /// Must be called on the shard's own runtime (the socket registers with it).
    ///
    /// # Errors
    ///
    /// If the runtime cannot take the socket.
    pub fn new(socket: std::net::UdpSocket, local: SocketAddr) -> std::io::Result<ShardSocket> {
        Ok(ShardSocket {
            socket: tokio::net::UdpSocket::from_std(socket)?,
            local,
        })
    }
}

impl HasSocket for ShardSocket {
    fn socket(&self) -> &tokio::net::UdpSocket {
        &self.socket
    }
}

/// What a shard shares with the others.
pub struct Shared {
    pub port: Arc<Port>,
    pub stats: Arc<RelayStats>,
    pub peers: Vec<mpsc::UnboundedSender<ShardMsg>>,
    pub load: Arc<[AtomicUsize]>,
    pub certificate: Option<RTCCertificate>,
    pub events: Arc<dyn Fn(HubEvent) + Send + Sync>,
}

pub struct Shard {
    id: usize,
    port: Arc<Port>,
    sockets: Vec<ShardSocket>,
    demux: Demux,
    links: HashMap<ConnId, LinkCore>,
    relay: Relay,
    taps: HashMap<ConnId, mpsc::Sender<RtpAudio>>,
    /// Which shard holds every link, as far as this one knows.
    owner: HashMap<ConnId, usize>,
    /// When each link held here last moved.
    moved: HashMap<ConnId, Instant>,
    /// Every shard (this one's own slot included, never used).
    peers: Vec<mpsc::UnboundedSender<ShardMsg>>,
    load: Arc<[AtomicUsize]>,
    stats: Arc<RelayStats>,
    deadline_of: HashMap<ConnId, Instant>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    certificate: Option<RTCCertificate>,
    events: Arc<dyn Fn(HubEvent) + Send + Sync>,
    /// Reused per packet: this shard's deliveries, and the other shards' receivers.
    forwards: Vec<Forward>,
    local: Vec<ConnId>,
    remote: Vec<(usize, ConnId)>,
}

impl Shard {
    pub fn new(id: usize, sockets: Vec<ShardSocket>, shared: Shared) -> Shard {
        Shard {
            id,
            port: shared.port,
            sockets,
            demux: Demux::default(),
            links: HashMap::new(),
            relay: Relay::new(Arc::clone(&shared.stats)),
            stats: shared.stats,
            taps: HashMap::new(),
            owner: HashMap::new(),
            moved: HashMap::new(),
            peers: shared.peers,
            load: shared.load,
            deadline_of: HashMap::new(),
            deadlines: BTreeSet::new(),
            certificate: shared.certificate,
            events: shared.events,
            forwards: Vec::with_capacity(16),
            local: Vec::with_capacity(16),
            remote: Vec::with_capacity(16),
        }
    }

    /// Runs until told to stop (or every sender is gone), then closes its links (their close
    /// alerts are sent).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ShardMsg>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let deadline = self.deadlines.first().map(|(t, _)| *t);
            let go_on = tokio::select! {
                // Messages before datagrams, always: a call's routes, sent before its devices'
                // audio, must be in place when that audio is read.
                biased;
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg) && self.messages(&mut rx) && self.read_waiting(&mut rx, &mut buf),
                    None => false,
                },
                (i, r) = recv_any(&self.sockets, &mut buf) => {
                    self.messages(&mut rx) && {
                        self.received(i, r, &buf);
                        self.read_waiting(&mut rx, &mut buf)
                    }
                }
                () = sleep_until(deadline) => true,
            };
            if !go_on {
                break;
            }
            self.timeouts(Instant::now());
        }
        for (_, mut link) in std::mem::take(&mut self.links) {
            link.close();
            while let Some(t) = link.poll_transmit() {
                self.port.send(&t.path, &t.payload, &self.stats);
            }
        }
    }

    /// Handles the messages waiting (up to a burst); false when one says to stop.
    fn messages(&mut self, rx: &mut mpsc::UnboundedReceiver<ShardMsg>) -> bool {
        for _ in 0..BURST {
            let Ok(msg) = rx.try_recv() else {
                return true;
            };
            if !self.handle(msg) {
                return false;
            }
        }
        true
    }

    /// Up to a burst of datagrams already waiting on this shard's sockets, each after the
    /// messages that came before it; false when a message says to stop.
    fn read_waiting(&mut self, rx: &mut mpsc::UnboundedReceiver<ShardMsg>, buf: &mut [u8]) -> bool {
        for _ in 0..BURST {
            let Some((i, r)) = try_recv_any(&self.sockets, buf) else {
                break;
            };
            if !self.messages(rx) {
                return false;
            }
            self.received(i, r, buf);
        }
        true
    }

    /// A datagram read from this shard's socket `i`.
    fn received(&mut self, i: usize, r: std::io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        let (n, peer) = match r {
            Ok(x) => x,
            // ICMP errors for earlier sends (a device that went away) surface on the next read
            // of an unconnected socket; they say nothing about this read.
            Err(e) => {
                tracing::trace!("media read: {e}");
                return;
            }
        };
        let Some(local) = self.sockets.get(i).map(|s| s.local) else {
            return;
        };
        let data = &buf[..n];
        let Some(conn) = self.demux.route(local, peer, data) else {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = Instant::now();
        let path = udp_path(local, peer);
        if let Some(link) = self.links.get_mut(&conn) {
            link.handle_datagram(now, path, BytesMut::from(data));
            self.drain(conn, now);
        } else if let Some(&owner) = self.owner.get(&conn)
            && owner != self.id
        {
            self.send_to(
                owner,
                ShardMsg::Datagram(Arrived {
                    conn,
                    path,
                    data: BytesMut::from(data),
                    at: now,
                    via: self.id,
                    hops: 1,
                }),
            );
        }
    }

    /// Handles one message; false when it says to stop.
    fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Stop => return false,
            ShardMsg::Datagram(arrived) => self.datagram(arrived),
            ShardMsg::Forward {
                from,
                to,
                rtp,
                hops,
            } => self.forwarded(from, to, &rtp, hops),
            ShardMsg::Expect { conn, ufrag, shard } => {
                if self.links.contains_key(&conn) {
                    self.drop_link(conn);
                }
                self.demux.remove(conn);
                self.demux.add(conn, &ufrag);
                self.owner.insert(conn, shard);
            }
            ShardMsg::Answer {
                conn,
                offer_sdp,
                announce,
                ufrag,
                pwd,
            } => self.answer(conn, &offer_sdp, &announce, ufrag, pwd),
            ShardMsg::Drop { conn } => {
                self.drop_link(conn);
                self.demux.remove(conn);
                self.owner.remove(&conn);
            }
            ShardMsg::Placed { conn, shard } => {
                // Only for links still known: a move that crosses the link's drop is dropped.
                if let Some(o) = self.owner.get_mut(&conn) {
                    *o = shard;
                }
            }
            ShardMsg::Adopt(adopted) => self.adopt(*adopted),
            ShardMsg::Routes(routes) => self.relay.set_routes((*routes).clone()),
            ShardMsg::Tap { from, tx } => {
                if self.links.contains_key(&from) {
                    self.taps.insert(from, tx);
                }
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

    /// A datagram another shard read for `conn`. When it is the device's DTLS or SRTP (not an
    /// ICE check: a device checks every path, but sends media on one) and arrived on another
    /// shard than this, the link moves there, so the rest of its packets take no hop.
    fn datagram(&mut self, mut arrived: Arrived) {
        if !self.links.contains_key(&arrived.conn) {
            // It moved on (or is gone): chase it a little way.
            if let Some(&owner) = self.owner.get(&arrived.conn)
                && owner != self.id
                && arrived.hops < MAX_HOPS
            {
                arrived.hops += 1;
                self.send_to(owner, ShardMsg::Datagram(arrived));
            }
            return;
        }
        let Arrived {
            conn,
            path,
            data,
            at,
            via,
            ..
        } = arrived;
        let media = data.first().is_some_and(|b| *b > 3);
        let settled = self
            .moved
            .get(&conn)
            .is_some_and(|t| at.saturating_duration_since(*t) < MOVE_EVERY);
        if via != self.id && via < self.peers.len() && media && !settled {
            self.hand_over(conn, via, path, data, at);
            return;
        }
        if let Some(link) = self.links.get_mut(&conn) {
            link.handle_datagram(at, path, data);
            self.drain(conn, at);
        }
    }

    fn hand_over(&mut self, conn: ConnId, to: usize, path: Path, data: BytesMut, at: Instant) {
        let Some(link) = self.links.remove(&conn) else {
            return;
        };
        self.set_deadline(conn, None);
        self.moved.remove(&conn);
        self.load[self.id].fetch_sub(1, Ordering::Relaxed);
        let adopted = Adopted {
            conn,
            link,
            held: self.relay.take(conn),
            tap: self.taps.remove(&conn),
            path,
            data,
            at,
        };
        // The new owner hears first: anything this shard or another routes to it after the
        // `Placed` below is queued behind the link itself.
        self.send_to(to, ShardMsg::Adopt(Box::new(adopted)));
        self.owner.insert(conn, to);
        for (s, peer) in self.peers.iter().enumerate() {
            if s != self.id && s != to {
                let _ = peer.send(ShardMsg::Placed { conn, shard: to });
            }
        }
        self.stats.moves.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn, from = self.id, to, "media link moved");
    }

    fn adopt(&mut self, a: Adopted) {
        let Adopted {
            conn,
            link,
            held,
            tap,
            path,
            data,
            at,
        } = a;
        if !self.owner.contains_key(&conn) {
            // Dropped while on its way.
            return;
        }
        let slots = link.slots();
        self.links.insert(conn, link);
        self.load[self.id].fetch_add(1, Ordering::Relaxed);
        self.owner.insert(conn, self.id);
        self.moved.insert(conn, at);
        match held {
            Some(h) => self.relay.put(conn, h),
            None => self.relay.add(conn, slots),
        }
        if let Some(tap) = tap {
            self.taps.insert(conn, tap);
        }
        if let Some(link) = self.links.get_mut(&conn) {
            link.handle_datagram(at, path, data);
        }
        self.drain(conn, at);
    }

    /// A packet another shard relays to receivers here.
    fn forwarded(&mut self, from: ConnId, to: Vec<ConnId>, rtp: &RtpAudio, hops: u8) {
        let now = Instant::now();
        self.relay.heard(from, rtp, now);
        let mut remote = std::mem::take(&mut self.remote);
        for t in to {
            if self.relay.holds(t) {
                if let Some(f) = self.relay.deliver(t, from, rtp, now) {
                    self.forwards.push(f);
                }
            } else if let Some(&s) = self.owner.get(&t)
                && s != self.id
                && hops < MAX_HOPS
            {
                remote.push((s, t));
            }
        }
        self.send_forwards(rtp, now);
        self.send_remote(from, rtp, &mut remote, hops + 1);
        self.remote = remote;
    }

    fn send_to(&self, shard: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Datagram(_) => {
                self.stats.datagram_hops.fetch_add(1, Ordering::Relaxed);
            }
            ShardMsg::Forward { .. } => {
                self.stats.relay_hops.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(peer) = self.peers.get(shard) {
            let _ = peer.send(msg);
        }
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
                self.load[self.id].fetch_add(1, Ordering::Relaxed);
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
        self.load[self.id].fetch_sub(1, Ordering::Relaxed);
        self.moved.remove(&conn);
        link.close();
        // The DTLS close alert tells the device at once rather than after its consent expires.
        while let Some(t) = link.poll_transmit() {
            self.port.send(&t.path, &t.payload, &self.stats);
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
                self.port.send(&t.path, &t.payload, &self.stats);
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
        self.send_remote(from, &rtp, &mut remote, 1);
        self.remote = remote;
    }

    /// Sends `rtp` to the shards holding `remote`'s receivers, one message per shard.
    fn send_remote(
        &self,
        from: ConnId,
        rtp: &RtpAudio,
        remote: &mut Vec<(usize, ConnId)>,
        hops: u8,
    ) {
        if remote.is_empty() {
            return;
        }
        remote.sort_unstable();
        let mut i = 0;
        while i < remote.len() {
            let shard = remote[i].0;
            let mut to = Vec::with_capacity(2);
            while i < remote.len() && remote[i].0 == shard {
                to.push(remote[i].1);
                i += 1;
            }
            self.send_to(
                shard,
                ShardMsg::Forward {
                    from,
                    to,
                    rtp: rtp.clone(),
                    hops,
                },
            );
        }
        remote.clear();
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
                self.port.send(&t.path, &t.payload, &self.stats);
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
