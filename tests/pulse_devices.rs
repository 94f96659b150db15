//! Real device I/O through a private, headless PulseAudio with a null sink `test` (the
//! equivalent of shared/tools/start-pulse.sh, in a temporary runtime directory so it cannot
//! disturb another sound server on the machine):
//!
//! - the device listing shows the null sink and its monitor;
//! - an `AudioEngine` whose speaker is the null sink plays a tone sent to it as Opus packets;
//!   `parec` reads it back from the monitor and it has the right frequency and level;
//! - the same engine's microphone is the monitor (cpal capture), so the tone also comes back
//!   out as encoded frames: the whole device loop, with its latency printed.
//!
//! Without `pulseaudio` installed the test fails (CI installs it) unless
//! `DIALTONE_SKIP_PULSE=1` is set.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialtone::devices::{DeviceSpec, list_devices};
use dialtone::media::audio::codec::{FRAME_SAMPLES, MAX_DECODED_SAMPLES, OpusDecoder, OpusEncoder};
use dialtone::media::audio::{AudioEngine, AudioEvent, DeviceKind, EncodedFrame};
use tokio::sync::mpsc;

const TONE_HZ: f32 = 1000.0;
const TONE_AMPLITUDE: f32 = 0.3;
const TONE_FRAMES: usize = 75;

fn sine(hz: f32, from: usize, n: usize) -> Vec<f32> {
    (from..from + n)
        .map(|i| TONE_AMPLITUDE * (std::f32::consts::TAU * hz * i as f32 / 48_000.0).sin())
        .collect()
}

