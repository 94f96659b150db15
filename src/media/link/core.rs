//! `LinkCore`: one WebRTC peer connection (ICE, DTLS-SRTP, Opus tracks) with no I/O.
//!
//! It wraps webrtc-rs's sans-IO `RTCPeerConnection` in the shape the rest of dialtone uses:
//! datagrams in with the time, [`Transmit`]s and [`LinkEvent`]s out, [`poll_timeout`] for the
//! next deadline. Which sockets carry the datagrams, and whether a "socket" is really a UDP
//! port, a TURN allocation reached over TCP or a TLS stream, is the adapter's business
//! (`media::net` on a client, `server::media` on the switchboard). That split is what lets one
//! switchboard UDP port serve every device, and lets a client on a network without UDP reach
//! the switchboard through TURN over TCP, with the same protocol code.
//!
//! The client offers one sendrecv Opus section and `receive_slots - 1` receive-only ones; the
//! switchboard answers one outbound track per section, as an ICE-lite agent with a fixed
//! username fragment, so a single socket can tell the links apart (`server::media::demux`).
//!
//! [`poll_timeout`]: LinkCore::poll_timeout

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, RTCDtlsRole, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::rtp::{AUDIO_LEVEL_URI, AudioLevel, RtpAudio, level_of, level_payload};

/// Receive slots a client offers by default: the far party, a companion device of theirs, and
/// one more (group calls forward the loudest few).
pub const DEFAULT_SLOTS: usize = 3;
/// Most audio sections the switchboard will answer.
pub const MAX_SLOTS: usize = 8;

/// Payload type we offer for Opus. It is only our preference: the value actually used on the
/// wire is read back from the negotiated sender parameters.
const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Pacing of connectivity checks (RFC 8445's Ta). webrtc-rs nominates on its next tick after a
/// check succeeded, so a link takes about one round trip plus one tick plus DTLS to connect:
/// 20 ms gives ~25 ms on a LAN (50 ms, RFC 8445's default, gave ~55 ms; webrtc-rs's own 200 ms
/// gave ~200). A device has a handful of pairs towards the switchboard, so this is still a few
/// small packets, well within RFC 8445 §14's rate limits.
/// Opus's RTP clock (RFC 7587: always 48 kHz), in ticks per millisecond.
const OPUS_CLOCK_PER_MS: f64 = 48.0;
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Keeps the per-pair retry budget at the library default (7 × 200 ms = 1.4 s) at ten times the
/// check rate; otherwise a lossy path would give up ten times sooner.
const ICE_MAX_BINDING_REQUESTS: u16 = 70;

/// How long a client waits after its checks start before it may settle on a TURN relay. A host
/// path that works answers within a round trip; this only keeps a relay from winning a race
/// against a direct path that is a few milliseconds slower (webrtc-rs's default is 2 s, which
/// would make every UDP-less call wait that long for sound).
const RELAY_ACCEPTANCE_MIN_WAIT: Duration = Duration::from_millis(300);

/// How much of a bad SDP an error message quotes.
const SDP_QUOTE_LIMIT: usize = 200;

/// The transport a datagram travels on: UDP, or TCP with its own framing (the adapter strips
/// and adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl From<Proto> for TransportProtocol {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Udp => TransportProtocol::UDP,
            Proto::Tcp => TransportProtocol::TCP,
        }
    }
}

/// The two ends of one datagram: our candidate's transport address and the peer's.
///
/// `local` is an *announced* address: a socket's own, a 1:1 NAT's public address that the
/// adapter maps to its socket, or a TURN relay's address that the adapter reaches through the
/// TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub proto: Proto,
}

/// One datagram to put on the wire.
#[derive(Debug)]
pub struct Transmit {
    pub path: Path,
    pub payload: BytesMut,
}

/// What a link reports, drained with [`LinkCore::poll_event`].
///
/// `Connected` and `Disconnected` are edges: each is reported once per transition. A
/// `Disconnected` from a transient ICE outage may be followed by `Connected` again; after
/// [`LinkCore::close`] the link stays down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// DTLS-SRTP is up; audio sent from now on is delivered.
    Connected,
    /// ICE lost the path (consent expired, checks failed) or the link was closed.
    Disconnected,
    /// One RTP packet of one of the far end's audio streams.
    Audio(RtpAudio),
}

