//! Voicemail media: the Ogg Opus writer and readers, the greeting, and a whole session (greeting
//! paced in real time, then recording) driven by a fake caller that sends paced Opus packets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use dialtone::media::audio::codec::OpusEncoder;
use dialtone::media::audio::wav::load_mono_48k;
use dialtone::media::link::RtpAudio;
use dialtone::server::voicemail::session::EndedBy;
use dialtone::server::voicemail::{
    Greeting, OggOpusWriter, RecordingDone, VoicemailError, decode_to_pcm, probe, read_packets,
    run_session,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const RATE: usize = 48_000;
const FRAME: usize = 960;
const PRE_SKIP: usize = 312;

// ---------------------------------------------------------------------------------------------
// Signals and measurements

/// Speech from espeak-ng when it is installed, else a speech-like synthetic signal; at least
/// `seconds` long (repeated if need be), 48 kHz mono.
fn speech(dir: &Path, seconds: f64) -> (Vec<f32>, &'static str) {
    let path = dir.join("speech.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-s", "160", "-w"])
        .arg(&path)
        .arg("Hello, this is Bob. Please call me back about the meeting on Tuesday. Thanks, bye.")
        .output()
        .is_ok_and(|o| o.status.success());
    let (one, kind) = if spoken {
        (load_mono_48k(&path).unwrap(), "espeak-ng speech")
    } else {
        (synthetic_speech(3.0), "synthetic speech-like signal")
    };
    let want = (seconds * RATE as f64) as usize;
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        out.extend_from_slice(&one);
    }
    out.truncate(want);
    (out, kind)
}

/// Voiced "syllables": a gliding 120-220 Hz pulse train through two moving resonances, 4 a
/// second, with pauses between them.
fn synthetic_speech(seconds: f64) -> Vec<f32> {
    let n = (seconds * RATE as f64) as usize;
    let mut phase = 0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let syl = (t * 4.0).fract();
            let env = if syl < 0.7 {
                (std::f64::consts::PI * syl / 0.7).sin()
            } else {
                0.0
            };
            let f0 = 120.0 + 100.0 * (t * 0.7).sin().abs();
            phase += f0 / RATE as f64;
            let f1 = 500.0 + 300.0 * (t * 3.1).sin();
            let f2 = 1_500.0 + 600.0 * (t * 2.3).cos();
            let mut v = 0.0;
            for h in 1..20 {
                let f = f0 * h as f64;
                let w = 1.0 / (1.0 + ((f - f1) / 150.0).powi(2))
                    + 0.5 / (1.0 + ((f - f2) / 200.0).powi(2));
                v += w * (2.0 * std::f64::consts::PI * phase * h as f64).sin();
            }
            (0.15 * env * v) as f32
        })
        .collect()
}

fn encode(pcm: &[f32]) -> Vec<Bytes> {
    let mut enc = OpusEncoder::new().unwrap();
    pcm.chunks(FRAME)
        .map(|c| {
            let mut f = [0f32; FRAME];
            f[..c.len()].copy_from_slice(c);
            enc.encode(&f).unwrap()
        })
        .collect()
}

/// Normalised cross-correlation of `a` with `b` delayed by `lag` samples, over `a`'s length.
fn ncc(a: &[f32], b: &[f32], lag: i64) -> f64 {
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (i, x) in a.iter().enumerate() {
        let j = i as i64 + lag;
        let y = if j >= 0 && (j as usize) < b.len() {
            b[j as usize]
        } else {
            0.0
        };
        xy += f64::from(*x) * f64::from(y);
        xx += f64::from(*x).powi(2);
        yy += f64::from(y).powi(2);
    }
    xy / (xx * yy).sqrt().max(1e-12)
}

