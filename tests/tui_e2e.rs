//! End to end: two real `dialtone` TUIs inside tmux against one switchboard (the embedded one,
//! started by alice's process; bob's finds it on the port). Virtual devices via flags. alice
//! dials bob by typing, bob's screen shows the incoming prompt, bob accepts with a key, both
//! screens show Connected, alice hangs up, both show the call ended with its reason; then bob
//! turns a second call down as busy and alice sees 486. Screens are read with
//! `tmux capture-pane`.
//!
//! A second test runs three TUIs: alice transfers bob to carol from the transfer prompt, bob
//! accepts at the transfer-request prompt, carol's incoming prompt says who transferred the
//! call; then a refused transfer shows its reason on the row, and a transfer to alice's
//! voicemail leaves a message that alice's voicemail panel lists. A third has alice on two
//! devices: the one not in the call shows the "in a call with bob on desk" banner and takes the
//! call over with T.
//!
//! Uses a private tmux server (`tmux -L <name>`), its own port, XDG dirs and data dir, so it
//! touches nothing of the user's. Needs tmux (scripts/setup.sh installs it); without tmux the
//! test says so and passes. `DIALTONE_TUI_BIN` overrides the binary.

#[path = "common/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tmux::{Tmux, bin, check_bin, free_port, has_tmux, row_has, wait_dead};

fn tui_command(dir: &Path, user: &str) -> String {
    tui_command_mic(dir, user, "silence")
}

fn tui_command_mic(dir: &Path, user: &str, mic: &str) -> String {
    let xdg = dir.join("xdg");
    format!(
        "env XDG_CONFIG_HOME={x}/config XDG_DATA_HOME={x}/data XDG_STATE_HOME={x}/state NO_COLOR=1 {bin} \
         --config {cfg} --user {user} --device-name {user}-e2e --mic {mic} --speaker silence \
         --data-dir {data} --log-file {log}",
        x = xdg.display(),
        bin = bin().display(),
        cfg = dir.join("config.toml").display(),
        data = dir.join("data").display(),
        log = dir.join(format!("{user}.log")).display(),
    )
}

#[test]
fn two_tuis_call_each_other() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\nring_timeout_secs = 30\n"),
    )
    .unwrap();
    let alice_log = dir.path().join("alice.log");
    let bob_log = dir.path().join("bob.log");
    let tmux = Tmux::new("call");

    tmux.start("alice", &tui_command(dir.path(), "alice"));
    let s = tmux.wait_for("alice", "sign-in", &alice_log, |s| {
        s.contains("● connected")
    });
    assert!(
        s.contains(&format!("Started a switchboard on ws://127.0.0.1:{port}")),
        "alice hosts the switchboard:\n{s}"
    );
    tmux.start("bob", &tui_command(dir.path(), "bob"));
    let s = tmux.wait_for("bob", "sign-in", &bob_log, |s| s.contains("● connected"));
    assert!(
        !s.contains("Started a switchboard"),
        "bob uses alice's switchboard:\n{s}"
    );

    // alice dials bob by typing.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.wait_for("alice", "dialer", &alice_log, |s| s.contains("Call: bob"));
    tmux.keys("alice", &["Enter"]);
    let s = tmux.wait_for("bob", "incoming prompt", &bob_log, |s| {
        s.contains("Incoming call") && s.contains("alice is calling you")
    });
    assert!(s.contains("a accept"), "{s}");
    tmux.wait_for("alice", "ringing", &alice_log, |s| {
        row_has(s, "bob", "Ringing")
    });

    // bob accepts with a key; both show Connected.
    tmux.keys("bob", &["a"]);
    tmux.wait_for("bob", "connected call", &bob_log, |s| {
        row_has(s, "alice", "Connected") && !s.contains("is calling you")
    });
    tmux.wait_for("alice", "connected call", &alice_log, |s| {
        row_has(s, "bob", "Connected")
    });

    // alice hangs up; both show the call ended with its reason.
    tmux.keys("alice", &["h"]);
    tmux.wait_for("alice", "end reason", &alice_log, |s| {
        s.contains("Call with bob ended: a party hung up (0/0)") && row_has(s, "bob", "hung up")
    });
    tmux.wait_for("bob", "end reason", &bob_log, |s| {
        s.contains("Call with alice ended: a party hung up (0/0)") && row_has(s, "alice", "hung up")
    });

    // A second call, which bob turns down as busy: alice sees 486.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("bob", "second incoming prompt", &bob_log, |s| {
        s.contains("alice is calling you")
    });
    tmux.keys("bob", &["b"]);
    tmux.wait_for("alice", "busy", &alice_log, |s| {
        s.contains("Call with bob ended: the callee rejected the call as busy (486/0)")
            && row_has(s, "bob", "busy 486")
    });
    // Both calls are in alice's history.
    let s = tmux.screen("alice");
    assert!(
        s.lines().filter(|l| l.contains("→ bob")).count() >= 3,
        "two calls in history plus the ended row:\n{s}"
    );

    // q quits at once when no call is live; the terminal is given back.
    tmux.keys("alice", &["x", "q"]);
    wait_dead(&tmux, "alice");
    // alice's process hosted the switchboard: bob takes over hosting and signs in again.
    tmux.wait_for("bob", "take-over", &bob_log, |s| {
        s.contains("Connected to the switchboard again") && s.contains("● connected")
    });
    let log = std::fs::read_to_string(&bob_log).unwrap();
    let hosted = format!("started the embedded switchboard on 127.0.0.1:{port}");
    assert!(log.contains(&hosted), "{log}");
    tmux.keys("bob", &["x", "q"]);
    wait_dead(&tmux, "bob");
    for log in [&alice_log, &bob_log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("key press to frame"), "{text}");
        assert!(!text.contains("panic"), "{text}");
    }
    let history = std::fs::read_to_string(dir.path().join("data/tui/alice/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
}

#[test]
fn quitting_with_a_live_call_asks_first() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let log = dir.path().join("alice.log");
    let tmux = Tmux::new("quit");
    tmux.start("alice", &tui_command(dir.path(), "alice"));
    tmux.wait_for("alice", "sign-in", &log, |s| s.contains("● connected"));
    // The echo service answers at once.
    tmux.keys("alice", &["e"]);
    tmux.wait_for("alice", "echo call", &log, |s| {
        row_has(s, "Echo test", "Connected")
    });
    tmux.keys("alice", &["q"]);
    tmux.wait_for("alice", "quit question", &log, |s| {
        s.contains("A call is live. Hang up and quit?")
    });
    tmux.keys("alice", &["n"]);
    tmux.wait_for("alice", "question gone", &log, |s| {
        !s.contains("Hang up and quit?")
    });
    assert!(!tmux.is_dead("alice"));
    tmux.keys("alice", &["q", "y"]);
    wait_dead(&tmux, "alice");
}

