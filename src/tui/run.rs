//! The driver: the only part of the TUI that does I/O. One select! loop wakes up for one closed
//! [`Event`] enum (terminal input, engine events, results of work it started, the app's timer,
//! the frame timer, signals), hands it to the pure [`App`], performs the [`Action`]s that come
//! back, and redraws only when the app says something changed, at most `max_fps` times a second.
//! Nothing polls: with no call and no timer the loop sleeps until a key or an event arrives.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt as _;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use crate::config::{self, Config};
use crate::core::{ConnectionState, DisconnectReason, Event as CoreEvent};
use crate::devices::{DeviceKind, DeviceSpec};
use crate::engine::{self, EngineEvent, EngineHandle, EngineOptions};
use crate::media::audio::AudioEvent;
use crate::media::net::ClientConfig;
use crate::server::media::MediaListen;
use crate::server::{self, ServeOptions, ServerHandle};

use super::app::{Action, App, AppOptions, Level, SelectedDevices, Slot, Update};
use super::history::{self, History};
use super::keymap::Keymap;
use super::settings::TuiConfig;
use super::strings as s;
use super::theme::Theme;
use super::view;

/// What the command line adds to the config. `None` means "use the config, then the default".
#[derive(Debug, Clone, Default)]
pub struct TuiOptions {
    /// ws://host:port or wss://host:port. Default: `server` from the config, else the embedded
    /// switchboard.
    pub server: Option<String>,
    /// Extra CA certificates for wss://. Default: `ca_file` from the config.
    pub ca_file: Option<PathBuf>,
    /// Default: `user` from the config, else the OS user.
    pub user: Option<String>,
    pub token: Option<String>,
    /// Default: `device_name` from the config, else the host name.
    pub device_name: Option<String>,
    /// Device specs. Default: the device manager's saved choice, else `[devices]`.
    pub mic: Option<String>,
    pub speaker: Option<String>,
    pub camera: Option<String>,
    /// Answer every incoming call at once (also `tui.auto_accept`).
    pub auto_accept: bool,
    /// Switchboard database, call history and saved devices. Default: `switchboard.data_dir`,
    /// else the XDG data dir.
    pub data_dir: Option<PathBuf>,
    /// Default: `log.file`, else dialtone.log in the XDG state dir.
    pub log_file: Option<PathBuf>,
}

/// One closed enum for everything the loop can wake up for.
enum Event {
    Term(std::io::Result<TermEvent>),
    TermClosed,
    Engine(EngineEvent),
    EngineGone,
    Started(anyhow::Result<(EngineHandle, mpsc::UnboundedReceiver<EngineEvent>)>),
    /// A try at hosting the local switchboard after losing the one another TUI hosted.
    Hosted(anyhow::Result<(String, Option<ServerHandle>)>),
    Done(Update),
    Tick,
    Draw,
    Signal(&'static str),
}

/// Runs the TUI until the user quits. Errors that happen before the screen is taken (a bad user
/// name, a bad device spec, a bad `[tui]` section) are returned as they are; after that, problems
/// are shown on the notifications line and the TUI stays up.
pub async fn run(cfg: &Config, tui: &TuiConfig, opts: TuiOptions) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let r = Resolved::new(cfg, tui, opts)?;
    let _log = init_logging(&r.log_file, &cfg.log.level)?;
    tracing::info!(user = %r.user, data_dir = %r.data_dir.display(), "starting the TUI");
    let keymap = Keymap::new(&tui.keys).map_err(|e| anyhow::anyhow!("bad config: {e}"))?;
    let history_path = history::default_path(&r.user_dir);
    let history = history::load(&history_path).unwrap_or_else(|e| {
        tracing::warn!("{e:#}");
        History::default()
    });