/// The best correlation of `a` against `b` within ±`max_lag` samples: (ncc, lag).
fn best_ncc(a: &[f32], b: &[f32], max_lag: i64) -> (f64, i64) {
    (-max_lag..=max_lag)
        .map(|lag| (ncc(a, b, lag), lag))
        .fold((f64::MIN, 0), |best, x| if x.0 > best.0 { x } else { best })
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

// ---------------------------------------------------------------------------------------------
// Raw Ogg pages, parsed here independently of the crate under test.

struct Page {
    flags: u8,
    granule: u64,
    serial: u32,
    seq: u32,
    lacing: Vec<u8>,
    body: Vec<u8>,
    crc_ok: bool,
}

fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for b in data {
        crc ^= u32::from(*b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn pages(data: &[u8]) -> Vec<Page> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        assert_eq!(&data[at..at + 4], b"OggS", "page at byte {at}");
        let h = &data[at..at + 27];
        assert_eq!(h[4], 0, "stream structure version");
        let nseg = h[26] as usize;
        let lacing = data[at + 27..at + 27 + nseg].to_vec();
        let len: usize = lacing.iter().map(|&l| l as usize).sum();
        let end = at + 27 + nseg + len;
        let mut copy = data[at..end].to_vec();
        copy[22..26].fill(0);
        let stored = u32::from_le_bytes(h[22..26].try_into().unwrap());
        out.push(Page {
            flags: h[5],
            granule: u64::from_le_bytes(h[6..14].try_into().unwrap()),
            serial: u32::from_le_bytes(h[14..18].try_into().unwrap()),
            seq: u32::from_le_bytes(h[18..22].try_into().unwrap()),
            lacing,
            body: data[at + 27 + nseg..end].to_vec(),
            crc_ok: ogg_crc(&copy) == stored,
        });
        at = end;
    }
    out
}

/// Rebuilds a page's bytes (with a fresh checksum) after a test changed it.
fn page_bytes(p: &Page) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"OggS\0");
    b.push(p.flags);
    b.extend_from_slice(&p.granule.to_le_bytes());
    b.extend_from_slice(&p.serial.to_le_bytes());
    b.extend_from_slice(&p.seq.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.push(p.lacing.len() as u8);
    b.extend_from_slice(&p.lacing);
    b.extend_from_slice(&p.body);
    let crc = ogg_crc(&b);
    b[22..26].copy_from_slice(&crc.to_le_bytes());
    b
}

// ---------------------------------------------------------------------------------------------
// Writer and readers