/// Starts a TUI (its microphone a steady tone) and waits until it is signed in.
fn start_signed_in(tmux: &Tmux, dir: &Path, user: &str) -> PathBuf {
    let log = dir.join(format!("{user}.log"));
    tmux.start(user, &tui_command_mic(dir, user, "tone:440"));
    tmux.wait_for(user, "sign-in", &log, |s| s.contains("● connected"));
    log
}

#[test]
fn three_tuis_transfer_a_call() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\nring_timeout_secs = 30\n"),
    )
    .unwrap();
    let tmux = Tmux::new("transfer");
    let alice_log = start_signed_in(&tmux, dir.path(), "alice");
    let bob_log = start_signed_in(&tmux, dir.path(), "bob");
    let carol_log = start_signed_in(&tmux, dir.path(), "carol");

    // alice calls bob; bob answers.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("bob", "incoming prompt", &bob_log, |s| {
        s.contains("alice is calling you")
    });
    tmux.keys("bob", &["a"]);
    tmux.wait_for("alice", "connected call", &alice_log, |s| {
        row_has(s, "bob", "Connected")
    });

    // alice opens the transfer prompt: to a participant, carol.
    tmux.keys("alice", &["t"]);
    let s = tmux.wait_for("alice", "transfer prompt", &alice_log, |s| {
        s.contains("Transfer the call with bob")
    });
    assert!(
        s.contains("to a participant") && s.contains("to the voicemail of"),
        "{s}"
    );
    tmux.keys("alice", &["p"]);
    tmux.text("alice", "carol");
    tmux.wait_for("alice", "typed target", &alice_log, |s| {
        s.contains("To: carol")
    });
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "transferring", &alice_log, |s| {
        s.contains("Transferring to carol")
    });

    // bob is asked, and accepts.
    let s = tmux.wait_for("bob", "transfer request", &bob_log, |s| {
        s.contains("Transfer requested")
    });
    assert!(
        s.contains("alice asks to move this call") && s.contains("to carol"),
        "{s}"
    );
    tmux.keys("bob", &["a"]);

    // carol's phone rings with who transferred it; she answers.
    tmux.wait_for("carol", "transferred incoming call", &carol_log, |s| {
        s.contains("bob, transferred by alice, is calling you")
    });
    tmux.keys("carol", &["a"]);
    tmux.wait_for("carol", "connected to bob", &carol_log, |s| {
        row_has(s, "bob", "Connected")
    });
    tmux.wait_for("bob", "connected to carol", &bob_log, |s| {
        row_has(s, "carol", "Connected") && row_has(s, "alice", "transferred")
    });
    tmux.wait_for("alice", "transferred", &alice_log, |s| {
        row_has(s, "bob", "transferred") && !s.contains("Transferring")
    });

    // A refused transfer: bob sends carol to nobody; the row and the notice say why.
    tmux.keys("bob", &[":"]);
    tmux.text("bob", "transfer nobody");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("bob", "refused transfer", &bob_log, |s| {
        row_has(s, "carol", "Failed: refused (400/7105)")
            && s.contains("Transfer of carol to nobody failed")
    });
    assert!(tmux.screen("carol").contains("Connected"));

    // To voicemail: bob sends carol to alice's mailbox with the prompt (v, then the name).
    tmux.keys("bob", &["x", "t", "v"]);
    tmux.text("bob", "alice");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("carol", "transfer request", &carol_log, |s| {
        s.contains("to alice's voicemail")
    });
    tmux.keys("carol", &["a"]);
    tmux.wait_for("carol", "voicemail call", &carol_log, |s| {
        row_has(s, "bob", "transferred") && s.lines().any(|l| l.contains("Connected"))
    });
    // The greeting (2.5 s) plays, then carol's tone is recorded until she hangs up.
    std::thread::sleep(Duration::from_secs(5));
    tmux.keys("carol", &["x", "h"]);
    tmux.wait_for("alice", "message waiting", &alice_log, |s| {
        s.contains("✉ 1 new")
    });
    tmux.keys("alice", &["x", "v"]);
    let s = tmux.wait_for("alice", "voicemail panel", &alice_log, |s| {
        s.contains("Voicemail · 1 new of 1") && s.contains("carol")
    });
    assert!(s.contains("Forwarding: off"), "{s}");
    // Enter fetches, decodes and plays it (or says what this build lacks); either way it is
    // no longer new.
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "played", &alice_log, |s| {
        s.contains("Playing the message from carol") || s.contains("Could not play the message")
    });
    // x asks before deleting.
    tmux.keys("alice", &["x"]);
    tmux.wait_for("alice", "delete question", &alice_log, |s| {
        s.contains("Delete the message from carol")
    });
    tmux.keys("alice", &["y"]);
    tmux.wait_for("alice", "empty mailbox", &alice_log, |s| {
        s.contains("No messages.")
    });

    for user in ["alice", "bob", "carol"] {
        tmux.keys(user, &["Escape", "x", "q"]);
    }
    for user in ["alice", "bob", "carol"] {
        if !tmux.is_dead(user) {
            // A call still live asks first.
            tmux.keys(user, &["y"]);
        }
        wait_dead(&tmux, user);
    }
    for log in [&alice_log, &bob_log, &carol_log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains("panic"), "{text}");
    }
}

