//! The signaling adapter: one WebSocket to the switchboard, reconnected with backoff. It turns
//! frames into `SigEvent`s and `ClientMessage`s into frames; it decides nothing about calls.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::{ClientMessage, ErrorCode, ServerMessage, decode_server, encode};

#[derive(Debug)]
pub enum SigEvent {
    Up,
    Down,
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
    pub fn start(url: String, events: mpsc::UnboundedSender<SigEvent>) -> Signaling {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(url, rx, events));
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
    mut cmds: mpsc::UnboundedReceiver<SigCmd>,
    events: mpsc::UnboundedSender<SigEvent>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let ws = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                tracing::warn!(%url, "cannot reach the switchboard: {e}");
                let _ = events.send(SigEvent::Down);
                if wait_or_close(&mut cmds, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let tokio_tungstenite::MaybeTlsStream::Plain(s) = ws.get_ref() {
            let _ = s.set_nodelay(true);
        }
        backoff = Duration::from_millis(250);
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
