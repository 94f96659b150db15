//! The switchboard's runtime: WebSocket connections, WebRTC media legs, the SQLite writer and the
//! timer, all feeding one loop that owns the pure core. Adapters here translate; the core decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, WebSocketConfig, frame::coding::CloseCode,
};

use super::connections::Connections;
use super::listener::{self, Front, TransportOptions, Upgraded};
use super::media::{HubCmd, HubEvent, MediaListen};
use super::relay::RelayStats;
use super::store::{Store, load_or_create_key};
use super::switchboard::network::{MediaAddr, TurnConfig};
use super::switchboard::{ConnId, Input, Output, StoreOp, Switchboard, SwitchboardConfig};
use super::voicemail::session::EndedBy;
use super::voicemail::{Greeting, run_session};
use crate::core::Now;
use crate::protocol::{ErrorCode, MAX_FRAME_BYTES, ServerMessage, encode};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub dev: bool,
    pub data_dir: PathBuf,
    pub ring_timeout: Duration,
    /// How long a device whose connection is lost keeps its place and calls.
    pub reconnect_window: Duration,
    /// A connection silent this long is taken as lost.
    pub keepalive_timeout: Duration,
    /// The media port: where it binds (the listen IP, port next to the signaling one) and the
    /// public address of a host behind a 1:1 NAT.
    pub media: MediaListen,
    /// TURN relays handed to devices.
    pub turn: Option<TurnConfig>,
    /// Media threads (shards of the devices' links); one per core by default.
    pub media_threads: usize,
    /// Longest voicemail message.
    pub voicemail_max: Duration,
    /// Numbers from the config file (E.164 -> user name), written to the database at start.
    pub numbers: BTreeMap<String, String>,
    /// TLS, allowed origins, plain ws:// off loopback (`listener.rs`).
    pub transport: TransportOptions,
}

/// A running switchboard (used by `serve`, the embedded default and tests).
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// The media port's addresses, as announced (a 1:1 NAT's public one first).
    pub media_addrs: Vec<SocketAddr>,
    pub stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Runs until the switchboard stops (it only stops on a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("switchboard task failed")
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

/// What reaches the switchboard loop: one closed enum.
enum Event {
    Core(Input),
    /// Token ids revoked since start-up (`dialtone token revoke` writes them from another process).
    Revoked(BTreeSet<String>),
    /// The number plan changed (`dialtone number assign` writes it from another process).
    Numbers(BTreeMap<String, String>),
    NewConn {
        conn: ConnId,
        tx: mpsc::UnboundedSender<Outgoing>,
        loopback: bool,
        local: Option<SocketAddr>,
    },
    Media(HubEvent),
}

enum Outgoing {
    Text(String),
    Close(String),
}

pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    }
}

