//! `dialtone agent`: the engine with no screen, driven by JSON lines on stdin, reporting events as
//! JSON lines on stdout. shared/agent-contract.md is the minimum contract; docs/agent.md the full one.
//!
//! Parsing and rendering are pure functions (tested below); `run` only moves lines.

mod lines;
mod stdio;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::core::{CallInfo, Command, CommandOk, Event, RejectReason};
use crate::devices::DeviceSpec;
use crate::engine::{EngineEvent, EngineHandle};
use crate::media::audio::{AudioEvent, DeviceKind};
use crate::protocol::{
    ForwardMode, Forwarding, Identity, Participant, TransferTarget, VoicemailInfo,
};

/// The longest input line accepted; longer ones are answered with an error and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum AgentCommand {
    Core(Command),
    Calls,
    Devices,
    SetMicrophone(DeviceSpec),
    SetSpeaker(DeviceSpec),
    SetCamera(String),
    Voicemails,
    PlayTestTone,
    GetActiveCallDetails,
    ReportLevels(bool),
    FetchVoicemail {
        message_id: String,
        path: std::path::PathBuf,
    },
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub id: Value,
    pub code: &'static str,
    pub message: String,
}

/// Parses one input line into its id and command.
pub fn parse_line(line: &str) -> Result<(Value, AgentCommand), LineError> {
    let err = |id: Value, code, message: String| LineError { id, code, message };
    let value: Value = serde_json::from_str(line)
        .map_err(|e| err(Value::Null, "badJson", format!("line is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(err(
            Value::Null,
            "badJson",
            "line is not a JSON object".into(),
        ));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(cmd) = obj.get("cmd") else {
        // The contract: a line without cmd is answered with id null.
        return Err(err(
            Value::Null,
            "missingCmd",
            "line has no \"cmd\" field".into(),
        ));
    };
    let Some(cmd) = cmd.as_str() else {
        return Err(err(
            id,
            "badArgument",
            format!("\"cmd\" must be a string, not {cmd}"),
        ));
    };
    let a = Args { obj: &obj, id: &id };
    let c = match cmd {
        "call" => {
            let to = match obj.get("to") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        err(
                            id.clone(),
                            "badArgument",
                            "\"to\" must hold strings only".into(),
                        )
                    })?,
                Some(Value::String(s)) => vec![s.clone()],
                Some(other) => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!("\"to\" must be an array of strings, not {other}"),
                    ));
                }
                None => return Err(err(id, "badArgument", "\"to\" is required".into())),
            };
            AgentCommand::Core(Command::Call {
                to,
                alternate_caller_id: a.caller_id()?,
            })
        }
        "join" => AgentCommand::Core(Command::Join {
            group_id: a.string("groupId")?,
        }),
        "addParticipant" => AgentCommand::Core(Command::AddParticipant {
            call_id: a.call_id()?,
            target: a.target()?,
            alternate_caller_id: a.caller_id()?,
        }),
        "removeParticipant" => AgentCommand::Core(Command::RemoveParticipant {
            call_id: a.call_id()?,
            target: a.target()?,
        }),
        "accept" => AgentCommand::Core(Command::Accept {
            call_id: a.call_id()?,
        }),
        "reject" => {
            let reason = match obj.get("reason") {
                None | Some(Value::Null) => RejectReason::None,
                Some(Value::String(s)) => {
                    s.parse().map_err(|m| err(id.clone(), "badArgument", m))?
                }
                Some(other) => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!("\"reason\" must be a string, not {other}"),
                    ));
                }
            };
            AgentCommand::Core(Command::Reject {
                call_id: a.call_id()?,
                reason,
            })
        }
        "hangUp" => {
            let for_everyone = match obj.get("forEveryone") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!("\"forEveryone\" must be a boolean, not {other}"),
                    ));
                }
            };
            AgentCommand::Core(Command::HangUp {
                call_id: a.call_id()?,
                for_everyone,
            })
        }
        "mute" => AgentCommand::Core(Command::Mute {
            call_id: a.call_id()?,
        }),
        "unmute" => AgentCommand::Core(Command::Unmute {
            call_id: a.call_id()?,
        }),
        "hold" => AgentCommand::Core(Command::Hold {
            call_id: a.call_id()?,
        }),
        "resume" => AgentCommand::Core(Command::Resume {
            call_id: a.call_id()?,
        }),
        "transfer" => {
            let targets: Vec<(&str, &Value)> = [
                "targetParticipant",
                "targetCallId",
                "targetParticipantVoicemail",
            ]
            .iter()
            .filter_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
            .collect();
            let [(key, value)] = targets[..] else {
                return Err(err(
                    id,
                    "badArgument",
                    "give exactly one of \"targetParticipant\", \"targetCallId\", \"targetParticipantVoicemail\"".into(),
                ));
            };
            let Some(v) = value.as_str().filter(|v| !v.is_empty()) else {
                return Err(err(
                    id,
                    "badArgument",
                    format!("{key:?} must be a non-empty string, not {value}"),
                ));
            };
            let target = match key {
                "targetParticipant" => TransferTarget::Participant(v.into()),
                "targetCallId" => TransferTarget::CallId(v.into()),
                _ => TransferTarget::Voicemail(v.into()),
            };
            AgentCommand::Core(Command::Transfer {
                call_id: a.call_id()?,
                target,
                disable_forwarding: a.flag("disableForwardingAndUnanswered")?,
            })
        }
        "acceptTransfer" => AgentCommand::Core(Command::AcceptTransfer {
            call_id: a.call_id()?,
        }),
        "rejectTransfer" => AgentCommand::Core(Command::RejectTransfer {
            call_id: a.call_id()?,
        }),
        "setForwarding" => {
            let mode = match a.string("mode")?.as_str() {
                "off" => ForwardMode::Off,
                "always" => ForwardMode::Always,
                "unanswered" => ForwardMode::Unanswered,
                other => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!("mode {other:?} must be off, always or unanswered"),
                    ));
                }
            };
            let target = match obj.get("target") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                Some(other) => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!("\"target\" must be a user name or \"voicemail\", not {other}"),
                    ));
                }
            };
            let unanswered_after_secs = match obj.get("unansweredAfterSecs") {
                None | Some(Value::Null) => Forwarding::default().unanswered_after_secs,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        err(
                            id.clone(),
                            "badArgument",
                            format!("\"unansweredAfterSecs\" must be a whole number, not {v}"),
                        )
                    })?,
            };
            AgentCommand::Core(Command::SetForwarding(Forwarding {
                mode,
                target,
                unanswered_after_secs,
            }))
        }
        "voicemails" => AgentCommand::Voicemails,
        "playTestTone" => AgentCommand::PlayTestTone,
        "getActiveCallDetails" => AgentCommand::GetActiveCallDetails,
        "activeCallTransfer" => {
            let is_transfer = match obj.get("isTransfer") {
                Some(Value::Bool(b)) => *b,
                other => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!(
                            "\"isTransfer\" must be a boolean, not {}",
                            other.unwrap_or(&Value::Null)
                        ),
                    ));
                }
            };
            let details = match obj.get("activeCallDetails") {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                    err(
                        id.clone(),
                        "badArgument",
                        format!(
                            "\"activeCallDetails\" is not as getActiveCallDetails gives it: {e}"
                        ),
                    )
                })?),
            };
            AgentCommand::Core(Command::ActiveCallTransfer {
                details,
                is_transfer,
            })
        }
        "reportLevels" => match obj.get("on") {
            Some(Value::Bool(on)) => AgentCommand::ReportLevels(*on),
            other => {
                return Err(err(
                    id,
                    "badArgument",
                    format!(
                        "\"on\" must be a boolean, not {}",
                        other.unwrap_or(&Value::Null)
                    ),
                ));
            }
        },
        "fetchVoicemail" => AgentCommand::FetchVoicemail {
            message_id: a.string("messageId")?,
            path: a.string("path")?.into(),
        },
        "deleteVoicemail" => AgentCommand::Core(Command::DeleteVoicemail {
            message_id: a.string("messageId")?,
        }),
        "markVoicemail" => AgentCommand::Core(Command::MarkVoicemail {
            message_id: a.string("messageId")?,
            is_new: match obj.get("isNew") {
                Some(Value::Bool(b)) => *b,
                other => {
                    return Err(err(
                        id,
                        "badArgument",
                        format!(
                            "\"isNew\" must be a boolean, not {}",
                            other.unwrap_or(&Value::Null)
                        ),
                    ));
                }
            },
        }),
        "calls" => AgentCommand::Calls,
        "devices" => AgentCommand::Devices,
        "setMicrophone" => AgentCommand::SetMicrophone(a.device()?),
        "setSpeaker" => AgentCommand::SetSpeaker(a.device()?),
        "setCamera" => AgentCommand::SetCamera(a.string("device")?),
        "quit" => AgentCommand::Quit,
        other => {
            return Err(err(
                id,
                "unknownCommand",
                format!("unknown command {other:?}"),
            ));
        }
    };
    Ok((id, c))
}

