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
}

enum SigCmd {
    Send(String),
    Close(oneshot::Sender<()>),
}

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
    let mut backoff = Duration::from_millis(250);
    // The last failure logged as an error; retries that fail the same way log at debug.
    let mut last_failure: Option<String> = None;
    loop {
        let connector = tls.clone().map(Connector::Rustls);
        // No Origin header is sent (tungstenite adds none): the switchboard's origin check is
        // for browsers.
        let attempt =
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector)
                .await;
        let ws = match attempt {
            Ok((ws, _)) => ws,
            Err(e) => {
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
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        last_failure = None;
        let _ = events.send(SigEvent::Up);
        let (mut sink, mut source) = ws.split();
        // A refusal of our credentials is final: retrying with the same token cannot succeed.
        let mut refused = false;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(SigCmd::Send(text)) => {
                        if sink.send(Message::text(text)).await.is_err() { break; }
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
                    Some(Ok(_)) => {}
                },
            }
        }
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
        if wait_or_close(&mut cmds, backoff).await {
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
                Some(SigCmd::Send(_)) => {}
                None => return true,
            },
        }
    }
}
