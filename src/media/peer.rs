//! WebRTC peer connection: one `MediaLink` per signed-in client, carrying one Opus track each way.
//!
//! Each client holds exactly one peer connection to the switchboard, opened at sign-in and kept
//! warm, and the switchboard forwards RTP between the legs of a call. That is why the same type
//! serves both ends: the client [offers](MediaLink::offer), the server [answers](MediaLink::answer),
//! and from then on both sides just write and read RTP.
//!
//! Built on webrtc-rs 0.21 (a sans-IO core driven by a background task). A few of its
//! behaviours shape this module and are worth knowing before changing it:
//!
//! - Event-handler callbacks are awaited *on the connection's driver task*, the same task that
//!   runs ICE consent, DTLS retransmits and socket reads. A slow callback stalls the connection,
//!   so every callback here only pushes a value into a channel and returns.
//! - The core accepts an outbound RTP packet only if its SSRC is the track's and its payload type
//!   is one negotiated on the sender; anything else is logged inside the driver and dropped, not
//!   returned as an error. [`AudioSender`] therefore stamps both itself.
//! - Non-trickle ICE: `offer`/`answer` wait for candidate gathering to finish so the returned SDP
//!   is complete and signaling is one message each way.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

/// One inbound RTP packet from the remote Opus track, reduced to what the audio path uses.
///
/// The SSRC and payload type are left out on purpose: a link carries exactly one audio stream
/// each way, so they identify nothing the receiver needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpAudio {
    /// Which of the far end's streams this is: a link can carry several from the switchboard
    /// (a companion device, a group call), each with its own SSRC.
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// The RFC 6464 audio level the sender attached, if the link negotiated the extension and
    /// the packet carries it.
    pub level: Option<AudioLevel>,
    pub payload: Bytes,
}

/// The RFC 6464 client-to-mixer audio level of one packet
/// (`urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// Loudness of the audio in the packet in -dBov: 0 is the loudest, 127 silence. Values
    /// above 127 are sent as 127.
    pub dbov: u8,
    /// The sender's voice activity flag (the V bit; our SDP leaves `vad` at its default, on).
    pub voice: bool,
}

impl AudioLevel {
    /// The extension's one data byte: V in the top bit, the level below.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.dbov.min(127)
    }

    #[must_use]
    pub fn from_byte(b: u8) -> Self {
        AudioLevel {
            dbov: b & 0x7f,
            voice: b & 0x80 != 0,
        }
    }
}

/// The RFC 6464 header extension's URI, as it appears in `a=extmap`.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Every possible extension byte, so a packet's level is a slice of a static rather than a
/// fresh allocation.
static LEVEL_BYTES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

/// What a [`MediaLink`] reports on its event channel.
///
/// `Connected` and `Disconnected` are edges, not levels: each is sent once per transition. A
/// `Disconnected` caused by a transient ICE outage may be followed by `Connected` again if ICE
/// recovers; after `Failed` or `Closed` the link stays down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// DTLS-SRTP is up; audio written from now on is delivered.
    Connected,
    /// The link went down: ICE disconnected or failed, the peer closed it, or
    /// [`MediaLink::close`] was called. Also sent if the link fails before it ever connected,
    /// so a caller waiting for `Connected` is never left hanging.
    Disconnected,
    /// One RTP packet received on the remote audio track.
    Audio(RtpAudio),
}

/// Where a link binds its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Streams a client can receive at once (its offer has one sendrecv and `receive_slots - 1`
    /// receive-only audio sections). The switchboard answers whatever it is offered.
    pub receive_slots: usize,
    /// Local address for the link's UDP socket (ephemeral port).
    ///
    /// Defaults to `127.0.0.1` because a wildcard (`0.0.0.0`/`::`) is expanded by webrtc-rs to
    /// every interface *except* loopback, so a same-host client and server would find no common
    /// candidate pair. Use the wildcard, or a concrete interface address, for real networks.
    pub bind_ip: IpAddr,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receive_slots: DEFAULT_SLOTS,
        }
    }
}

