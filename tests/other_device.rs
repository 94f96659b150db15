//! A call on another device: alice on desk and laptop (same user), bob. Real processes, real
//! media; tones tell whose audio is where (desk 440 Hz, laptop 660 Hz, bob 880 Hz).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    desk: Agent,
    laptop: Agent,
    bob: Agent,
    call: String,
    rec: [(std::path::PathBuf, u64); 3],
}

/// desk calls bob (who auto-answers); every device records what it hears.
fn setup() -> Setup {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let path = |n: &str| dir.path().join(format!("{n}.wav"));
    let spk = |n: &str| format!("record:{}", path(n).display());
    let mut desk = Agent::start(
        &server,
        "alice",
        &[
            "--device-name",
            "desk",
            "--mic",
            "tone:440",
            "--speaker",
            &spk("desk"),
        ],
    )
    .connected();
    let mut laptop = Agent::start(
        &server,
        "alice",
        &[
            "--device-name",
            "laptop",
            "--mic",
            "tone:660",
            "--speaker",
            &spk("laptop"),
        ],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "tone:880",
            "--speaker",
            &spk("bob"),
            "--auto-answer",
        ],
    )
    .connected();
    let rec = [
        (path("desk"), desk.device_started("speaker")),
        (path("laptop"), laptop.device_started("speaker")),
        (path("bob"), bob.device_started("speaker")),
    ];
    let call = desk.call("bob");
    desk.wait_state(&call, "Connected");
    bob.wait_state(&call, "Connected");
    Setup {
        _dir: dir,
        server,
        desk,
        laptop,
        bob,
        call,
        rec,
    }
}

#[test]
fn take_over_moves_the_call_to_the_laptop_and_bob_notices_nothing() {
    let Setup {
        _dir,
        server: _s,
        mut desk,
        mut laptop,
        mut bob,
        call,
        rec,
    } = setup();
    let seen = laptop.wait_event(
        "activeCallsUpdated",
        |e| e["activeCallDetails"]["callId"] == call.as_str(),
        10,
    );
    assert_eq!(seen["activeCallDetails"]["deviceName"], "desk");
    assert_eq!(
        seen["activeCallDetails"]["remoteParticipants"][0]["displayName"],
        "bob"
    );
    let d = laptop.ok(json!({"cmd": "getActiveCallDetails"}));
    assert_eq!(d["activeCallDetails"]["callId"], call.as_str());
    std::thread::sleep(Duration::from_millis(600));
    let t_move = unix_micros();
    let r = laptop.ok(json!({"cmd": "activeCallTransfer", "isTransfer": true}));
    assert_eq!(r["callId"], call.as_str());
    laptop.wait_state(&call, "Connected");
    assert_eq!(desk.wait_ended(&call), (0, 7200));
    desk.wait_event(
        "activeCallsUpdated",
        |e| e["activeCallDetails"]["deviceName"] == "laptop",
        5,
    );
    std::thread::sleep(Duration::from_millis(1200));
    let t_end = unix_micros();
    bob.ok(json!({"cmd": "hangUp", "callId": call}));
    bob.wait_ended(&call);
    laptop.wait_ended(&call);
    laptop.wait_event("noActiveCalls", |_| true, 5);
    desk.wait_event("noActiveCalls", |_| true, 5);
    // Bob: one call, never anything but Connected until his own hang-up.
    assert_eq!(
        bob.states(&call),
        [
            "Incoming",
            "Connecting",
            "Connected",
            "Disconnecting",
            "Disconnected"
        ]
    );
    assert_eq!(
        bob.events
            .iter()
            .filter(|e| e["event"] == "incomingCall")
            .count(),
        1
    );
    assert!(
        !bob.events
            .iter()
            .any(|e| e["event"] == "activeCallsUpdated"),
        "bob never sees alice's details"
    );
    for a in [desk, laptop, bob] {
        a.quit();
    }
    let [(pd, d0), (pl, l0), (pb, b0)] = rec;
    let (bob_rec, laptop_rec, desk_rec) = (read_wav(&pb), read_wav(&pl), read_wav(&pd));
    let before = between(&bob_rec, b0, t_move - 500_000, t_move);
    let after = between(&bob_rec, b0, t_move + 300_000, t_end);
    eprintln!(
        "bob hears 440/660 before {:.2e}/{:.2e}, after {:.2e}/{:.2e}",
        tone_power(before, 440.0),
        tone_power(before, 660.0),
        tone_power(after, 440.0),
        tone_power(after, 660.0)
    );
    assert!(
        tone_power(before, 440.0) > 100.0 * tone_power(before, 660.0),
        "the desk's voice before"
    );
    assert!(
        tone_power(after, 660.0) > 100.0 * tone_power(after, 440.0),
        "the laptop's voice after"
    );
    let laptop_after = between(&laptop_rec, l0, t_move + 300_000, t_end);
    assert!(
        tone_power(laptop_after, 880.0) > 1e-3,
        "bob reaches the laptop: {:.2e}",
        tone_power(laptop_after, 880.0)
    );
    let desk_after = between(&desk_rec, d0, t_move + 300_000, t_end);
    assert!(
        rms_between(desk_after, 0, 0, u64::MAX) < 1e-3,
        "the desk hears nothing after the move"
    );
}