/// Binds, then serves in a background task. Returns once the socket accepts connections.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<ServerHandle> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
    let key = load_or_create_key(&opts.data_dir)?;
    let db_path = Store::path_in(&opts.data_dir);
    let store = Store::open(&db_path)?;
    let resource = store.resource()?;
    for (number, name) in &opts.numbers {
        store
            .assign_number(number, name)
            .with_context(|| format!("switchboard.numbers: {number} = {name:?}"))?;
    }
    let startup = store.startup()?;
    let plan = startup.numbers.clone();
    let voicemail_dir = opts.data_dir.join("voicemail");
    std::fs::create_dir_all(&voicemail_dir)
        .with_context(|| format!("creating {}", voicemail_dir.display()))?;
    let greeting =
        Greeting::default_greeting().context("loading the default voicemail greeting")?;
    let media_sockets = super::media::sockets::bind(opts.media)?;
    let media: Vec<MediaAddr> = media_sockets
        .iter()
        .flat_map(|s| {
            s.announce.iter().map(|&addr| MediaAddr {
                addr,
                socket_ip: s.bound.ip(),
            })
        })
        .collect();
    let media_addrs: Vec<SocketAddr> = media.iter().map(|m| m.addr).collect();
    let core = Switchboard::new(
        SwitchboardConfig {
            dev: opts.dev,
            resource,
            ring_timeout: opts.ring_timeout,
            max_bad_frames: 20,
            voicemail_dir,
            voicemail_max: opts.voicemail_max,
            media,
            turn: opts.turn.clone(),
            reconnect_window: opts.reconnect_window,
            keepalive_timeout: opts.keepalive_timeout,
        },
        key,
        startup,
    );
    // Frames up to 1 MiB reach the core, which refuses anything over MAX_FRAME_BYTES with an
    // error and keeps the connection; larger ones end it at the WebSocket layer.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let front = Front::new(&opts.transport, ws_config)?;
    match listener::listen_policy(
        opts.listen,
        front.is_tls(),
        opts.transport.insecure_plain_ws,
    ) {
        Ok(None) => {}
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Err(refusal) => anyhow::bail!(refusal),
    }
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if opts.dev && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "dev mode: token-less sign-in is refused for peers that are not on loopback");
    }

    let (store_tx, store_rx) = std::sync::mpsc::channel::<StoreOp>();
    std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            for op in store_rx {
                if let Err(e) = store.apply(&op, now().unix_ms) {
                    tracing::error!("store write failed for {op:?}: {e:#}");
                }
            }
        })?;

    let stats = Arc::new(RelayStats::default());
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let media_events = ev_tx.clone();
    let hub_tx = super::media::start(
        media_sockets,
        stats.clone(),
        Box::new(move |e| {
            let _ = media_events.send(Event::Media(e));
        }),
        opts.media_threads,
    )
    .context("starting the media threads")?;
    tokio::spawn(accept_loop(listener, Arc::new(front), ev_tx.clone()));
    tokio::spawn(watch_revocations(db_path, plan, ev_tx.clone()));
    let beep: Vec<f32> = (0..14_400)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
        .collect();
    let beep = Greeting::from_pcm(&beep).context("encoding the greeting beep")?;
    let ctx = LoopCtx {
        ev_tx,
        hub_tx,
        store_tx,
        greeting,
        beep,
        voicemail_max: opts.voicemail_max,
    };
    let task = tokio::spawn(main_loop(core, ev_rx, ctx));
    Ok(ServerHandle {
        addr,
        media_addrs,
        stats,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    front: Arc<Front>,
    ev_tx: mpsc::UnboundedSender<Event>,
) {
    let mut next: ConnId = 1;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let conn = next;
                next += 1;
                let _ = stream.set_nodelay(true);
                // The address of ours the device reached: its media is offered that one first.
                let local = stream.local_addr().ok();
                let (front, ev_tx) = (front.clone(), ev_tx.clone());
                // TLS and the HTTP request run in the connection's own task (with a timeout):
                // a slow or silent client never holds up the next accept.
                tokio::spawn(async move {
                    if let Some(up) = listener::accept(front, stream, peer).await {
                        connection(conn, up, local, ev_tx).await;
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How often the switchboard pings each connection at the WebSocket level. The pongs are what
/// keeps a client that sends no keepalive of its own alive (see `keepalive_timeout`), and they
/// keep NAT mappings on the way open.
const PING_EVERY: Duration = Duration::from_secs(2);

/// How long a close frame may take to go out before the connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

async fn connection(
    conn: ConnId,
    up: Upgraded,
    local: Option<SocketAddr>,
    ev_tx: mpsc::UnboundedSender<Event>,
) {
    let Upgraded { ws, loopback } = up;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    let _ = ev_tx.send(Event::NewConn {
        conn,
        tx: tx.clone(),
        loopback,
        local,
    });
    // The writer ends on a close (asked for, or a dead peer); the reader then stops too, even
    // if the peer is gone without a word and its socket would never report it.
    let (ended_tx, mut ended_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outgoing::Text(t)) => {
                        if sink.send(Message::text(t)).await.is_err() {
                            break;
                        }
                    }
                    Some(Outgoing::Close(reason)) => {
                        let frame = CloseFrame {
                            code: CloseCode::Policy,
                            reason: truncate(&reason, 120).into(),
                        };
                        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
                        break;
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let sent = tokio::time::timeout(PING_EVERY, sink.send(Message::Ping(Default::default()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
            }
        }
        let _ = ended_tx.send(());
    });
    let clean = loop {
        let msg = tokio::select! {
            msg = source.next() => msg,
            _ = &mut ended_rx => break false,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let _ = ev_tx.send(Event::Core(Input::Frame {
                    conn,
                    text: t.to_string(),
                }));
            }
            Some(Ok(Message::Binary(b))) => {
                // Not part of the protocol; the core answers it as a frame that is not JSON.
                let text =
                    String::from_utf8_lossy(&b[..b.len().min(MAX_FRAME_BYTES + 1)]).into_owned();
                let _ = ev_tx.send(Event::Core(Input::Frame { conn, text }));
            }
            Some(Ok(Message::Close(_))) => break true,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                let _ = ev_tx.send(Event::Core(Input::Alive { conn }));
            }
            Some(Ok(Message::Frame(_))) => {}
            Some(Err(e)) => {
                let text = encode(&ServerMessage::Error {
                    code: ErrorCode::FrameTooLarge,
                    message: format!("connection closed: {e}"),
                    call_id: None,
                });
                let _ = tx.send(Outgoing::Text(text));
                let _ = tx.send(Outgoing::Close(e.to_string()));
                break false;
            }
            None => break false,
        }
    };
    let _ = ev_tx.send(Event::Core(Input::Closed { conn, clean }));
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the loop hands to the adapters it starts.
struct LoopCtx {
    ev_tx: mpsc::UnboundedSender<Event>,
    hub_tx: super::media::Hub,
    store_tx: std::sync::mpsc::Sender<StoreOp>,
    greeting: Greeting,
    /// The prompt before recording a greeting: a short beep.
    beep: Greeting,
    voicemail_max: Duration,
}

async fn main_loop(mut core: Switchboard, mut ev_rx: mpsc::UnboundedReceiver<Event>, ctx: LoopCtx) {
    let LoopCtx {
        ev_tx,
        hub_tx,
        store_tx,
        ..
    } = &ctx;
    let mut conns = Connections::<Outgoing>::new();
    let mut recordings: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    loop {
        let deadline = core.poll_timeout();
        let event = tokio::select! {
            ev = ev_rx.recv() => match ev { Some(ev) => ev, None => return },
            _ = sleep_until(deadline) => Event::Core(Input::Tick),
        };
        let input = match event {
            // What a socket says is said by the device it carries, unless a newer socket took
            // that device's place.
            Event::Core(Input::Frame { conn, text }) => match conns.device(conn) {
                Some(conn) => Input::Frame { conn, text },
                None => continue,
            },
            Event::Core(Input::Alive { conn }) => match conns.device(conn) {
                Some(conn) => Input::Alive { conn },
                None => continue,
            },
            Event::Core(Input::Closed { conn, clean }) => {
                let device = conns.device(conn);
                conns.closed(conn);
                match device {
                    Some(conn) => Input::Closed { conn, clean },
                    None => continue,
                }
            }
            Event::Core(input) => input,
            Event::Revoked(jtis) => {
                for jti in jtis {
                    core.revoke(jti);
                }
                continue;
            }
            Event::Numbers(numbers) => {
                core.set_numbers(numbers);
                continue;
            }
            Event::NewConn {
                conn,
                tx,
                loopback,
                local,
            } => {
                conns.opened(conn, tx);
                Input::Opened {
                    conn,
                    loopback,
                    local,
                    secret: rand::random(),
                }
            }
            Event::Media(HubEvent::Answered { conn, sdp }) => Input::MediaAnswered { conn, sdp },
            Event::Media(HubEvent::Failed { conn, error }) => Input::MediaFailed { conn, error },
            Event::Media(HubEvent::Connected { conn, up }) => Input::MediaConnected { conn, up },
        };
        core.handle(input, now());
        while let Some(out) = core.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    if let Some(tx) = conns.writer(conn) {
                        let _ = tx.send(Outgoing::Text(encode(&msg)));
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some(tx) = conns.writer(conn) {
                        let _ = tx.send(Outgoing::Close(reason));
                    }
                }
                Output::Attach { socket, device } => conns.attach(socket, device),
                Output::CreateMedia {
                    conn,
                    offer_sdp,
                    announce,
                } => {
                    let _ = hub_tx.send(HubCmd::Answer {
                        conn,
                        offer_sdp,
                        announce,
                    });
                }
                Output::DropMedia { conn } => {
                    let _ = hub_tx.send(HubCmd::Drop { conn });
                }
                Output::Routes(table) => {
                    let _ = hub_tx.send(HubCmd::Routes(table));
                }
                Output::Store(op) => {
                    let _ = store_tx.send(op);
                }
                Output::StartVoicemail {
                    call_id,
                    conn,
                    owner,
                    greeting,
                    path,
                } => {
                    let (stop_tx, stop_rx) = oneshot::channel();
                    recordings.insert(call_id.clone(), stop_tx);
                    tracing::info!(%call_id, %owner, "voicemail answers");
                    // A user's own greeting, or the default one if it cannot be read.
                    let prompt = greeting
                        .and_then(|p| {
                            Greeting::from_ogg_opus(&p)
                                .map_err(|e| tracing::warn!("own greeting: {e}"))
                                .ok()
                        })
                        .unwrap_or_else(|| ctx.greeting.clone());
                    let rec = Recording {
                        call_id,
                        conn,
                        path,
                        prompt,
                        max: ctx.voicemail_max,
                    };
                    tokio::spawn(record(rec, stop_rx, ev_tx.clone(), hub_tx.clone()));
                }
                Output::RecordGreeting {
                    call_id,
                    conn,
                    path,
                } => {
                    let (stop_tx, stop_rx) = oneshot::channel();
                    recordings.insert(call_id.clone(), stop_tx);
                    let rec = Recording {
                        call_id,
                        conn,
                        path,
                        prompt: ctx.beep.clone(),
                        max: GREETING_MAX,
                    };
                    tokio::spawn(record(rec, stop_rx, ev_tx.clone(), hub_tx.clone()));
                }
                Output::StopVoicemail { call_id } => {
                    if let Some(stop) = recordings.remove(&call_id) {
                        let _ = stop.send(());
                    }
                }
                Output::SendVoicemail {
                    conn,
                    message_id,
                    path,
                } => {
                    if let Some(tx) = conns.writer(conn) {
                        tokio::spawn(send_voicemail(tx.clone(), message_id, path));
                    }
                }
                Output::DeleteFile { path } => {
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = std::fs::remove_file(&path)
                            && e.kind() != std::io::ErrorKind::NotFound
                        {
                            tracing::warn!("cannot delete {}: {e}", path.display());
                        }
                    });
                }
            }
        }
        recordings.retain(|_, stop| !stop.is_closed());
    }
}

