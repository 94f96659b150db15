//! The audio pipeline end to end with virtual devices: a `file:` microphone, Opus, a simulated
//! network in this process, the jitter buffer and a `record:` speaker, all in real time.
//! The recording must match the source (normalised cross-correlation) and arrive soon after it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use dialtone::devices::DeviceSpec;
use dialtone::media::audio::wav::load_mono_48k;
use dialtone::media::audio::{AudioEngine, AudioEvent, DeviceKind, EncodedFrame};
use tokio::sync::mpsc;

const RATE: f64 = 48_000.0;

/// Speech from espeak-ng when it is installed, else a tone and a chirp; returned as written
/// and as the 48 kHz mono the `file:` microphone will play.
fn make_source(dir: &Path) -> (PathBuf, Vec<f32>, &'static str) {
    let path = dir.join("source.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-s", "160", "-w"])
        .arg(&path)
        .arg("Hello from dialtone. The quick brown fox jumps over the lazy dog.")
        .output()
        .is_ok_and(|o| o.status.success());
    let kind = if spoken {
        "espeak-ng speech"
    } else {
        write_tone_and_chirp(&path);
        "440 Hz tone and chirp"
    };
    let samples = load_mono_48k(&path).expect("the test source is a valid WAV");
    (path, samples, kind)
}