/// A candidate this side offers the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCandidate {
    /// A transport address of our own (a UDP socket, possibly behind a 1:1 NAT that maps the
    /// announced address to it). `preference` orders several (higher is tried first).
    Host { addr: SocketAddr, preference: u16 },
    /// An address a TURN server relays for us; `base` is the local address we reach the
    /// server from.
    Relay { addr: SocketAddr, base: SocketAddr },
}

/// Which end of the link this is, and what differs between the two.
#[derive(Debug, Clone)]
pub enum Role {
    /// A device: full ICE, controlling, offers `receive_slots` audio sections.
    Client { receive_slots: usize },
    /// The switchboard: ICE-lite with the given credentials (so its socket can demultiplex by
    /// username fragment), DTLS server, answers every offered section.
    Server {
        ufrag: String,
        pwd: String,
        certificate: Option<RTCCertificate>,
    },
}

/// Why a link could not be built or negotiated. Messages quote the start of a bad SDP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("{what} SDP does not parse ({reason}): {sdp}")]
    SdpParse {
        what: &'static str,
        reason: String,
        sdp: String,
    },
    #[error("{what} SDP was rejected ({reason}): {sdp}")]
    SdpRejected {
        what: &'static str,
        reason: String,
        sdp: String,
    },
    #[error("answer SDP is our own offer echoed back: {0}")]
    EchoedOffer(String),
    #[error("remote SDP negotiated no Opus audio we can send: {0}")]
    NoOpus(String),
    #[error("building the peer connection failed: {0}")]
    Build(String),
    #[error("local candidate {candidate} was refused: {reason}")]
    Candidate { candidate: String, reason: String },
    #[error("no audio slot {slot} on this link (it has {slots})")]
    NoSlot { slot: usize, slots: usize },
    #[error("writing RTP seq {seq} ts {timestamp} on SSRC {ssrc:#010x} failed: {reason}")]
    Send {
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        reason: String,
    },
}

/// Counters for diagnostics and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub audio_received: u64,
    pub audio_sent: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Up,
    Down,
    Closed,
}

/// One outbound audio stream (slot).
#[derive(Debug)]
struct Slot {
    sender: RTCRtpSenderId,
    ssrc: u32,
}

/// One peer connection, sans I/O. See the module docs.
pub struct LinkCore {
    /// Boxed: it is kilobytes, and links move around (into maps, through channels).
    pc: Box<RTCPeerConnection>,
    slots: Vec<Slot>,
    payload_type: Option<u8>,
    level_ext: Option<u8>,
    state: State,
    events: VecDeque<LinkEvent>,
    local_ufrag: String,
    stats: LinkStats,
    /// The offer we made (client side), to recognise it echoed back as an answer.
    offer_sdp: Option<String>,
}

impl std::fmt::Debug for LinkCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCore")
            .field("state", &self.state)
            .field("slots", &self.slots.len())
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

