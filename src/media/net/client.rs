//! `ClientLink`: a device's link to the switchboard with its sockets.
//!
//! It owns a [`LinkCore`], one UDP socket per usable local address (host candidates, so the
//! switchboard is reachable from whichever interface routes to it, and from behind a NAT), and,
//! when the switchboard handed out TURN servers, one TURN allocation over TCP or TLS (a relay
//! candidate, for networks that drop UDP). It is not a task: the engine's loop awaits
//! [`next_event`](ClientLink::next_event) beside its other inputs and calls
//! [`send_audio`](ClientLink::send_audio) directly, so an encoded frame goes from the encoder to
//! the socket with no channel in between.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;

use super::ifaces::usable_ips;
use super::turn::{PipeEvent, TurnEvent, TurnPipe, TurnRelay, TurnTransport, TurnUrl};
use super::udp::{HasSocket, recv_any};
use crate::media::link::{
    AudioLevel, DEFAULT_SLOTS, LinkCore, LinkEvent, LinkStats, LocalCandidate, Path, Proto,
    RtpAudio,
};
use crate::protocol::IceServer;

const RECV_BUF: usize = 2048;

/// What a device's link needs to know to start.
#[derive(Clone, Default)]
pub struct ClientConfig {
    /// Streams it can receive at once (see [`DEFAULT_SLOTS`]).
    pub receive_slots: usize,
    /// The switchboard is reached over loopback (it is on this host): gather on loopback only.
    /// It answers a loopback device on loopback, and pairs from other interfaces towards it
    /// would only cost check rounds that cannot succeed.
    pub loopback: bool,
    /// Only these local addresses (tests and multi-homed hosts); empty: every usable one.
    pub only_ips: Vec<IpAddr>,
    /// TURN servers from the switchboard's `welcome`.
    pub ice_servers: Vec<IceServer>,
    /// TLS for `turns:` servers (the same trust as the signaling connection).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("receive_slots", &self.receive_slots)
            .field("loopback", &self.loopback)
            .field("only_ips", &self.only_ips)
            .field("ice_servers", &self.ice_servers.len())
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    #[must_use]
    pub fn new(loopback: bool) -> ClientConfig {
        ClientConfig {
            receive_slots: DEFAULT_SLOTS,
            loopback,
            ..ClientConfig::default()
        }
    }
}

/// How the link's media travels now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight to the switchboard over UDP.
    Direct,
    /// Through a TURN relay reached over TCP or TLS.
    Relay(TurnTransport),
}

/// What the engine hears from its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Connected,
    Disconnected,
    Audio(RtpAudio),
    /// Every TURN server the switchboard named failed (the reason of the last); the link goes
    /// on with its direct paths.
    RelayUnreachable(String),
}

/// What woke [`ClientLink::next_event`].
enum Woke {
    Datagram(usize, std::io::Result<(usize, SocketAddr)>),
    Pipe(PipeEvent),
    Timer,
}

struct HostSocket {
    socket: UdpSocket,
    addr: SocketAddr,
}

impl HasSocket for HostSocket {
    fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}

/// The TURN side: the servers left to try, the current attempt's pipe, and its allocation.
struct Turn {
    urls: VecDeque<TurnUrl>,
    tls: Option<Arc<rustls::ClientConfig>>,
    current: Option<(TurnUrl, TurnPipe)>,
    relay: Option<TurnRelay>,
    last_error: Option<String>,
}

