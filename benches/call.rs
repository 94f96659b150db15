//! Figures for the 1:1 call targets, measured on real processes over loopback:
//!
//!   cargo bench --bench call                 everything below
//!   cargo bench --bench call -- virtual      only the named parts (loopback, virtual, real)
//!
//! - **loopback**: dial to Connected (callee auto-answers), median over repeated calls as seen by
//!   a script driving the agent; mouth-to-ear: chirps (the pattern of
//!   shared/tools/gen_signal.py) on alice's `file:` mic, found in bob's `record:` speaker (both
//!   devices report the unix time of their sample 0, so the delay is measured against one
//!   clock); CPU of each agent and of the switchboard during a call; agent peak RSS.
//! - **virtual**: rounds of a call between two agents on virtual devices (`tone:` mic, `record:`
//!   speaker), interleaved with rounds of two baresip instances calling each other over loopback
//!   SIP with Opus, on baresip's own virtual devices (the `ausine` source, and the `aubridge`
//!   player, which discards what it plays on a 20 ms clock... see `BaresipAudio::Virtual`).
//! - **real**: a private PulseAudio with a null sink `test` and a second null sink `sine` with
//!   module-sine playing a tone into it (its monitor is a real source, clocked by the server):
//!   rounds of two agents with `--mic sine.monitor --speaker test`, interleaved with two baresip instances on the same devices
//!   through its `pulse` module; and the mouth-to-ear delay through real devices.
//!
//! Each round prints CPU per endpoint (% of one core, utime + stime from /proc), thread count
//! and peak RSS (VmHWM); medians over the rounds and the ratios to baresip close each part.
//! The PulseAudio daemon's own CPU is printed too: a client's buffer sizes cost the server.
//!
//! Without `--bench` (`cargo test --benches`) only a short loopback smoke runs, which needs
//! neither PulseAudio nor baresip.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::pulse::{Pulse, pulse_installed};
use common::*;
use serde_json::json;

const ANCHOR: &str = "baresip 1.0 anchors: dial 7-9 ms, 1.5-2.1 % CPU/endpoint, RSS 10.6-10.9 MB, mouth-to-ear 126 ms";
/// Interleaved rounds per comparison in full mode.
const ROUNDS: usize = 3;
/// Seconds of call measured per round.
const ROUND_SECS: f64 = 10.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a short smoke.
    let quick = !args.iter().any(|a| a == "--bench");
    let parts: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let want = |p: &str| parts.is_empty() || parts.contains(&p);
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut virtual_m2e = None;
    if want("loopback") || quick {
        virtual_m2e = Some(loopback(&server, dir.path(), quick));
    }
    if quick {
        return;
    }
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if want("virtual") {
        virtual_devices(&server, dir.path());
    }
    if want("real") {
        real_devices(&server, dir.path(), virtual_m2e);
    }
}