impl LinkCore {
    /// Client side: builds the connection and returns it with the complete offer SDP carrying
    /// `candidates` (more can be added later with [`add_local_candidate`](Self::add_local_candidate);
    /// the switchboard, being ICE-lite, never needs to hear of them).
    ///
    /// # Errors
    ///
    /// If webrtc-rs refuses the configuration or a candidate.
    pub fn offer(
        receive_slots: usize,
        candidates: &[LocalCandidate],
        now: Instant,
    ) -> Result<(LinkCore, String), LinkError> {
        let role = Role::Client { receive_slots };
        let mut link = Self::build(&role, 1, now)?;
        for _ in 1..receive_slots.max(1) {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            };
            link.pc
                .add_transceiver_from_kind(RtpCodecKind::Audio, Some(init))
                .map_err(|e| LinkError::Build(format!("adding a receive-only slot: {e}")))?;
        }
        let offer = link
            .pc
            .create_offer(None)
            .map_err(|e| LinkError::Build(format!("creating the offer: {e}")))?;
        link.pc
            .set_local_description(now, offer)
            .map_err(|e| LinkError::Build(format!("applying our own offer: {e}")))?;
        for c in candidates {
            link.add_local_candidate(*c, now)?;
        }
        let sdp = link.local_sdp()?;
        link.offer_sdp = Some(sdp.clone());
        link.drain();
        Ok((link, sdp))
    }

    /// Client side: applies the switchboard's answer; ICE checks start here.
    ///
    /// # Errors
    ///
    /// If the answer does not parse, is our own offer echoed back, is refused by webrtc-rs, or
    /// negotiates no Opus. The error quotes the start of the SDP.
    pub fn apply_answer(&mut self, sdp: &str, now: Instant) -> Result<(), LinkError> {
        let desc =
            RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| LinkError::SdpParse {
                what: "answer",
                reason: one_line(&e),
                sdp: quote_sdp(sdp),
            })?;
        // webrtc-rs would accept our own offer as the answer (it is well-formed) and then try to
        // connect to itself; an echoing signaling bug deserves a clear error instead.
        if self.offer_sdp.as_deref() == Some(sdp) {
            return Err(LinkError::EchoedOffer(quote_sdp(sdp)));
        }
        self.pc
            .set_remote_description(now, desc)
            .map_err(|e| LinkError::SdpRejected {
                what: "answer",
                reason: one_line(&e),
                sdp: quote_sdp(sdp),
            })?;
        self.learn_negotiated(sdp)?;
        self.kick(now);
        self.drain();
        Ok(())
    }

    /// webrtc-rs's ICE agent defers what a check, an answer or a new candidate makes due (the
    /// first checks, a nomination, a triggered check) to its next timer, up to a whole pacing
    /// interval away. Running the timer at once sends them now: a link connects in about one
    /// round trip plus DTLS instead of waiting out a 50 ms tick or two.
    fn kick(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!("link timer: {e}");
        }
    }

    /// Switchboard side: answers a device's offer, announcing `candidates` (the switchboard's
    /// media addresses), with one outbound track per audio section offered.
    ///
    /// # Errors
    ///
    /// If the offer does not parse, is refused, or negotiates no Opus we can send.
    pub fn answer(
        role: &Role,
        offer_sdp: &str,
        candidates: &[LocalCandidate],
        now: Instant,
    ) -> Result<(LinkCore, String), LinkError> {
        // Parse before building anything, so garbage costs no key generation.
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).map_err(|e| {
            LinkError::SdpParse {
                what: "offer",
                reason: one_line(&e),
                sdp: quote_sdp(offer_sdp),
            }
        })?;
        let sections = offer_sdp
            .lines()
            .filter(|l| l.starts_with("m=audio"))
            .count()
            .clamp(1, MAX_SLOTS);
        let mut link = Self::build(role, sections, now)?;
        link.pc
            .set_remote_description(now, offer)
            .map_err(|e| LinkError::SdpRejected {
                what: "offer",
                reason: one_line(&e),
                sdp: quote_sdp(offer_sdp),
            })?;
        for c in candidates {
            link.add_local_candidate(*c, now)?;
        }
        let answer = link
            .pc
            .create_answer(None)
            .map_err(|e| LinkError::SdpRejected {
                what: "offer",
                reason: format!("no answer to it: {}", one_line(&e)),
                sdp: quote_sdp(offer_sdp),
            })?;
        link.pc
            .set_local_description(now, answer)
            .map_err(|e| LinkError::Build(format!("applying our own answer: {e}")))?;
        link.learn_negotiated(offer_sdp)?;
        let sdp = link.local_sdp()?;
        link.drain();
        Ok((link, sdp))
    }

    /// Announces one more local candidate (a TURN relay that finished allocating).
    ///
    /// # Errors
    ///
    /// If webrtc-rs cannot parse the candidate it was given.
    pub fn add_local_candidate(
        &mut self,
        c: LocalCandidate,
        now: Instant,
    ) -> Result<(), LinkError> {
        let init = candidate_init(c)?;
        let text = init.candidate.clone();
        self.pc
            .add_local_candidate(init)
            .map_err(|e| LinkError::Candidate {
                candidate: text,
                reason: e.to_string(),
            })?;
        // A relay candidate after the answer: checked now, not at the next tick.
        self.kick(now);
        self.drain();
        Ok(())
    }

    /// One datagram arrived on `path` at `now`.
    pub fn handle_datagram(&mut self, now: Instant, path: Path, data: BytesMut) {
        self.stats.datagrams_in += 1;
        // RFC 7983: 20..=63 is DTLS (RTP/RTCP start at 128, STUN at 0).
        let dtls = data.first().is_some_and(|b| (20..=63).contains(b));
        let stun = data.first().is_some_and(|b| *b < 2);
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: path.local,
                peer_addr: path.peer,
                transport_protocol: path.proto.into(),
                ecn: None,
            },
            message: data,
        };
        if let Err(e) = self.pc.handle_read(msg) {
            // A stray or damaged datagram: it is dropped, the link goes on.
            tracing::trace!(peer = %path.peer, "datagram not taken: {e}");
        }
        if stun {
            self.kick(now);
        }
        self.drain();
        if dtls {
            self.check_peer_closed();
        }
    }

    /// A peer that closes sends a DTLS `close_notify`; webrtc-rs then closes the DTLS transport
    /// but, following W3C's state rules (ICE connected + DTLS closed counts as connected),
    /// reports no state change. The link is down all the same: no media can flow.
    fn check_peer_closed(&mut self) {
        if self.state != State::Up {
            return;
        }
        let Some(first) = self.slots.first() else {
            return;
        };
        let closed = self.pc.rtp_sender(first.sender).is_some_and(|s| {
            s.transport().is_some_and(|t| {
                t.state() == rtc::peer_connection::transport::RTCDtlsTransportState::Closed
            })
        });
        if closed {
            self.state = State::Down;
            self.events.push_back(LinkEvent::Disconnected);
        }
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!("link timer: {e}");
        }
        self.drain();
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be called at.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        self.pc.poll_timeout()
    }

    /// The next datagram to send; drain until `None` after every call that takes input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let msg = self.pc.poll_write()?;
        self.stats.datagrams_out += 1;
        let proto = if msg.transport.transport_protocol == TransportProtocol::TCP {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        Some(Transmit {
            path: Path {
                local: msg.transport.local_addr,
                peer: msg.transport.peer_addr,
                proto,
            },
            payload: msg.message,
        })
    }

    /// The next state edge or received packet.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Sends one Opus packet on outbound stream `slot` (0 on a device; one per receive slot on
    /// the switchboard) with the caller's counters; the SSRC and payload type are the link's.
    ///
    /// Returns `Ok(false)` and drops the packet while the link is not up: audio that cannot be
    /// delivered now is worthless later, and the callers are real-time loops.
    ///
    /// # Errors
    ///
    /// If there is no such slot, or webrtc-rs refuses the packet.
    pub fn send_audio(
        &mut self,
        slot: usize,
        rtp_audio: (u16, u32, bool),
        payload: Bytes,
        level: Option<AudioLevel>,
        now: Instant,
    ) -> Result<bool, LinkError> {
        let (seq, timestamp, marker) = rtp_audio;
        let Some(s) = self.slots.get(slot) else {
            return Err(LinkError::NoSlot {
                slot,
                slots: self.slots.len(),
            });
        };
        let (Some(payload_type), State::Up) = (self.payload_type, self.state) else {
            return Ok(false);
        };
        let (sender, ssrc) = (s.sender, s.ssrc);
        let mut packet = rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc,
                ..Default::default()
            },
            payload,
        };
        if let (Some(level), Some(id)) = (level, self.level_ext) {
            // Cannot fail: the id came from negotiation (1..=14) and the data is one byte.
            let _ = packet.header.set_extension(id, level_payload(level));
        }
        let Some(mut s) = self.pc.rtp_sender(sender) else {
            return Err(LinkError::NoSlot {
                slot,
                slots: self.slots.len(),
            });
        };
        s.write_rtp(now, packet).map_err(|e| LinkError::Send {
            seq,
            timestamp,
            ssrc,
            reason: e.to_string(),
        })?;
        self.stats.audio_sent += 1;
        Ok(true)
    }

    /// Closes the connection: the DTLS close alert is queued as transmits (drain them so the
    /// far end learns at once), and `Disconnected` is reported if the link was up.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if let Err(e) = self.pc.close() {
            tracing::debug!("closing a link: {e}");
        }
        if self.state == State::Up {
            self.events.push_back(LinkEvent::Disconnected);
        }
        self.state = State::Closed;
    }

    /// Whether packets sent now would be delivered rather than dropped.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.state == State::Up
    }

    /// Our ICE username fragment (the switchboard's socket routes a new address by it).
    #[must_use]
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Number of outbound audio streams.
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The outbound streams' SSRCs, slot by slot.
    #[must_use]
    pub fn ssrcs(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.ssrc).collect()
    }

    #[must_use]
    pub fn payload_type(&self) -> Option<u8> {
        self.payload_type
    }

    #[must_use]
    pub fn level_extension_id(&self) -> Option<u8> {
        self.level_ext
    }

    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The link's running network counters from webrtc-rs's statistics (RTP sequence gaps and
    /// jitter of what arrives, RTCP receiver reports on what we send, the round trip). Builds a
    /// whole stats report: read it about once a second, not per packet.
    pub fn counters(&mut self, now: Instant) -> crate::core::quality::LinkCounters {
        use rtc::statistics::StatsSelector;
        use rtc::statistics::report::RTCStatsReportEntry as E;
        let report = self.pc.get_stats(now, StatsSelector::None);
        let mut c = crate::core::quality::LinkCounters::default();
        let mut rtcp_rtt: Option<f64> = None;
        let mut ice_rtt: Option<f64> = None;
        for entry in report.iter() {
            match entry {
                E::InboundRtp(s) => {
                    let r = &s.received_rtp_stream_stats;
                    c.packets_received += r.packets_received;
                    c.packets_lost += u64::try_from(r.packets_lost).unwrap_or(0);
                    // rtc 0.21 files the jitter of the receiver report it generates as is,
                    // in RTP timestamp units (its field says seconds): Opus's clock is 48 kHz.
                    c.jitter_ms = c.jitter_ms.max(r.jitter / OPUS_CLOCK_PER_MS);
                    c.bytes_received += s.bytes_received;
                }
                E::OutboundRtp(s) => c.bytes_sent += s.sent_rtp_stream_stats.bytes_sent,
                E::RemoteInboundRtp(s) => {
                    let lost = s.fraction_lost;
                    c.remote_fraction_lost =
                        Some(c.remote_fraction_lost.map_or(lost, |l| l.max(lost)));
                    if s.round_trip_time_measurements > 0 {
                        rtcp_rtt = Some(s.round_trip_time * 1000.0);
                    }
                }
                E::IceCandidatePair(p) if p.nominated && p.current_round_trip_time > 0.0 => {
                    ice_rtt = Some(p.current_round_trip_time * 1000.0);
                }
                _ => {}
            }
        }
        c.rtt_ms = rtcp_rtt.or(ice_rtt);
        c
    }

    fn build(role: &Role, tracks: usize, now: Instant) -> Result<LinkCore, LinkError> {
        let mut media_engine = MediaEngine::default();
        // Only Opus: the audio pipeline speaks nothing else, and offering more would let a peer
        // pick a codec we would then have to transcode.
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus_codec(),
                    payload_type: OPUS_PAYLOAD_TYPE,
                },
                RtpCodecKind::Audio,
            )
            .map_err(|e| LinkError::Build(format!("registering Opus: {e}")))?;
        // RFC 6464 levels let the switchboard pick a group call's loudest talkers without
        // decoding anyone. A peer that does not know it leaves it out, and then none flow.
        media_engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(|e| LinkError::Build(format!("registering the audio level extension: {e}")))?;
        // RTCP sender/receiver reports only. The default NACK half keeps a copy of every packet
        // sent although Opus is never retransmitted, and transport-cc serves video's bandwidth
        // estimation; on the switchboard, which handles every packet of every call, they cost a
        // fifth of its CPU (benches/group.rs).
        let registry =
            rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports(
                rtc::interceptor::Registry::new(),
            );

        let mut settings = SettingEngineBuilder::new()
            // Candidates are plain IPs; mDNS would only add a multicast socket per link.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
        let mut config = RTCConfigurationBuilder::new();
        let local_ufrag = match role {
            Role::Client { .. } => {
                settings = settings
                    .with_ice_connection_attempts(
                        Some(ICE_CHECK_INTERVAL),
                        Some(ICE_MAX_BINDING_REQUESTS),
                    )
                    .with_relay_acceptance_min_wait(Some(RELAY_ACCEPTANCE_MIN_WAIT));
                let (ufrag, pwd) = random_credentials();
                settings = settings.with_ice_credentials(ufrag.clone(), pwd);
                ufrag
            }
            Role::Server {
                ufrag,
                pwd,
                certificate,
            } => {
                // ICE-lite: the switchboard has only host candidates and answers checks; the
                // device, behind whatever NAT, finds the path (its checks create
                // peer-reflexive candidates here). DTLS server: the device, which knows which
                // path won, starts the handshake on it.
                settings = settings
                    .with_lite(true)
                    .with_answering_dtls_role(RTCDtlsRole::Server)
                    .with_ice_credentials(ufrag.clone(), pwd.clone());
                if let Some(cert) = certificate {
                    config = config.with_certificates(vec![cert.clone()]);
                }
                ufrag.clone()
            }
        };

        let mut pc = Box::new(
            RTCPeerConnectionBuilder::new()
                .with_configuration(config.build())
                .with_media_engine(media_engine)
                .with_setting_engine(settings.build())
                .with_interceptor_registry(registry)
                .build(now)
                .map_err(|e| LinkError::Build(e.to_string()))?,
        );

        let mut slots = Vec::with_capacity(tracks.max(1));
        for _ in 0..tracks.max(1) {
            // Fixed for the link's life so the far end sees one continuous stream when the
            // switchboard switches sources behind it; random (RFC 3550) so a replacement link is
            // never taken for the old stream. Zero is avoided: some stacks treat it as unset.
            let ssrc = rand::random::<u32>().max(1);
            let track = MediaStreamTrack::new(
                format!("dialtone-{ssrc:08x}"),
                format!("audio-{ssrc:08x}"),
                "audio".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            );
            // add_track makes a sendrecv transceiver; on the answerer, set_remote_description
            // pairs each with an offered audio section in order.
            let sender = pc
                .add_track(track)
                .map_err(|e| LinkError::Build(format!("adding the Opus track: {e}")))?;
            slots.push(Slot { sender, ssrc });
        }
        Ok(LinkCore {
            pc,
            slots,
            payload_type: None,
            level_ext: None,
            state: State::New,
            events: VecDeque::new(),
            local_ufrag,
            stats: LinkStats::default(),
            offer_sdp: None,
        })
    }

    /// The local description with every candidate added so far, gathering marked complete.
    fn local_sdp(&mut self) -> Result<String, LinkError> {
        // End of candidates: the SDP is complete (we never trickle to the switchboard).
        let _ = self.pc.add_local_candidate(RTCIceCandidateInit::default());
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| LinkError::Build("no local description after negotiation".into()))
    }

    /// Records the payload type and level extension id the sender will accept: read from the
    /// negotiated parameters rather than assumed, because they are what webrtc-rs checks
    /// outbound packets against.
    fn learn_negotiated(&mut self, remote_sdp: &str) -> Result<(), LinkError> {
        let Some(first) = self.slots.first() else {
            return Err(LinkError::NoOpus(quote_sdp(remote_sdp)));
        };
        let Some(mut sender) = self.pc.rtp_sender(first.sender) else {
            return Err(LinkError::NoOpus(quote_sdp(remote_sdp)));
        };
        let params = sender.get_parameters();
        let opus = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            .map(|c| c.payload_type);
        let level = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|h| h.uri == AUDIO_LEVEL_URI)
            .and_then(|h| u8::try_from(h.id).ok());
        let Some(pt) = opus else {
            return Err(LinkError::NoOpus(quote_sdp(remote_sdp)));
        };
        self.payload_type = Some(pt);
        self.level_ext = level;
        Ok(())
    }

    /// Moves what the peer connection has for us into our event queue: state edges first, then
    /// received audio.
    fn drain(&mut self) {
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                self.connection_state(s);
            }
        }
        while let Some(msg) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = msg.message {
                self.stats.audio_received += 1;
                let level = self.level_ext.and_then(|id| level_of(&packet.header, id));
                self.events.push_back(LinkEvent::Audio(RtpAudio {
                    ssrc: packet.header.ssrc,
                    seq: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    level,
                    payload: packet.payload,
                }));
            }
        }
    }

    fn connection_state(&mut self, s: RTCPeerConnectionState) {
        let next = match s {
            RTCPeerConnectionState::Connected => State::Up,
            RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Closed => State::Down,
            _ => return,
        };
        if self.state == State::Closed || self.state == next {
            return;
        }
        // New → Down is an edge too: a link that fails before it ever connected must not
        // leave its owner waiting for `Connected`.
        let prev = self.state;
        self.state = next;
        match next {
            State::Up => self.events.push_back(LinkEvent::Connected),
            _ if prev != State::Down => self.events.push_back(LinkEvent::Disconnected),
            _ => {}
        }
    }
}