/// Receive slots a client offers by default: the far party, a companion device of theirs, and
/// one more (group calls forward the loudest few).
pub const DEFAULT_SLOTS: usize = 3;
/// Most audio sections the switchboard will answer.
pub const MAX_SLOTS: usize = 8;

/// Payload type we offer for Opus. It is only our preference: the value actually used on the
/// wire is read back from the negotiated sender parameters, so an answerer that maps Opus to a
/// different number still works.
const OPUS_PAYLOAD_TYPE: u8 = 111;

/// webrtc-rs paces ICE connectivity checks at 200 ms by default, and nomination waits for the
/// next tick after a successful check, so a fresh link spends most of its setup time idle.
/// 50 ms is RFC 8445's default pacing (Ta), so this is not aggressive on real networks.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Keeps the per-candidate retry budget at the library default (7 × 200 ms = 1.4 s) now that
/// checks are four times as frequent; otherwise a lossy path would give up four times sooner.
const ICE_MAX_BINDING_REQUESTS: u16 = 28;

/// Upper bound on waiting for ICE gathering. Without STUN/TURN servers only host candidates are
/// gathered, which is immediate, so hitting this means something is badly wrong.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a bad SDP an error message quotes. SDPs run to kilobytes; the start is enough to
/// recognise what was sent.
const SDP_QUOTE_LIMIT: usize = 200;

/// The link's state as seen by senders, and the dedup memory for `Connected`/`Disconnected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Never connected yet.
    New,
    Up,
    Down,
}

/// Writes RTP on a link's outbound Opus track.
///
/// Cheap to clone (a few `Arc`s), so the server's relay and the client's encoder can each hold
/// one without going through the [`MediaLink`].
#[derive(Clone)]
pub struct AudioSender {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// Filled once negotiation completes; the offerer only learns it from the answer.
    payload_type: Arc<OnceLock<u8>>,
    /// The negotiated id of the audio level extension; stays empty if the peer did not accept
    /// it, and then no level is sent.
    level_ext: Arc<OnceLock<u8>>,
    state: watch::Receiver<LinkState>,
}

impl fmt::Debug for AudioSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioSender")
            .field("ssrc", &self.ssrc)
            .field("payload_type", &self.payload_type.get())
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl AudioSender {
    /// Sends one Opus packet with the caller's sequence number, timestamp and marker.
    ///
    /// The SSRC and payload type are the link's own, because the peer only accepts those. The
    /// counters are the caller's because the server rewrites them to keep a stream continuous
    /// across source switches, and the client's encoder keeps its own.
    ///
    /// While the link is not connected (before the first `Connected`, after `Disconnected`, or
    /// after `close`) the packet is dropped and `Ok(())` is returned: audio that cannot be
    /// delivered now is worthless later, and the callers are real-time loops that must not
    /// stall or error out during call setup.
    ///
    /// # Errors
    ///
    /// Only while connected, when the connection's driver cannot take the packet (it stopped
    /// underneath us). Awaiting may briefly wait for room in the driver's queue, which is
    /// webrtc-rs's outbound back-pressure.
    pub async fn send(
        &self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        self.send_with_level(seq, timestamp, marker, payload, None)
            .await
    }

    /// [`send`](Self::send), with the RFC 6464 audio level of the packet's audio attached when
    /// `level` is given and the peer negotiated the extension (otherwise the packet goes out
    /// without it).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_with_level(
        &self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        level: Option<AudioLevel>,
    ) -> anyhow::Result<()> {
        // Copy out rather than hold the borrow: a watch borrow blocks the state's writer, which
        // is the connection's driver task.
        let state = *self.state.borrow();
        if state != LinkState::Up {
            return Ok(());
        }
        let Some(&payload_type) = self.payload_type.get() else {
            return Ok(());
        };
        let mut packet = rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        if let (Some(level), Some(&id)) = (level, self.level_ext.get()) {
            let b = usize::from(level.to_byte());
            // Cannot fail: the id came from negotiation (1..=14) and the data is one byte.
            let _ = packet
                .header
                .set_extension(id, Bytes::from_static(&LEVEL_BYTES[b..=b]));
        }
        self.track.write_rtp(packet).await.map_err(|e| {
            anyhow!(
                "writing RTP seq {seq} ts {timestamp} on SSRC {:#010x} failed: {e}",
                self.ssrc
            )
        })
    }

    /// The outbound track's SSRC, fixed for the life of the link.
    #[must_use]
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The negotiated Opus payload type, once negotiation has completed.
    #[must_use]
    pub fn payload_type(&self) -> Option<u8> {
        self.payload_type.get().copied()
    }

    /// The negotiated id of the audio level header extension, if the peer accepted it.
    #[must_use]
    pub fn level_extension_id(&self) -> Option<u8> {
        self.level_ext.get().copied()
    }

    /// Whether packets sent now would be delivered rather than dropped.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == LinkState::Up
    }
}

