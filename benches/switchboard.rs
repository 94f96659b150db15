//! The switchboard under load: N simultaneous 1:1 calls between synthetic devices, each a real
//! signaling connection and a real media link (ICE, DTLS-SRTP) sending a 20 ms Opus-sized packet
//! every 20 ms, against a `dialtone serve` process:
//!
//!   cargo bench --bench switchboard [-- 1 8 32 64]
//!
//! Prints, per N: the switchboard's CPU (total, per call, per forwarded packet), how it spreads
//! over its threads (both cores used?), its RSS per call, and the one-way delay through it
//! (sender's send to receiver's read, one clock), median and 99th percentile. The devices run
//! in this process: they encode nothing (a fixed payload carries its send time), so what they
//! cost is mostly SRTP and the sockets.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Server, cpu_ticks, tempdir, ticks_per_sec};
use dialtone::media::link::AudioLevel;
use dialtone::media::net::{ClientConfig, ClientLink, MediaEvent};
use dialtone::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage, decode_server, encode};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// What every device's receive side records.
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    /// One-way delays in µs, sampled (every 16th packet) to keep this cheap.
    delays: std::sync::Mutex<Vec<u32>>,
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = if quick {
            vec![1, 4]
        } else {
            vec![1, 8, 32, 64]
        };
    }
    let window = if quick { 2.0 } else { 10.0 };
    // `threads=N`: the switchboard's media threads (default: one per core).
    let threads: Option<String> =
        std::env::args().find_map(|a| a.strip_prefix("threads=").map(str::to_owned));
    // `gen=N`: worker threads of the synthetic devices (default 1, leaving a core to the
    // switchboard).
    let gen_threads = std::env::args()
        .find_map(|a| a.strip_prefix("gen=").and_then(|n| n.parse().ok()))
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(gen_threads)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "dialtone switchboard under load ({} mode, {window} s windows)",
        if quick { "quick smoke" } else { "full" }
    );
    println!(
        "  targets: <= 40 us of CPU per forwarded packet, >= 300 simultaneous 1:1 calls on 2 cores"
    );
    for n in sizes {
        let dir = tempdir();
        let server = match &threads {
            Some(t) => Server::start(dir.path(), &["--dev", "--media-threads", t]),
            None => Server::dev(dir.path()),
        };
        let r = rt.block_on(load(&server, n, window));
        let per_packet_us = r.cpu_s / r.forwarded.max(1) as f64 * 1e6;
        let cpu_pct = r.cpu_s / r.wall * 100.0;
        println!(
            "  {n:>3} calls: switchboard CPU {cpu_pct:.1} % of one core ({:.2} % per call), {per_packet_us:.1} us per forwarded packet ({} forwarded, {:.0} pps)",
            cpu_pct / n as f64,
            r.forwarded,
            r.forwarded as f64 / r.wall
        );
        println!(
            "             threads with > 1 % of a core: {}; RSS {:.1} MB ({:.0} kB per call over the idle {:.1} MB)",
            r.busy_threads,
            r.rss_mb,
            (r.rss_mb - r.idle_rss_mb) * 1024.0 / n as f64,
            r.idle_rss_mb
        );
        println!(
            "             one-way through the switchboard: median {:.2} ms, p99 {:.2} ms; capacity at this cost: ~{:.0} calls on 2 cores",
            r.delay_p50_ms,
            r.delay_p99_ms,
            2.0 / (cpu_pct / 100.0 / n as f64)
        );
    }
}

struct Figures {
    cpu_s: f64,
    wall: f64,
    forwarded: u64,
    busy_threads: usize,
    rss_mb: f64,
    idle_rss_mb: f64,
    delay_p50_ms: f64,
    delay_p99_ms: f64,
}

/// A synthetic device: signed in, its link up; `start` makes it send, `done` collects.
struct Device {
    name: String,
    to_ws: mpsc::UnboundedSender<String>,
    from_ws: mpsc::UnboundedReceiver<ServerMessage>,
    start: Option<oneshot::Sender<()>>,
}