/// A candidate as the SDP line webrtc-rs takes.
fn candidate_init(c: LocalCandidate) -> Result<RTCIceCandidateInit, LinkError> {
    let built = match c {
        LocalCandidate::Host { addr, preference } => CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                // RFC 8445 §5.1.2.1: type preference 126 for host, then our own order.
                priority: (126 << 24) | (u32::from(preference) << 8) | 255,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host(),
        LocalCandidate::Relay { addr, base } => CandidateRelayConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            rel_addr: base.ip().to_string(),
            rel_port: base.port(),
            ..Default::default()
        }
        .new_candidate_relay(),
    };
    let candidate = built.map_err(|e| LinkError::Candidate {
        candidate: format!("{c:?}"),
        reason: e.to_string(),
    })?;
    RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| LinkError::Candidate {
            candidate: format!("{c:?}"),
            reason: e.to_string(),
        })
}

/// Fresh ICE credentials: 16 and 32 characters from the ICE alphabet (RFC 8445 §5.3 asks for
/// at least 24 and 128 bits).
#[must_use]
pub fn random_credentials() -> (String, String) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
            .collect()
    };
    (pick(16), pick(32))
}

/// A DTLS certificate for the switchboard to share across its links: generating one per link
/// would cost a key generation per sign-in for nothing (the fingerprint authenticates the
/// switchboard, not the link).
///
/// # Errors
///
/// If the crypto provider cannot generate a key.
pub fn server_certificate() -> Result<RTCCertificate, LinkError> {
    let provider: Arc<dyn rtc::crypto::RTCCryptoProvider> = rtc::crypto::default_provider()
        .map_err(|e| LinkError::Build(format!("crypto provider: {e}")))?;
    let params = rtc::peer_connection::certificate::CertificateParams::new(vec![
        "dialtone-switchboard".to_owned(),
    ])
    .map_err(|e| LinkError::Build(format!("certificate parameters: {e}")))?;
    RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .map_err(|e| LinkError::Build(format!("generating the DTLS certificate: {e}")))
}

