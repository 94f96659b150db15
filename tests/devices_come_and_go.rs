//! Devices that come and go (issue 10), with real processes:
//!
//! - an agent on a machine with no usable sound device (PulseAudio unreachable, ALSA finding
//!   nothing) starts, signs in, reports the media diagnostics, answers a call, and carries audio
//!   both ways once devices are set;
//! - with a private PulseAudio: a sink added and made default mid-call is followed (the tone
//!   comes out of the new sink), and the chosen sink removed mid-call falls back to the default
//!   and says so (`deviceSwitched`, reason `fallback`), the tone then coming out of the default,
//!   and is used again when it comes back;
//! - an agent started while the sound server is down reports it, and takes the server's default
//!   sink up mid-call once the server starts.
//!
//! The PulseAudio tests need `pulseaudio` and `pactl`/`parec` (CI installs them); without them
//! they fail unless `DIALTONE_SKIP_PULSE=1` is set.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pulse::{Pulse, pulse_installed};
use common::{Agent, BIN, Server, read_wav, tempdir, tone_power};
use serde_json::{Value, json};

/// How long the tone must be heard for in a window.
const LISTEN: Duration = Duration::from_millis(1500);

/// An agent command with no usable sound device: PulseAudio at a socket nobody listens on,
/// ALSA with an empty configuration (no `default`, no cards).
fn no_sound_device(dir: &Path) -> Command {
    let empty = dir.join("alsa-empty.conf");
    std::fs::write(&empty, "").unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env(
        "PULSE_SERVER",
        format!("unix:{}", dir.join("no-pulse/native").display()),
    )
    .env("ALSA_CONFIG_PATH", &empty)
    .env("XDG_RUNTIME_DIR", dir)
    .env("HOME", &home);
    cmd
}

fn diagnostic(agent: &mut Agent, name: &str, value: bool, secs: u64) -> Value {
    agent.wait_event(
        "mediaDiagnosticChanged",
        |e| e["diagnostic"] == name && e["value"] == value,
        secs,
    )
}

/// The recording, once its header says it is final (on hang-up), is at least `secs` long.
fn final_recording(rec: &Path, secs: usize) -> Vec<f32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = read_wav(rec);
        if samples.len() >= 48_000 * secs || Instant::now() > deadline {
            return samples;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn an_agent_with_no_sound_device_stays_up_reports_it_answers_and_sends_once_a_device_is_set() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut bob = Agent::start_with(no_sound_device(dir.path()), &server.url, Some("bob"), &[]);
    bob.name = "bob".into();
    let mut bob = bob.connected();
    for d in [
        "noMicrophoneDevicesEnumerated",
        "noSpeakerDevicesEnumerated",
        "microphoneNotFunctioning",
        "speakerNotFunctioning",
    ] {
        let e = diagnostic(&mut bob, d, true, 10);
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{d} says why: {e}"
        );
    }

    let rec_alice = dir.path().join("alice.wav");
    let rec_bob = dir.path().join("bob.wav");
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            "tone:440",
            "--speaker",
            &format!("record:{}", rec_alice.display()),
        ],
    )
    .connected();
    let id = alice.call("bob");
    assert_eq!(bob.wait_incoming(), id);
    bob.ok(json!({"cmd": "accept", "callId": id}));
    bob.wait_state(&id, "Connected");
    alice.wait_state(&id, "Connected");

    // Devices set mid-call: the diagnostics clear and audio flows both ways.
    bob.ok(json!({"cmd": "setMicrophone", "device": "tone:1000"}));
    bob.ok(json!({"cmd": "setSpeaker", "device": format!("record:{}", rec_bob.display())}));
    diagnostic(&mut bob, "microphoneNotFunctioning", false, 5);
    diagnostic(&mut bob, "speakerNotFunctioning", false, 5);
    // Talking into a muted call is pointed out, and cleared on unmute.
    bob.ok(json!({"cmd": "mute", "callId": id}));
    let e = diagnostic(&mut bob, "speakingWhileMicrophoneIsMuted", true, 5);
    assert_eq!(e["callId"], id.as_str(), "{e}");
    bob.ok(json!({"cmd": "unmute", "callId": id}));
    let e = diagnostic(&mut bob, "speakingWhileMicrophoneIsMuted", false, 5);
    assert_eq!(e["callId"], id.as_str(), "{e}");
    // Audio for a few seconds (events collected meanwhile).
    bob.drain(Duration::from_secs(3));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    assert_eq!(bob.wait_ended(&id), (0, 0));

    for (rec, far, own, who) in [
        (&rec_alice, 1000.0, 440.0, "alice"),
        (&rec_bob, 440.0, 1000.0, "bob"),
    ] {
        let samples = final_recording(rec, 2);
        let n = samples.len();
        assert!(n >= 48_000 * 2, "{who}: recording too short ({n} samples)");
        let window = &samples[n - 48_000 * 3 / 2..n - 48_000 / 4];
        let (far_p, own_p) = (tone_power(window, far), tone_power(window, own));
        eprintln!("{who}: {far} Hz {far_p:.2e}, {own} Hz {own_p:.2e}");
        assert!(
            far_p > 1e-3,
            "{who} does not hear the far side: {far_p:.2e}"
        );
        assert!(own_p < far_p / 100.0, "{who} hears itself");
    }
    // No device ever stopped the agent: it is still answering.
    bob.ok(json!({"cmd": "calls"}));
    bob.quit();
    alice.quit();
}