#[test]
fn companion_hears_bob_and_bob_hears_both() {
    let Setup {
        _dir,
        server: _s,
        mut desk,
        mut laptop,
        mut bob,
        call,
        rec,
    } = setup();
    laptop.wait_event("activeCallsUpdated", |_| true, 10);
    let t_join = unix_micros();
    laptop.ok(json!({"cmd": "activeCallTransfer", "isTransfer": false}));
    laptop.wait_state(&call, "Connected");
    // The companion shows among the desk's participants, with its device name.
    let upd = desk.wait_event(
        "remoteParticipantsUpdated",
        |e| e["callId"] == call.as_str() && e["added"][0]["displayName"] == "alice",
        5,
    );
    assert_eq!(
        upd["added"][0]["identifier"],
        bob.events
            .iter()
            .find(|e| e["event"] == "incomingCall")
            .unwrap()["callerInfo"]["identifier"]
    );
    std::thread::sleep(Duration::from_millis(1500));
    let t_desk_leaves = unix_micros();
    desk.ok(json!({"cmd": "hangUp", "callId": call}));
    assert_eq!(desk.wait_ended(&call), (0, 0));
    std::thread::sleep(Duration::from_millis(800));
    let calls = bob.ok(json!({"cmd": "calls"}));
    assert_eq!(
        calls["calls"][0]["state"], "Connected",
        "bob's call survives the desk leaving"
    );
    let t_end = unix_micros();
    laptop.ok(json!({"cmd": "hangUp", "callId": call}));
    bob.wait_ended(&call);
    for a in [desk, laptop, bob] {
        a.quit();
    }
    let [(pd, d0), (pl, l0), (pb, b0)] = rec;
    let (bob_rec, laptop_rec, desk_rec) = (read_wav(&pb), read_wav(&pl), read_wav(&pd));
    let both = between(&bob_rec, b0, t_join + 400_000, t_desk_leaves);
    let (p440, p660) = (tone_power(both, 440.0), tone_power(both, 660.0));
    eprintln!("bob hears desk {p440:.2e} and laptop {p660:.2e}");
    assert!(p440 > 1e-3 && p660 > 1e-3, "bob hears both alice devices");
    for (what, r, t0) in [("desk", &desk_rec, d0), ("laptop", &laptop_rec, l0)] {
        let s = between(r, t0, t_join + 400_000, t_desk_leaves);
        assert!(tone_power(s, 880.0) > 1e-3, "{what} hears bob");
        assert!(
            tone_power(s, 440.0) + tone_power(s, 660.0) < 1e-5,
            "{what} does not hear the other alice device"
        );
    }
    let alone = between(&bob_rec, b0, t_desk_leaves + 300_000, t_end);
    assert!(
        tone_power(alone, 660.0) > 1e-3 && tone_power(alone, 440.0) < 1e-5,
        "after the desk left, only the laptop"
    );
}

