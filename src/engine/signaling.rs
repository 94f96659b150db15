//! The signaling adapter: one WebSocket to the switchboard, reconnected with backoff. It turns
//! frames into `SigEvent`s and `ClientMessage`s into frames; it decides nothing about calls.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::{ClientMessage, ErrorCode, ServerMessage, decode_server, encode};

#[derive(Debug)]
pub enum SigEvent {
    Up,
    Down,
    /// A connection attempt failed for a reason the user has to act on (TLS), in words; the
    /// adapter retries all the same.
    Failed(String),
    Message(ServerMessage),
    BadFrame(String),
    /// A WebSocket ping or pong: the switchboard is there.
    Alive,
}

enum SigCmd {
    Send(String),
    /// Drop the connection (no close frame: the switchboard is to keep our place) and connect
    /// again at once.
    Reconnect,
    Close(oneshot::Sender<()>),
}

/// An attempt to connect (TCP, TLS, the WebSocket upgrade) that has not got through after this
/// gets another beside it (see [`connect`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many attempts at once; each is given this many `CONNECT_TIMEOUT`s in all.
const PARALLEL_ATTEMPTS: usize = 3;

/// Retries back off to this while a lost connection is recent (a place may be kept for us)...
const RECENT_BACKOFF: Duration = Duration::from_secs(1);
/// ...for this long after it was lost, and to [`IDLE_BACKOFF`] after that.
const RECENT: Duration = Duration::from_secs(60);
const IDLE_BACKOFF: Duration = Duration::from_secs(10);

pub struct Signaling {
    tx: mpsc::UnboundedSender<SigCmd>,
}