/// A private PulseAudio (minimal: nothing moves streams on its own) with a null sink `test` as
/// default, or None when pulseaudio is missing and `DIALTONE_SKIP_PULSE=1`.
fn pulse() -> Option<Pulse> {
    let mut pulse = prepared_pulse()?;
    pulse.run_minimal();
    Some(pulse)
}

/// As [`pulse`], with the daemon not started yet.
fn prepared_pulse() -> Option<Pulse> {
    if !pulse_installed() {
        assert_eq!(
            std::env::var("DIALTONE_SKIP_PULSE").as_deref(),
            Ok("1"),
            "pulseaudio is not installed: apt-get install pulseaudio pulseaudio-utils \
             (or set DIALTONE_SKIP_PULSE=1 to skip)"
        );
        eprintln!("SKIPPED: pulseaudio is not installed and DIALTONE_SKIP_PULSE=1");
        return None;
    }
    Some(Pulse::prepare())
}

/// Waits until the monitor of `sink` carries a `hz` tone for [`LISTEN`]: reads it with `parec`
/// in windows, within `secs`.
fn hears_tone(pulse: &Pulse, sink: &str, hz: f32, secs: u64) {
    let mut parec: Child = pulse
        .command("parec")
        .args(["-d", &format!("{sink}.monitor")])
        .args(["--rate=48000", "--channels=1", "--format=s16le", "--raw"])
        .arg("--latency-msec=20")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run parec");
    let mut out = parec.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<f32>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 9600];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let s = buf[..n - n % 2]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
                .collect();
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let want = (48_000.0 * LISTEN.as_secs_f32()) as usize;
    let mut window: Vec<f32> = Vec::new();
    let mut best = 0f32;
    let heard = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(chunk) = rx.recv_timeout(left) else {
            break false;
        };
        window.extend(chunk);
        if window.len() >= want {
            let p = tone_power(&window[window.len() - want..], hz);
            best = best.max(p);
            if p > 1e-3 {
                break true;
            }
            window.drain(..window.len() - want / 2);
        }
    };
    let _ = parec.kill();
    let _ = parec.wait();
    assert!(
        heard,
        "no {hz} Hz tone on `{sink}` within {secs}s (best power {best:.2e}); pulse log: {}",
        pulse.log()
    );
}

/// An agent on the private daemon with a tone microphone and `speaker`, in a call with the echo
/// service, so the tone plays on the speaker.
fn echo_call(pulse: &Pulse, server: &Server, speaker: &str) -> (Agent, String) {
    let mut agent = Agent::start_with(
        pulse.command(BIN),
        &server.url,
        Some("alice"),
        &["--mic", "tone:700", "--speaker", speaker],
    );
    agent.name = "alice".into();
    let mut agent = agent.connected();
    let id = agent.call("echo");
    agent.wait_state(&id, "Connected");
    (agent, id)
}