#[test]
fn late_sign_in_races_and_ended_calls() {
    let Setup {
        _dir,
        server,
        mut desk,
        mut laptop,
        mut bob,
        call,
        ..
    } = setup();
    // A device signing in while the call is live learns of it at once.
    let mut phone = Agent::start(
        &server,
        "alice",
        &[
            "--device-name",
            "phone",
            "--mic",
            "silence",
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let seen = phone.wait_event("activeCallsUpdated", |_| true, 5);
    assert_eq!(seen["activeCallDetails"]["callId"], call.as_str());
    laptop.wait_event("activeCallsUpdated", |_| true, 5);
    // Bob's other device never sees alice's call.
    let mut bob2 = Agent::start(
        &server,
        "bob",
        &[
            "--device-name",
            "tablet",
            "--mic",
            "silence",
            "--speaker",
            "silence",
        ],
    )
    .connected();
    // Both alice devices race for the call with the same details (the call on the desk). The
    // details are passed explicitly: an agent that has already heard the winner's update would
    // otherwise aim at the laptop and take the call a second time, which is legitimate but not
    // the race under test.
    let details = seen["activeCallDetails"].clone();
    let race = |id: &str| {
        json!({"id": id, "cmd": "activeCallTransfer", "isTransfer": true,
               "activeCallDetails": details})
        .to_string()
    };
    laptop.send_raw(&race("l"));
    phone.send_raw(&race("p"));
    assert_eq!(laptop.wait_reply(&json!("l"))["ok"], true);
    assert_eq!(phone.wait_reply(&json!("p"))["ok"], true);
    let won = |a: &Agent| a.states(&call).contains(&"Connected".to_string());
    let lost = |a: &Agent| {
        a.events.iter().any(|e| {
            e["event"] == "error"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("no longer on device")
        })
    };
    // Wait (bounded) for the outcome on both sides rather than for a fixed time: a loaded
    // machine may take longer than any fixed sleep to bring the winner's media up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !((won(&laptop) || won(&phone)) && (lost(&laptop) || lost(&phone)))
        && std::time::Instant::now() < deadline
    {
        laptop.drain(Duration::from_millis(50));
        phone.drain(Duration::from_millis(50));
    }
    laptop.drain(Duration::from_millis(200));
    phone.drain(Duration::from_millis(200));
    assert!(won(&laptop) ^ won(&phone), "exactly one device won");
    assert!(lost(&laptop) ^ lost(&phone), "the other got a clear error");
    assert!(won(&laptop) == lost(&phone));
    assert_eq!(desk.wait_ended(&call), (0, 7200));
    // The call ends; taking it over now is a clear error.
    let stale = desk.wait_event("activeCallsUpdated", |_| true, 5)["activeCallDetails"].clone();
    bob.ok(json!({"cmd": "hangUp", "callId": call}));
    desk.wait_event("noActiveCalls", |_| true, 5);
    desk.ok(json!({"cmd": "activeCallTransfer", "isTransfer": true, "activeCallDetails": stale}));
    let e = desk.wait_event(
        "error",
        |e| e["message"].as_str().unwrap().contains("may have ended"),
        5,
    );
    assert_eq!(e["code"], "unknownCall");
    let r = desk.cmd(json!({"cmd": "activeCallTransfer", "isTransfer": true}));
    assert_eq!(
        r["error"]["code"], "invalidArgument",
        "nothing to take: {r}"
    );
    // Bob's tablet saw bob's own call (with alice, on bob's other device), never alice's side.
    bob2.drain(Duration::from_millis(200));
    for e in bob2
        .events
        .iter()
        .filter(|e| e["event"] == "activeCallsUpdated")
    {
        let d = &e["activeCallDetails"];
        assert_eq!(d["remoteParticipants"][0]["displayName"], "alice", "{e}");
        assert!(
            d["deviceName"] != "desk" && d["deviceName"] != "laptop" && d["deviceName"] != "phone",
            "{e}"
        );
    }
    assert!(bob2.events.iter().any(|e| e["event"] == "noActiveCalls"));
}