/// Opus as RFC 7587 requires it in SDP: `opus/48000/2` whatever the channel count; in-band FEC
/// on, the cheapest loss protection for voice.
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Quotes the start of an SDP for an error message, escaped so CRLFs stay on one line.
fn quote_sdp(sdp: &str) -> String {
    match sdp.char_indices().nth(SDP_QUOTE_LIMIT) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &sdp[..cut], sdp.len()),
        None => format!("{sdp:?}"),
    }
}

/// A library error as one line: the SDP parser's messages embed the offending line with its
/// line break.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_sdp_truncates_and_escapes() {
        assert_eq!(quote_sdp("v=0\r\n"), "\"v=0\\r\\n\"");
        let long = "a".repeat(SDP_QUOTE_LIMIT + 50);
        let quoted = quote_sdp(&long);
        assert!(quoted.ends_with(&format!("({} bytes)", long.len())));
        assert!(quoted.len() < long.len());
    }

    #[test]
    fn credentials_are_long_enough_and_differ() {
        let (u1, p1) = random_credentials();
        let (u2, _) = random_credentials();
        assert_eq!(u1.len(), 16);
        assert_eq!(p1.len(), 32);
        assert_ne!(u1, u2);
    }

    #[test]
    fn host_candidate_preference_orders_priority() {
        let a = candidate_init(LocalCandidate::Host {
            addr: "10.0.0.1:7451".parse().unwrap(),
            preference: 65535,
        })
        .unwrap();
        assert!(
            a.candidate.contains("10.0.0.1 7451 typ host"),
            "{}",
            a.candidate
        );
        let relay = candidate_init(LocalCandidate::Relay {
            addr: "192.0.2.7:50000".parse().unwrap(),
            base: "10.0.0.2:40000".parse().unwrap(),
        })
        .unwrap();
        assert!(relay.candidate.contains("typ relay"), "{}", relay.candidate);
    }
}