/// Dial times, mouth-to-ear on virtual devices and CPU in one call; returns mouth-to-ear (ms).
fn loopback(server: &Server, dir: &Path, quick: bool) -> f64 {
    let quiet = ["--mic", "silence", "--speaker", "silence"];

    // 1. Dial to Connected.
    let mut alice = Agent::start(server, "alice", &quiet).connected();
    let mut bob =
        Agent::start(server, "bob", &[&quiet[..], &["--auto-answer"]].concat()).connected();
    std::thread::sleep(Duration::from_millis(500)); // media legs warm
    let rounds = if quick { 3 } else { 30 };
    let dial = dial_times(&mut alice, &mut bob, "bob", rounds);
    alice.quit();
    bob.quit();

    // 2. Mouth-to-ear and CPU in a call.
    let call_secs = if quick { 3.0 } else { 12.0 };
    let src = dir.join("chirps.wav");
    chirp_wav(&src, call_secs);
    let rec = dir.join("rec.wav");
    let mut alice = Agent::start(
        server,
        "alice",
        &[
            "--mic",
            &format!("file:{}", src.display()),
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let mut bob = Agent::start(
        server,
        "bob",
        &[
            "--mic",
            "tone:300",
            "--speaker",
            &format!("record:{}", rec.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec_start = bob.device_started("speaker");
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let mic_start = alice.device_started("microphone");
    let (a0, b0, s0) = (
        cpu_ticks(alice.pid()),
        cpu_ticks(bob.pid()),
        cpu_ticks(server.pid()),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(call_secs + 0.5));
    let wall = t0.elapsed().as_secs_f64();
    let pct = |d: u64| d as f64 / ticks_per_sec() / wall * 100.0;
    let (a_cpu, b_cpu, s_cpu) = (
        pct(cpu_ticks(alice.pid()) - a0),
        pct(cpu_ticks(bob.pid()) - b0),
        pct(cpu_ticks(server.pid()) - s0),
    );
    let (a_rss, b_rss) = (vm_hwm_mb(alice.pid()), vm_hwm_mb(bob.pid()));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    alice.quit();
    bob.quit();
    let source = read_wav(&src);
    let recorded = read_wav(&rec);
    let (corr, lag) = best_alignment(&source, &recorded);
    let arrival_us = rec_start as f64 + lag as f64 / 48_000.0 * 1e6;
    let m2e_ms = (arrival_us - mic_start as f64) / 1000.0;

    println!(
        "dialtone 1:1 call figures ({} mode)",
        if quick { "quick smoke" } else { "full" }
    );
    println!("  {ANCHOR}");
    println!(
        "  dial to Connected, median of {rounds}: {:.1} ms (goal <= 10 ms)",
        median(&dial)
    );
    println!("  mouth-to-ear: {m2e_ms:.1} ms (goal <= 45 ms; alignment correlation {corr:.3})");
    println!("  CPU in a call: alice {a_cpu:.2} %, bob {b_cpu:.2} % of one core (goal <= 2 %)");
    println!(
        "  switchboard CPU for one forwarded call (2 legs, both directions): {s_cpu:.2} % of one core"
    );
    println!("  agent peak RSS: alice {a_rss:.1} MB, bob {b_rss:.1} MB (goal <= 12 MB)");
    m2e_ms
}

// ---- measuring processes ---------------------------------------------------------------------

/// What one endpoint cost during a measured stretch of a call.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// % of one core.
    cpu: f64,
    /// Most threads seen at once.
    threads: usize,
    /// Peak resident set (VmHWM), MB.
    rss: f64,
}

/// Ticks per thread name (threads of one name summed), from /proc/PID/task.
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("stat")),
        ) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        *out.entry(comm.trim().to_string()).or_default() += ticks;
    }
    out
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Measures `pids` for `secs`: CPU, most threads seen (sampled every 250 ms), peak RSS; and the
/// CPU per thread name of the first process.
fn measure(pids: &[u32], secs: f64) -> (Vec<Usage>, Vec<(String, f64)>) {
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let threads_before = thread_ticks(pids[0]);
    let mut threads = vec![0usize; pids.len()];
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        for (n, p) in threads.iter_mut().zip(pids) {
            *n = (*n).max(thread_count(*p));
        }
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250)),
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    let pct = |d: u64| d as f64 / ticks_per_sec() / wall * 100.0;
    let usage = pids
        .iter()
        .zip(before)
        .zip(threads)
        .map(|((p, b), threads)| Usage {
            cpu: pct(cpu_ticks(*p) - b),
            threads,
            rss: vm_hwm_mb(*p),
        })
        .collect();
    let mut per_thread: Vec<(String, f64)> = thread_ticks(pids[0])
        .into_iter()
        .map(|(name, t)| {
            let was = threads_before.get(&name).copied().unwrap_or(0);
            (name, pct(t.saturating_sub(was)))
        })
        .filter(|(_, c)| *c > 0.0)
        .collect();
    per_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    (usage, per_thread)
}

/// One round of one contender: both endpoints, and the sound server if there is one.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    alice: Usage,
    bob: Usage,
    server_cpu: Option<f64>,
}

impl Round {
    fn endpoint_cpu(&self) -> f64 {
        (self.alice.cpu + self.bob.cpu) / 2.0
    }
}

fn print_round(who: &str, r: &Round) {
    let server = r
        .server_cpu
        .map_or(String::new(), |c| format!(", pulseaudio daemon {c:.2} %"));
    println!(
        "    {who:<9} CPU alice {:.2} % bob {:.2} %, threads {}/{}, peak RSS {:.1}/{:.1} MB{server}",
        r.alice.cpu, r.bob.cpu, r.alice.threads, r.bob.threads, r.alice.rss, r.bob.rss
    );
}

