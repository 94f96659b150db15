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

/// One attempt to connect (TCP, TLS, the WebSocket upgrade) gives up after this; on a network
/// that just came back, a fresh attempt beats a SYN waiting out its back-off.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
        let connector = tls.clone().map(Connector::Rustls);
        // No Origin header is sent (tungstenite adds none): the switchboard's origin check is
        // for browsers.
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector),
        )
        .await;
        let ceiling = match lost_at {
            Some(t) if t.elapsed() < RECENT => RECENT_BACKOFF,
            _ => IDLE_BACKOFF,
        };
        let ws = match attempt {
            Ok(Ok((ws, _))) => ws,
            Err(_) => {
                tracing::debug!(%url, "no answer from the switchboard within {CONNECT_TIMEOUT:?}");
                let _ = events.send(SigEvent::Down);
                if wait_or_close(&mut cmds, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(ceiling);
                continue;
            }
            Ok(Err(e)) => {
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