#[test]
fn a_call_on_another_device_shows_a_banner_and_moves_here() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\nring_timeout_secs = 30\n"),
    )
    .unwrap();
    let tmux = Tmux::new("elsewhere");
    // alice on two devices: "desk" (hosting the switchboard) and "laptop".
    let start = |session: &str, user: &str, device: &str| {
        let log = dir.path().join(format!("{session}.log"));
        let cmd = tui_command(dir.path(), user)
            .replace(
                &format!("--device-name {user}-e2e"),
                &format!("--device-name {device}"),
            )
            .replace(&format!("{user}.log"), &format!("{session}.log"));
        tmux.start(session, &cmd);
        tmux.wait_for(session, "sign-in", &log, |s| s.contains("● connected"));
        log
    };
    let desk_log = start("desk", "alice", "desk");
    let laptop_log = start("laptop", "alice", "laptop");
    let bob_log = start("bob", "bob", "bob-e2e");

    tmux.keys("desk", &["c"]);
    tmux.text("desk", "bob");
    tmux.keys("desk", &["Enter"]);
    tmux.wait_for("bob", "incoming prompt", &bob_log, |s| {
        s.contains("alice is calling you")
    });
    tmux.keys("bob", &["a"]);
    tmux.wait_for("desk", "connected call", &desk_log, |s| {
        row_has(s, "bob", "Connected")
    });
    // The laptop learns of the call, and takes it over with T.
    tmux.wait_for("laptop", "banner", &laptop_log, |s| {
        s.contains("In a call with bob on desk — T take over, J join")
    });
    tmux.keys("laptop", &["T"]);
    tmux.wait_for("laptop", "the call here", &laptop_log, |s| {
        row_has(s, "bob", "Connected") && !s.contains("In a call with bob on desk")
    });
    tmux.wait_for("desk", "moved away", &desk_log, |s| {
        row_has(s, "bob", "moved to another device")
    });
    // Now the desk sees the call on the laptop.
    tmux.wait_for("desk", "banner", &desk_log, |s| {
        s.contains("In a call with bob on laptop")
    });
    // bob's call went on: still the one call, connected.
    let s = tmux.screen("bob");
    assert!(row_has(&s, "alice", "Connected"), "{s}");
    // The call ends: the banner goes.
    tmux.keys("laptop", &["h"]);
    tmux.wait_for("desk", "no banner", &desk_log, |s| {
        !s.contains("In a call with")
    });
    for session in ["desk", "laptop", "bob"] {
        tmux.keys(session, &["x", "q"]);
    }
    for session in ["desk", "laptop", "bob"] {
        wait_dead(&tmux, session);
    }
}