/// Prints one side's medians (CPU per endpoint, threads, peak RSS, the sound server's CPU) and
/// returns the first three.
fn print_side(label: &str, rounds: &[Round]) -> (f64, f64, f64) {
    let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let cpu = med(&|r| r.endpoint_cpu());
    let threads = med(&|r| r.alice.threads.max(r.bob.threads) as f64);
    let rss = med(&|r| r.alice.rss.max(r.bob.rss));
    println!(
        "  {label} median of {}: {cpu:.2} % CPU per endpoint, {threads:.0} threads, peak RSS {rss:.1} MB",
        rounds.len()
    );
    if let Some(server) = rounds
        .iter()
        .map(|r| r.server_cpu)
        .collect::<Option<Vec<_>>>()
    {
        println!(
            "    pulseaudio daemon during the call: {:.2} %",
            median(&server)
        );
    }
    (cpu, threads, rss)
}

fn print_summary(ours: &[Round], theirs: &[Round], skipped: Option<&str>) {
    let (cpu, threads, rss) = print_side("dialtone,", ours);
    if let Some(reason) = skipped {
        println!("  baresip: skipped, {reason}");
        return;
    }
    let (b_cpu, b_threads, b_rss) = print_side("baresip, ", theirs);
    println!(
        "  ratio dialtone / baresip: CPU {:.2}x (goal <= 1.0), threads {:.2}x, RSS {:.2}x",
        cpu / b_cpu.max(1e-9),
        threads / b_threads.max(1e-9),
        rss / b_rss.max(1e-9)
    );
}

// ---- dialtone rounds -------------------------------------------------------------------------

fn agent_cmd(pulse: Option<&Pulse>) -> Command {
    let mut cmd = Command::new(BIN);
    if let Some(p) = pulse {
        p.env(&mut cmd);
    }
    cmd
}

/// A call between two agents with these devices, measured for `secs` once connected. Prints
/// the CPU per thread of alice when `show_threads`.
fn dialtone_round(
    server: &Server,
    pulse: Option<&Pulse>,
    (mic, speaker): (&str, &str),
    secs: f64,
    show_threads: bool,
) -> Round {
    let devices = ["--mic", mic, "--speaker", speaker];
    let mut alice =
        Agent::start_with(agent_cmd(pulse), &server.url, Some("alice"), &devices).connected();
    let mut bob = Agent::start_with(
        agent_cmd(pulse),
        &server.url,
        Some("bob"),
        &[&devices[..], &["--auto-answer"]].concat(),
    )
    .connected();
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(500));
    let mut pids = vec![alice.pid(), bob.pid()];
    pids.extend(pulse.and_then(Pulse::pid));
    let (usage, per_thread) = measure(&pids, secs);
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    alice.quit();
    bob.quit();
    if show_threads {
        let list: Vec<String> = per_thread
            .iter()
            .map(|(n, c)| format!("{n} {c:.1}"))
            .collect();
        println!("    dialtone alice, % CPU per thread: {}", list.join(", "));
    }
    Round {
        alice: usage[0],
        bob: usage[1],
        server_cpu: usage.get(2).map(|u| u.cpu),
    }
}

// ---- baresip rounds --------------------------------------------------------------------------

/// The devices baresip uses in a round.
#[derive(Clone, Copy)]
enum BaresipAudio<'a> {
    /// Its `pulse` module on these PulseAudio devices.
    Pulse { source: &'a str, player: &'a str },
    /// In-process virtual devices, as dialtone's `tone:` and `record:`: the `ausine` source
    /// and the `aufile`... baresip 1.0 has no file player, so the `aubridge` pair (player and
    /// source in one, paced by a 20 ms clock thread): bob's bridge sends back what he hears.
    Virtual,
}

/// Why baresip cannot run here, if it cannot.
fn baresip_missing(modules: &[&str]) -> Option<String> {
    let ok = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        return Some(
            "`baresip` is not installed (apt-get install baresip-core baresip-x11)".into(),
        );
    }
    for m in modules {
        let path = Path::new(BARESIP_MODULES).join(format!("{m}.so"));
        if !path.exists() {
            return Some(format!(
                "{} is missing (the pulse module is in Debian's baresip-x11)",
                path.display()
            ));
        }
    }
    None
}

const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