impl Signaling {
    /// `tls` is the rustls config for wss:// URLs (see `tls.rs`).
    pub fn start(
        url: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        events: mpsc::UnboundedSender<SigEvent>,
    ) -> Signaling {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(url, tls, rx, events));
        Signaling { tx }
    }

    /// Queues a frame; frames sent while the connection is down are dropped, because the core
    /// starts over with a new hello when it comes back.
    pub fn send(&self, msg: &ClientMessage) {
        let _ = self.tx.send(SigCmd::Send(encode(msg)));
    }

    /// Drops the connection and connects again (the core found it silent).
    pub fn reconnect(&self) {
        let _ = self.tx.send(SigCmd::Reconnect);
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(SigCmd::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}

async fn run(
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    mut cmds: mpsc::UnboundedReceiver<SigCmd>,
    events: mpsc::UnboundedSender<SigEvent>,
) {
    let first = Duration::from_millis(250);
    let mut backoff = first;
    // When the last connection was lost: retries stay quick for a while after.
    let mut lost_at: Option<tokio::time::Instant> = None;
    // The last failure logged as an error; retries that fail the same way log at debug.
    let mut last_failure: Option<String> = None;
    loop {
        let ceiling = match lost_at {
            Some(t) if t.elapsed() < RECENT => RECENT_BACKOFF,
            _ => IDLE_BACKOFF,
        };
        let ws = match connect(&url, tls.as_ref(), &mut cmds).await {
            Attempt::Connected(ws) => *ws,
            Attempt::Closed => return,
            Attempt::Failed(e) => {
                match super::tls::failure_message(&e, &url) {
                    Some(why) => {
                        if last_failure.as_ref() != Some(&why) {
                            tracing::error!(%url, "cannot connect to the switchboard: {why}");
                            last_failure = Some(why.clone());
                        } else {
                            tracing::debug!(%url, "cannot connect to the switchboard: {why}");
                        }
                        let _ = events.send(SigEvent::Failed(why));
                    }
                    None => {
                        tracing::warn!(%url, "cannot reach the switchboard: {e}");
                        let _ = events.send(SigEvent::Down);
                    }
                }
                if wait_or_close(&mut cmds, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(ceiling);
                continue;
            }
        };
        backoff = first;
        last_failure = None;
        let _ = events.send(SigEvent::Up);
        let (mut sink, mut source) = ws.split();
        // A refusal of our credentials is final: retrying with the same token cannot succeed.
        let mut refused = false;
        // Asked to drop a silent connection: connect again without waiting.
        let mut at_once = false;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(SigCmd::Send(text)) => {
                        if sink.send(Message::text(text)).await.is_err() { break; }
                    }
                    Some(SigCmd::Reconnect) => {
                        at_once = true;
                        break;
                    }
                    Some(SigCmd::Close(done)) => {
                        let _ = sink.send(Message::Close(None)).await;
                        let _ = events.send(SigEvent::Down);
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                frame = source.next() => match frame {
                    Some(Ok(Message::Text(t))) => match decode_server(&t) {
                        Ok(m) => {
                            if let ServerMessage::Error { code: ErrorCode::InvalidToken | ErrorCode::UnsupportedVersion, .. } = &m {
                                refused = true;
                            }
                            let _ = events.send(SigEvent::Message(m));
                        }
                        Err(e) => { let _ = events.send(SigEvent::BadFrame(e.to_string())); }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        let _ = events.send(SigEvent::Alive);
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
        lost_at = Some(tokio::time::Instant::now());
        let _ = events.send(SigEvent::Down);
        if refused {
            // Stay down, but keep answering Close so shutdown does not hang.
            while let Some(cmd) = cmds.recv().await {
                if let SigCmd::Close(done) = cmd {
                    let _ = done.send(());
                    return;
                }
            }
            return;
        }
        if !at_once && wait_or_close(&mut cmds, backoff).await {
            return;
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Attempt {
    Connected(Box<Ws>),
    Failed(tokio_tungstenite::tungstenite::Error),
    Closed,
}

/// Connects (TCP, TLS, the WebSocket upgrade). An attempt that has not got through in
/// [`CONNECT_TIMEOUT`] is not abandoned: another starts beside it, up to [`PARALLEL_ATTEMPTS`],
/// and the first through wins. On a network that just came back a fresh attempt beats a SYN
/// waiting out its back-off; on a lossy one, the older attempts keep the handshake progress they
/// made through retransmissions (killing them made a sign-in over 15 % loss take over 10 s).
/// An attempt that fails outright (refused, TLS) ends the round with its error once no other
/// is pending.
async fn connect(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    cmds: &mut mpsc::UnboundedReceiver<SigCmd>,
) -> Attempt {
    use futures_util::stream::FuturesUnordered;
    let mut attempts = FuturesUnordered::new();
    let mut last_error = None;
    loop {
        if attempts.len() < PARALLEL_ATTEMPTS && (attempts.is_empty() || last_error.is_none()) {
            let connector = tls.cloned().map(Connector::Rustls);
            // No Origin header is sent (tungstenite adds none): the switchboard's origin check
            // is for browsers.
            attempts.push(tokio::time::timeout(
                CONNECT_TIMEOUT * PARALLEL_ATTEMPTS as u32,
                tokio_tungstenite::connect_async_tls_with_config(
                    url.to_owned(),
                    None,
                    true,
                    connector,
                ),
            ));
        }
        let next = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::select! {
            done = attempts.next() => match done {
                Some(Ok(Ok((ws, _)))) => return Attempt::Connected(Box::new(ws)),
                Some(Ok(Err(e))) => {
                    if attempts.is_empty() {
                        return Attempt::Failed(e);
                    }
                    last_error = Some(e);
                }
                Some(Err(_)) | None => {
                    tracing::debug!(%url, "no answer from the switchboard within {:?}", CONNECT_TIMEOUT * PARALLEL_ATTEMPTS as u32);
                    if attempts.is_empty()
                        && let Some(e) = last_error.take()
                    {
                        return Attempt::Failed(e);
                    }
                }
            },
            () = next => {
                tracing::debug!(%url, "no answer from the switchboard within {CONNECT_TIMEOUT:?}; trying again beside it");
            }
            cmd = cmds.recv() => match cmd {
                Some(SigCmd::Close(done)) => {
                    let _ = done.send(());
                    return Attempt::Closed;
                }
                None => return Attempt::Closed,
                Some(SigCmd::Send(_) | SigCmd::Reconnect) => {}
            },
        }
    }
}

/// Sleeps for the backoff, dropping frames meanwhile; true if asked to close.
async fn wait_or_close(cmds: &mut mpsc::UnboundedReceiver<SigCmd>, d: Duration) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            cmd = cmds.recv() => match cmd {
                Some(SigCmd::Close(done)) => { let _ = done.send(()); return true; }
                Some(SigCmd::Send(_) | SigCmd::Reconnect) => {}
                None => return true,
            },
        }
    }
}