/// One WebRTC peer connection with one sendrecv Opus transceiver, DTLS-SRTP encrypted.
///
/// Dropping a `MediaLink` closes it in the background (webrtc-rs would otherwise keep the
/// connection's driver task, sockets and keepalives running forever); call [`close`](Self::close)
/// to close it deterministically.
pub struct MediaLink {
    pc: Arc<dyn PeerConnection>,
    rtp_sender: Arc<dyn RtpSender>,
    audio: AudioSender,
    /// The switchboard's further outbound streams, one per extra slot the client offered.
    extra: Vec<AudioSender>,
    payload_type: Arc<OnceLock<u8>>,
    /// Shared by the senders (which stamp levels with it) and the receive pumps (which read
    /// levels with it): the one id negotiated for the extension serves both directions.
    level_ext: Arc<OnceLock<u8>>,
    /// Shared with the event handler so `close` can report the edge itself: webrtc-rs stops the
    /// driver on close without delivering the `Closed` state change.
    state: watch::Sender<LinkState>,
    events: mpsc::UnboundedSender<MediaEvent>,
}

impl fmt::Debug for MediaLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaLink")
            .field("audio", &self.audio)
            .finish_non_exhaustive()
    }
}

impl MediaLink {
    /// Client side: builds the connection with one sendrecv Opus transceiver (48 kHz, 2 channels
    /// as Opus's SDP requires, `minptime=10;useinbandfec=1`) and returns the complete offer SDP,
    /// candidates included.
    ///
    /// # Errors
    ///
    /// If the socket cannot be bound on `cfg.bind_ip`, or webrtc-rs fails to build the offer or
    /// to gather candidates.
    pub async fn offer(
        cfg: &MediaConfig,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> anyhow::Result<(MediaLink, String)> {
        let (link, mut gathered) = Self::build(cfg, events, 1).await?;
        // Receive-only slots: the switchboard may send several streams at once (a companion
        // device, the loudest few of a group call), each on its own track.
        for _ in 1..cfg.receive_slots.max(1) {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            };
            if let Err(e) = link
                .pc
                .add_transceiver_from_kind(RtpCodecKind::Audio, Some(init))
                .await
            {
                link.close().await;
                return Err(anyhow!("adding a receive-only audio slot failed: {e}"));
            }
        }
        let offer = link
            .pc
            .create_offer(None)
            .await
            .map_err(|e| anyhow!("creating the SDP offer failed: {e}"))?;
        link.pc
            .set_local_description(offer)
            .await
            .map_err(|e| anyhow!("applying our own SDP offer failed: {e}"))?;
        let sdp = link.complete_local_sdp(&mut gathered).await?;
        Ok((link, sdp))
    }