    let mut term = TerminalGuard::enter()?;
    let mut app = App::new(
        AppOptions {
            user: r.user.clone(),
            device_name: r.device_name.clone(),
            server: r
                .server
                .clone()
                .unwrap_or_else(|| format!("ws://{}", r.local.addr)),
            embedded: r.server.is_none(),
            devices: r.devices.clone(),
            contacts: tui.contacts.clone(),
            history,
            keymap,
            theme: Theme::from_env(),
            auto_accept_transfers: r.auto_accept_transfers,
            caller_id: cfg
                .caller_id
                .as_deref()
                .map(|c| c.trim().trim_start_matches("4:").to_string()),
        },
        server::runtime::now(),
    );
    term.draw(&app)?;
    tracing::info!("first frame after {} ms", t_start.elapsed().as_millis());

    // The switchboard: the configured one, a local one already running, or one started here.
    let (server_url, mut hosted) = match &r.server {
        Some(url) => (url.clone(), None),
        None => match local_switchboard(&r.local).await {
            Ok((url, handle)) => {
                if handle.is_some() {
                    app.handle_update(
                        Update::Notice(Level::Info, s::started_switchboard(&url)),
                        server::runtime::now(),
                    );
                }
                (url, handle)
            }
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!("no switchboard: {msg}");
                app.handle_update(Update::EngineFailed(msg), server::runtime::now());
                (format!("ws://{}", r.local.addr), None)
            }
        },
    };
    app.server = server_url.clone();
    app.embedded = hosted.is_some();
    let (host_tx, mut host_rx) = mpsc::unbounded_channel();
    let mut hosting_attempt = false;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Update>();
    let (start_tx, mut start_rx) = mpsc::unbounded_channel();
    if !matches!(app.connection, super::app::Connection::Failed(_)) {
        let opts = r.engine_options(server_url);
        // Opening audio devices can take a while: off the UI thread, so the screen stays live.
        tokio::task::spawn_blocking(move || {
            let _ = start_tx.send(engine::start(opts));
        });
    }

    let ctx = Ctx {
        user_dir: r.user_dir.clone(),
        history_path,
        done: done_tx,
    };
    let mut engine_handle: Option<EngineHandle> = None;
    let mut engine_rx: Option<mpsc::UnboundedReceiver<EngineEvent>> = None;
    let mut keys = EventStream::new();
    let mut signals = Signals::new()?;
    let frame = Duration::from_secs(1) / tui.max_fps.max(1);
    let mut last_draw = Instant::now();
    let mut needs_draw = true;
    let mut key_at: Option<Instant> = None;
    let mut stats = Stats::default();
    let mut listing = false;
    let mut connected_once = false;
    let mut levels_on = false;

    loop {
        let deadline = app.next_deadline();
        let draw_at = needs_draw.then_some(last_draw + frame);
        let ev = tokio::select! {
            k = keys.next() => match k {
                Some(k) => Event::Term(k),
                None => Event::TermClosed,
            },
            e = recv_opt(&mut engine_rx) => match e {
                Some(e) => Event::Engine(e),
                None => Event::EngineGone,
            },
            Some(started) = start_rx.recv() => Event::Started(started),
            Some(h) = host_rx.recv() => Event::Hosted(h),
            Some(u) = done_rx.recv() => Event::Done(u),
            _ = sleep_until(deadline), if deadline.is_some() => Event::Tick,
            _ = sleep_until(draw_at), if draw_at.is_some() => Event::Draw,
            name = signals.recv() => Event::Signal(name),
        };
        let now = server::runtime::now();
        // A key is answered at once; only bursts of other events wait for the frame cap.
        let mut urgent = false;
        let actions = match ev {
            Event::Term(Ok(TermEvent::Key(k))) => {
                key_at.get_or_insert(Instant::now());
                urgent = true;
                app.handle_key(k, now)
            }
            Event::Term(Ok(TermEvent::Resize(..))) => {
                needs_draw = true;
                Vec::new()
            }
            Event::Term(Ok(_)) => Vec::new(),
            Event::Term(Err(e)) => {
                tracing::error!("reading the terminal failed: {e}");
                break;
            }
            Event::TermClosed => break,
            Event::Engine(e) => {
                if !connected_once
                    && matches!(
                        e,
                        EngineEvent::Core(CoreEvent::ConnectionStateChanged {
                            new: ConnectionState::Connected,
                            ..
                        })
                    )
                {
                    connected_once = true;
                    tracing::info!("signed in after {} ms", t_start.elapsed().as_millis());
                }
                // The TUI that hosted the local switchboard quit: host it here, so the TUIs
                // left on this machine keep calling each other (the engine reconnects by itself).
                if let EngineEvent::Core(CoreEvent::ConnectionStateChanged {
                    new: ConnectionState::Disconnected,
                    reason: Some(DisconnectReason::ConnectionIssue),
                    ..
                }) = &e
                    && r.server.is_none()
                    && hosted.is_none()
                    && !hosting_attempt
                {
                    hosting_attempt = true;
                    let local = r.local.clone();
                    let tx = host_tx.clone();
                    tokio::spawn(async move {
                        // Spread the survivors out a little; the loser of a race uses the winner's.
                        let jitter = u64::from(std::process::id() % 8) * 50;
                        tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
                        let _ = tx.send(local_switchboard(&local).await);
                    });
                }
                match update_of(e) {
                    Some(u) => app.handle_update(u, now),
                    None => Vec::new(),
                }
            }
            Event::EngineGone => {
                engine_rx = None;
                engine_handle = None;
                app.handle_update(Update::EngineFailed(s::ENGINE_STOPPED.into()), now)
            }
            Event::Started(Ok((handle, rx))) => {
                tracing::info!("engine started after {} ms", t_start.elapsed().as_millis());
                engine_handle = Some(handle);
                engine_rx = Some(rx);
                app.handle_update(Update::EngineStarted, now)
            }
            Event::Hosted(result) => {
                hosting_attempt = false;
                match result {
                    Ok((url, Some(handle))) => {
                        hosted = Some(handle);
                        app.embedded = true;
                        app.handle_update(
                            Update::Notice(Level::Info, s::started_switchboard(&url)),
                            now,
                        )
                    }
                    Ok((_, None)) => Vec::new(),
                    Err(e) => {
                        tracing::warn!("could not host the local switchboard: {e:#}");
                        Vec::new()
                    }
                }
            }
            Event::Started(Err(e)) => {
                app.handle_update(Update::EngineFailed(format!("{e:#}")), now)
            }
            Event::Done(u) => {
                if matches!(u, Update::Devices(_)) {
                    listing = false;
                }
                app.handle_update(u, now)
            }
            Event::Tick => app.tick(now),
            Event::Draw => Vec::new(),
            Event::Signal(name) => {
                tracing::info!("{name}: quitting");
                break;
            }
        };
        let mut quit = false;
        for a in actions {
            match a {
                Action::Quit => quit = true,
                Action::ListDevices if listing => {}
                Action::ListDevices => {
                    listing = true;
                    ctx.perform(Action::ListDevices, engine_handle.as_ref(), &app);
                }
                other => ctx.perform(other, engine_handle.as_ref(), &app),
            }
        }
        if quit {
            break;
        }
        if app.wants_levels() != levels_on {
            levels_on = !levels_on;
            request_levels(engine_handle.as_ref(), levels_on);
        }
        if app.take_dirty() {
            needs_draw = true;
        }
        if needs_draw && (urgent || Instant::now() >= last_draw + frame) {
            term.draw(&app)?;
            last_draw = Instant::now();
            needs_draw = false;
            stats.draws += 1;
            if let Some(t) = key_at.take() {
                stats.key(last_draw - t);
            }
        }
    }

    tracing::info!(
        "quitting: {} frames drawn; key press to frame: max {} µs, mean {} µs over {} keys",
        stats.draws,
        stats.key_max.as_micros(),
        stats.key_sum.as_micros() / u128::from(stats.keys.max(1)),
        stats.keys
    );
    if let Some(h) = engine_handle {
        // Hang up, finalise recordings, close the connection; never hang on the way out.
        if tokio::time::timeout(Duration::from_secs(3), h.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the engine did not stop within 3 s");
        }
    }
    drop(term);
    Ok(())
}

