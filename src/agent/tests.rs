use serde_json::json;

use super::lines::LineReader;
use super::*;
use crate::core::{CallEndReason, CallState};

#[test]
fn parses_contract_commands() {
    let (id, c) = parse_line(r#"{"id": 1, "cmd": "call", "to": ["bob"]}"#).unwrap();
    assert_eq!(id, json!(1));
    assert_eq!(
        c,
        AgentCommand::Core(Command::Call {
            to: vec!["bob".into()],
            alternate_caller_id: None,
        })
    );
    let (_, c) =
        parse_line(r#"{"id": "x", "cmd": "reject", "callId": "c", "reason": "busy"}"#).unwrap();
    assert_eq!(
        c,
        AgentCommand::Core(Command::Reject {
            call_id: "c".into(),
            reason: RejectReason::Busy
        })
    );
    let (_, c) = parse_line(r#"{"cmd": "hangUp", "callId": "c", "forEveryone": true}"#).unwrap();
    assert_eq!(
        c,
        AgentCommand::Core(Command::HangUp {
            call_id: "c".into(),
            for_everyone: true
        })
    );
    let (_, c) = parse_line(r#"{"cmd": "setSpeaker", "device": "record:/tmp/x.wav"}"#).unwrap();
    assert_eq!(
        c,
        AgentCommand::SetSpeaker("record:/tmp/x.wav".parse().unwrap())
    );
    assert_eq!(
        parse_line(r#"{"cmd":"quit"}"#).unwrap().1,
        AgentCommand::Quit
    );
}

#[test]
fn bad_lines_get_precise_errors() {
    let e = parse_line("not json").unwrap_err();
    assert_eq!((e.id, e.code), (Value::Null, "badJson"));
    let e = parse_line(r#"{"id": 5}"#).unwrap_err();
    assert_eq!((e.id, e.code), (Value::Null, "missingCmd"));
    let e = parse_line(r#"{"id": 5, "cmd": "fly"}"#).unwrap_err();
    assert_eq!((e.id, e.code), (json!(5), "unknownCommand"));
    assert!(e.message.contains("\"fly\""));
    let e = parse_line(r#"{"id": 6, "cmd": "accept"}"#).unwrap_err();
    assert_eq!(e.code, "badArgument");
    assert!(e.message.contains("callId"));
    let e =
        parse_line(r#"{"id": 7, "cmd": "reject", "callId": "c", "reason": "bored"}"#).unwrap_err();
    assert!(e.message.contains("bored"));
    let e = parse_line(r#"{"id": 8, "cmd": "call", "to": [1]}"#).unwrap_err();
    assert_eq!(e.code, "badArgument");
    let e = parse_line(r#"{"id": 9, "cmd": "join"}"#).unwrap_err();
    assert!(e.message.contains("groupId"), "{e:?}");
    let e = parse_line(r#"{"id": 10, "cmd": "addParticipant", "callId": "c"}"#).unwrap_err();
    assert!(e.message.contains("target"), "{e:?}");
    let e =
        parse_line(r#"{"id": 11, "cmd": "addParticipant", "callId": "c", "target": {"nope": 1}}"#)
            .unwrap_err();
    assert_eq!(e.code, "badArgument");
    let e = parse_line(r#"{"id": 12, "cmd": "call", "to": ["+1555"], "alternateCallerId": 5}"#)
        .unwrap_err();
    assert!(e.message.contains("alternateCallerId"), "{e:?}");
    let (_, c) = parse_line(
        r#"{"id": 13, "cmd": "removeParticipant", "callId": "c", "target": {"phoneNumber": "+15550100"}}"#,
    )
    .unwrap();
    assert_eq!(
        c,
        AgentCommand::Core(Command::RemoveParticipant {
            call_id: "c".into(),
            target: "+15550100".into()
        })
    );
    let e = parse_line("[1,2]").unwrap_err();
    assert_eq!(e.code, "badJson");
}

#[test]
fn events_render_as_the_contract_says() {
    let v = event_json(&EngineEvent::Core(Event::CallEnded {
        call_id: "c".into(),
        reason: CallEndReason::DECLINED,
    }))
    .unwrap();
    assert_eq!(v["event"], "callEnded");
    assert_eq!(v["callEndReason"], json!({"code": 603, "subCode": 0}));
    let v = event_json(&EngineEvent::Core(Event::CallStateChanged {
        call_id: "c".into(),
        state: CallState::LocalHold,
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "callStateChanged", "callId": "c", "state": "LocalHold"})
    );
    let v = event_json(&EngineEvent::Core(Event::ConnectionStateChanged {
        old: crate::core::ConnectionState::Disconnected,
        new: crate::core::ConnectionState::Disconnected,
        reason: Some(crate::core::DisconnectReason::ConnectionIssue),
        message: Some("the switchboard's certificate is not trusted".into()),
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "connectionStateChanged", "oldState": "Disconnected",
               "newState": "Disconnected", "reason": "connectionIssue",
               "message": "the switchboard's certificate is not trusted"})
    );
}

#[tokio::test]
async fn line_reader_caps_length_and_recovers() {
    let data = format!("{}\n{{\"cmd\":\"calls\"}}\r\nZ\n", "x".repeat(100));
    let mut bytes = data.into_bytes();
    let n = bytes.len();
    bytes[n - 2] = 0xff;
    let mut r = LineReader::new(&bytes[..], 50);
    assert!(r.next_line().await.unwrap().unwrap().is_err());
    assert_eq!(
        r.next_line().await.unwrap().unwrap().unwrap(),
        r#"{"cmd":"calls"}"#
    );
    assert!(r.next_line().await.unwrap().unwrap().is_err());
    assert!(r.next_line().await.unwrap().is_none());
}

#[test]
fn parses_transfer_and_voicemail_commands() {
    let (_, c) =
        parse_line(r#"{"cmd": "transfer", "callId": "c", "targetParticipant": "carol"}"#).unwrap();
    assert_eq!(
        c,
        AgentCommand::Core(Command::Transfer {
            call_id: "c".into(),
            target: TransferTarget::Participant("carol".into()),
            disable_forwarding: false
        })
    );
    let (_, c) = parse_line(
        r#"{"cmd": "transfer", "callId": "c", "targetParticipantVoicemail": "carol", "disableForwardingAndUnanswered": true}"#,
    )
    .unwrap();
    assert!(matches!(
        c,
        AgentCommand::Core(Command::Transfer {
            target: TransferTarget::Voicemail(_),
            disable_forwarding: true,
            ..
        })
    ));
    let e = parse_line(r#"{"id": 1, "cmd": "transfer", "callId": "c", "targetParticipant": "a", "targetCallId": "b"}"#).unwrap_err();
    assert_eq!(e.code, "badArgument");
    let e = parse_line(r#"{"id": 1, "cmd": "transfer", "callId": "c", "targetCallId": 5}"#)
        .unwrap_err();
    assert!(e.message.contains("targetCallId"), "{}", e.message);
    let (_, c) = parse_line(r#"{"cmd": "setForwarding", "mode": "unanswered", "target": "voicemail", "unansweredAfterSecs": 9}"#).unwrap();
    assert_eq!(
        c,
        AgentCommand::Core(Command::SetForwarding(Forwarding {
            mode: ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 9
        }))
    );
    let e = parse_line(r#"{"id": 2, "cmd": "setForwarding", "mode": "sometimes"}"#).unwrap_err();
    assert!(e.message.contains("sometimes"));
    let (_, c) =
        parse_line(r#"{"cmd": "fetchVoicemail", "messageId": "m", "path": "/tmp/x.opus"}"#)
            .unwrap();
    assert_eq!(
        c,
        AgentCommand::FetchVoicemail {
            message_id: "m".into(),
            path: "/tmp/x.opus".into()
        }
    );
    let e = parse_line(r#"{"id": 3, "cmd": "markVoicemail", "messageId": "m"}"#).unwrap_err();
    assert!(e.message.contains("isNew"));
}

#[test]
fn network_diagnostics_render_as_the_contract_says() {
    use crate::core::diagnostics::{Diagnostic, DiagnosticChange, DiagnosticValue, Quality};
    let v = event_json(&EngineEvent::Core(Event::NetworkDiagnosticChanged(
        DiagnosticChange {
            call_id: Some("c".into()),
            diagnostic: Diagnostic::NetworkReconnect,
            value: DiagnosticValue::Quality(Quality::Bad),
            message: Some("no media path".into()),
        },
    )))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "networkDiagnosticChanged", "callId": "c",
               "diagnostic": "networkReconnect", "value": "Bad", "message": "no media path"})
    );
    let v = event_json(&EngineEvent::Core(Event::NetworkDiagnosticChanged(
        DiagnosticChange {
            call_id: None,
            diagnostic: Diagnostic::NetworkRelaysNotReachable,
            value: DiagnosticValue::Flag(false),
            message: None,
        },
    )))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "networkDiagnosticChanged",
               "diagnostic": "networkRelaysNotReachable", "value": false})
    );
}

#[test]
fn media_state_renders_with_its_path() {
    use crate::media::net::{Via, turn::TurnTransport};
    let v = event_json(&EngineEvent::Media {
        up: true,
        via: Some(Via::Relay(TurnTransport::Tcp)),
    })
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "mediaStateChanged", "state": "Connected", "via": "relay-tcp"})
    );
    let v = event_json(&EngineEvent::Media {
        up: false,
        via: None,
    })
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "mediaStateChanged", "state": "Disconnected"})
    );
}

#[test]
fn media_diagnostics_and_device_switches_render_as_the_contract_says() {
    use crate::core::media_diagnostics::{
        DeviceSwitch, MediaDiagnostic, MediaDiagnosticChange, SwitchReason,
    };
    use crate::devices::{DeviceKind, DeviceSpec};
    let v = event_json(&EngineEvent::MediaDiagnostic(MediaDiagnosticChange {
        call_id: None,
        diagnostic: MediaDiagnostic::NoSpeakerDevicesEnumerated,
        value: true,
        message: Some("the sound system (ALSA) lists no speaker".into()),
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "mediaDiagnosticChanged", "diagnostic": "noSpeakerDevicesEnumerated",
               "value": true, "message": "the sound system (ALSA) lists no speaker"})
    );
    let v = event_json(&EngineEvent::MediaDiagnostic(MediaDiagnosticChange {
        call_id: Some("c".into()),
        diagnostic: MediaDiagnostic::SpeakingWhileMicrophoneIsMuted,
        value: false,
        message: None,
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "mediaDiagnosticChanged", "callId": "c",
               "diagnostic": "speakingWhileMicrophoneIsMuted", "value": false})
    );
    let v = event_json(&EngineEvent::DeviceSwitched(DeviceSwitch {
        kind: DeviceKind::Speaker,
        wanted: DeviceSpec::Named("usb".into()),
        using: DeviceSpec::Default,
        name: Some("Null Output".into()),
        reason: SwitchReason::Fallback,
        message: "speaker `usb` is not available: using the default, `Null Output`".into(),
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"event": "deviceSwitched", "kind": "speaker", "wanted": "usb",
               "using": "default", "name": "Null Output", "reason": "fallback",
               "message": "speaker `usb` is not available: using the default, `Null Output`"})
    );
}