/// Goertzel power of `hz` in `x`; a sine of amplitude A gives about A² / 4.
fn power_at(x: &[f32], hz: f32) -> f32 {
    let w = std::f32::consts::TAU * hz / 48_000.0;
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for v in x {
        let s0 = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (x.len() as f32 * x.len() as f32)
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Checks a captured tone: the loudest 0.5 s has the right level, and 1 kHz dwarfs the other
/// frequencies probed.
fn assert_is_the_tone(what: &str, x: &[f32]) {
    let window = 24_000;
    assert!(x.len() >= window, "{what}: only {} samples", x.len());
    let start = (0..=x.len() - window)
        .step_by(960)
        .max_by(|a, b| rms(&x[*a..*a + window]).total_cmp(&rms(&x[*b..*b + window])))
        .unwrap();
    let w = &x[start..start + window];
    let level = rms(w);
    let tone = power_at(w, TONE_HZ);
    let others = [250.0, 500.0, 1500.0, 2000.0, 3000.0].map(|hz| power_at(w, hz));
    let worst = others.iter().cloned().fold(0.0, f32::max);
    println!(
        "{what}: rms {level:.3} (sent {:.3}), 1 kHz power {tone:.2e}, strongest other {worst:.2e}",
        TONE_AMPLITUDE / 2f32.sqrt()
    );
    assert!((0.1..=0.3).contains(&level), "{what}: rms {level}");
    assert!(
        tone > 100.0 * worst,
        "{what}: 1 kHz is not dominant ({tone:.2e} vs {worst:.2e})"
    );
}

mod common;

use common::pulse::{Pulse, pulse_installed};

#[test]
fn plays_to_and_captures_from_a_pulseaudio_null_sink() {
    if !pulse_installed() {
        if std::env::var("DIALTONE_SKIP_PULSE").as_deref() == Ok("1") {
            eprintln!("SKIPPED: pulseaudio is not installed and DIALTONE_SKIP_PULSE=1");
            return;
        }
        panic!(
            "pulseaudio is not installed, so real device I/O cannot be tested: \
             apt-get install pulseaudio pulseaudio-utils (or set DIALTONE_SKIP_PULSE=1 to skip)"
        );
    }
    let pulse = Pulse::start();
    // SAFETY: this binary has this one test and sets the variables before any thread that
    // could read the environment exists; cpal's PulseAudio client finds the daemon by them.
    unsafe {
        std::env::set_var("XDG_RUNTIME_DIR", &pulse.dir);
        std::env::set_var("HOME", pulse.dir.join("home"));
        std::env::set_var("PULSE_SERVER", pulse.server());
    }

    let list = list_devices();
    print!("{}", list.to_table());
    let sink = list
        .speakers
        .iter()
        .find(|d| d.spec == "test")
        .expect("the null sink is listed");
    assert!(
        sink.is_default && sink.host.as_deref() == Some("pulseaudio"),
        "{sink:?}"
    );
    let monitor = list
        .microphones
        .iter()
        .find(|d| d.spec == "test.monitor")
        .expect("its monitor is listed");
    assert!(monitor.is_default, "{monitor:?}");
    assert!(list.problems.is_empty(), "{:?}", list.problems);

    // An independent ear on the monitor.
    let mut parec: Child = pulse
        .command("parec")
        .args([
            "-d",
            "test.monitor",
            "--rate=48000",
            "--channels=1",
            "--format=s16le",
            "--raw",
            "--latency-msec=20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run parec");
    let mut parec_out = parec.stdout.take().unwrap();
    let parec_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = parec_out.read_to_end(&mut bytes);
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect::<Vec<f32>>()
    });

    let (events_tx, mut events) = mpsc::unbounded_channel();
    // The speaker by exact id, the microphone by a case-insensitive part of its name.
    let (engine, frames) = AudioEngine::start(
        &DeviceSpec::Named("MONITOR".into()),
        &DeviceSpec::Named("test".into()),
        events_tx,
    )
    .expect("open the null sink and its monitor");
    engine.set_capture(true);
    std::thread::sleep(Duration::from_millis(300));

    // What the microphone (the monitor) hears comes out as Opus frames: decode them, noting
    // when each arrived (a frame is emitted when its last sample has been captured).
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let collector = std::thread::spawn(move || {
        let mut frames = frames;
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = vec![0.0; MAX_DECODED_SAMPLES];
        let mut heard = Vec::new();
        let mut arrivals = Vec::new();
        while stop_rx.try_recv().is_err() {
            match frames.try_recv() {
                Ok(EncodedFrame { payload, .. }) => {
                    let n = decoder.decode(&payload, &mut out).unwrap();
                    arrivals.push(Instant::now());
                    heard.extend_from_slice(&out[..n]);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        (heard, arrivals)
    });

    // The far end: a 1.5 s tone as Opus packets, paced in real time.
    let mut encoder = OpusEncoder::new().unwrap();
    let start = Instant::now();
    let mut peak_mic_level = 0.0f32;
    for f in 0..TONE_FRAMES {
        let due = start + Duration::from_millis(20 * (f as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let packet: Bytes = encoder
            .encode(&sine(TONE_HZ, f * FRAME_SAMPLES, FRAME_SAMPLES))
            .unwrap();
        engine.push_rtp(1, f as u16, (f * FRAME_SAMPLES) as u32, packet);
        peak_mic_level = peak_mic_level.max(engine.mic_level());
    }
    let first_push = start + Duration::from_millis(20);
    std::thread::sleep(Duration::from_millis(400));
    let stats = engine.device_stats();
    let inbound = engine.inbound_stats();
    engine.shutdown();
    let _ = stop_tx.send(());
    let (heard, arrivals) = collector.join().unwrap();
    let _ = parec.kill();
    let _ = parec.wait();
    let monitored = parec_reader.join().unwrap();

    assert_is_the_tone("parec on test.monitor", &monitored);
    assert_is_the_tone("engine microphone (cpal) on test.monitor", &heard);
    assert!(
        peak_mic_level > 0.05,
        "mic level never rose: {peak_mic_level}"
    );
    let jitter = inbound.first().expect("one inbound source").jitter;
    assert_eq!(jitter.lost, 0, "{jitter:?}");
    // When the tone's first sample reached the microphone callback: the first loud decoded
    // sample, placed back in time from its frame's arrival (and Opus's 6.5 ms delay removed).
    let onset = heard
        .iter()
        .position(|v| v.abs() > 0.1)
        .expect("the tone came back through the microphone");
    let (frame, offset) = (onset / FRAME_SAMPLES, onset % FRAME_SAMPLES);
    let back = Duration::from_secs_f64((FRAME_SAMPLES - offset) as f64 / 48_000.0 + 0.0065);
    let at_mic = arrivals[frame] - back;
    let loop_ms = at_mic.duration_since(first_push).as_secs_f64() * 1000.0;
    println!(
        "device loop: push_rtp -> jitter buffer -> speaker ring -> null sink -> monitor -> \
         microphone callback {loop_ms:.1} ms; plus 20 ms framing and 6.5 ms Opus look-ahead at the \
         sender, mouth-to-ear over a perfect network is about {:.0} ms; speaker underruns {}, \
         mic overruns {}",
        loop_ms + 26.5,
        stats.speaker_underruns,
        stats.mic_overruns
    );

    let mut started = Vec::new();
    while let Ok(ev) = events.try_recv() {
        match ev {
            AudioEvent::DeviceStarted { kind, spec, .. } => started.push((kind, spec)),
            AudioEvent::DeviceError { kind, message } => panic!("{kind} error: {message}"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        started,
        [
            (DeviceKind::Microphone, "MONITOR".to_string()),
            (DeviceKind::Speaker, "test".to_string())
        ]
    );

    // Unknown names fail with the name quoted.
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = AudioEngine::start(
        &DeviceSpec::Named("no such mic".into()),
        &DeviceSpec::Silence,
        tx,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("`no such mic`"), "{err}");

    agent_plays_to_the_null_sink(&pulse);
    drop(pulse);
}

/// The whole product on real devices: `dialtone devices` sees the null sink, and an agent whose
/// speaker is that sink, calling the echo service with a tone on its microphone, plays the tone
/// that `parec` then reads back from the sink's monitor. Child processes inherit the
/// environment set above, so they talk to this test's private daemon.
fn agent_plays_to_the_null_sink(pulse: &Pulse) {
    let listing = Command::new(common::BIN)
        .arg("devices")
        .output()
        .expect("run dialtone devices");
    let table = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.status.success() && table.contains("test.monitor"),
        "{table}"
    );

    let dir = common::tempdir();
    let server = common::Server::dev(dir.path());
    let mut agent = common::Agent::start(
        &server,
        "alice",
        &["--mic", "tone:1000", "--speaker", "test"],
    )
    .connected();
    let mut parec: Child = pulse
        .command("parec")
        .args([
            "-d",
            "test.monitor",
            "--rate=48000",
            "--channels=1",
            "--format=s16le",
            "--raw",
            "--latency-msec=20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run parec");
    let mut out = parec.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect::<Vec<f32>>()
    });
    std::thread::sleep(Duration::from_millis(300));
    let id = agent.call("echo");
    agent.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(2500));
    agent.ok(serde_json::json!({"cmd": "hangUp", "callId": id}));
    agent.wait_ended(&id);
    let early_exit = parec.try_wait().ok().flatten();
    let _ = parec.kill();
    let _ = parec.wait();
    let events = format!("{:?}", agent.events);
    agent.quit();
    let monitored = reader.join().unwrap();
    if monitored.is_empty() {
        panic!(
            "parec heard nothing (exited early: {early_exit:?}); agent events: {events}; pulse log: {}",
            pulse.log()
        );
    }
    assert_is_the_tone("parec on the agent's speaker (the null sink)", &monitored);
}