/// Everything the config, the flags and the saved state decide, resolved once.
struct Resolved {
    user: String,
    device_name: String,
    token: Option<String>,
    server: Option<String>,
    ca_file: Option<PathBuf>,
    /// The switchboard on this machine, used when no server is configured.
    local: Local,
    data_dir: PathBuf,
    user_dir: PathBuf,
    log_file: PathBuf,
    devices: SelectedDevices,
    mic: DeviceSpec,
    speaker: DeviceSpec,
    auto_accept: bool,
    /// The engine accepts transfer requests by itself (config `auto_accept_transfers`).
    auto_accept_transfers: bool,
}

impl Resolved {
    fn new(cfg: &Config, tui: &TuiConfig, o: TuiOptions) -> anyhow::Result<Resolved> {
        tui.validate()
            .map_err(|e| anyhow::anyhow!("bad config: {e}"))?;
        let user = o
            .user
            .or(cfg.user.clone())
            .or_else(os_user)
            .context("no user name: pass --user NAME or set `user` in the config")?;
        let user = user.to_ascii_lowercase();
        crate::core::validate_user_name(&user).map_err(anyhow::Error::msg)?;
        let data_dir = o
            .data_dir
            .or(cfg.switchboard.data_dir.clone())
            .unwrap_or_else(config::default_data_dir);
        let user_dir = data_dir.join("tui").join(&user);
        let saved = load_devices(&user_dir);
        let devices = SelectedDevices {
            microphone: o
                .mic
                .or(saved.as_ref().map(|d| d.microphone.clone()))
                .unwrap_or(cfg.devices.microphone.clone()),
            speaker: o
                .speaker
                .or(saved.as_ref().map(|d| d.speaker.clone()))
                .unwrap_or(cfg.devices.speaker.clone()),
            camera: o
                .camera
                .or(saved.and_then(|d| d.camera))
                .or(cfg.devices.camera.clone()),
        };
        let mic = parse_spec(&devices.microphone, DeviceKind::Microphone).context("--mic")?;
        let speaker = parse_spec(&devices.speaker, DeviceKind::Speaker).context("--speaker")?;
        let listen: SocketAddr = cfg
            .switchboard
            .listen
            .parse()
            .context("switchboard.listen")?;
        // The embedded switchboard is for this machine only, whatever `listen` says.
        let embedded_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port());
        Ok(Resolved {
            device_name: o
                .device_name
                .or(cfg.device_name.clone())
                .unwrap_or_else(host_name),
            token: o.token.or(cfg.token.clone()),
            server: o.server.or(cfg.server.clone()),
            ca_file: o.ca_file.or(cfg.ca_file.clone()),
            local: Local {
                addr: embedded_addr,
                data_dir: data_dir.clone(),
                ring_timeout: Duration::from_secs(cfg.switchboard.ring_timeout_secs.max(1)),
                reconnect_window: Duration::from_secs(cfg.switchboard.reconnect_window_secs),
                keepalive_timeout: Duration::from_secs(cfg.switchboard.keepalive_timeout_secs),
                voicemail_max: Duration::from_secs(cfg.switchboard.voicemail_max_secs.max(1)),
                numbers: cfg.switchboard.numbers.clone(),
            },
            log_file: o
                .log_file
                .or(cfg.log.file.clone())
                .unwrap_or_else(config::default_log_file),
            user,
            data_dir,
            user_dir,
            devices,
            mic,
            speaker,
            auto_accept: o.auto_accept || tui.auto_accept,
            auto_accept_transfers: cfg.auto_accept_transfers,
        })
    }

    fn engine_options(&self, server: String) -> EngineOptions {
        EngineOptions {
            server,
            ca_file: self.ca_file.clone(),
            user: Some(self.user.clone()),
            token: self.token.clone(),
            device_name: self.device_name.clone(),
            mic: self.mic.clone(),
            speaker: self.speaker.clone(),
            camera: self.devices.camera.clone(),
            auto_answer: self.auto_accept,
            // Otherwise transfers are answered at the transfer-request prompt.
            auto_accept_transfers: self.auto_accept_transfers,
            media: ClientConfig::new(false),
        }
    }
}