#[test]
fn writer_round_trip_decodes_to_the_source_and_is_valid_ogg_opus() {
    let dir = tempfile::tempdir().unwrap();
    let (src, kind) = speech(dir.path(), 3.0);
    let packets = encode(&src);
    assert_eq!(packets.len(), 150);
    let path = dir.path().join("msg.opus");
    let mut w = OggOpusWriter::create(&path).unwrap();
    for p in &packets {
        w.write_packet(p, FRAME as u32).unwrap();
    }
    let want = Duration::from_micros(((150 * FRAME - PRE_SKIP) * 1_000_000 / RATE) as u64);
    assert_eq!(w.duration(), want);
    assert_eq!(w.finish().unwrap(), want);

    assert_eq!(read_packets(&path).unwrap(), packets);
    let pcm = decode_to_pcm(&path).unwrap();
    assert_eq!(pcm.len(), 150 * FRAME - PRE_SKIP);
    let (c, lag) = best_ncc(&src[..pcm.len()], &pcm, 480);
    println!("round trip of {kind}: ncc {c:.3} at lag {lag} samples");
    assert!(c >= 0.9, "ncc {c:.3} at lag {lag}");
    // The pre-skip is right: the decoded audio lines up with the source to within 0.5 ms.
    assert!(lag.abs() <= 24, "lag {lag}");

    let info = probe(&path).unwrap();
    assert_eq!(
        (info.channels, info.pre_skip, info.input_sample_rate),
        (1, 312, 48_000)
    );
    assert_eq!(
        (info.packets, info.duration, info.vendor.as_str()),
        (150, want, "dialtone")
    );

    // The bytes, page by page.
    let data = std::fs::read(&path).unwrap();
    let ps = pages(&data);
    assert!(ps.iter().all(|p| p.crc_ok), "a page checksum is wrong");
    assert!(ps.iter().all(|p| p.serial == ps[0].serial));
    assert!(
        ps.iter().enumerate().all(|(i, p)| p.seq == i as u32),
        "page sequence numbers"
    );
    let head = &ps[0];
    assert_eq!(
        (head.flags, head.granule, head.lacing.as_slice()),
        (0x02, 0, &[19u8][..])
    );
    assert_eq!(
        head.body,
        b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    );
    let tags = &ps[1];
    assert_eq!((tags.flags, tags.granule), (0, 0));
    assert_eq!(&tags.body[..20], b"OpusTags\x08\x00\x00\x00dialtone");
    assert_eq!(&tags.body[20..], &[0, 0, 0, 0], "no user comments");
    let audio = &ps[2..];
    assert!(!audio.is_empty());
    let mut prev = 0;
    for (i, p) in audio.iter().enumerate() {
        let last = i + 1 == audio.len();
        assert_eq!(p.flags, if last { 0x04 } else { 0 }, "page {} flags", i + 2);
        assert!(p.granule > prev, "granules increase");
        assert!(
            p.granule - prev <= (RATE + FRAME) as u64,
            "a page holds at most ~1 s"
        );
        // Every packet here is shorter than 255 bytes: one segment each, 20 ms each.
        assert!(p.lacing.iter().all(|&l| l < 255));
        assert_eq!(p.granule - prev, (p.lacing.len() * FRAME) as u64);
        prev = p.granule;
    }
    assert_eq!(prev, (150 * FRAME) as u64);

    // opusinfo, when it is installed, must accept the file too.
    if let Ok(out) = Command::new("opusinfo").arg(&path).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains("WARNING"),
            "opusinfo: {text}"
        );
    }
}

fn expect_err(path: &Path, what: &str) -> String {
    let e = match decode_to_pcm(path) {
        Ok(pcm) => panic!("{} decoded to {} samples", path.display(), pcm.len()),
        Err(e) => e,
    };
    let m = e.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(m.contains(&*name), "{m}");
    assert!(m.contains(what), "expected {what:?} in: {m}");
    assert!(!m.ends_with('.'), "{m}");
    // The other readers agree.
    assert_eq!(read_packets(path).unwrap_err().to_string(), m);
    assert_eq!(probe(path).unwrap_err().to_string(), m);
    m
}