struct Args<'a> {
    obj: &'a Map<String, Value>,
    id: &'a Value,
}

impl Args<'_> {
    fn string(&self, key: &str) -> Result<String, LineError> {
        match self.obj.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(LineError {
                id: self.id.clone(),
                code: "badArgument",
                message: format!("{key:?} must be a non-empty string, not {other}"),
            }),
            None => Err(LineError {
                id: self.id.clone(),
                code: "badArgument",
                message: format!("{key:?} is required"),
            }),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, LineError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(LineError {
                id: self.id.clone(),
                code: "badArgument",
                message: format!("{key:?} must be a boolean, not {other}"),
            }),
        }
    }

    fn call_id(&self) -> Result<String, LineError> {
        self.string("callId")
    }

    /// `alternateCallerId`: absent, null, an E.164 string, or ACS's `{"phoneNumber": "+…"}`.
    fn caller_id(&self) -> Result<Option<String>, LineError> {
        match self.obj.get("alternateCallerId") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(Value::Object(o)) => match o.get("phoneNumber") {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
                _ => Err(self.bad("\"alternateCallerId\" object needs a \"phoneNumber\" string")),
            },
            Some(other) => Err(self.bad(&format!(
                "\"alternateCallerId\" must be an E.164 number string, not {other}"
            ))),
        }
    }

    /// A participant: a name, raw id or E.164 string, or an ACS identifier object
    /// (`{"communicationUserId": …}`, `{"phoneNumber": …}`, `{"rawId": …}`).
    fn target(&self) -> Result<String, LineError> {
        match self.obj.get("target") {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::Object(o)) => ["communicationUserId", "phoneNumber", "rawId"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_string())
                .ok_or_else(|| {
                    self.bad("\"target\" object needs communicationUserId, phoneNumber or rawId")
                }),
            Some(other) => Err(self.bad(&format!(
                "\"target\" must be a name, raw id or number, not {other}"
            ))),
            None => Err(self.bad("\"target\" is required")),
        }
    }

    fn bad(&self, message: &str) -> LineError {
        LineError {
            id: self.id.clone(),
            code: "badArgument",
            message: message.to_string(),
        }
    }

    fn device(&self) -> Result<DeviceSpec, LineError> {
        let s = self.string("device")?;
        s.parse().map_err(|e| LineError {
            id: self.id.clone(),
            code: "badArgument",
            message: format!("{e}"),
        })
    }
}