async fn load(server: &Server, n: usize, window: f64) -> Figures {
    let pid = server.pid();
    let idle_rss_mb = rss_mb(pid);
    let t0 = Instant::now();
    let tally = Arc::new(Tally::default());
    let mut devices = Vec::with_capacity(2 * n);
    for i in 0..2 * n {
        devices.push(device(&server.url, &format!("d{i}"), t0, Arc::clone(&tally)).await);
    }
    // Calls: device 2k calls 2k+1, which accepts.
    for k in 0..n {
        let call_id = uuid::Uuid::new_v4().to_string();
        let callee = devices[2 * k + 1].name.clone();
        let _ = devices[2 * k].to_ws.send(encode(&ClientMessage::PlaceCall {
            call_id: call_id.clone(),
            to: vec![callee],
            alternate_caller_id: None,
        }));
        let b = &mut devices[2 * k + 1];
        loop {
            match b.from_ws.recv().await.expect("callee connected") {
                ServerMessage::IncomingCall { call_id: id, .. } if id == call_id => break,
                _ => {}
            }
        }
        let _ = b.to_ws.send(encode(&ClientMessage::Accept { call_id }));
    }
    for d in &mut devices {
        loop {
            if let ServerMessage::CallConnected { .. } = d.from_ws.recv().await.expect("connected")
            {
                break;
            }
        }
    }
    for d in &mut devices {
        let _ = d.start.take().map(|s| s.send(()));
    }
    // Let the streams settle, then measure a window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let threads0 = thread_ticks(pid);
    let c0 = cpu_ticks(pid);
    let r0 = tally.received.load(Ordering::Relaxed);
    tally.delays.lock().unwrap().clear();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let wall = w0.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(pid) - c0) as f64 / ticks_per_sec();
    let forwarded = tally.received.load(Ordering::Relaxed) - r0;
    let threads1 = thread_ticks(pid);
    let busy_threads = threads1
        .iter()
        .filter(|(tid, t1)| {
            let t0 = threads0.get(tid).copied().unwrap_or(0);
            (**t1 - t0) as f64 / ticks_per_sec() / wall > 0.01
        })
        .count();
    let rss = rss_mb(pid);
    let mut delays = std::mem::take(&mut *tally.delays.lock().unwrap());
    delays.sort_unstable();
    let pick = |q: f64| -> f64 {
        if delays.is_empty() {
            return f64::NAN;
        }
        let i = ((delays.len() - 1) as f64 * q) as usize;
        f64::from(delays[i]) / 1000.0
    };
    drop(devices);
    Figures {
        cpu_s,
        wall,
        forwarded,
        busy_threads,
        rss_mb: rss,
        idle_rss_mb,
        delay_p50_ms: pick(0.5),
        delay_p99_ms: pick(0.99),
    }
}

/// Signs a device in, brings its link up and leaves a task that, once started, sends a packet
/// every 20 ms and tallies what it receives.
async fn device(url: &str, name: &str, t0: Instant, tally: Arc<Tally>) -> Device {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("switchboard reachable");
    let (mut sink, mut stream) = ws.split();
    let (to_ws, mut out) = mpsc::unbounded_channel::<String>();
    let (in_tx, mut from_ws) = mpsc::unbounded_channel::<ServerMessage>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = out.recv() => match m {
                    Some(t) => if sink.send(Message::text(t)).await.is_err() { return },
                    None => { let _ = sink.send(Message::Close(None)).await; return }
                },
                f = stream.next() => match f {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(m) = decode_server(&t) {
                            let _ = in_tx.send(m);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    });
    let _ = to_ws.send(encode(&ClientMessage::Hello {
        protocol: PROTOCOL_VERSION,
        user: Some(name.to_owned()),
        token: None,
        device_name: "bench".into(),
        client: None,
        resume: None,
    }));
    loop {
        if let ServerMessage::Welcome { .. } = from_ws.recv().await.expect("welcome") {
            break;
        }
    }
    let (mut link, offer) = ClientLink::open(&ClientConfig::new(true))
        .await
        .expect("link");
    let _ = to_ws.send(encode(&ClientMessage::MediaOffer { sdp: offer }));
    loop {
        if let ServerMessage::MediaAnswer { sdp } = from_ws.recv().await.expect("answer") {
            link.apply_answer(&sdp).expect("answer applies");
            break;
        }
    }
    loop {
        if link.next_event().await == MediaEvent::Connected {
            break;
        }
    }
    let (start, started) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut started = started;
        let mut sending = false;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        // A generator that falls behind skips frames rather than bursting to catch up: the
        // load stays 50 packets a second per device.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (mut seq, mut ts) = (0u16, 0u32);
        let mut filler = vec![0x5au8; 80];
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = &mut started, if !sending => sending = true,
                _ = tick.tick(), if sending => {
                    let us = t0.elapsed().as_micros() as u64;
                    filler[..8].copy_from_slice(&us.to_be_bytes());
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(960);
                    let level = Some(AudioLevel { dbov: 30, voice: true });
                    link.send_audio((seq, ts, false), Bytes::copy_from_slice(&filler), level);
                }
                e = link.next_event() => match e {
                    MediaEvent::Audio(a) => {
                        tally.received.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                        if n.is_multiple_of(16) && a.payload.len() >= 8 {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&a.payload[..8]);
                            let sent = u64::from_be_bytes(b);
                            let now = t0.elapsed().as_micros() as u64;
                            if let Ok(mut d) = tally.delays.lock() {
                                d.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                            }
                        }
                    }
                    MediaEvent::Disconnected => return,
                    _ => {}
                },
            }
        }
    });
    Device {
        name: name.to_owned(),
        to_ws,
        from_ws,
        start: Some(start),
    }
}

/// CPU ticks of each thread of `pid`.
fn thread_ticks(pid: u32) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
            && let Some(rest) = stat.rsplit(')').next()
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            out.insert(tid, t);
        }
    }
    out
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