    /// Client side: applies the server's answer. Connection setup starts here; watch the event
    /// channel for `Connected`.
    ///
    /// # Errors
    ///
    /// If the answer does not parse, is our own offer echoed back, is rejected by webrtc-rs
    /// (wrong type for the current state, missing ICE credentials, ...), or negotiates no Opus.
    /// The error quotes the start of the SDP.
    pub async fn apply_answer(&self, sdp: &str) -> anyhow::Result<()> {
        let desc = RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| {
            anyhow!(
                "answer SDP does not parse ({}): {}",
                reason(&e),
                quote_sdp(sdp)
            )
        })?;
        // webrtc-rs accepts our own offer as the answer (it is well-formed SDP) and then tries
        // to connect to itself; an echoing signaling bug deserves a clear error instead.
        if let Some(local) = self.pc.local_description().await
            && local.sdp == sdp
        {
            return Err(anyhow!(
                "answer SDP is our own offer echoed back: {}",
                quote_sdp(sdp)
            ));
        }
        self.pc.set_remote_description(desc).await.map_err(|e| {
            anyhow!(
                "answer SDP was rejected ({}): {}",
                reason(&e),
                quote_sdp(sdp)
            )
        })?;
        self.learn_payload_type(sdp).await
    }

    /// Server side: answers a client's offer and returns the complete answer SDP.
    ///
    /// # Errors
    ///
    /// If the offer does not parse, is not acceptable to webrtc-rs, or negotiates no Opus audio
    /// we can send on (the error quotes the start of the SDP); or if the socket cannot be bound.
    /// Nothing is left running on error.
    pub async fn answer(
        cfg: &MediaConfig,
        offer_sdp: &str,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> anyhow::Result<(MediaLink, String)> {
        // Parse before building anything, so garbage costs no sockets or driver task.
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).map_err(|e| {
            anyhow!(
                "offer SDP does not parse ({}): {}",
                reason(&e),
                quote_sdp(offer_sdp)
            )
        })?;
        // One outbound track per audio section the client offered: the first pairs with its
        // sendrecv section, the others with its receive-only slots.
        let sections = offer_sdp
            .lines()
            .filter(|l| l.starts_with("m=audio"))
            .count()
            .clamp(1, MAX_SLOTS);
        let (link, mut gathered) = Self::build(cfg, events, sections).await?;
        let result = link.answer_offer(offer, offer_sdp, &mut gathered).await;
        match result {
            Ok(sdp) => Ok((link, sdp)),
            Err(e) => {
                // Close now rather than leave it to Drop, so the sockets are gone when we return.
                link.close().await;
                Err(e)
            }
        }
    }

    /// A handle for writing outbound audio; see [`AudioSender::send`].
    #[must_use]
    pub fn sender(&self) -> AudioSender {
        self.audio.clone()
    }

    /// Every outbound stream (server side: one per slot the client offered; the first is
    /// [`sender`](Self::sender)).
    #[must_use]
    pub fn senders(&self) -> Vec<AudioSender> {
        std::iter::once(self.audio.clone())
            .chain(self.extra.iter().cloned())
            .collect()
    }

    /// Closes the connection and stops its driver. Idempotent.
    ///
    /// The local event channel gets `Disconnected` if the link was up, because webrtc-rs does
    /// not deliver a `Closed` state change for a local close. The remote side learns of it
    /// through ICE consent expiry (about 5 s with default timeouts).
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::warn!("closing media link failed: {e}");
        }
        if self.state.send_replace(LinkState::Down) == LinkState::Up {
            let _ = self.events.send(MediaEvent::Disconnected);
        }
    }

    async fn build(
        cfg: &MediaConfig,
        events: mpsc::UnboundedSender<MediaEvent>,
        tracks: usize,
    ) -> anyhow::Result<(MediaLink, watch::Receiver<bool>)> {
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
            .map_err(|e| anyhow!("registering Opus with the media engine failed: {e}"))?;
        // RFC 6464 levels let the switchboard pick the loudest talkers of a group call without
        // decoding anyone's audio. Offered and answered in every direction; a peer that does
        // not know it simply leaves it out of its SDP, and then no levels flow.
        media_engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(|e| anyhow!("registering the audio level header extension failed: {e}"))?;
        // RTCP sender/receiver reports only (stats and lip-sync data a browser peer expects).
        // Not the defaults: their NACK half keeps a copy of every packet sent and tracks every
        // packet received although Opus is never retransmitted, and transport-cc feedback
        // serves bandwidth estimation for video. On the switchboard, which handles every
        // packet of every call, dropping them cut its CPU by a fifth (benches/group.rs).
        let registry =
            rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports(
                Registry::new(),
            );

        let setting_engine = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            // Candidates are plain IPs on both ends; mDNS would only add a multicast socket
            // on port 5353 per connection, which the server would hold hundreds of.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();

        let (state_tx, state_rx) = watch::channel(LinkState::New);
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let level_ext = Arc::new(OnceLock::new());
        let handler = Arc::new(LinkHandler {
            events: events.clone(),
            level_ext: Arc::clone(&level_ext),
            state: state_tx.clone(),
            gathered: gathered_tx,
        });

        let bind = SocketAddr::new(cfg.bind_ip, 0);
        // Boxed: the builder's future is ~20 KB, and it would otherwise inflate every future
        // that awaits offer()/answer().
        let pc = Box::pin(
            PeerConnectionBuilder::new()
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(setting_engine)
                .with_handler(handler)
                .with_udp_addrs(vec![bind])
                .build(),
        )
        .await
        .map_err(|e| anyhow!("creating a peer connection bound to {bind} failed: {e}"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let payload_type = Arc::new(OnceLock::new());
        let mut senders: Vec<(Arc<dyn RtpSender>, AudioSender)> = Vec::with_capacity(tracks);
        for _ in 0..tracks.max(1) {
            // Fixed for the link's life so the far end sees one continuous stream even when the
            // server switches sources behind it; random (RFC 3550) so a replacement link is never
            // taken for the old stream. Zero is avoided because some stacks treat it as "unset".
            let ssrc = rand::random::<u32>().max(1);
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
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
            )));
            // add_track makes a sendrecv transceiver; on the answerer, set_remote_description
            // then pairs each with an offered audio section in order, so one construction path
            // serves both sides.
            let rtp_sender = match pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
            {
                Ok(sender) => sender,
                Err(e) => {
                    let _ = pc.close().await;
                    return Err(anyhow!("adding the Opus track failed: {e}"));
                }
            };
            let audio = AudioSender {
                track,
                ssrc,
                payload_type: Arc::clone(&payload_type),
                level_ext: Arc::clone(&level_ext),
                state: state_rx.clone(),
            };
            senders.push((rtp_sender, audio));
        }
        let mut senders = senders.into_iter();
        let (rtp_sender, audio) = senders.next().expect("at least one track");
        let extra = senders.map(|(_, a)| a).collect();
        let link = MediaLink {
            pc,
            rtp_sender,
            audio,
            extra,
            payload_type,
            level_ext,
            state: state_tx,
            events,
        };
        Ok((link, gathered_rx))
    }

    async fn answer_offer(
        &self,
        offer: RTCSessionDescription,
        offer_sdp: &str,
        gathered: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<String> {
        self.pc.set_remote_description(offer).await.map_err(|e| {
            anyhow!(
                "offer SDP was rejected ({}): {}",
                reason(&e),
                quote_sdp(offer_sdp)
            )
        })?;
        let answer = self.pc.create_answer(None).await.map_err(|e| {
            anyhow!(
                "creating an answer to the offer failed ({}): {}",
                reason(&e),
                quote_sdp(offer_sdp)
            )
        })?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|e| anyhow!("applying our own SDP answer failed: {e}"))?;
        self.learn_payload_type(offer_sdp).await?;
        self.complete_local_sdp(gathered).await
    }

    /// Waits for gathering so the SDP carries every candidate (non-trickle ICE), then returns it.
    async fn complete_local_sdp(
        &self,
        gathered: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<String> {
        tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done))
            .await
            .map_err(|_| anyhow!("ICE gathering did not complete within {GATHER_TIMEOUT:?}"))?
            .context("peer connection stopped while gathering ICE candidates")?;
        let desc =
            self.pc.local_description().await.ok_or_else(|| {
                anyhow!("peer connection has no local description after gathering")
            })?;
        Ok(desc.sdp)
    }

    /// Records the payload type the core will accept for Opus on our sender, and the id of the
    /// audio level extension. Read from the sender rather than assumed, because those lists
    /// are exactly what the core checks outbound packets against.
    async fn learn_payload_type(&self, remote_sdp: &str) -> anyhow::Result<()> {
        let params = self
            .rtp_sender
            .get_parameters()
            .await
            .map_err(|e| anyhow!("reading negotiated send parameters failed: {e}"))?;
        let opus = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            .ok_or_else(|| {
                anyhow!(
                    "remote SDP negotiated no Opus audio we can send: {}",
                    quote_sdp(remote_sdp)
                )
            })?;
        // A second negotiation (not something this module does) keeps the first value.
        let _ = self.payload_type.set(opus.payload_type);
        // The same negotiated list holds the extension ids the core accepts on this sender;
        // absent when the peer did not take up the audio level extension.
        if let Some(ext) = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|h| h.uri == AUDIO_LEVEL_URI)
            && let Ok(id) = u8::try_from(ext.id)
        {
            let _ = self.level_ext.set(id);
        }
        Ok(())
    }
}