pub fn ok_reply(id: &Value, extra: Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), id.clone());
    m.insert("ok".into(), Value::Bool(true));
    if let Value::Object(extra) = extra {
        m.extend(extra);
    }
    Value::Object(m)
}

pub fn err_reply(id: &Value, code: &str, message: &str) -> Value {
    json!({"id": id, "ok": false, "error": {"code": code, "message": message}})
}

pub fn identity_json(i: &Identity) -> Value {
    json!({"identifier": i.raw_id, "displayName": i.display_name})
}

pub fn voicemail_json(m: &VoicemailInfo) -> Value {
    json!({
        "messageId": m.message_id,
        "caller": identity_json(&m.caller),
        "receivedAtUnixMs": m.received_unix_ms,
        "durationMs": m.duration_ms,
        "isNew": m.is_new,
    })
}

pub fn participant_json(p: &Participant) -> Value {
    let mut v = json!({
        "identifier": p.identity.raw_id,
        "displayName": p.identity.display_name,
        "state": p.state,
        "isMuted": p.is_muted,
        "isSpeaking": p.is_speaking,
        "isReconnecting": p.reconnecting,
    });
    if let Some(d) = &p.device {
        v["device"] = json!(d);
    }
    v
}

pub fn call_json(c: &CallInfo) -> Value {
    json!({
        "callId": c.call_id,
        "state": c.state,
        "direction": c.direction,
        "remoteParticipants": c.remote.iter().map(participant_json).collect::<Vec<_>>(),
        "isMuted": c.muted,
        "startedAtUnixMs": c.started_unix_ms,
        "connectedAtUnixMs": c.connected_unix_ms,
    })
}