#[test]
fn a_sink_added_and_made_default_mid_call_is_followed() {
    let Some(pulse) = pulse() else { return };
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let (mut agent, id) = echo_call(&pulse, &server, "default");
    hears_tone(&pulse, "test", 700.0, 10);

    // A headset is plugged in and becomes the default.
    pulse.add_sink("usb");
    pulse.ok(&["set-default-sink", "usb"]);
    let e = agent.wait_event(
        "deviceSwitched",
        |e| e["kind"] == "speaker" && e["reason"] == "defaultChanged",
        10,
    );
    assert_eq!(e["using"], "default", "{e}");
    hears_tone(&pulse, "usb", 700.0, 10);
    assert!(
        !agent
            .events
            .iter()
            .any(|e| e["event"] == "mediaDiagnosticChanged" && e["value"] == true),
        "a healthy switch raises no diagnostic: {:#?}",
        agent.events
    );
    agent.ok(json!({"cmd": "hangUp", "callId": id}));
    agent.wait_ended(&id);
    agent.quit();
}

#[test]
fn the_sink_in_use_removed_mid_call_falls_back_to_the_default_and_says_so() {
    let Some(pulse) = pulse() else { return };
    let module = pulse.add_sink("usb");
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let (mut agent, id) = echo_call(&pulse, &server, "usb");
    hears_tone(&pulse, "usb", 700.0, 10);

    // The headset is pulled out.
    pulse.ok(&["unload-module", &module]);
    let e = agent.wait_event(
        "deviceSwitched",
        |e| e["kind"] == "speaker" && e["reason"] == "fallback",
        10,
    );
    assert_eq!(
        (&e["wanted"], &e["using"]),
        (&json!("usb"), &json!("default"))
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("usb")),
        "{e}"
    );
    hears_tone(&pulse, "test", 700.0, 10);

    // It comes back: used again.
    pulse.add_sink("usb");
    let e = agent.wait_event(
        "deviceSwitched",
        |e| e["kind"] == "speaker" && e["reason"] == "restored",
        10,
    );
    assert_eq!(e["using"], "usb", "{e}");
    hears_tone(&pulse, "usb", 700.0, 10);
    agent.ok(json!({"cmd": "hangUp", "callId": id}));
    agent.wait_ended(&id);
    agent.quit();
}

#[test]
fn a_sound_server_that_comes_up_is_picked_up() {
    let Some(mut pulse) = prepared_pulse() else {
        return;
    };
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let empty = dir.path().join("alsa-empty.conf");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = pulse.command(BIN);
    cmd.env("ALSA_CONFIG_PATH", &empty);
    let mut agent = Agent::start_with(
        cmd,
        &server.url,
        Some("alice"),
        &["--mic", "tone:700", "--speaker", "default"],
    );
    agent.name = "alice".into();
    let mut agent = agent.connected();
    diagnostic(&mut agent, "noSpeakerDevicesEnumerated", true, 10);
    diagnostic(&mut agent, "speakerNotFunctioning", true, 10);
    let id = agent.call("echo");
    agent.wait_state(&id, "Connected");

    // The sound server starts mid-call: its default sink is taken up and the tone plays on it.
    pulse.run_minimal();
    let e = agent.wait_event(
        "deviceSwitched",
        |e| e["kind"] == "speaker" && e["reason"] == "recovered",
        10,
    );
    assert_eq!(e["using"], "default", "{e}");
    diagnostic(&mut agent, "speakerNotFunctioning", false, 5);
    diagnostic(&mut agent, "noSpeakerDevicesEnumerated", false, 5);
    hears_tone(&pulse, "test", 700.0, 10);
    agent.ok(json!({"cmd": "hangUp", "callId": id}));
    agent.wait_ended(&id);
    agent.quit();
}
