//! The engine: drives the pure `CallAgentCore` with real I/O. One select! loop receives one
//! closed `Event` enum, hands it to the core with `now`, then drains the core's outputs to the
//! adapters (signaling WebSocket, WebRTC media link, audio engine).
//!
//! Audio is the exception that proves the rule: encoded frames and received packets go straight
//! between the audio engine and the media link without passing the core, which only switches
//! capture and playout on and off.

mod devices;
mod signaling;
pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use crate::core::media_diagnostics::{
    DeviceInput, DeviceOutput, DeviceSwitch, Enumeration, MediaDevices, MediaDiagnosticChange,
};
use crate::core::{
    CallAgentCore, CallInfo, Command, CommandError, CommandOk, Event as CoreEvent, Input,
    MediaControl, Output, ReconnectWhy,
};
use crate::devices::{DeviceKind, DeviceList, DeviceSpec, list_devices};
use crate::media::audio::{AudioEngine, AudioEvent, EncodedFrame};
use crate::media::link::AudioLevel;
use crate::media::net::{ClientConfig, ClientLink, MediaEvent, Via};
use crate::protocol::VoicemailInfo;
use crate::server::runtime::now;
use signaling::{SigEvent, Signaling};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// ws://host:port or wss://host:port of the switchboard.
    pub server: String,
    /// Extra CA certificates (PEM) trusted for wss://, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub token: Option<String>,
    pub device_name: String,
    pub mic: DeviceSpec,
    pub speaker: DeviceSpec,
    pub camera: Option<String>,
    pub auto_answer: bool,
    pub auto_accept_transfers: bool,
    /// The media link's settings; TURN servers come from the switchboard and whether to gather
    /// on loopback from where the switchboard is.
    pub media: ClientConfig,
}

/// What front ends receive.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    Core(CoreEvent),
    Audio(AudioEvent),
    /// The microphone's level (RMS, 0..1), about 15 times a second while asked for.
    MicLevel(f32),
    /// The media link to the switchboard came up (and how it travels) or went down.
    Media {
        up: bool,
        via: Option<Via>,
    },
    /// A media diagnostic (ACS `UserFacingDiagnostics`, media part) changed.
    MediaDiagnostic(MediaDiagnosticChange),
    /// A microphone or speaker was switched without being asked (a new default, a device gone
    /// or back, none working).
    DeviceSwitched(DeviceSwitch),
    /// The network figures of the last second on the media link (RTT, loss, jitter, bitrate).
    Quality(crate::core::quality::LinkQuality),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    Device(String),
    #[error("the engine has stopped")]
    Stopped,
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Command(e) => e.code(),
            EngineError::Device(_) => "deviceError",
            EngineError::Stopped => "stopped",
        }
    }
}

enum Request {
    Command(Command, oneshot::Sender<Result<CommandOk, CommandError>>),
    Calls(oneshot::Sender<Vec<CallInfo>>),
    SetMicrophone(DeviceSpec, oneshot::Sender<Result<(), EngineError>>),
    SetSpeaker(DeviceSpec, oneshot::Sender<Result<(), EngineError>>),
    SetCamera(String, oneshot::Sender<Result<(), EngineError>>),
    ReportLevels(bool),
    ActiveCallDetails(oneshot::Sender<Option<crate::protocol::ActiveCallDetails>>),
    TestTone(oneshot::Sender<Result<(), EngineError>>),
    /// Encoded 20 ms frames to play on the speaker (a voicemail message); empty stops.
    Play(Vec<bytes::Bytes>, oneshot::Sender<Result<(), EngineError>>),
    Voicemails(ListReply),
    FetchVoicemail(String, FetchReply),
    Shutdown(oneshot::Sender<()>),
}

type ListReply = oneshot::Sender<Result<Vec<VoicemailInfo>, EngineError>>;
type FetchReply = oneshot::Sender<Result<Vec<u8>, EngineError>>;