impl Drop for MediaLink {
    fn drop(&mut self) {
        // webrtc-rs detaches the driver when the handle is dropped without close(), leaving its
        // socket and keepalives alive for the life of the process. close() needs an async
        // context, so hand it to the runtime if there is one. Closing twice is harmless, so
        // this does not try to remember whether close() already ran.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Opus as RFC 7587 requires it to appear in SDP: `opus/48000/2` whatever the actual channel
/// count; in-band FEC on, because it is the cheapest loss protection for voice.
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
/// line break, which would split our error message.
fn reason(e: &dyn fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Receives webrtc-rs callbacks. Every method runs on the connection's driver task, so each one
/// only records a value in a channel and returns; anything slower belongs in the receiver.
struct LinkHandler {
    events: mpsc::UnboundedSender<MediaEvent>,
    level_ext: Arc<OnceLock<u8>>,
    state: watch::Sender<LinkState>,
    gathered: watch::Sender<bool>,
}

impl LinkHandler {
    fn connection_state(&self, state: RTCPeerConnectionState) {
        let next = match state {
            RTCPeerConnectionState::Connected => LinkState::Up,
            RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Closed => LinkState::Down,
            _ => return,
        };
        // Report edges only: Disconnected → Failed → Closed is one event for the consumer.
        if self.state.send_replace(next) == next {
            return;
        }
        let event = match next {
            LinkState::Up => MediaEvent::Connected,
            _ => MediaEvent::Disconnected,
        };
        let _ = self.events.send(event);
    }
}

/// The future type webrtc-rs's `#[async_trait]` handler methods return. Written out by hand so
/// the crate needs no `async-trait` dependency; our callbacks finish synchronously anyway.
type HandlerFuture<'a> = Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

impl PeerConnectionEventHandler for LinkHandler {
    fn on_ice_gathering_state_change<'a, 'f>(
        &'a self,
        state: RTCIceGatheringState,
    ) -> HandlerFuture<'f>
    where
        'a: 'f,
        Self: 'f,
    {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
        Box::pin(std::future::ready(()))
    }

    fn on_connection_state_change<'a, 'f>(
        &'a self,
        state: RTCPeerConnectionState,
    ) -> HandlerFuture<'f>
    where
        'a: 'f,
        Self: 'f,
    {
        self.connection_state(state);
        Box::pin(std::future::ready(()))
    }

    fn on_track<'a, 'f>(&'a self, track: Arc<dyn TrackRemote>) -> HandlerFuture<'f>
    where
        'a: 'f,
        Self: 'f,
    {
        // The track's packets arrive through track.poll(), which must be drained off the driver
        // task; the pump ends by itself when the track ends or the connection closes.
        tokio::spawn(pump_remote_track(
            track,
            self.events.clone(),
            Arc::clone(&self.level_ext),
        ));
        Box::pin(std::future::ready(()))
    }
}

/// Forwards every RTP packet of the remote track to the link's event channel, with its audio
/// level when it carries one.
///
/// The extension id is read per packet because a track can start before negotiation has been
/// recorded (the answerer's tracks are created while it applies the offer).
async fn pump_remote_track(
    track: Arc<dyn TrackRemote>,
    events: mpsc::UnboundedSender<MediaEvent>,
    level_ext: Arc<OnceLock<u8>>,
) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let level = level_ext.get().and_then(|&id| level_of(&packet.header, id));
                let audio = RtpAudio {
                    ssrc: packet.header.ssrc,
                    seq: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    level,
                    payload: packet.payload,
                };
                if events.send(MediaEvent::Audio(audio)).is_err() {
                    // Nobody is listening any more; stop draining.
                    return;
                }
            }
            TrackRemoteEvent::OnEnded => return,
            _ => {}
        }
    }
}