#[test]
fn garbage_truncated_and_non_opus_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good.opus");
    let packets = encode(&synthetic_speech(2.5));
    let mut w = OggOpusWriter::create(&good).unwrap();
    for p in &packets {
        w.write_packet(p, 960).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let ps = pages(&bytes);
    assert!(ps.len() >= 4);
    let mut shown = Vec::new();

    let mut case = |name: &str, data: &[u8], what: &str| {
        let path = d.join(name);
        std::fs::write(&path, data).unwrap();
        shown.push(expect_err(&path, what));
    };
    case("empty.opus", b"", "is not an Ogg file: it is empty");
    case(
        "noise.opus",
        &(0..5_000u32)
            .map(|i| (i * 7_919 % 251) as u8)
            .collect::<Vec<_>>(),
        "is not an Ogg file",
    );
    let wav = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/greeting.wav")).unwrap();
    case("wave.opus", &wav, "it starts with \"RIFF");
    case("tiny.opus", b"OggS\0\x02", "is cut short");
    case("half.opus", &bytes[..bytes.len() / 2], "is cut short");
    // Whole pages but the last one missing: no end-of-stream.
    let without_last: usize = bytes.len() - page_bytes(ps.last().unwrap()).len();
    case(
        "noeos.opus",
        &bytes[..without_last],
        "no end-of-stream page",
    );
    case("headonly.opus", &page_bytes(&ps[0]), "ends after OpusHead");
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 0x10;
    case("flipped.opus", &flipped, "checksum");
    // An audio page taken out (checksums all fine, sequence numbers renumbered): the granule
    // positions give it away, whether it was the first audio page or one further on.
    for missing in [2, 3] {
        let mut gap = Vec::new();
        for (i, p) in ps.iter().enumerate().filter(|(i, _)| *i != missing) {
            let mut p = clone_page(p);
            if i > missing {
                p.seq -= 1;
            }
            gap.extend(page_bytes(&p));
        }
        case(
            &format!("missing-page-{missing}.opus"),
            &gap,
            "granule position",
        );
    }

    // Not Opus: a Vorbis-like first packet, and an Opus stream with 6 channels.
    let vorbis = ogg_stream(&[b"\x01vorbis\0\0\0\0\x01\x44\xac\0\0", b"\x03vorbis"]);
    case(
        "vorbis.ogg",
        &vorbis,
        "is not an Ogg Opus file: its first packet starts with \"\\x01vorbis",
    );
    let mut head6 = ps[0].body.clone();
    head6[9] = 6;
    head6[18] = 1;
    head6.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
    let six = ogg_stream(&[&head6, &ps[1].body]);
    case("six.opus", &six, "channel mapping family 1");
    let mut bad_tags = ps[1].body.clone();
    bad_tags[8] = 200; // vendor length beyond the packet
    case(
        "tags.opus",
        &ogg_stream(&[&ps[0].body, &bad_tags]),
        "vendor string length 200",
    );
    let junk_audio = ogg_stream(&[&ps[0].body, &ps[1].body, b""]);
    case(
        "junk-audio.opus",
        &junk_audio,
        "audio packet 0 is not valid Opus",
    );

    let missing = d.join("missing.opus");
    let m = decode_to_pcm(&missing).unwrap_err().to_string();
    assert!(
        m.starts_with("cannot read") && m.contains("missing.opus"),
        "{m}"
    );
    shown.push(m);
    println!("errors:\n  {}", shown.join("\n  "));
}

fn clone_page(p: &Page) -> Page {
    Page {
        flags: p.flags,
        granule: p.granule,
        serial: p.serial,
        seq: p.seq,
        lacing: p.lacing.clone(),
        body: p.body.clone(),
        crc_ok: p.crc_ok,
    }
}

/// An Ogg stream, one packet a page, the last flagged end-of-stream.
fn ogg_stream(packets: &[&[u8]]) -> Vec<u8> {
    let mut w = ogg::PacketWriter::new(Vec::new());
    for (i, p) in packets.iter().enumerate() {
        let info = if i + 1 == packets.len() {
            ogg::PacketWriteEndInfo::EndStream
        } else {
            ogg::PacketWriteEndInfo::EndPage
        };
        w.write_packet(p.to_vec(), 7, info, 0).unwrap();
    }
    w.into_inner()
}