fn parse_spec(text: &str, kind: DeviceKind) -> anyhow::Result<DeviceSpec> {
    let spec: DeviceSpec = text.parse().map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    anyhow::ensure!(spec.usable_as(kind), "{text:?} cannot be used as a {kind}");
    Ok(spec)
}

fn os_user() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .map(|u| u.to_ascii_lowercase())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".into())
}

/// Where the local switchboard listens and keeps its data.
#[derive(Debug, Clone)]
struct Local {
    addr: SocketAddr,
    data_dir: PathBuf,
    ring_timeout: Duration,
    reconnect_window: Duration,
    keepalive_timeout: Duration,
    voicemail_max: Duration,
    numbers: std::collections::BTreeMap<String, String>,
}

/// Connects to a switchboard already listening on this machine, or starts one in this process
/// (dev mode, loopback only). Two TUIs starting at once may race for the port; the loser uses
/// the winner's.
async fn local_switchboard(local: &Local) -> anyhow::Result<(String, Option<ServerHandle>)> {
    let url = format!("ws://{}", local.addr);
    if probe(local.addr).await {
        tracing::info!("using the switchboard already running on {}", local.addr);
        return Ok((url, None));
    }
    let opts = ServeOptions {
        listen: local.addr,
        dev: true,
        data_dir: local.data_dir.clone(),
        ring_timeout: local.ring_timeout,
        reconnect_window: local.reconnect_window,
        keepalive_timeout: local.keepalive_timeout,
        // Loopback only, like the embedded switchboard's signaling; any free port.
        media: MediaListen {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            public_ip: None,
        },
        turn: None,
        // One device or a few on this machine: one media thread is plenty.
        media_threads: 1,
        voicemail_max: local.voicemail_max,
        numbers: local.numbers.clone(),
        // Loopback and plain: the embedded switchboard is for this machine only.
        transport: Default::default(),
    };
    match server::serve(opts).await {
        Ok(h) => {
            tracing::info!("started the embedded switchboard on {}", h.addr);
            Ok((format!("ws://{}", h.addr), Some(h)))
        }
        Err(e) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if probe(local.addr).await {
                Ok((url, None))
            } else {
                Err(e.context(format!(
                    "starting the embedded switchboard on {}",
                    local.addr
                )))
            }
        }
    }
}