/// The longest greeting a user can record.
const GREETING_MAX: Duration = Duration::from_secs(30);

/// One recording: a prompt plays to `conn`, then its audio is recorded to `path`.
struct Recording {
    call_id: String,
    conn: ConnId,
    path: PathBuf,
    prompt: Greeting,
    max: Duration,
}

/// One caller leaving one message (or recording a greeting): the prompt plays, the caller's
/// audio is recorded, and the core hears when it is over, however it ended.
async fn record(
    rec: Recording,
    stop: oneshot::Receiver<()>,
    ev_tx: mpsc::UnboundedSender<Event>,
    hub_tx: super::media::Hub,
) {
    let Recording {
        call_id,
        conn,
        path,
        prompt: greeting,
        max,
    } = rec;
    if let Some(dir) = path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    let (tap_tx, tap_rx) = mpsc::channel(256);
    let _ = hub_tx.send(HubCmd::Tap {
        from: conn,
        tx: tap_tx,
    });
    let inject = hub_tx.clone();
    let send = move |rtp| {
        let _ = inject.send(HubCmd::Inject { to: conn, rtp });
    };
    let result = run_session(greeting, send, tap_rx, path.clone(), max, stop).await;
    let _ = hub_tx.send(HubCmd::Untap { from: conn });
    let (duration_ms, full) = match result {
        Ok(done) => (
            done.duration.as_millis() as u64,
            done.ended_by == EndedBy::MaxLength,
        ),
        Err(e) => {
            tracing::error!(%call_id, "voicemail recording to {} failed: {e}", path.display());
            (0, false)
        }
    };
    let _ = ev_tx.send(Event::Core(Input::VoicemailEnded {
        call_id,
        duration_ms,
        full,
    }));
}