#[test]
fn a_recorded_message_can_become_a_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.opus");
    let mut w = OggOpusWriter::create(&path).unwrap();
    for p in encode(&synthetic_speech(1.5)) {
        w.write_packet(&p, 960).unwrap();
    }
    w.finish().unwrap();
    let g = Greeting::from_ogg_opus(&path).unwrap();
    // 1.5 s less the pre-skip, rounded up to whole 20 ms frames.
    assert_eq!(g.frames.len(), 75);
    let e = Greeting::from_ogg_opus(&dir.path().join("nope.opus")).unwrap_err();
    assert!(matches!(e, VoicemailError::Read { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Sessions

struct Sent {
    at: Instant,
    index: usize,
    payload: Bytes,
}

/// A caller: from now on, every 20 ms, the next packet of `packets` on `tx`, with RTP sequence
/// numbers and timestamps from `seq_ts(index)` (`None` skips that packet: lost or muted). Stops
/// at the end of `packets` or when the session stops listening.
fn caller(
    packets: Vec<Bytes>,
    tx: mpsc::Sender<RtpAudio>,
    seq_ts: impl Fn(usize) -> Option<(u16, u32)> + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Sent>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut sent = Vec::new();
        for (index, payload) in packets.into_iter().enumerate() {
            tick.tick().await;
            let Some((seq, timestamp)) = seq_ts(index) else {
                continue;
            };
            let rtp = RtpAudio {
                ssrc: 7,
                seq,
                timestamp,
                marker: index == 0,
                level: None,
                payload: payload.clone(),
            };
            if tx.send(rtp).await.is_err() {
                break;
            }
            sent.push(Sent {
                at: Instant::now(),
                index,
                payload,
            });
        }
        sent
    })
}

fn continuous(index: usize) -> Option<(u16, u32)> {
    Some((
        1_000u16.wrapping_add(index as u16),
        77_000u32.wrapping_add((index * FRAME) as u32),
    ))
}

type Emitted = std::sync::Arc<std::sync::Mutex<Vec<(Instant, RtpAudio)>>>;

fn sink() -> (Emitted, impl FnMut(RtpAudio) + Send + 'static) {
    let out: Emitted = Default::default();
    let o = out.clone();
    (out, move |p| o.lock().unwrap().push((Instant::now(), p)))
}

fn short_greeting(ms: usize) -> Greeting {
    let pcm: Vec<f32> = (0..ms * 48)
        .map(|i| 0.3 * (i as f32 * 0.0654).sin())
        .collect();
    Greeting::from_pcm(&pcm).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_paces_the_greeting_then_records_only_what_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, kind) = speech(dir.path(), 6.0);
    let packets = encode(&src);
    let greeting = Greeting::default_greeting().unwrap();
    let n = greeting.frames.len();
    let (emitted, send) = sink();
    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, stop) = oneshot::channel();
    let path = dir.path().join("vm.opus");
    let start = Instant::now();
    let session = tokio::spawn(run_session(
        greeting.clone(),
        send,
        rx,
        path.clone(),
        Duration::from_secs(60),
        stop,
    ));
    let caller = caller(packets.clone(), tx, continuous);
    // Let the caller talk for 2.5 s after the greeting, then hang up (stop).
    tokio::time::sleep(greeting.duration() + Duration::from_millis(2_500)).await;
    stop_tx.send(()).unwrap();
    let done: RecordingDone = session.await.unwrap().unwrap();
    let sent = caller.await.unwrap();

    // The greeting: every frame, in order, continuous RTP, paced at 20 ms.
    let emitted = emitted.lock().unwrap().clone();
    assert_eq!(emitted.len(), n);
    let t0 = emitted[0].0;
    for (i, (at, p)) in emitted.iter().enumerate() {
        assert_eq!(p.payload, greeting.frames[i]);
        assert_eq!(p.marker, i == 0);
        assert_eq!(p.seq, emitted[0].1.seq.wrapping_add(i as u16));
        assert_eq!(
            p.timestamp,
            emitted[0].1.timestamp.wrapping_add((i * FRAME) as u32)
        );
        let due = Duration::from_millis(20 * i as u64);
        assert!(
            *at - t0 + Duration::from_millis(2) >= due,
            "frame {i} early: {:?} < {due:?}",
            *at - t0
        );
        assert!(
            *at - t0 <= due + Duration::from_millis(80),
            "frame {i} late: {:?} vs {due:?}",
            *at - t0
        );
    }
    let span = emitted[n - 1].0 - t0;
    let mean_ms = span.as_secs_f64() * 1e3 / (n - 1) as f64;
    println!(
        "greeting: {n} frames ({:?}), first after {:?}, mean interval {mean_ms:.2} ms",
        greeting.duration(),
        t0 - start
    );
    assert!(
        (19.5..=20.8).contains(&mean_ms),
        "mean frame interval {mean_ms:.2} ms"
    );
    let greeting_end = t0 + greeting.duration();

    // The recording is exactly a run of what the caller sent, starting right after the greeting.
    let recorded = read_packets(&path).unwrap();
    assert_eq!(recorded.len() as u64, done.packets);
    assert_eq!(
        (done.ended_by, done.filled, done.discarded),
        (EndedBy::Stop, Duration::ZERO, 0)
    );
    let first = sent
        .iter()
        .position(|s| s.payload == recorded[0])
        .expect("first recorded packet was sent");
    for (k, r) in recorded.iter().enumerate() {
        assert_eq!(&sent[first + k].payload, r, "recorded packet {k}");
    }
    let k0 = sent[first].index;
    assert!(
        first > 0 && sent[first].at + Duration::from_millis(10) >= greeting_end,
        "a packet sent during the greeting was recorded"
    );
    assert!(
        sent[first - 1].at <= greeting_end + Duration::from_millis(30),
        "packets after the greeting were lost: first recorded sent {:?} after it",
        sent[first].at - greeting_end
    );
    let secs = done.duration.as_secs_f64();
    println!(
        "recorded {} packets ({secs:.3} s) of {kind}, from caller packet {k0}; {} sent during the greeting",
        done.packets, first
    );
    assert!((2.3..=2.7).contains(&secs), "{secs} s recorded");
    assert_eq!(done.duration, probe(&path).unwrap().duration);

    // It decodes to what the caller said after the greeting.
    let pcm = decode_to_pcm(&path).unwrap();
    assert_eq!(pcm.len(), recorded.len() * FRAME - PRE_SKIP);
    let said = &src[k0 * FRAME..];
    let (c, lag) = best_ncc(&pcm[FRAME..], &said[FRAME..], 480);
    println!("recording vs caller: ncc {c:.3} at lag {lag}");
    assert!(c >= 0.85 && lag.abs() <= 24, "ncc {c:.3} at lag {lag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_stops_at_max_len() {
    let dir = tempfile::tempdir().unwrap();
    let packets = encode(&synthetic_speech(4.0));
    let (_emitted, send) = sink();
    let (tx, rx) = mpsc::channel(64);
    let (_stop_tx, stop) = oneshot::channel();
    let path = dir.path().join("max.opus");
    let greeting = short_greeting(200);
    let start = Instant::now();
    let session = tokio::spawn(run_session(
        greeting,
        send,
        rx,
        path.clone(),
        Duration::from_secs(1),
        stop,
    ));
    let caller = caller(packets, tx, continuous);
    let done = session.await.unwrap().unwrap();
    let took = start.elapsed();
    let sent = caller.await.unwrap();
    assert_eq!(done.ended_by, EndedBy::MaxLength);
    assert_eq!(done.packets, 50);
    assert_eq!(
        done.duration,
        Duration::from_micros(((50 * FRAME - PRE_SKIP) * 1_000_000 / RATE) as u64)
    );
    assert_eq!(decode_to_pcm(&path).unwrap().len(), 50 * FRAME - PRE_SKIP);
    // It ended as the 1 s was full (the 60 ms reorder window adds a little), not when the caller did.
    println!(
        "max_len 1 s: session took {took:?}, caller sent {} packets",
        sent.len()
    );
    assert!(
        took >= Duration::from_millis(1_200) && took < Duration::from_millis(1_700),
        "{took:?}"
    );
    assert!(
        sent.len() < 200,
        "the caller was not cut off: {} packets",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_on_stop_or_hang_up_even_during_the_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let packets = encode(&synthetic_speech(3.0));

    // Stop during the greeting: nothing recorded, a valid empty file, the greeting cut off.
    let (emitted, send) = sink();
    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, stop) = oneshot::channel();
    let path = dir.path().join("early.opus");
    let session = tokio::spawn(run_session(
        short_greeting(1_000),
        send,
        rx,
        path.clone(),
        Duration::from_secs(10),
        stop,
    ));
    let _caller = caller(packets.clone(), tx, continuous);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(()).unwrap();
    let done = session.await.unwrap().unwrap();
    assert_eq!(
        (done.ended_by, done.packets, done.duration),
        (EndedBy::Stop, 0, Duration::ZERO)
    );
    assert!(read_packets(&path).unwrap().is_empty());
    let n = emitted.lock().unwrap().len();
    assert!((10..=20).contains(&n), "{n} greeting frames sent in 300 ms");

    // Hang up (the inbound channel closes) 1 s after a 200 ms greeting.
    let (_emitted, send) = sink();
    let (tx, rx) = mpsc::channel(64);
    let (_stop_tx, stop) = oneshot::channel();
    let path = dir.path().join("hangup.opus");
    let session = tokio::spawn(run_session(
        short_greeting(200),
        send,
        rx,
        path.clone(),
        Duration::from_secs(10),
        stop,
    ));
    let caller = caller(packets[..60].to_vec(), tx, continuous);
    let sent = caller.await.unwrap();
    let done = session.await.unwrap().unwrap();
    assert_eq!(done.ended_by, EndedBy::InboundClosed);
    assert_eq!(sent.len(), 60);
    // 60 packets over 1.2 s; the greeting took the first 200 ms of them (±1).
    assert!(
        (49..=51).contains(&done.packets),
        "{} packets",
        done.packets
    );
    assert_eq!(read_packets(&path).unwrap().len() as u64, done.packets);

    // A stop sender dropped counts as stop.
    let (_emitted, send) = sink();
    let (_tx, rx) = mpsc::channel(64);
    let (stop_tx, stop) = oneshot::channel::<()>();
    drop(stop_tx);
    let done = run_session(
        short_greeting(100),
        send,
        rx,
        dir.path().join("d.opus"),
        Duration::from_secs(1),
        stop,
    )
    .await
    .unwrap();
    assert_eq!(done.ended_by, EndedBy::Stop);

    // A file that cannot be created: an error at once, and no greeting.
    let (emitted, send) = sink();
    let (_tx, rx) = mpsc::channel(64);
    let (_stop_tx, stop) = oneshot::channel();
    let bad = dir.path().join("no/such/dir/m.opus");
    let e = run_session(
        short_greeting(100),
        send,
        rx,
        bad,
        Duration::from_secs(1),
        stop,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("cannot write") && e.contains("no/such/dir/m.opus") && !e.ends_with('.'),
        "{e}"
    );
    assert!(emitted.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_writes_mutes_and_losses_as_time() {
    let dir = tempfile::tempdir().unwrap();
    // 3 s of audio: speech, then 1 s muted (the sender sends nothing, its clock runs on), then
    // speech again; packet 20 is lost.
    let (src, _) = speech(dir.path(), 3.0);
    let packets = encode(&src);
    let muted = |i: usize| (50..100).contains(&i);
    let seq_ts = move |i: usize| {
        if muted(i) || i == 20 {
            return None;
        }
        // Sequence numbers skip only the lost packet; timestamps follow the clock.
        let seq = if i >= 100 { i - 50 } else { i };
        Some((seq as u16, 123_456u32.wrapping_add((i * FRAME) as u32)))
    };
    let (_emitted, send) = sink();
    let (tx, rx) = mpsc::channel(64);
    let (_stop_tx, stop) = oneshot::channel();
    let path = dir.path().join("gaps.opus");
    let session = tokio::spawn(run_session(
        Greeting {
            frames: Default::default(),
        },
        send,
        rx,
        path.clone(),
        Duration::from_secs(10),
        stop,
    ));
    let caller = caller(packets, tx, seq_ts);
    caller.await.unwrap();
    let done = session.await.unwrap().unwrap();
    assert_eq!(done.ended_by, EndedBy::InboundClosed);
    assert_eq!(done.packets, 150 - 50 - 1);
    assert_eq!(done.filled, Duration::from_millis(1_020));
    let pcm = decode_to_pcm(&path).unwrap();
    // The timeline is intact: 150 frames' worth.
    assert_eq!(pcm.len(), 150 * FRAME - PRE_SKIP);
    // The mute is silence (after the decoder's few-ms fade-out).
    let mute = &pcm[50 * FRAME + 240..100 * FRAME - PRE_SKIP - 120];
    assert!(rms(mute) < 1e-4, "mute rms {}", rms(mute));
    // Both stretches of speech are where they were said.
    let (c1, lag1) = best_ncc(&src[..19 * FRAME], &pcm[..19 * FRAME], 480);
    let (c2, lag2) = best_ncc(&src[101 * FRAME..], &pcm[101 * FRAME..], 480);
    println!("before the mute: ncc {c1:.3} at {lag1}; after it: ncc {c2:.3} at {lag2}");
    assert!(c1 >= 0.85 && lag1.abs() <= 24, "before: {c1:.3} at {lag1}");
    assert!(c2 >= 0.8 && lag2.abs() <= 24, "after: {c2:.3} at {lag2}");
}

/// Pages changed in structure (flags, granules, lacing, order, duplicates), each with a correct
/// checksum so that the parsers get past it: every outcome is a value or an error, never a
/// panic.
#[test]
fn structurally_mangled_files_with_valid_checksums_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.opus");
    let mut w = OggOpusWriter::create(&good).unwrap();
    for (i, p) in encode(&synthetic_speech(3.0)).iter().enumerate() {
        w.write_packet(p, 960).unwrap();
        if i.is_multiple_of(7) {
            // Some long packets too, so that packets span pages.
            let mut big = vec![0xf8];
            big.extend((0..700).map(|j| (i + j) as u8));
            w.write_packet(&big, 960).unwrap();
        }
    }
    w.finish().unwrap();
    let ps = pages(&std::fs::read(&good).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let path = dir.path().join("mangled.opus");
    let (mut ok, mut errs) = (0, 0);
    for _ in 0..3_000 {
        let mut v: Vec<Page> = ps.iter().map(clone_page).collect();
        for _ in 0..1 + rnd(3) {
            let i = rnd(v.len());
            match rnd(8) {
                0 => v[i].flags = rnd(8) as u8,
                1 => {
                    v[i].granule = [
                        0,
                        u64::MAX,
                        rnd(1 << 20) as u64,
                        v[i].granule.wrapping_add(960),
                    ][rnd(4)]
                }
                2 => {
                    let j = rnd(v[i].lacing.len().max(1));
                    if let Some(l) = v[i].lacing.get_mut(j) {
                        *l = rnd(256) as u8;
                    }
                }
                3 if v[i].lacing.len() < 255 => {
                    let l = rnd(256) as u8;
                    v[i].lacing.push(l);
                    v[i].body.extend((0..l).map(|b| b ^ 0x5a));
                }
                4 => {
                    let p = clone_page(&v[i]);
                    v.insert(rnd(v.len()), p);
                }
                5 => {
                    if v.len() > 1 {
                        v.remove(i);
                    }
                }
                6 => {
                    let j = rnd(v.len());
                    v.swap(i, j);
                }
                _ => {
                    let n = v[i].body.len();
                    if n > 0 {
                        v[i].body[rnd(n)] ^= 1 << rnd(8);
                    }
                    v[i].serial ^= rnd(2) as u32;
                }
            }
        }
        let data: Vec<u8> = v.iter().flat_map(page_bytes).collect();
        std::fs::write(&path, &data).unwrap();
        match decode_to_pcm(&path) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().contains("mangled.opus"), "{e}");
                errs += 1;
            }
        }
    }
    println!("mangled files: {ok} decoded, {errs} refused");
    assert!(errs > 2_000, "{errs} refused");
}
