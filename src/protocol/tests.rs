use super::*;
use crate::core::RejectReason;

#[test]
fn client_messages_round_trip() {
    let msgs = vec![
        ClientMessage::Hello {
            protocol: 1,
            user: Some("alice".into()),
            token: None,
            device_name: "desk".into(),
            client: None,
            resume: None,
        },
        ClientMessage::Hello {
            protocol: 1,
            user: None,
            token: Some("t".into()),
            device_name: "desk".into(),
            client: None,
            resume: Some("7.00ff".into()),
        },
        ClientMessage::PlaceCall {
            call_id: "c1".into(),
            to: vec!["bob".into()],
            alternate_caller_id: None,
        },
        ClientMessage::Reject {
            call_id: "c1".into(),
            reason: RejectReason::Busy,
        },
        ClientMessage::HangUp {
            call_id: "c1".into(),
            for_everyone: false,
        },
    ];
    for m in msgs {
        let text = encode(&m);
        assert_eq!(decode_client(&text).unwrap(), m, "{text}");
    }
}

#[test]
fn wire_names_are_camel_case() {
    let text = encode(&ClientMessage::PlaceCall {
        call_id: "c".into(),
        to: vec![],
        alternate_caller_id: None,
    });
    assert_eq!(text, r#"{"type":"placeCall","callId":"c","to":[]}"#);
    let r = decode_client(r#"{"type":"reject","callId":"x"}"#).unwrap();
    assert_eq!(
        r,
        ClientMessage::Reject {
            call_id: "x".into(),
            reason: RejectReason::None
        }
    );
}

#[test]
fn decode_errors_are_precise() {
    assert_eq!(
        decode_client("nope"),
        Err(DecodeError::NotJson(
            "expected ident at line 1 column 2".into()
        ))
    );
    assert_eq!(decode_client("{}"), Err(DecodeError::MissingType));
    assert_eq!(decode_client(r#"{"type":3}"#), Err(DecodeError::BadType));
    assert_eq!(
        decode_client(r#"{"type":"launchRocket"}"#),
        Err(DecodeError::UnknownType("launchRocket".into()))
    );
    match decode_client(r#"{"type":"accept"}"#) {
        Err(DecodeError::BadFields { ty, message }) => {
            assert_eq!(ty, "accept");
            assert!(message.contains("callId"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let big = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    assert!(matches!(
        decode_client(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

/// A cheap deterministic fuzz: random bytes and mutated valid frames never panic the decoder.
#[test]
fn decoder_survives_garbage() {
    let seeds = [
        r#"{"type":"placeCall","callId":"c","to":["bob"]}"#,
        r#"{"type":"hello","protocol":1,"deviceName":"d"}"#,
        r#"{"type":"setMuted","callId":"c","muted":true}"#,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let mut bytes = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..(next() % 6) {
            let pos = (next() as usize) % bytes.len();
            bytes[pos] = next() as u8;
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = decode_client(text);
            let _ = decode_server(text);
        }
    }
}