async fn probe(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// What actions need: where to save, and where results go.
struct Ctx {
    user_dir: PathBuf,
    history_path: PathBuf,
    done: mpsc::UnboundedSender<Update>,
}

impl Ctx {
    /// Starts the work an action asks for. Everything that may block runs in a task and reports
    /// back through `done`, so the loop never waits on the engine, a device or the disk.
    fn perform(&self, action: Action, engine: Option<&EngineHandle>, app: &App) {
        let done = self.done.clone();
        match action {
            Action::Engine(cmd) => {
                let Some(h) = engine.cloned() else {
                    let _ = done.send(Update::CommandDone {
                        cmd,
                        result: Err(s::ENGINE_NOT_RUNNING.into()),
                    });
                    return;
                };
                tokio::spawn(async move {
                    let result = h.command(cmd.clone()).await.map_err(|e| e.to_string());
                    let _ = done.send(Update::CommandDone { cmd, result });
                });
            }
            Action::SetDevice { slot, spec } => {
                let Some(h) = engine.cloned() else {
                    let _ = done.send(Update::DeviceSet {
                        slot,
                        spec,
                        result: Err(s::ENGINE_NOT_RUNNING.into()),
                    });
                    return;
                };
                tokio::spawn(async move {
                    let result = match slot {
                        Slot::Microphone => match spec.parse() {
                            Ok(d) => h.set_microphone(d).await.map_err(|e| e.to_string()),
                            Err(e) => Err(format!("{e}")),
                        },
                        Slot::Speaker => match spec.parse() {
                            Ok(d) => h.set_speaker(d).await.map_err(|e| e.to_string()),
                            Err(e) => Err(format!("{e}")),
                        },
                        Slot::Camera => h.set_camera(spec.clone()).await.map_err(|e| e.to_string()),
                    };
                    let _ = done.send(Update::DeviceSet { slot, spec, result });
                });
            }
            Action::ListDevices => {
                tokio::task::spawn_blocking(move || {
                    let _ = done.send(Update::Devices(crate::devices::list_devices()));
                });
            }
            Action::TestTone => match engine {
                Some(engine) => {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let update = match engine.play_test_tone().await {
                            Ok(()) => Update::Notice(Level::Info, s::TEST_TONE_PLAYING.into()),
                            Err(e) => Update::Notice(Level::Error, format!("test tone: {e}")),
                        };
                        let _ = done.send(update);
                    });
                }
                None => {
                    let _ = done.send(Update::Notice(Level::Warn, s::NOT_CONNECTED_YET.into()));
                }
            },
            Action::SaveDevices(d) => {
                let dir = self.user_dir.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = save_devices(&dir, &d) {
                        let _ = done.send(Update::Notice(Level::Error, format!("{e:#}")));
                    }
                });
            }
            Action::SaveHistory => {
                let path = self.history_path.clone();
                let h = app.history.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = history::save(&path, &h) {
                        let _ = done.send(Update::Notice(Level::Error, format!("{e:#}")));
                    }
                });
            }
            Action::PlayVoicemail { message_id } => {
                let Some(h) = engine.cloned() else {
                    let _ = done.send(Update::VoicemailPlaying {
                        message_id,
                        result: Err(s::ENGINE_NOT_RUNNING.into()),
                    });
                    return;
                };
                tokio::spawn(async move {
                    let result = play_voicemail(&h, &message_id).await;
                    if let Err(e) = &result {
                        tracing::warn!("playing voicemail {message_id}: {e}");
                    }
                    let _ = done.send(Update::VoicemailPlaying { message_id, result });
                });
            }
            Action::StopVoicemail => {
                if let Some(h) = engine.cloned() {
                    tokio::spawn(async move {
                        if let Err(e) = play_pcm(&h, Vec::new()).await {
                            tracing::debug!("stopping playback: {e}");
                        }
                    });
                }
            }
            Action::Bell => {
                let mut out = std::io::stdout();
                let _ = out.write_all(b"\x07").and_then(|()| out.flush());
            }
            Action::Quit => {}
        }
    }
}