pub struct ClientLink {
    core: LinkCore,
    sockets: Vec<HostSocket>,
    socket_of: HashMap<SocketAddr, usize>,
    turn: Turn,
    events: VecDeque<MediaEvent>,
    buf: Vec<u8>,
    via: Option<Via>,
    /// The local address the last non-STUN datagram went out from: which path is in use.
    last_media_local: Option<SocketAddr>,
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink")
            .field("core", &self.core)
            .field(
                "sockets",
                &self.sockets.iter().map(|s| s.addr).collect::<Vec<_>>(),
            )
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

impl ClientLink {
    /// Binds the host sockets, starts the TURN allocation if there is a server, and returns the
    /// link with its offer (host candidates; a relay candidate joins later, the switchboard
    /// being ICE-lite never needs to hear of it).
    ///
    /// # Errors
    ///
    /// If no socket can be bound at all, or webrtc-rs refuses to build the offer.
    pub async fn open(cfg: &ClientConfig) -> anyhow::Result<(ClientLink, String)> {
        let ips = if !cfg.only_ips.is_empty() {
            cfg.only_ips.clone()
        } else if cfg.loopback {
            usable_ips(true)
                .into_iter()
                .filter(std::net::IpAddr::is_loopback)
                .collect()
        } else {
            usable_ips(false)
        };
        let mut sockets = Vec::new();
        let mut errors = Vec::new();
        for ip in ips {
            match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
                Ok(socket) => match socket.local_addr() {
                    Ok(addr) => sockets.push(HostSocket { socket, addr }),
                    Err(e) => errors.push(format!("{ip}: {e}")),
                },
                Err(e) => errors.push(format!("{ip}: {e}")),
            }
        }
        if sockets.is_empty() && cfg.ice_servers.is_empty() {
            anyhow::bail!(
                "no network address to send media from{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", errors.join("; "))
                }
            );
        }
        let n = sockets.len();
        let candidates: Vec<LocalCandidate> = sockets
            .iter()
            .enumerate()
            .map(|(i, s)| LocalCandidate::Host {
                addr: s.addr,
                preference: u16::try_from(65535 - i.min(n)).unwrap_or(0),
            })
            .collect();
        let slots = cfg.receive_slots.max(1);
        let (core, sdp) = LinkCore::offer(slots, &candidates, Instant::now())?;
        let socket_of = sockets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.addr, i))
            .collect();
        let mut urls = VecDeque::new();
        for server in &cfg.ice_servers {
            for u in &server.urls {
                match TurnUrl::parse(u, &server.username, &server.credential) {
                    // TCP first, then TLS: cheaper, and TLS only helps past a proxy that
                    // inspects traffic.
                    Ok(t) if t.transport == TurnTransport::Tcp => urls.push_front(t),
                    Ok(t) if t.transport == TurnTransport::Tls => urls.push_back(t),
                    Ok(_) => tracing::debug!("{u}: TURN over UDP is not used"),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        let mut link = ClientLink {
            core,
            sockets,
            socket_of,
            turn: Turn {
                urls,
                tls: cfg.tls.clone(),
                current: None,
                relay: None,
                last_error: None,
            },
            events: VecDeque::new(),
            buf: vec![0u8; RECV_BUF],
            via: None,
            last_media_local: None,
        };
        link.next_turn();
        Ok((link, sdp))
    }

    /// Applies the switchboard's answer: ICE checks start.
    ///
    /// # Errors
    ///
    /// As [`LinkCore::apply_answer`].
    pub fn apply_answer(&mut self, sdp: &str) -> anyhow::Result<()> {
        self.core.apply_answer(sdp, Instant::now())?;
        self.flush(Instant::now());
        Ok(())
    }

    /// Sends one encoded frame now (dropped while the link is down).
    pub fn send_audio(&mut self, rtp: (u16, u32, bool), payload: Bytes, level: Option<AudioLevel>) {
        let now = Instant::now();
        if let Err(e) = self.core.send_audio(0, rtp, payload, level, now) {
            tracing::debug!("sending audio: {e}");
        }
        self.flush(now);
    }

    /// The next event. Cancel-safe: awaiting it in a `select!` loses nothing.
    pub async fn next_event(&mut self) -> MediaEvent {
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            let deadline = [
                self.core.poll_timeout(),
                self.turn.relay.as_mut().and_then(TurnRelay::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            let Self {
                sockets, buf, turn, ..
            } = self;
            let pipe = turn.current.as_mut().map(|(_, p)| p);
            let woke = tokio::select! {
                (i, r) = recv_any(sockets, buf) => Woke::Datagram(i, r),
                ev = pipe_event(pipe) => Woke::Pipe(ev),
                _ = sleep_until(deadline) => Woke::Timer,
            };
            let now = Instant::now();
            match woke {
                Woke::Datagram(i, Ok((n, peer))) => {
                    let local = self.sockets[i].addr;
                    let data = BytesMut::from(&self.buf[..n]);
                    let path = Path {
                        local,
                        peer,
                        proto: Proto::Udp,
                    };
                    self.core.handle_datagram(now, path, data);
                    self.flush(now);
                }
                // ICMP errors for earlier sends surface on the next read; they say nothing
                // about this one.
                Woke::Datagram(_, Err(e)) => tracing::trace!("media read: {e}"),
                Woke::Pipe(ev) => self.pipe_event(ev, now),
                Woke::Timer => {
                    self.core.handle_timeout(now);
                    if let Some(r) = self.turn.relay.as_mut() {
                        r.handle_timeout(now);
                    }
                    self.flush(now);
                }
            }
        }
    }

    /// Closes the link; the switchboard hears of it through the DTLS close alert.
    pub fn close(&mut self) {
        let now = Instant::now();
        self.core.close();
        if let Some(r) = self.turn.relay.as_mut() {
            r.close(now);
        }
        self.flush(now);
        self.turn.current = None;
        self.turn.relay = None;
    }

    /// How media travels now, once connected.
    #[must_use]
    pub fn via(&self) -> Option<Via> {
        self.via
    }

    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.core.is_connected()
    }

    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.core.stats()
    }

    /// The link's network counters (see `LinkCore::counters`); about once a second.
    pub fn counters(&mut self) -> crate::core::quality::LinkCounters {
        self.core.counters(std::time::Instant::now())
    }

    /// The local addresses it gathered on.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.addr).collect()
    }

    /// Starts the next TURN server, if any is left.
    fn next_turn(&mut self) {
        self.turn.relay = None;
        self.turn.current = None;
        if let Some(url) = self.turn.urls.pop_front() {
            tracing::debug!(host = %url.host, port = url.port, "TURN: connecting");
            let pipe = TurnPipe::connect(&url, self.turn.tls.clone());
            self.turn.current = Some((url, pipe));
        } else if let Some(why) = self.turn.last_error.take() {
            self.events.push_back(MediaEvent::RelayUnreachable(why));
        }
    }

    fn pipe_event(&mut self, ev: PipeEvent, now: Instant) {
        match ev {
            PipeEvent::Up { local, server } => {
                let Some((url, _)) = &self.turn.current else {
                    return;
                };
                match TurnRelay::start(url, local, server, now) {
                    Ok(relay) => self.turn.relay = Some(relay),
                    Err(e) => {
                        self.turn.last_error = Some(e);
                        self.next_turn();
                    }
                }
            }
            PipeEvent::Bytes(b) => {
                if let Some(r) = self.turn.relay.as_mut() {
                    r.handle_stream(now, &b);
                }
            }
            PipeEvent::Down(why) => {
                if let Some(r) = self.turn.relay.as_mut() {
                    r.handle_closed(&why);
                } else {
                    tracing::info!("TURN: {why}");
                    self.turn.last_error = Some(why);
                    self.next_turn();
                }
            }
        }
        self.flush(now);
    }

    /// Sends what the link and the TURN relay have queued, and turns their events into ours.
    fn flush(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit() {
                progressed = true;
                self.transmit(&t.path, &t.payload, now);
            }
            while let Some(ev) = self.core.poll_event() {
                progressed = true;
                match ev {
                    LinkEvent::Connected => {
                        self.via = Some(self.path_kind());
                        tracing::info!(via = ?self.via, "media link up");
                        self.events.push_back(MediaEvent::Connected);
                    }
                    LinkEvent::Disconnected => self.events.push_back(MediaEvent::Disconnected),
                    LinkEvent::Audio(a) => self.events.push_back(MediaEvent::Audio(a)),
                }
            }
            if let Some(relay) = self.turn.relay.as_mut() {
                while let Some(bytes) = relay.poll_stream() {
                    progressed = true;
                    if let Some((_, pipe)) = &self.turn.current {
                        pipe.write(bytes);
                    }
                }
                while let Some(ev) = relay.poll_event() {
                    progressed = true;
                    match ev {
                        TurnEvent::Allocated { relayed } => {
                            let base = relay.local();
                            tracing::info!(%relayed, "TURN: relay allocated");
                            let relay = LocalCandidate::Relay {
                                addr: relayed,
                                base,
                            };
                            if let Err(e) = self.core.add_local_candidate(relay, now) {
                                tracing::warn!("TURN: {e}");
                            }
                        }
                        TurnEvent::Data { peer, data } => {
                            let path = Path {
                                local: relay.relayed().unwrap_or(peer),
                                peer,
                                proto: Proto::Udp,
                            };
                            self.core.handle_datagram(now, path, data);
                        }
                        TurnEvent::Failed(why) => {
                            tracing::info!("TURN: {why}");
                            self.turn.last_error = Some(why);
                        }
                    }
                }
                if self.turn.last_error.is_some()
                    && self
                        .turn
                        .relay
                        .as_ref()
                        .is_some_and(|r| r.relayed().is_none())
                {
                    self.next_turn();
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn transmit(&mut self, path: &Path, payload: &[u8], now: Instant) {
        // RTP/RTCP/DTLS (not STUN) tells which path the link settled on.
        if payload.first().is_some_and(|b| *b >= 20) {
            self.last_media_local = Some(path.local);
        }
        if let Some(relay) = self.turn.relay.as_mut()
            && relay.relayed() == Some(path.local)
        {
            relay.send(now, path.peer, payload);
            return;
        }
        let Some(s) = self
            .socket_of
            .get(&path.local)
            .and_then(|i| self.sockets.get(*i))
        else {
            return;
        };
        match s.socket.try_send_to(payload, path.peer) {
            Ok(_) => {}
            // A pair of a loopback socket and a remote address, a filtered port: that pair's
            // checks fail and ICE moves on; nothing to tell anyone.
            Err(e) => tracing::trace!(from = %path.local, to = %path.peer, "media send: {e}"),
        }
    }

    fn path_kind(&self) -> Via {
        match (&self.turn.relay, &self.turn.current, self.last_media_local) {
            (Some(r), Some((url, _)), Some(local)) if r.relayed() == Some(local) => {
                Via::Relay(url.transport)
            }
            _ => Via::Direct,
        }
    }
}

impl Drop for ClientLink {
    fn drop(&mut self) {
        self.close();
    }
}

async fn pipe_event(pipe: Option<&mut TurnPipe>) -> PipeEvent {
    match pipe {
        Some(p) => match p.rx.recv().await {
            Some(ev) => ev,
            None => PipeEvent::Down("the TURN connection task ended".into()),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