/// Renders an engine event as its JSON line, or None for events the agent does not report.
pub fn event_json(e: &EngineEvent) -> Option<Value> {
    Some(match e {
        EngineEvent::Core(e) => match e {
            Event::ConnectionStateChanged {
                old,
                new,
                reason,
                message,
            } => {
                let mut v =
                    json!({"event": "connectionStateChanged", "oldState": old, "newState": new});
                if let Some(r) = reason {
                    v["reason"] = json!(r);
                }
                if let Some(m) = message {
                    v["message"] = json!(m);
                }
                v
            }
            Event::IncomingCall {
                call_id,
                caller,
                transferred_by,
                forwarded_from,
                caller_number,
                group,
            } => {
                // Reached by number, the callee sees the caller's number as its identifier
                // (`4:+E164`), as ACS shows a phone caller; `caller` keeps the user.
                let info = match caller_number {
                    Some(n) => json!({
                        "identifier": crate::core::phone_raw_id(n),
                        "displayName": caller.display_name,
                        "phoneNumber": n,
                    }),
                    None => identity_json(caller),
                };
                let mut v = json!({
                    "event": "incomingCall", "callId": call_id,
                    "callerInfo": info,
                });
                if caller_number.is_some() {
                    v["caller"] = identity_json(caller);
                }
                if *group {
                    v["isGroupCall"] = json!(true);
                }
                if let Some(t) = transferred_by {
                    v["transferredBy"] = identity_json(t);
                }
                if let Some(f) = forwarded_from {
                    v["forwardedFrom"] = identity_json(f);
                }
                v
            }
            Event::TransferRequested {
                call_id,
                transfer_id,
                transferor,
                target,
            } => json!({
                "event": "transferRequested", "callId": call_id, "transferId": transfer_id,
                "targetParticipant": target.identity.raw_id,
                "target": {"kind": target.kind, "identifier": target.identity.raw_id, "displayName": target.identity.display_name},
                "transferor": identity_json(transferor),
            }),
            Event::TransferStateChanged {
                call_id,
                transfer_id,
                state,
                error,
            } => {
                let mut v = json!({"event": "transferStateChanged", "callId": call_id, "transferId": transfer_id, "state": state});
                if let Some(e) = error {
                    v["error"] =
                        json!({"code": e.code, "subCode": e.sub_code, "message": e.describe()});
                }
                v
            }
            Event::TransferAccepted {
                call_id,
                target_call_id,
            } => {
                json!({"event": "transferAccepted", "callId": call_id, "targetCallId": target_call_id})
            }
            Event::ActiveCallsUpdated(d) => {
                json!({"event": "activeCallsUpdated", "activeCallDetails": d})
            }
            Event::NoActiveCalls => json!({"event": "noActiveCalls"}),
            Event::ForwardingChanged(f) => json!({"event": "forwardingChanged", "forwarding": f}),
            Event::MessageWaiting {
                new_count,
                total_count,
            } => {
                json!({"event": "messageWaiting", "newCount": new_count, "totalCount": total_count})
            }
            Event::Voicemails(_) | Event::VoicemailData { .. } => return None,
            Event::CallStateChanged { call_id, state } => {
                json!({"event": "callStateChanged", "callId": call_id, "state": state})
            }
            Event::CallEnded { call_id, reason } => json!({
                "event": "callEnded", "callId": call_id,
                "callEndReason": {"code": reason.code, "subCode": reason.sub_code},
                "message": reason.describe(),
            }),
            Event::RemoteParticipantsUpdated {
                call_id,
                added,
                removed,
            } => json!({
                "event": "remoteParticipantsUpdated", "callId": call_id,
                "added": added.iter().map(participant_json).collect::<Vec<_>>(),
                "removed": removed.iter().map(participant_json).collect::<Vec<_>>(),
            }),
            Event::ParticipantStateChanged {
                call_id,
                participant,
            } => {
                let mut v = participant_json(participant);
                v["event"] = json!("participantStateChanged");
                v["callId"] = json!(call_id);
                v
            }
            Event::Error {
                code,
                message,
                call_id,
            } => {
                json!({"event": "error", "code": code, "message": message, "callId": call_id})
            }
            Event::NetworkDiagnosticChanged(d) => diagnostic_json(d),
        },
        EngineEvent::Audio(AudioEvent::DeviceStarted {
            kind,
            spec,
            unix_micros,
        }) => json!({
            "event": "deviceStarted", "kind": kind_name(*kind), "device": spec, "unixMicros": unix_micros,
        }),
        EngineEvent::MicLevel(level) => json!({"event": "micLevel", "level": level}),
        EngineEvent::Media { up, via } => {
            let mut v = json!({
                "event": "mediaStateChanged",
                "state": if *up { "Connected" } else { "Disconnected" },
            });
            if let Some(via) = via {
                v["via"] = json!(via_name(*via));
            }
            v
        }
        EngineEvent::Audio(AudioEvent::DeviceError { kind, message }) => {
            json!({"event": "deviceError", "kind": kind_name(*kind), "message": message})
        }
        EngineEvent::MediaDiagnostic(d) => {
            let mut v = json!({
                "event": "mediaDiagnosticChanged",
                "diagnostic": d.diagnostic.name(),
                "value": d.value,
            });
            if let Some(id) = &d.call_id {
                v["callId"] = json!(id);
            }
            if let Some(m) = &d.message {
                v["message"] = json!(m);
            }
            v
        }
        // Once a second: the grades reach the agent as networkDiagnosticChanged instead.
        EngineEvent::Quality(_) => return None,
        EngineEvent::DeviceSwitched(s) => {
            let mut v = json!({
                "event": "deviceSwitched",
                "kind": kind_name(s.kind),
                "wanted": s.wanted.to_string(),
                "using": s.using.to_string(),
                "reason": s.reason.name(),
                "message": s.message,
            });
            if let Some(n) = &s.name {
                v["name"] = json!(n);
            }
            v
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// `networkDiagnosticChanged`: `value` is a bool or `Good`/`Poor`/`Bad` as in ACS; `message`
/// says why when something is wrong; `callId` is absent for the device as a whole.
fn diagnostic_json(d: &crate::core::diagnostics::DiagnosticChange) -> Value {
    use crate::core::diagnostics::{DiagnosticValue, Quality};
    let value = match d.value {
        DiagnosticValue::Flag(b) => json!(b),
        DiagnosticValue::Quality(Quality::Good) => json!("Good"),
        DiagnosticValue::Quality(Quality::Poor) => json!("Poor"),
        DiagnosticValue::Quality(Quality::Bad) => json!("Bad"),
    };
    let mut v = json!({
        "event": "networkDiagnosticChanged",
        "diagnostic": d.diagnostic.name(),
        "value": value,
    });
    if let Some(id) = &d.call_id {
        v["callId"] = json!(id);
    }
    if let Some(m) = &d.message {
        v["message"] = json!(m);
    }
    v
}

/// How the media link travels, as `mediaStateChanged` names it.
pub fn via_name(v: crate::media::net::Via) -> &'static str {
    use crate::media::net::{Via, turn::TurnTransport};
    match v {
        Via::Direct => "direct",
        Via::Relay(TurnTransport::Tcp) => "relay-tcp",
        Via::Relay(TurnTransport::Tls) => "relay-tls",
        Via::Relay(TurnTransport::Udp) => "relay-udp",
    }
}

fn kind_name(k: DeviceKind) -> &'static str {
    match k {
        DeviceKind::Microphone => "microphone",
        DeviceKind::Speaker => "speaker",
    }
}

/// Runs the agent until `quit` or the end of stdin.
pub async fn run(
    engine: EngineHandle,
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
) -> anyhow::Result<()> {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    // One writer, so that replies and events never interleave within a line.
    let writer = tokio::spawn(async move {
        let mut stdout = stdio::stdout();
        while let Some(v) = out_rx.recv().await {
            let mut line = serde_json::to_vec(&v).expect("JSON values serialise");
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let ev_out = out_tx.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Some(v) = event_json(&e) {
                let _ = ev_out.send(v);
            }
        }
    });
    let mut input = lines::LineReader::new(stdio::stdin(), MAX_LINE_BYTES);
    loop {
        let line = match input.next_line().await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(too_long))) => {
                let _ = out_tx.send(err_reply(&Value::Null, "lineTooLong", &too_long));
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("stdin failed: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (id, cmd) = match parse_line(&line) {
            Ok(x) => x,
            Err(e) => {
                let _ = out_tx.send(err_reply(&e.id, e.code, &e.message));
                continue;
            }
        };
        if cmd == AgentCommand::Quit {
            engine.shutdown().await;
            let _ = out_tx.send(ok_reply(&id, json!({})));
            break;
        }
        let reply = execute(&engine, &id, cmd).await;
        let _ = out_tx.send(reply);
    }
    engine.shutdown().await;
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(())
}

async fn execute(engine: &EngineHandle, id: &Value, cmd: AgentCommand) -> Value {
    let result = match cmd {
        AgentCommand::Core(c) => engine.command(c).await.map(|ok| match ok {
            CommandOk::CallId(call_id) => json!({"callId": call_id}),
            CommandOk::TransferId(transfer_id) => json!({"transferId": transfer_id}),
            CommandOk::Done => json!({}),
        }),
        AgentCommand::Calls => engine
            .calls()
            .await
            .map(|calls| json!({"calls": calls.iter().map(call_json).collect::<Vec<_>>()})),
        AgentCommand::Devices => {
            return match engine.devices().await {
                Ok(list) => ok_reply(
                    id,
                    serde_json::to_value(list).expect("device lists serialise"),
                ),
                Err(e) => err_reply(id, "deviceError", &format!("{e:#}")),
            };
        }
        AgentCommand::SetMicrophone(d) => engine.set_microphone(d).await.map(|()| json!({})),
        AgentCommand::SetSpeaker(d) => engine.set_speaker(d).await.map(|()| json!({})),
        AgentCommand::SetCamera(d) => engine.set_camera(d).await.map(|()| json!({})),
        AgentCommand::PlayTestTone => engine.play_test_tone().await.map(|()| json!({})),
        AgentCommand::GetActiveCallDetails => engine
            .active_call_details()
            .await
            .map(|d| json!({"activeCallDetails": d})),
        AgentCommand::ReportLevels(on) => {
            engine.report_levels(on);
            Ok(json!({}))
        }
        AgentCommand::Voicemails => engine
            .voicemails()
            .await
            .map(|list| json!({"messages": list.iter().map(voicemail_json).collect::<Vec<_>>()})),
        AgentCommand::FetchVoicemail { message_id, path } => {
            match engine.fetch_voicemail(message_id).await {
                Ok(bytes) => match tokio::fs::write(&path, &bytes).await {
                    Ok(()) => Ok(json!({"path": path, "bytes": bytes.len()})),
                    Err(e) => {
                        return err_reply(
                            id,
                            "ioError",
                            &format!("cannot write {}: {e}", path.display()),
                        );
                    }
                },
                Err(e) => Err(e),
            }
        }
        AgentCommand::Quit => unreachable!("handled by the caller"),
    };
    match result {
        Ok(extra) => ok_reply(id, extra),
        Err(e) => err_reply(id, e.code(), &e.to_string()),
    }
}

#[cfg(test)]
mod tests;
