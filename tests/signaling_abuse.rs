//! Garbage, oversized and out-of-order signaling frames from a raw WebSocket client get errors
//! (or a closed connection), while a call in progress between two agents keeps its audio.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Messages the switchboard sends unasked after sign-in (forwarding, mailbox, other devices).
const PUSHED: [&str; 4] = [
    "forwardingChanged",
    "messageWaiting",
    "noActiveCalls",
    "activeCallsUpdated",
];

async fn next_json(
    ws: &mut (
             impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
             + Unpin
         ),
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a reply in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                // State the switchboard pushes after sign-in is not a reply to anything.
                if PUSHED.contains(&v["type"].as_str().unwrap_or_default()) {
                    continue;
                }
                return v;
            }
            Some(Ok(Message::Close(f))) => {
                return json!({"closed": f.map(|f| f.reason.to_string())});
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return json!({"closed": e.to_string()}),
            None => return json!({"closed": null}),
        }
    }
}

#[test]
fn bad_frames_get_errors_and_an_unrelated_call_keeps_its_audio() {
    let dir = tempdir();
    let rb = dir.path().join("bob-rec.wav");
    let mut server = Server::dev(dir.path());
    let mut alice = Agent::start(
        &server,
        "alice",
        &["--mic", "tone:523", "--speaker", "silence"],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", rb.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec_start = bob.device_started("speaker");
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    bob.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(500));

    let t_abuse = unix_micros();
    let url = server.url.clone();
    let call_id = id.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let mut expect = async |frame: Message, code: &str| {
            ws.send(frame).await.unwrap();
            let v = next_json(&mut ws).await;
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["code"], code, "{v}");
            assert!(!v["message"].as_str().unwrap().is_empty());
        };
        expect(Message::text("{{{ not json"), "badMessage").await;
        expect(Message::text(r#"{"type":"warpDrive"}"#), "unknownMessage").await;
        expect(Message::binary(vec![0u8, 159, 146, 150]), "badMessage").await;
        expect(
            Message::text(format!(
                r#"{{"type":"ping","pad":"{}"}}"#,
                "x".repeat(100_000)
            )),
            "frameTooLarge",
        )
        .await;
        // Out of order: a call action before hello.
        expect(
            Message::text(format!(r#"{{"type":"hangUp","callId":"{call_id}"}}"#)),
            "notSignedIn",
        )
        .await;
        expect(
            Message::text(r#"{"type":"hello","protocol":99,"user":"mallory","deviceName":"x"}"#),
            "unsupportedVersion",
        )
        .await;
        let v = next_json(&mut ws).await;
        assert!(
            v.get("closed").is_some(),
            "refused hello closes the connection: {v}"
        );

        // Signed in, mallory cannot touch a call she is not in.
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.send(Message::text(
            r#"{"type":"hello","protocol":1,"user":"mallory","deviceName":"x"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        for action in ["hangUp", "accept", "hold", "reject"] {
            ws.send(Message::text(format!(
                r#"{{"type":"{action}","callId":"{call_id}"}}"#
            )))
            .await
            .unwrap();
            let v = next_json(&mut ws).await;
            assert_eq!(v["code"], "unknownCall", "{action}: {v}");
        }
        ws.send(Message::text(format!(
            r#"{{"type":"placeCall","callId":"{call_id}","to":["bob"]}}"#
        )))
        .await
        .unwrap();
        let v = next_json(&mut ws).await;
        assert_eq!(v["code"], "invalidArgument", "duplicate call id: {v}");
        // A frame beyond the WebSocket limit ends only this connection.
        let _ = ws.send(Message::text("y".repeat(2 << 20))).await;
        let mut closed = false;
        for _ in 0..3 {
            if next_json(&mut ws).await.get("closed").is_some() {
                closed = true;
                break;
            }
        }
        assert!(closed);
    });
    std::thread::sleep(Duration::from_millis(800));
    let t_check = unix_micros();
    assert!(server.is_running(), "the switchboard is still up");
    let calls = alice.ok(json!({"cmd": "calls"}));
    assert_eq!(calls["calls"][0]["state"], "Connected");
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(bob.wait_ended(&id), (0, 0));
    bob.quit();
    let rec = read_wav(&rb);
    let during = rms_between(&rec, rec_start, t_abuse, t_check);
    eprintln!("rms of bob's audio during the abuse: {during:.4}");
    assert!(
        during > 0.05,
        "the call kept its audio while another connection misbehaved"
    );
}
