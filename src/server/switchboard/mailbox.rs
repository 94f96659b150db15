//! Voicemail bookkeeping and call forwarding settings. The recordings themselves are made by
//! the runtime (server/voicemail/); the core decides when a mailbox answers, names the file,
//! keeps the message list and the message-waiting counts.

use std::path::PathBuf;

use super::{ConnId, Output, Party, PartyKind, Phase, StoreOp, Switchboard};
use crate::core::{CallEndReason, Now};
use crate::protocol::{ErrorCode, ForwardMode, Forwarding, Identity, ServerMessage};

/// One message in a mailbox, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub message_id: String,
    /// Raw id of the mailbox owner.
    pub owner: String,
    pub caller: Identity,
    pub received_unix_ms: u64,
    pub duration_ms: u64,
    pub is_new: bool,
    pub path: PathBuf,
}

/// A recording under way: a message for `owner`'s mailbox, or `owner`'s new greeting.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub owner: String,
    pub caller: Identity,
    pub path: PathBuf,
    pub greeting: bool,
}

impl Switchboard {
    /// The mailbox of `owner` answers the call at once (its caller is parties[0]).
    pub(super) fn connect_voicemail(&mut self, call_id: &str, owner: Identity, now: Now) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let mailbox = Identity {
            raw_id: owner.raw_id.clone(),
            display_name: format!("{} (voicemail)", owner.display_name),
        };
        call.parties.push(Party::new(mailbox, PartyKind::Voicemail));
        call.phase = Phase::Connected;
        call.ring_deadline = None;
        call.on_no_answer = None;
        call.connected_ms = Some(now.unix_ms);
        let caller = call.parties[0].identity.clone();
        self.outputs
            .push_back(Output::Store(StoreOp::CallConnected {
                call_id: call_id.into(),
                at_ms: now.unix_ms,
            }));
        self.call_connected(call_id, now);
        let Some(conn) = self.calls.get(call_id).and_then(|c| c.parties[0].conn) else {
            return;
        };
        let path = self.cfg.voicemail_dir.join(format!("{call_id}.opus"));
        self.sessions.insert(
            call_id.into(),
            Session {
                owner: owner.raw_id.clone(),
                caller,
                path: path.clone(),
                greeting: false,
            },
        );
        let greeting = self.greetings.get(&owner.raw_id).cloned();
        self.outputs.push_back(Output::StartVoicemail {
            call_id: call_id.into(),
            conn,
            owner: owner.raw_id,
            greeting,
            path,
        });
    }

    /// A call to the greeting service: a beep, then the caller's new greeting is recorded until
    /// they hang up.
    pub(super) fn record_greeting(&mut self, conn: ConnId, call_id: String, now: Now) {
        let me = self.me(conn);
        let mut caller = Party::new(me.clone(), PartyKind::Device);
        caller.conn = Some(conn);
        let recorder = Party::new(
            crate::core::greeting_identity(),
            PartyKind::GreetingRecorder,
        );
        self.store_started(
            &call_id,
            &me.raw_id,
            std::slice::from_ref(&recorder.identity.raw_id),
            now,
        );
        self.calls.insert(
            call_id.clone(),
            super::Call::new(Phase::Connected, vec![caller, recorder]),
        );
        self.announce_connected(&call_id);
        let path = self
            .cfg
            .voicemail_dir
            .join("greetings")
            .join(format!("{call_id}.opus"));
        self.sessions.insert(
            call_id.clone(),
            Session {
                owner: me.raw_id.clone(),
                caller: me,
                path: path.clone(),
                greeting: true,
            },
        );
        self.outputs.push_back(Output::RecordGreeting {
            call_id,
            conn,
            path,
        });
    }

    /// The recording stopped. A message with audio lands in the mailbox; if the caller is still
    /// on the line (the maximum length was reached), the call ends.
    pub(super) fn voicemail_ended(
        &mut self,
        call_id: &str,
        duration_ms: u64,
        full: bool,
        now: Now,
    ) {
        if self.calls.contains_key(call_id) {
            let reason = if full {
                CallEndReason::VOICEMAIL_FULL
            } else {
                CallEndReason::NORMAL
            };
            self.end_call(call_id, reason, None, now);
        }
        let Some(session) = self.sessions.remove(call_id) else {
            return;
        };
        if duration_ms == 0 {
            self.outputs
                .push_back(Output::DeleteFile { path: session.path });
            return;
        }
        if session.greeting {
            if let Some(old) = self
                .greetings
                .insert(session.owner.clone(), session.path.clone())
            {
                self.outputs.push_back(Output::DeleteFile { path: old });
            }
            self.outputs.push_back(Output::Store(StoreOp::SetGreeting {
                raw_id: session.owner,
                path: session.path,
            }));
            return;
        }
        let msg = StoredMessage {
            message_id: call_id.into(),
            owner: session.owner.clone(),
            caller: session.caller,
            received_unix_ms: now.unix_ms.saturating_sub(duration_ms),
            duration_ms,
            is_new: true,
            path: session.path,
        };
        self.messages.insert(msg.message_id.clone(), msg.clone());
        self.outputs
            .push_back(Output::Store(StoreOp::SaveMessage(msg)));
        self.message_waiting(&session.owner);
    }

    pub(super) fn mailbox_counts(&self, owner: &str) -> (u32, u32) {
        let mine = self.messages.values().filter(|m| m.owner == owner);
        let (mut new, mut total) = (0, 0);
        for m in mine {
            total += 1;
            new += u32::from(m.is_new);
        }
        (new, total)
    }

    /// Pushes the counts to every device of the owner.
    fn message_waiting(&mut self, owner: &str) {
        let (new_count, total_count) = self.mailbox_counts(owner);
        for d in self.devices_of(owner) {
            self.send(
                d,
                ServerMessage::MessageWaiting {
                    new_count,
                    total_count,
                },
            );
        }
    }

    pub(super) fn list_voicemail(&mut self, conn: ConnId) {
        let me = self.me(conn).raw_id;
        let mut messages: Vec<_> = self
            .messages
            .values()
            .filter(|m| m.owner == me)
            .map(Self::voicemail_info)
            .collect();
        messages.sort_by_key(|m| std::cmp::Reverse(m.received_unix_ms));
        self.send(conn, ServerMessage::Voicemails { messages });
    }

    /// The message, if it is in this device's user's mailbox; an error to the device otherwise.
    fn own_message(&mut self, conn: ConnId, message_id: &str) -> Option<StoredMessage> {
        let me = self.me(conn).raw_id;
        match self.messages.get(message_id) {
            Some(m) if m.owner == me => Some(m.clone()),
            _ => {
                self.error(
                    conn,
                    ErrorCode::InvalidArgument,
                    format!("no voicemail message {message_id:?} in your mailbox"),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn fetch_voicemail(&mut self, conn: ConnId, message_id: &str) {
        if let Some(m) = self.own_message(conn, message_id) {
            self.outputs.push_back(Output::SendVoicemail {
                conn,
                message_id: m.message_id,
                path: m.path,
            });
        }
    }

    pub(super) fn delete_voicemail(&mut self, conn: ConnId, message_id: &str) {
        let Some(m) = self.own_message(conn, message_id) else {
            return;
        };
        self.messages.remove(message_id);
        self.outputs
            .push_back(Output::Store(StoreOp::DeleteMessage {
                message_id: message_id.into(),
            }));
        self.outputs.push_back(Output::DeleteFile { path: m.path });
        self.message_waiting(&m.owner);
        self.list_voicemail(conn);
    }

    pub(super) fn mark_voicemail(&mut self, conn: ConnId, message_id: &str, is_new: bool) {
        let Some(m) = self.own_message(conn, message_id) else {
            return;
        };
        if let Some(stored) = self.messages.get_mut(message_id) {
            stored.is_new = is_new;
        }
        self.outputs.push_back(Output::Store(StoreOp::MarkMessage {
            message_id: message_id.into(),
            is_new,
        }));
        self.message_waiting(&m.owner);
        self.list_voicemail(conn);
    }

    pub(super) fn set_forwarding(&mut self, conn: ConnId, f: Forwarding) {
        let me = self.me(conn);
        if let Err(why) = self.check_forwarding(&me, &f) {
            return self.error(conn, ErrorCode::InvalidArgument, why, None);
        }
        self.forwarding.insert(me.raw_id.clone(), f.clone());
        self.outputs
            .push_back(Output::Store(StoreOp::SetForwarding {
                raw_id: me.raw_id.clone(),
                forwarding: f.clone(),
            }));
        for d in self.devices_of(&me.raw_id) {
            self.send(
                d,
                ServerMessage::ForwardingChanged {
                    forwarding: f.clone(),
                },
            );
        }
    }

    fn check_forwarding(&self, me: &Identity, f: &Forwarding) -> Result<(), String> {
        if !(1..=300).contains(&f.unanswered_after_secs) {
            return Err(format!(
                "unansweredAfterSecs {} must be 1 to 300",
                f.unanswered_after_secs
            ));
        }
        match (f.mode, f.target.as_deref()) {
            (ForwardMode::Off, _) => Ok(()),
            (_, None) => Err("forwarding needs a target: a user name or \"voicemail\"".into()),
            (_, Some("voicemail")) => Ok(()),
            (_, Some(name)) => {
                let raw = self.raw_id_for(name);
                if raw == me.raw_id {
                    Err("you cannot forward calls to yourself".into())
                } else if self.known.contains_key(&raw) {
                    Ok(())
                } else {
                    Err(format!("no user {name:?} to forward to"))
                }
            }
        }
    }
}