/// Fetches a voicemail message, decodes it and plays it on the speaker. Returns how long it
/// plays, in ms.
async fn play_voicemail(engine: &EngineHandle, message_id: &str) -> Result<u64, String> {
    let bytes = engine
        .fetch_voicemail(message_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let pcm = tokio::task::spawn_blocking(move || decode_ogg_opus(&bytes))
        .await
        .map_err(|e| format!("decoding panicked: {e}"))??;
    let ms = pcm.len() as u64 * 1000 / 48_000;
    play_pcm(engine, pcm).await?;
    Ok(ms)
}

/// Ogg Opus bytes → 48 kHz mono. The decoder reads files: a private temporary file, removed at
/// once.
fn decode_ogg_opus(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let path = std::env::temp_dir().join(format!(
        "dialtone-voicemail-{}-{}.ogg",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(bytes));
    let result = match written {
        Ok(()) => server::voicemail::decode_to_pcm(&path).map_err(|e| e.to_string()),
        Err(e) => Err(format!("writing {}: {e}", path.display())),
    };
    let _ = std::fs::remove_file(&path);
    result
}

/// Plays 48 kHz mono PCM on the selected speaker, replacing what plays; empty stops. The one
/// place voicemail playback needs the engine: `EngineHandle::play_pcm` is not in this build yet
/// (the patch is in issue 4's TUI report), so this says so.
async fn play_pcm(engine: &EngineHandle, pcm: Vec<f32>) -> Result<(), String> {
    engine.play_pcm(pcm).await.map_err(|e| e.to_string())
}

/// Turns the engine's mic level reports on or off; they feed `Update::MicLevel` (the meters in
/// the status line and the device manager).
fn request_levels(engine: Option<&EngineHandle>, on: bool) {
    if let Some(e) = engine {
        e.report_levels(on);
    }
}

fn update_of(e: EngineEvent) -> Option<Update> {
    match e {
        EngineEvent::Core(c) => Some(Update::Core(c)),
        EngineEvent::Audio(AudioEvent::DeviceStarted {
            kind,
            spec,
            unix_micros,
        }) => {
            tracing::info!(%kind, %spec, unix_micros, "device started");
            Some(Update::DeviceStarted { kind, spec })
        }
        EngineEvent::Audio(AudioEvent::DeviceError { kind, message }) => {
            Some(Update::DeviceError { kind, message })
        }
        EngineEvent::MicLevel(level) => Some(Update::MicLevel(level)),
        EngineEvent::Media { up, via } => {
            tracing::info!(up, ?via, "media link");
            Some(Update::MediaPath(if up { via } else { None }))
        }
        EngineEvent::MediaDiagnostic(d) => {
            tracing::info!(
                diagnostic = d.diagnostic.name(),
                d.value,
                "media diagnostic"
            );
            Some(Update::MediaDiagnostic(d))
        }
        EngineEvent::DeviceSwitched(sw) => Some(Update::DeviceSwitched(sw)),
        EngineEvent::Quality(q) => Some(Update::Quality(q)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

const DEVICES_FILE: &str = "devices.toml";

fn load_devices(user_dir: &Path) -> Option<SelectedDevices> {
    let path = user_dir.join(DEVICES_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    match toml::from_str(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

fn save_devices(user_dir: &Path, d: &SelectedDevices) -> anyhow::Result<()> {
    std::fs::create_dir_all(user_dir)
        .with_context(|| format!("creating {}", user_dir.display()))?;
    let path = user_dir.join(DEVICES_FILE);
    let text = format!(
        "# The device manager's last choice; it wins over [devices] in the config. Delete to reset.\n{}",
        toml::to_string(d)?
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Logs to a file, never to the screen. `DIALTONE_LOG` overrides the configured filter. Returns
/// the guard that flushes the file on drop.
fn init_logging(
    path: &Path,
    level: &str,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the log dir {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    // webrtc-rs warns about benign things on every connection; keep them out unless asked for.
    let filter = std::env::var("DIALTONE_LOG")
        .unwrap_or_else(|_| format!("{level},rtc=error,rtc_ice=error,rtc_dtls=error"));
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ok = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .is_ok();
    // ALSA prints probe failures to stderr, which would tear through the screen.
    crate::devices::silence_alsa();
    Ok(ok.then_some(guard))
}

/// The terminal in raw mode on the alternate screen. Dropping it (or a panic on the UI thread)
/// restores the terminal.
struct TerminalGuard {
    term: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode().context("the terminal cannot enter raw mode (is stdin a terminal?)")?;
        let mut out = std::io::stdout();
        if let Err(e) = crossterm::execute!(out, EnterAlternateScreen) {
            restore_terminal();
            return Err(e.into());
        }
        let term = Terminal::new(CrosstermBackend::new(out)).inspect_err(|_| restore_terminal())?;
        Ok(TerminalGuard { term })
    }

    fn draw(&mut self, app: &App) -> anyhow::Result<()> {
        self.term.draw(|f| view::render(f, app))?;
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.term.show_cursor();
        restore_terminal();
    }
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// A panic on the UI thread restores the terminal before the message is printed. A panic on
/// another thread (an engine task) is logged to the file and not printed, so it cannot tear the
/// screen; the TUI then reports the engine as stopped.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let ui = std::thread::current().id();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("panic: {info}");
            if std::thread::current().id() == ui {
                restore_terminal();
                previous(info);
            }
        }));
    });
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM and SIGHUP end the TUI cleanly (the terminal is restored, calls are hung up).
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

#[derive(Default)]
struct Stats {
    draws: u64,
    keys: u32,
    key_sum: Duration,
    key_max: Duration,
}

impl Stats {
    fn key(&mut self, d: Duration) {
        self.keys += 1;
        self.key_sum += d;
        self.key_max = self.key_max.max(d);
    }
}