/// Streams a recording to a device in base64 chunks small enough for any client's frame limit.
async fn send_voicemail(tx: mpsc::UnboundedSender<Outgoing>, message_id: String, path: PathBuf) {
    use base64::Engine as _;
    const CHUNK: usize = 24 * 1024;
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) => {
            let msg = ServerMessage::Error {
                code: ErrorCode::Internal,
                message: format!("cannot read voicemail {message_id:?}: {e}"),
                call_id: None,
            };
            let _ = tx.send(Outgoing::Text(encode(&msg)));
            return;
        }
    };
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(CHUNK).collect()
    };
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        let msg = ServerMessage::VoicemailData {
            message_id: message_id.clone(),
            seq: i as u32,
            data: base64::engine::general_purpose::STANDARD.encode(c),
            last: i + 1 == n,
        };
        if tx.send(Outgoing::Text(encode(&msg))).is_err() {
            return;
        }
    }
}

/// Re-reads the revocation and number tables every two seconds, so a revoked token stops
/// working at its next sign-in, and a number assigned from the command line rings its owner,
/// without restarting the switchboard.
async fn watch_revocations(
    db_path: PathBuf,
    mut numbers: BTreeMap<String, String>,
    ev_tx: mpsc::UnboundedSender<Event>,
) {
    let mut seen = BTreeSet::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let path = db_path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let s = Store::open(&path)?;
            Ok::<_, anyhow::Error>((s.revoked()?, s.numbers()?))
        })
        .await;
        match read {
            Ok(Ok((all, plan))) => {
                if numbers != plan {
                    if ev_tx.send(Event::Numbers(plan.clone())).is_err() {
                        return;
                    }
                    numbers = plan;
                }
                let new: BTreeSet<String> = all.difference(&seen).cloned().collect();
                if !new.is_empty() {
                    seen.extend(new.iter().cloned());
                    if ev_tx.send(Event::Revoked(new)).is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!("cannot read revocations: {e:#}"),
            Err(_) => return,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