/// A cheap handle for front ends; every call is a message to the engine loop.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl EngineHandle {
    pub async fn command(&self, cmd: Command) -> Result<CommandOk, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Command(cmd, tx))
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx.await.map_err(|_| EngineError::Stopped)??)
    }

    pub async fn calls(&self) -> Result<Vec<CallInfo>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Calls(tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub async fn set_microphone(&self, spec: DeviceSpec) -> Result<(), EngineError> {
        self.device_request(|tx| Request::SetMicrophone(spec, tx))
            .await
    }

    pub async fn set_speaker(&self, spec: DeviceSpec) -> Result<(), EngineError> {
        self.device_request(|tx| Request::SetSpeaker(spec, tx))
            .await
    }

    pub async fn set_camera(&self, spec: String) -> Result<(), EngineError> {
        self.device_request(|tx| Request::SetCamera(spec, tx)).await
    }

    async fn device_request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), EngineError>>) -> Request,
    ) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// This user's call on another device, as the switchboard last reported it (it reports
    /// every change, so this is current).
    pub async fn active_call_details(
        &self,
    ) -> Result<Option<crate::protocol::ActiveCallDetails>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::ActiveCallDetails(tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Turns `EngineEvent::MicLevel` reports on or off (a meter is on screen).
    pub fn report_levels(&self, on: bool) {
        let _ = self.tx.send(Request::ReportLevels(on));
    }

    /// Plays a one-second 440 Hz tone on the speaker, through the same decoder and device as a
    /// call's audio.
    pub async fn play_test_tone(&self) -> Result<(), EngineError> {
        self.device_request(Request::TestTone).await
    }

    /// Plays 48 kHz mono PCM (a voicemail message) on the speaker, through the same decoder and
    /// device as a call's audio and mixed with it; replaces whatever this plays (the test tone
    /// too). An empty `pcm` stops. The encoding runs off the engine loop.
    pub async fn play_pcm(&self, pcm: Vec<f32>) -> Result<(), EngineError> {
        let frames = tokio::task::spawn_blocking(move || encode_frames(&pcm))
            .await
            .map_err(|e| EngineError::Device(format!("encoding panicked: {e}")))?
            .map_err(EngineError::Device)?;
        self.device_request(|tx| Request::Play(frames, tx)).await
    }

    /// This user's voicemail messages, newest first (asks the switchboard).
    pub async fn voicemails(&self) -> Result<Vec<VoicemailInfo>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Voicemails(tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The Ogg Opus file of one message.
    pub async fn fetch_voicemail(&self, message_id: String) -> Result<Vec<u8>, EngineError> {
        let known = self
            .voicemails()
            .await?
            .iter()
            .any(|m| m.message_id == message_id);
        if !known {
            return Err(CommandError::InvalidArgument(format!(
                "no voicemail message {message_id:?} in your mailbox"
            ))
            .into());
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::FetchVoicemail(message_id, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Lists devices off the engine loop: cpal enumeration can take tens of milliseconds.
    pub async fn devices(&self) -> anyhow::Result<DeviceList> {
        tokio::task::spawn_blocking(list_devices)
            .await
            .context("device listing panicked")
    }

    /// Ends calls, finalises recordings and closes connections.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// One closed enum for everything the loop can wake up for.
enum Event {
    Request(Request),
    Signaling(SigEvent),
    MediaOffered(anyhow::Result<(Box<ClientLink>, String)>),
    Media(MediaEvent),
    Audio(AudioEvent),
    Frame(EncodedFrame),
    SpeakingPoll,
    LevelTick,
    /// One frame of the speaker test tone is due.
    ToneFrame(u32),
    /// A new device listing from the watcher thread.
    Listing(Enumeration),
}

pub fn start(
    opts: EngineOptions,
) -> anyhow::Result<(EngineHandle, mpsc::UnboundedReceiver<EngineEvent>)> {
    let tls = tls::client_config_for(&opts.server, opts.ca_file.as_deref())?;
    let mut opts = opts;
    // `turns:` relays are verified with the same trust as the switchboard.
    opts.media.tls = tls.clone();
    let (audio_tx, audio_rx) = mpsc::unbounded_channel();
    // Devices never keep the engine from starting: the pipeline starts on silence, then the
    // chosen devices are opened and `MediaDevices` decides what a failure means.
    let (audio, frames) = AudioEngine::start(&DeviceSpec::Silence, &DeviceSpec::Silence, audio_tx)
        .context("starting the audio pipeline")?;
    let mut media_devices = MediaDevices::default();
    let at = now().mono;
    for (kind, spec) in [
        (DeviceKind::Microphone, &opts.mic),
        (DeviceKind::Speaker, &opts.speaker),
    ] {
        let opened = open_device(&audio, kind, spec);
        if let Err(why) = &opened {
            tracing::warn!("{kind} `{spec}`: {why}");
        }
        media_devices.handle(
            DeviceInput::Chosen {
                kind,
                spec: spec.clone(),
                opened,
            },
            at,
        );
    }
    let (internal_tx, internal_rx) = mpsc::unbounded_channel::<Event>();
    let listing_tx = internal_tx.clone();
    let watcher = devices::Watcher::start(media_devices.watching(), move |l| {
        listing_tx.send(Event::Listing(l)).is_ok()
    })
    .context("starting the device watcher")?;
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let mut core = CallAgentCore::new(
        opts.user.clone(),
        opts.token.clone(),
        opts.device_name.clone(),
        Box::new(|| uuid::Uuid::new_v4().to_string()),
    );
    core.set_auto_answer(opts.auto_answer);
    core.set_auto_accept_transfers(opts.auto_accept_transfers);
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let signaling = Signaling::start(opts.server.clone(), tls, sig_tx);
    let mut driver = Driver {
        core,
        audio: Some(audio),
        signaling,
        link: None,
        out: ev_tx,
        opts,
        pacer: RtpPacer::default(),
        speaking: false,
        listings: VecDeque::new(),
        fetches: HashMap::new(),
        levels: false,
        playout: true,
        tone: None,
        tone_pos: 0,
        devices: media_devices,
        watcher,
        polls: 0,
        addresses: None,
    };
    driver.drain_devices();
    tokio::spawn(driver.run(req_rx, sig_rx, audio_rx, frames, internal_tx, internal_rx));
    Ok((EngineHandle { tx: req_tx }, ev_rx))
}

struct Driver {
    core: CallAgentCore,
    audio: Option<AudioEngine>,
    signaling: Signaling,
    link: Option<Box<ClientLink>>,
    out: mpsc::UnboundedSender<EngineEvent>,
    opts: EngineOptions,
    pacer: RtpPacer,
    speaking: bool,
    /// `voicemails` requests waiting for the switchboard's list, in order.
    listings: VecDeque<ListReply>,
    /// Downloads in progress: the bytes so far and who waits for them.
    fetches: HashMap<String, (Vec<u8>, FetchReply)>,
    /// Mic level reports wanted.
    levels: bool,
    /// Playout as the core last asked for it (the test tone opens it for a moment).
    playout: bool,
    /// The test tone's (or a played message's) encoded frames while they play.
    tone: Option<Vec<bytes::Bytes>>,
    /// The next frame of `tone` to play.
    tone_pos: u32,
    /// Which devices are in use and the media diagnostics.
    devices: MediaDevices,
    watcher: devices::Watcher,
    /// Ticks of the 100 ms poll, for what runs every few.
    polls: u32,
    /// The usable local addresses last passed to the core.
    addresses: Option<Vec<std::net::IpAddr>>,
}

/// The network figures are read every this many 100 ms polls.
const QUALITY_EVERY: u32 = 10;
/// The interfaces' addresses are read every this many 100 ms polls (a `getifaddrs`, some tens
/// of microseconds): a changed network is acted on within half a second on average.
const ADDRESSES_EVERY: u32 = 5;

/// The source id the test tone uses in the mixer; calls use 0.
const TONE_SOURCE: u32 = u32::MAX;
const TONE_FRAMES: u32 = 50;

impl Driver {
    async fn run(
        mut self,
        mut req_rx: mpsc::UnboundedReceiver<Request>,
        mut sig_rx: mpsc::UnboundedReceiver<SigEvent>,
        mut audio_rx: mpsc::UnboundedReceiver<AudioEvent>,
        mut frames: mpsc::Receiver<EncodedFrame>,
        internal_tx: mpsc::UnboundedSender<Event>,
        mut internal_rx: mpsc::UnboundedReceiver<Event>,
    ) {
        // Media gathers on loopback only when the switchboard is on this host: anywhere else a
        // loopback candidate would only send checks to our own machine.
        self.opts.media.loopback = server_is_loopback(&self.opts.server).await;
        let mut speaking_poll = tokio::time::interval(Duration::from_millis(100));
        speaking_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut level_tick = tokio::time::interval(Duration::from_millis(66));
        level_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut tone_tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let (levels_on, tone_on) = (self.levels, self.tone.is_some());
            let ev = tokio::select! {
                Some(r) = req_rx.recv() => Event::Request(r),
                Some(s) = sig_rx.recv() => Event::Signaling(s),
                m = next_media(&mut self.link) => Event::Media(m),
                Some(a) = audio_rx.recv() => Event::Audio(a),
                Some(f) = frames.recv() => Event::Frame(f),
                Some(i) = internal_rx.recv() => i,
                _ = speaking_poll.tick() => Event::SpeakingPoll,
                _ = level_tick.tick(), if levels_on => Event::LevelTick,
                _ = tone_tick.tick(), if tone_on => Event::ToneFrame(u32::MAX),
                else => return,
            };
            let ev = match ev {
                Event::ToneFrame(_) => {
                    self.tone_pos += 1;
                    Event::ToneFrame(self.tone_pos - 1)
                }
                ev => ev,
            };
            match ev {
                Event::Request(Request::Shutdown(done)) => {
                    self.shutdown().await;
                    let _ = done.send(());
                    return;
                }
                Event::Request(r) => self.request(r),
                Event::Signaling(SigEvent::Up) => self.core.handle_input(Input::TransportUp, now()),
                Event::Signaling(SigEvent::Down) => {
                    self.core.handle_input(Input::TransportDown, now());
                }
                Event::Signaling(SigEvent::Failed(why)) => {
                    self.core.handle_input(Input::TransportFailed(why), now());
                }
                Event::Signaling(SigEvent::Alive) => {
                    self.core.handle_input(Input::TransportAlive, now());
                    continue;
                }
                Event::Signaling(SigEvent::Message(m)) => {
                    self.core.handle_input(Input::Server(m), now())
                }
                Event::Signaling(SigEvent::BadFrame(why)) => {
                    tracing::warn!("switchboard sent a bad frame: {why}")
                }
                Event::MediaOffered(Ok((link, sdp))) => {
                    if let Some(mut old) = self.link.replace(link) {
                        old.close();
                    }
                    self.core
                        .handle_input(Input::MediaOfferReady { sdp }, now());
                }
                Event::MediaOffered(Err(e)) => {
                    tracing::error!("could not create the media connection: {e:#}")
                }
                Event::Media(MediaEvent::Audio(rtp)) => {
                    if let Some(a) = &self.audio {
                        // Each stream the switchboard sends (the far party, a companion of
                        // theirs, ...) has its own SSRC and its own jitter buffer in the mixer.
                        a.push_rtp(rtp.ssrc, rtp.seq, rtp.timestamp, rtp.payload);
                    }
                    continue;
                }
                Event::Media(MediaEvent::Connected) => {
                    let via = self.link.as_ref().and_then(|l| l.via());
                    let _ = self.out.send(EngineEvent::Media { up: true, via });
                    self.core.handle_input(Input::MediaConnected(true), now())
                }
                Event::Media(MediaEvent::Disconnected) => {
                    let _ = self.out.send(EngineEvent::Media {
                        up: false,
                        via: None,
                    });
                    self.core.handle_input(Input::MediaConnected(false), now())
                }
                Event::Media(MediaEvent::RelayUnreachable(why)) => {
                    tracing::warn!("no TURN relay reachable: {why}");
                    self.core.handle_input(Input::RelaysUnreachable(why), now());
                }
                Event::Audio(a) => {
                    if let AudioEvent::DeviceError { kind, message } = &a {
                        self.devices.handle(
                            DeviceInput::StreamFailed {
                                kind: *kind,
                                message: message.clone(),
                            },
                            now().mono,
                        );
                    }
                    let _ = self.out.send(EngineEvent::Audio(a));
                    self.drain_devices();
                }
                Event::Listing(listing) => {
                    self.devices
                        .handle(DeviceInput::Enumerated(listing), now().mono);
                    self.drain_devices();
                    continue;
                }
                Event::Frame(f) => {
                    if let Some(link) = &mut self.link {
                        let rtp = self.pacer.next(Instant::now());
                        // The level of the PCM this frame encoded (RFC 6464): the switchboard
                        // picks a group call's loudest talkers by it.
                        let level = Some(AudioLevel {
                            dbov: f.level_dbov,
                            voice: f.voice,
                        });
                        link.send_audio(rtp, f.payload, level);
                    }
                    continue;
                }
                Event::LevelTick => {
                    if let Some(a) = &self.audio {
                        let _ = self.out.send(EngineEvent::MicLevel(a.mic_level()));
                    }
                    continue;
                }
                Event::ToneFrame(n) => {
                    self.tone_frame(n);
                    continue;
                }
                Event::SpeakingPoll => {
                    self.polls = self.polls.wrapping_add(1);
                    if self.polls % ADDRESSES_EVERY == 1 {
                        self.check_addresses();
                    }
                    // Once a second: the link's network counters (a whole stats report).
                    if self.polls.is_multiple_of(QUALITY_EVERY)
                        && let Some(link) = self.link.as_mut().filter(|l| l.is_connected())
                    {
                        let counters = link.counters();
                        self.core.handle_input(Input::MediaQuality(counters), now());
                        if let Some(q) = self.core.link_quality() {
                            let _ = self.out.send(EngineEvent::Quality(q));
                        }
                    }
                    // The diagnostics' clock, and what they know of the sound arriving.
                    let received = self.link.as_ref().map_or(0, |l| l.stats().audio_received);
                    self.core
                        .handle_input(Input::MediaStats { received }, now());
                    self.core.handle_input(Input::Tick, now());
                    self.muted_level();
                    let speaking = self.audio.as_ref().is_some_and(|a| a.speaking());
                    if speaking != self.speaking {
                        self.speaking = speaking;
                        self.core
                            .handle_input(Input::LocalSpeaking(speaking), now());
                    }
                }
            }
            self.drain(&internal_tx);
        }
    }

    /// Tells the core when the addresses this device could reach the switchboard from change
    /// (the first reading included). With the switchboard on this host, loopback counts.
    fn check_addresses(&mut self) {
        let ips = crate::media::net::ifaces::usable_ips(self.opts.media.loopback);
        if self.addresses.as_ref() != Some(&ips) {
            tracing::info!(addresses = ?ips, "local addresses");
            self.addresses = Some(ips.clone());
            self.core.handle_input(Input::LocalAddresses(ips), now());
        }
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Command(cmd, reply) => {
                let _ = reply.send(self.core.handle_command(cmd, now()));
            }
            Request::Calls(reply) => {
                let _ = reply.send(self.core.calls());
            }
            Request::SetMicrophone(spec, reply) => {
                let _ = reply.send(self.choose(DeviceKind::Microphone, spec));
            }
            Request::SetSpeaker(spec, reply) => {
                let _ = reply.send(self.choose(DeviceKind::Speaker, spec));
            }
            Request::SetCamera(spec, reply) => {
                // Video is not carried yet; the choice is remembered for when it is.
                self.opts.camera = Some(spec);
                let _ = reply.send(Ok(()));
            }
            Request::ReportLevels(on) => self.levels = on,
            Request::ActiveCallDetails(reply) => {
                let _ = reply.send(self.core.active_call_details().cloned());
            }
            Request::TestTone(reply) => {
                let r = match (&self.audio, &self.tone) {
                    (None, _) => Err(EngineError::Stopped),
                    (Some(_), Some(_)) => Ok(()),
                    (Some(a), None) => match tone_frames() {
                        Ok(frames) => {
                            a.set_playout(true);
                            self.tone = Some(frames);
                            self.tone_pos = 0;
                            Ok(())
                        }
                        Err(e) => Err(EngineError::Device(e)),
                    },
                };
                let _ = reply.send(r);
            }
            Request::Play(frames, reply) => {
                let r = match &self.audio {
                    None => Err(EngineError::Stopped),
                    Some(a) if frames.is_empty() => {
                        if self.tone.take().is_some() {
                            a.set_playout(self.playout);
                        }
                        Ok(())
                    }
                    Some(a) => {
                        a.set_playout(true);
                        self.tone = Some(frames);
                        self.tone_pos = 0;
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Request::Voicemails(reply) => {
                match self.core.handle_command(Command::ListVoicemail, now()) {
                    Ok(_) => self.listings.push_back(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::FetchVoicemail(id, reply) => {
                match self.core.handle_command(
                    Command::FetchVoicemail {
                        message_id: id.clone(),
                    },
                    now(),
                ) {
                    Ok(_) => {
                        self.fetches.insert(id, (Vec::new(), reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn drain(&mut self, internal_tx: &mpsc::UnboundedSender<Event>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send(msg) => self.signaling.send(&msg),
                Output::Event(e) => {
                    self.answer_queries(&e);
                    let _ = self.out.send(EngineEvent::Core(e));
                }
                Output::CreateMediaOffer { ice_servers } => {
                    let mut cfg = self.opts.media.clone();
                    let secure_relay = ice_servers
                        .iter()
                        .flat_map(|s| &s.urls)
                        .any(|u| u.starts_with("turns:"));
                    if secure_relay && cfg.tls.is_none() {
                        match tls::client_config(self.opts.ca_file.as_deref()) {
                            Ok(t) => cfg.tls = Some(t),
                            Err(e) => tracing::warn!("TLS for turns: relays: {e:#}"),
                        }
                    }
                    cfg.ice_servers = ice_servers;
                    let tx = internal_tx.clone();
                    tokio::spawn(async move {
                        let r = ClientLink::open(&cfg)
                            .await
                            .map(|(link, sdp)| (Box::new(link), sdp));
                        let _ = tx.send(Event::MediaOffered(r));
                    });
                }
                Output::DropMedia => self.drop_media(),
                Output::Reconnect(why) => {
                    match why {
                        ReconnectWhy::Silent => {
                            tracing::warn!("nothing heard from the switchboard; reconnecting");
                        }
                        ReconnectWhy::AddressGone => {
                            tracing::warn!("a local address went away; reconnecting");
                        }
                    }
                    self.signaling.reconnect();
                }
                Output::ApplyMediaAnswer { sdp } => {
                    if let Some(link) = &mut self.link
                        && let Err(e) = link.apply_answer(&sdp)
                    {
                        tracing::error!("media answer refused: {e:#}");
                    }
                }
                Output::Media(MediaControl::Capture(on)) => {
                    if let Some(a) = &self.audio {
                        a.set_capture(on);
                    }
                }
                Output::Media(MediaControl::Playout(on)) => {
                    self.playout = on;
                    if let Some(a) = &self.audio
                        && self.tone.is_none()
                    {
                        a.set_playout(on);
                    }
                }
                Output::Media(MediaControl::ExpectedLoss(percent)) => {
                    tracing::info!(percent, "in-band FEC sized for the measured loss");
                    if let Some(a) = &self.audio {
                        a.set_expected_loss(percent);
                    }
                }
                Output::Media(MediaControl::FinalizeRecording) => {
                    if let Some(a) = &self.audio {
                        // What the network did to the last call's sound, for the log.
                        for s in a.inbound_stats() {
                            let j = s.jitter;
                            tracing::info!(
                                source = s.source,
                                received = j.received,
                                lost = j.lost,
                                fec_recovered = j.recovered,
                                late = j.late,
                                concealed = j.concealed,
                                discarded = j.discarded,
                                resets = j.resets,
                                target_delay_ms = j.target_delay_ms,
                                jitter_ms = j.jitter_ms,
                                decode_errors = s.decode_errors,
                                "inbound audio"
                            );
                        }
                        a.finalize_recording();
                    }
                }
            }
        }
    }

    /// The user picked a device: open it and tell `MediaDevices` how that went.
    fn choose(&mut self, kind: DeviceKind, spec: DeviceSpec) -> Result<(), EngineError> {
        let Some(a) = &self.audio else {
            return Err(EngineError::Stopped);
        };
        let opened = open_device(a, kind, &spec);
        let reply = opened.clone().map(|_| ()).map_err(EngineError::Device);
        self.devices
            .handle(DeviceInput::Chosen { kind, spec, opened }, now().mono);
        self.drain_devices();
        reply
    }

    /// Carries out what `MediaDevices` decided and reports what it tells.
    fn drain_devices(&mut self) {
        while let Some(out) = self.devices.poll_output() {
            match out {
                DeviceOutput::Open { kind, spec } => {
                    let result = match &self.audio {
                        Some(a) => open_device(a, kind, &spec),
                        None => Err("the audio pipeline has stopped".to_owned()),
                    };
                    self.devices
                        .handle(DeviceInput::Opened { kind, spec, result }, now().mono);
                }
                DeviceOutput::Diagnostic(d) => {
                    tracing::info!(
                        "media diagnostic {} = {}{}",
                        d.diagnostic.name(),
                        d.value,
                        d.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                    let _ = self.out.send(EngineEvent::MediaDiagnostic(d));
                }
                DeviceOutput::Switched(s) => {
                    tracing::info!("{}", s.message);
                    let _ = self.out.send(EngineEvent::DeviceSwitched(s));
                }
            }
        }
        let watching = self.devices.watching();
        if self
            .watcher
            .watching
            .swap(watching, std::sync::atomic::Ordering::Relaxed)
            != watching
        {
            self.watcher.wake();
        }
    }

    /// While a connected call is muted, the microphone's level goes to `MediaDevices`, which
    /// tells when the user is speaking into it.
    fn muted_level(&mut self) {
        let Some(a) = &self.audio else {
            return;
        };
        let muted = self.core.muted_connected_call().map(str::to_owned);
        let level = if muted.is_some() { a.mic_level() } else { 0.0 };
        self.devices.handle(
            DeviceInput::MicLevel {
                level,
                muted_call: muted,
            },
            now().mono,
        );
        self.drain_devices();
    }

    /// Hands one tone frame to the mixer, paced by the loop's 20 ms tick like a far end would.
    fn tone_frame(&mut self, n: u32) {
        let (Some(a), Some(frames)) = (&self.audio, &self.tone) else {
            return;
        };
        match frames.get(n as usize) {
            Some(f) => a.push_rtp(TONE_SOURCE, n as u16, n * 960, f.clone()),
            None => {
                self.tone = None;
                a.set_playout(self.playout);
            }
        }
    }

    /// Replies that arrive as events complete the requests waiting for them.
    fn answer_queries(&mut self, e: &CoreEvent) {
        use base64::Engine as _;
        match e {
            CoreEvent::Voicemails(list) => {
                if let Some(reply) = self.listings.pop_front() {
                    let _ = reply.send(Ok(list.clone()));
                }
            }
            CoreEvent::VoicemailData {
                message_id,
                data,
                last,
                ..
            } => {
                let Some((buf, _)) = self.fetches.get_mut(message_id) else {
                    return;
                };
                match base64::engine::general_purpose::STANDARD.decode(data) {
                    Ok(bytes) => buf.extend_from_slice(&bytes),
                    Err(e) => {
                        let (_, reply) = self.fetches.remove(message_id).expect("present above");
                        let _ = reply.send(Err(EngineError::Device(format!(
                            "voicemail data is not base64: {e}"
                        ))));
                        return;
                    }
                }
                if *last {
                    let (bytes, reply) = self.fetches.remove(message_id).expect("present above");
                    let _ = reply.send(Ok(bytes));
                }
            }
            CoreEvent::ConnectionStateChanged {
                new: crate::core::ConnectionState::Disconnected,
                ..
            } => {
                for reply in self.listings.drain(..) {
                    let _ = reply.send(Err(CommandError::NotConnected.into()));
                }
                for (_, (_, reply)) in self.fetches.drain() {
                    let _ = reply.send(Err(CommandError::NotConnected.into()));
                }
            }
            _ => {}
        }
    }

    fn drop_media(&mut self) {
        if let Some(mut link) = self.link.take() {
            link.close();
        }
    }

    async fn shutdown(&mut self) {
        for call in self.core.calls() {
            let _ = self.core.handle_command(
                Command::HangUp {
                    call_id: call.call_id,
                    for_everyone: false,
                },
                now(),
            );
        }
        while let Some(out) = self.core.poll_output() {
            if let Output::Send(msg) = out {
                self.signaling.send(&msg);
            }
        }
        self.signaling.close().await;
        self.drop_media();
        if let Some(a) = self.audio.take() {
            a.shutdown();
        }
    }
}

/// Opens a device on the running pipeline; on failure the previous one stays in use.
fn open_device(
    audio: &AudioEngine,
    kind: DeviceKind,
    spec: &DeviceSpec,
) -> Result<crate::core::media_diagnostics::Opened, String> {
    match kind {
        DeviceKind::Microphone => audio.set_microphone(spec),
        DeviceKind::Speaker => audio.set_speaker(spec),
    }
    .map_err(|e| e.to_string())
}

/// The next event of the media link, or never while there is none.
async fn next_media(link: &mut Option<Box<ClientLink>>) -> MediaEvent {
    match link {
        Some(l) => l.next_event().await,
        None => std::future::pending().await,
    }
}

/// Whether the switchboard at `url` (`ws://HOST:PORT/...`) is on this host.
async fn server_is_loopback(url: &str) -> bool {
    let Some((host, port)) = url_host_port(url) else {
        return false;
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => addrs.any(|a| a.ip().is_loopback()),
        Err(_) => false,
    }
}

/// The host and port of a `ws://` or `wss://` URL.
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "ws" => 80,
        "wss" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

/// 48 kHz mono PCM in 20 ms Opus frames, encoded like a call's audio (the last one padded).
fn encode_frames(pcm: &[f32]) -> Result<Vec<bytes::Bytes>, String> {
    let mut enc = crate::media::audio::codec::OpusEncoder::new().map_err(|e| e.to_string())?;
    pcm.chunks(960)
        .map(|chunk| {
            let mut frame = [0f32; 960];
            frame[..chunk.len()].copy_from_slice(chunk);
            enc.encode(&frame).map_err(|e| e.to_string())
        })
        .collect()
}

/// One second of 440 Hz, encoded like a call's audio.
fn tone_frames() -> Result<Vec<bytes::Bytes>, String> {
    let mut enc = crate::media::audio::codec::OpusEncoder::new().map_err(|e| e.to_string())?;
    (0..TONE_FRAMES)
        .map(|f| {
            let pcm: Vec<f32> = (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f32 / 48_000.0;
                    0.25 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                })
                .collect();
            enc.encode(&pcm).map_err(|e| e.to_string())
        })
        .collect()
}

/// Sequence numbers and timestamps for the outbound stream. Timestamps follow the wall clock
/// across pauses (mute, hold, no call), so the far end's jitter buffer sees the gap as a gap.
#[derive(Default)]
struct RtpPacer {
    seq: u16,
    ts: u32,
    last: Option<Instant>,
}

impl RtpPacer {
    const FRAME: u32 = 960;

    fn next(&mut self, now: Instant) -> (u16, u32, bool) {
        let marker = match self.last {
            None => {
                self.seq = rand::random();
                self.ts = rand::random();
                true
            }
            Some(last) => {
                let gap = now.saturating_duration_since(last);
                self.seq = self.seq.wrapping_add(1);
                if gap > Duration::from_millis(60) {
                    let frames = (gap.as_micros() / 20_000).max(1) as u32;
                    self.ts = self.ts.wrapping_add(Self::FRAME.wrapping_mul(frames));
                    true
                } else {
                    self.ts = self.ts.wrapping_add(Self::FRAME);
                    false
                }
            }
        };
        self.last = Some(now);
        (self.seq, self.ts, marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_and_port() {
        for (url, want) in [
            ("ws://127.0.0.1:7450", Some(("127.0.0.1", 7450))),
            ("wss://sb.example.com/path", Some(("sb.example.com", 443))),
            ("ws://[::1]:9/x", Some(("::1", 9))),
            ("ws://user@host:1", Some(("host", 1))),
            ("http://x", None),
            ("ws://host:notaport", None),
        ] {
            assert_eq!(
                url_host_port(url),
                want.map(|(h, p)| (h.to_owned(), p)),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn loopback_servers_are_recognised() {
        assert!(server_is_loopback("ws://127.0.0.1:7450").await);
        assert!(server_is_loopback("ws://localhost:7450").await);
        assert!(!server_is_loopback("ws://10.1.2.3:7450").await);
    }

    #[test]
    fn pacer_follows_the_clock_across_pauses() {
        let mut p = RtpPacer::default();
        let t0 = Instant::now();
        let (s0, ts0, m0) = p.next(t0);
        assert!(m0);
        let (s1, ts1, m1) = p.next(t0 + Duration::from_millis(20));
        assert_eq!(
            (s1, ts1, m1),
            (s0.wrapping_add(1), ts0.wrapping_add(960), false)
        );
        let (s2, ts2, m2) = p.next(t0 + Duration::from_millis(1020));
        assert_eq!(s2, s0.wrapping_add(2));
        assert_eq!(ts2, ts1.wrapping_add(960 * 50));
        assert!(m2);
    }
}