/// 1 s of 440 Hz, then a 1 s chirp from 200 Hz to 3 kHz, at 48 kHz.
fn write_tone_and_chirp(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..96_000 {
        let t = i as f64 / RATE;
        let v = if t < 1.0 {
            (2.0 * std::f64::consts::PI * 440.0 * t).sin()
        } else {
            let t = t - 1.0;
            (2.0 * std::f64::consts::PI * (200.0 * t + 1400.0 * t * t)).sin()
        };
        w.write_sample((0.4 * v * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Normalised cross-correlation of `x` against `y` shifted by `lag` samples.
fn ncc_at(x: &[f32], y: &[f32], lag: usize) -> f64 {
    if lag >= y.len() {
        return 0.0;
    }
    let n = x.len().min(y.len() - lag);
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in x[..n].iter().zip(&y[lag..lag + n]) {
        let (a, b) = (*a as f64, *b as f64);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx == 0.0 || yy == 0.0 {
        0.0
    } else {
        xy / (xx * yy).sqrt()
    }
}

/// Best lag of `x` within `y` over `lags`, searched on a 4x decimated copy first and refined
/// at full rate (a full-rate search over 200 ms of lags would take seconds).
fn best_lag(x: &[f32], y: &[f32], lags: std::ops::Range<usize>) -> (usize, f64) {
    let decimate = |s: &[f32]| {
        s.chunks(4)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect::<Vec<_>>()
    };
    let (xd, yd) = (decimate(x), decimate(y));
    let coarse = (lags.start / 4..lags.end / 4 + 1)
        .map(|l| (l, ncc_at(&xd, &yd, l)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(lags.start, |(l, _)| l * 4);
    (coarse.saturating_sub(8)..coarse + 8)
        .map(|l| (l, ncc_at(x, y, l)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("non-empty range")
}

/// Energy-weighted mean of the best correlation of each voiced 100 ms window of `x` with `y`,
/// each window free to find its own lag in `lags`. Unlike one global lag, this follows the
/// jitter buffer when it grows by a frame to make room for FEC, so it measures how much of the
/// signal survived rather than whether the delay stayed constant.
fn segmental_correlation(x: &[f32], y: &[f32], lags: std::ops::Range<usize>) -> f64 {
    const WINDOW: usize = 4_800;
    let (mut sum, mut weight) = (0.0, 0.0);
    for start in (0..x.len().saturating_sub(WINDOW)).step_by(WINDOW) {
        let w = &x[start..start + WINDOW];
        let energy: f64 = w.iter().map(|v| (*v as f64).powi(2)).sum();
        if energy / (WINDOW as f64) < 1e-4 {
            continue;
        }
        let (_, c) = best_lag(w, y, lags.start + start..lags.end + start);
        sum += c * energy;
        weight += energy;
    }
    if weight == 0.0 { 0.0 } else { sum / weight }
}

/// User + system CPU time of this process so far (Linux; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A tiny deterministic generator for repeatable loss patterns.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Outcome {
    correlation: f64,
    segmental: f64,
    added_latency_ms: f64,
    lost: u64,
    recovered: u64,
    concealed: u64,
    source_kind: &'static str,
}

/// Plays the source through mic -> encoder -> "network" (dropping `loss` of the packets) ->
/// jitter buffer -> decoder -> record, and compares the recording with the source.
fn run_call(loss: f64, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (source_path, source, source_kind) = make_source(dir.path());
    let record_path = dir.path().join("heard.wav");
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (engine, mut frames) = AudioEngine::start(
        &DeviceSpec::File(source_path),
        &DeviceSpec::Record(record_path.clone()),
        events_tx,
    )
    .expect("virtual devices always start");
    let engine = std::sync::Arc::new(engine);

    // The network: sequence numbers and timestamps as a sender would stamp them, some packets
    // dropped, delivered as soon as they are encoded.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let net_engine = engine.clone();
    let network = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rng = Lcg(seed);
            let (mut seq, mut ts, mut sent, mut dropped) = (40_000u16, 123_456u32, 0u32, 0u32);
            loop {
                let EncodedFrame {
                    payload, samples, ..
                } = tokio::select! {
                    Some(frame) = frames.recv() => frame,
                    _ = &mut stop_rx => break,
                };
                // Never drop the very first packet: it anchors the stream.
                if sent > 0 && rng.next() < loss {
                    dropped += 1;
                } else {
                    net_engine.push_rtp(7, seq, ts, payload);
                }
                sent += 1;
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(samples);
            }
            (sent, dropped)
        })
    });

    let (cpu_before, wall_before) = (process_cpu_seconds(), std::time::Instant::now());
    engine.set_capture(true);
    let seconds = source.len() as f64 / RATE;
    std::thread::sleep(Duration::from_secs_f64(seconds + 0.4));
    engine.set_capture(false);
    std::thread::sleep(Duration::from_millis(150));
    let stats = engine.inbound_stats();
    let cpu_percent =
        (process_cpu_seconds() - cpu_before) / wall_before.elapsed().as_secs_f64() * 100.0;
    let _ = stop_tx.send(());
    let (sent, dropped) = network.join().unwrap();
    let engine = std::sync::Arc::try_unwrap(engine)
        .ok()
        .expect("the network thread has let go of the engine");
    engine.shutdown();

    let (mut mic_start, mut speaker_start) = (None, None);
    while let Ok(ev) = events.try_recv() {
        match ev {
            AudioEvent::DeviceStarted {
                kind: DeviceKind::Microphone,
                unix_micros,
                ..
            } => mic_start = Some(unix_micros),
            AudioEvent::DeviceStarted {
                kind: DeviceKind::Speaker,
                unix_micros,
                ..
            } => speaker_start = Some(unix_micros),
            other => panic!("unexpected event {other:?}"),
        }
    }
    let (mic_start, speaker_start) = (
        mic_start.expect("file mic started"),
        speaker_start.expect("record started"),
    );
    let heard: Vec<f32> = hound::WavReader::open(&record_path)
        .expect("the recording is a valid WAV")
        .into_samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    assert!(
        heard.len() as f64 / RATE > seconds,
        "recording is {} samples for a {seconds:.2} s source",
        heard.len()
    );

    // Where the source would sit in the recording with zero delay: the record file's sample n
    // is wall-clock time speaker_start + n / 48 kHz.
    let zero_delay = ((mic_start as f64 - speaker_start as f64) / 1e6 * RATE).round() as usize;
    let (lag, correlation) = best_lag(
        &source,
        &heard,
        zero_delay..zero_delay + (0.2 * RATE) as usize,
    );
    let added_latency_ms = (lag as f64 - zero_delay as f64) / RATE * 1000.0;
    let segmental = segmental_correlation(
        &source,
        &heard,
        zero_delay..zero_delay + (0.2 * RATE) as usize,
    );
    let s = stats.first().expect("one inbound source").jitter;
    println!(
        "{source_kind}, {:.0} % loss ({dropped} of {sent} packets dropped): correlation {correlation:.3} (per 100 ms window {segmental:.3}), \
         added latency {added_latency_ms:.1} ms (20 ms frame + ~6.5 ms Opus look-ahead + jitter buffer \
         {:.1} ms target); jitter buffer: {} lost, {} FEC-recovered, {} concealed, {} late; \
         process CPU during the call {cpu_percent:.1} % of one core (tests running alongside included)",
        loss * 100.0,
        s.target_delay_ms,
        s.lost,
        s.recovered,
        s.concealed,
        s.late,
    );
    Outcome {
        correlation,
        segmental,
        added_latency_ms,
        lost: s.lost,
        recovered: s.recovered,
        concealed: s.concealed,
        source_kind,
    }
}

#[test]
fn clean_path_reproduces_the_source_with_low_latency() {
    let o = run_call(0.0, 1);
    assert!(
        o.correlation >= 0.8,
        "correlation {:.3} for {}",
        o.correlation,
        o.source_kind
    );
    assert!(
        o.segmental >= 0.8,
        "per-window correlation {:.3} for {}",
        o.segmental,
        o.source_kind
    );
    assert_eq!(o.lost, 0);
    // Framing (20 ms) and Opus look-ahead (6.5 ms) are fixed; the rest is the jitter buffer's
    // 10-15 ms and thread wake-ups. The whole mouth-to-ear budget is 60 ms.
    assert!(
        o.added_latency_ms >= 20.0 && o.added_latency_ms <= 50.0,
        "added latency {:.1} ms",
        o.added_latency_ms
    );
}

#[test]
fn five_percent_loss_is_repaired_by_fec_and_concealment() {
    let o = run_call(0.05, 99);
    assert!(o.lost > 0, "the simulated network dropped nothing");
    // Most losses are rebuilt from the next packet's FEC (the buffer keeps one frame of
    // look-ahead once it sees loss); the rest are concealed, never left as gaps.
    assert!(
        o.recovered * 2 >= o.lost,
        "{} of {} recovered",
        o.recovered,
        o.lost
    );
    assert!(o.recovered + o.concealed >= o.lost);
    // One global lag cannot line up both sides of the frame the buffer grew by, so the whole
    // signal is judged window by window.
    assert!(
        o.segmental >= 0.8,
        "per-window correlation {:.3} for {}",
        o.segmental,
        o.source_kind
    );
    assert!(
        o.added_latency_ms <= 80.0,
        "added latency {:.1} ms",
        o.added_latency_ms
    );
}

#[test]
fn bad_devices_give_clear_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let missing = dir.path().join("missing.wav");
    let err = AudioEngine::start(&DeviceSpec::File(missing), &DeviceSpec::Silence, tx.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.wav") && !err.ends_with('.'), "{err}");

    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"not a wav at all").unwrap();
    let err = AudioEngine::start(&DeviceSpec::File(junk), &DeviceSpec::Silence, tx.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("junk.wav"), "{err}");

    let rec = DeviceSpec::Record(dir.path().join("r.wav"));
    let err = AudioEngine::start(&rec, &DeviceSpec::Silence, tx.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot be used as a microphone"), "{err}");
    let err = AudioEngine::start(&DeviceSpec::Silence, &DeviceSpec::Tone(440.0), tx.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`tone:440` cannot be used as a speaker"),
        "{err}"
    );

    let (engine, _frames) =
        AudioEngine::start(&DeviceSpec::Silence, &DeviceSpec::Silence, tx).unwrap();
    let bad_dir = DeviceSpec::Record(dir.path().join("no/such/dir/out.wav"));
    assert!(
        engine
            .set_speaker(&bad_dir)
            .unwrap_err()
            .to_string()
            .contains("out.wav")
    );
    // Garbage from the network is concealed, not a crash.
    for seq in 0..20u16 {
        engine.push_rtp(
            1,
            seq,
            seq as u32 * 960,
            Bytes::from_static(&[0xff, 0x00, 0x13]),
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    engine.shutdown();
}

#[test]
fn live_switching_metering_and_recording_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let record = dir.path().join("live.wav");
    let (engine, mut frames) = AudioEngine::start(
        &DeviceSpec::Silence,
        &DeviceSpec::Record(record.clone()),
        tx,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(engine.mic_level(), 0.0);
    assert!(
        frames.try_recv().is_err(),
        "capture is off, yet a frame was emitted"
    );

    engine.set_microphone(&"tone:440".parse().unwrap()).unwrap();
    // With capture off the meter is refreshed ten times a second.
    std::thread::sleep(Duration::from_millis(250));
    let level = engine.mic_level();
    assert!(
        (level - 0.3 / 2f32.sqrt()).abs() < 0.02,
        "tone level {level}"
    );
    assert!(!engine.speaking(), "speaking while capture is off");

    engine.set_capture(true);
    std::thread::sleep(Duration::from_millis(100));
    assert!(engine.speaking());
    let frame = frames.try_recv().expect("frames flow while capture is on");
    assert_eq!(frame.samples, 960);
    assert!(
        frame.voice && (12..=15).contains(&frame.level_dbov),
        "{frame:?}"
    );

    // The recording is a valid file whenever asked, while it goes on growing.
    engine.finalize_recording();
    let first = hound::WavReader::open(&record).unwrap().duration();
    assert!(first >= 48_000 * 200 / 1000, "{first} samples after 240 ms");
    std::thread::sleep(Duration::from_millis(100));
    engine.finalize_recording();
    assert!(hound::WavReader::open(&record).unwrap().duration() > first);

    // Switching the speaker away finalizes the file.
    engine.set_speaker(&DeviceSpec::Silence).unwrap();
    let final_len = hound::WavReader::open(&record).unwrap().duration();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        hound::WavReader::open(&record).unwrap().duration(),
        final_len
    );
    engine.shutdown();

    let mut started = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let AudioEvent::DeviceStarted { kind, spec, .. } = ev {
            started.push(format!("{kind} {spec}"));
        }
    }
    let record_spec = format!("speaker record:{}", record.display());
    assert_eq!(
        started,
        [
            "microphone silence",
            record_spec.as_str(),
            "microphone tone:440",
            "speaker silence"
        ]
    );
}