/// The audio level a packet carries under extension `id`, if any. Only the first data byte
/// counts (the two-byte form pads with a zero).
fn level_of(header: &rtp::Header, id: u8) -> Option<AudioLevel> {
    if !header.extension {
        return None;
    }
    header
        .extensions
        .iter()
        .find(|e| e.id == id)
        .and_then(|e| e.payload.first())
        .map(|&b| AudioLevel::from_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_level_byte_round_trips_and_clamps() {
        for dbov in 0..=127u8 {
            for voice in [false, true] {
                let l = AudioLevel { dbov, voice };
                assert_eq!(AudioLevel::from_byte(l.to_byte()), l);
            }
        }
        let loud = AudioLevel {
            dbov: 200,
            voice: true,
        };
        assert_eq!(loud.to_byte(), 0xff);
        assert_eq!(LEVEL_BYTES[0x9e], 0x9e);
    }

    #[test]
    fn level_is_read_from_the_negotiated_extension_only() {
        let mut h = rtp::Header::default();
        assert_eq!(level_of(&h, 1), None);
        h.set_extension(3, Bytes::from_static(&[0x33])).unwrap();
        h.set_extension(1, Bytes::from_static(&[0x80 | 25]))
            .unwrap();
        assert_eq!(
            level_of(&h, 1),
            Some(AudioLevel {
                dbov: 25,
                voice: true
            })
        );
        assert_eq!(level_of(&h, 2), None);
        h.set_extension(2, Bytes::new()).unwrap();
        assert_eq!(level_of(&h, 2), None, "empty data is no level");
    }

    #[test]
    fn quote_sdp_truncates_and_escapes() {
        assert_eq!(quote_sdp("v=0\r\n"), "\"v=0\\r\\n\"");
        let long = "a".repeat(SDP_QUOTE_LIMIT + 50);
        let quoted = quote_sdp(&long);
        assert!(quoted.starts_with('"'));
        assert!(quoted.ends_with(&format!("({} bytes)", long.len())));
        assert!(quoted.len() < long.len());
    }

    #[test]
    fn default_binds_loopback() {
        assert_eq!(
            MediaConfig::default().bind_ip,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