/// A port p with p and p + 1 free on TCP and p free on UDP (baresip binds SIP on UDP and TCP
/// at p and SIP/TLS at p + 1).
fn free_sip_port() -> u16 {
    loop {
        let p = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < 65_000
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
}

struct Baresip {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Baresip {
    fn start(
        dir: &Path,
        name: &str,
        port: u16,
        audio: BaresipAudio,
        pulse: Option<&Pulse>,
        dial: Option<String>,
    ) -> Baresip {
        let home = dir.join(format!("baresip-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let (player, source, modules) = match audio {
            BaresipAudio::Pulse { source, player } => (
                format!("pulse,{player}"),
                format!("pulse,{source}"),
                "module\t\t\tpulse.so\n".to_string(),
            ),
            BaresipAudio::Virtual => (
                format!("aubridge,{name}"),
                if name == "bob" {
                    format!("aubridge,{name}")
                } else {
                    "ausine,440".to_string()
                },
                // ausine only produces stereo; the codec stays mono.
                "module\t\t\tausine.so\nmodule\t\t\taubridge.so\nausrc_channels\t\t2\n".to_string(),
            ),
        };
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{port}\n\
             audio_player\t\t{player}\n\
             audio_source\t\t{source}\n\
             audio_alert\t\t{player}\n\
             audio_level\t\tno\n\
             rtp_stats\t\tno\n\
             statmode_default\toff\n\
             module_path\t\t{BARESIP_MODULES}\n\
             module\t\t\topus.so\n\
             {modules}\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             opus_bitrate\t\t32000\n\
             opus_stereo\t\tno\n\
             opus_sprop_stereo\tno\n"
        );
        std::fs::write(home.join("config"), config).unwrap();
        std::fs::write(
            home.join("accounts"),
            format!(
                "<sip:{name}@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=opus/48000/2\n"
            ),
        )
        .unwrap();
        std::fs::write(home.join("contacts"), "").unwrap();
        let mut cmd = Command::new("baresip");
        if let Some(p) = pulse {
            p.env(&mut cmd);
        }
        cmd.arg("-f").arg(&home);
        if let Some(d) = dial {
            cmd.args(["-e", &format!("/dial {d}")]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baresip starts");
        let (tx, lines) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Baresip {
            child,
            lines,
            log: Vec::new(),
        }
    }

    fn wait_for(&mut self, text: &str, within: Duration) -> Result<(), String> {
        if self.log.iter().any(|l| l.contains(text)) {
            return Ok(());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.log.push(line);
                    if hit {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "no `{text}` from baresip within {within:?}; it said:\n{}",
                        self.log.join("\n")
                    ));
                }
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two baresip instances, alice dialling bob (who answers automatically) over loopback SIP
/// with Opus, measured for `secs` once the call is established.
fn baresip_round(
    dir: &Path,
    pulse: Option<&Pulse>,
    audio: BaresipAudio,
    secs: f64,
) -> Result<Round, String> {
    let (pa, pb) = (free_sip_port(), free_sip_port());
    let mut bob = Baresip::start(dir, "bob", pb, audio, pulse, None);
    bob.wait_for("baresip is ready", Duration::from_secs(10))?;
    let mut alice = Baresip::start(
        dir,
        "alice",
        pa,
        audio,
        pulse,
        Some(format!("sip:bob@127.0.0.1:{pb}")),
    );
    alice.wait_for("Call established", Duration::from_secs(10))?;
    bob.wait_for("Call established", Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut pids = vec![alice.child.id(), bob.child.id()];
    pids.extend(pulse.and_then(Pulse::pid));
    let (usage, _) = measure(&pids, secs);
    Ok(Round {
        alice: usage[0],
        bob: usage[1],
        server_cpu: usage.get(2).map(|u| u.cpu),
    })
}

/// `ROUNDS` rounds of dialtone and baresip, alternating, then the summary.
fn compare(
    title: &str,
    mut ours: impl FnMut(bool) -> Round,
    mut theirs: impl FnMut() -> Result<Round, String>,
    skip: Option<String>,
) {
    println!("{title}");
    let (mut us, mut them) = (Vec::new(), Vec::new());
    let mut skipped = skip;
    for round in 0..ROUNDS {
        println!("  round {}:", round + 1);
        let r = ours(round == 0);
        print_round("dialtone", &r);
        us.push(r);
        if skipped.is_none() {
            match theirs() {
                Ok(r) => {
                    print_round("baresip", &r);
                    them.push(r);
                }
                Err(e) => skipped = Some(format!("it failed: {e}")),
            }
        }
    }
    print_summary(&us, &them, skipped.as_deref());
}

// ---- the parts -------------------------------------------------------------------------------

fn virtual_devices(server: &Server, dir: &Path) {
    let rec = dir.join("virtual-rec.wav");
    let speaker = format!("record:{}", rec.display());
    compare(
        &format!(
            "virtual devices: {ROUNDS} interleaved rounds of a {ROUND_SECS:.0} s call \
             (dialtone: tone:440 mic, record: speaker; baresip: ausine source, aubridge player)"
        ),
        |show| dialtone_round(server, None, ("tone:440", &speaker), ROUND_SECS, show),
        || baresip_round(dir, None, BaresipAudio::Virtual, ROUND_SECS),
        baresip_missing(&["opus", "ausine", "aubridge", "account", "menu"]),
    );
}

fn real_devices(server: &Server, dir: &Path, virtual_m2e: Option<f64>) {
    if !pulse_installed() {
        println!(
            "real devices: skipped, pulseaudio is not installed \
             (apt-get install pulseaudio pulseaudio-utils)"
        );
        return;
    }
    let pulse = Pulse::start();
    // The microphone: the monitor of a second null sink that module-sine plays a tone into.
    pulse.load_module(
        "module-null-sink",
        &["sink_name=sine", "rate=48000", "channels=2"],
    );
    pulse.load_module("module-sine", &["sink=sine", "frequency=440"]);
    pulse.pactl(&["set-default-source", "sine.monitor"]);
    compare(
        &format!(
            "real PulseAudio devices (private daemon; mic: `sine.monitor`, a null sink's monitor \
             with module-sine playing into it; speaker: null sink `test`): {ROUNDS} interleaved rounds of a {ROUND_SECS:.0} s call"
        ),
        |show| {
            dialtone_round(
                server,
                Some(&pulse),
                ("sine.monitor", "test"),
                ROUND_SECS,
                show,
            )
        },
        || {
            baresip_round(
                dir,
                Some(&pulse),
                BaresipAudio::Pulse {
                    source: "sine.monitor",
                    player: "test",
                },
                ROUND_SECS,
            )
        },
        baresip_missing(&["opus", "pulse", "account", "menu"]),
    );
    real_mouth_to_ear(server, &pulse, dir, virtual_m2e);
}

/// Mouth-to-ear through real devices. Alice's `file:` mic sends chirps to bob, whose speaker is
/// the null sink and whose mic is its monitor, so he sends them back; alice records them. That
/// round trip is one leg from a virtual mic to a real speaker and one from a real mic to a
/// virtual speaker; less one virtual-to-virtual delay, it is the real-to-real mouth-to-ear.
fn real_mouth_to_ear(server: &Server, pulse: &Pulse, dir: &Path, virtual_m2e: Option<f64>) {
    let secs = 6.0;
    let src = dir.join("real-chirps.wav");
    chirp_wav(&src, secs);
    let rec = dir.join("real-rec.wav");
    let mut alice = Agent::start_with(
        agent_cmd(Some(pulse)),
        &server.url,
        Some("alice"),
        &[
            "--mic",
            &format!("file:{}", src.display()),
            "--speaker",
            &format!("record:{}", rec.display()),
        ],
    )
    .connected();
    let mut bob = Agent::start_with(
        agent_cmd(Some(pulse)),
        &server.url,
        Some("bob"),
        &[
            "--mic",
            "test.monitor",
            "--speaker",
            "test",
            "--auto-answer",
        ],
    )
    .connected();
    let rec_start = alice.device_started("speaker");
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let mic_start = alice.device_started("microphone");
    std::thread::sleep(Duration::from_secs_f64(secs + 0.5));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    alice.quit();
    bob.quit();
    let (corr, lag) = best_alignment(&read_wav(&src), &read_wav(&rec));
    let round_trip = (rec_start as f64 + lag as f64 / 48_000.0 * 1e6 - mic_start as f64) / 1000.0;
    print!(
        "  mouth-to-ear round trip through bob's real speaker and mic: {round_trip:.1} ms \
         (correlation {corr:.3})"
    );
    match virtual_m2e {
        Some(v) => println!(
            "; less the virtual one-way {v:.1} ms: real-device mouth-to-ear about {:.1} ms",
            round_trip - v
        ),
        None => println!(" (run the loopback part too for the one-way estimate)"),
    }
}
