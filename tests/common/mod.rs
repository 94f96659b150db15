//! Helpers for tests that run real processes: a switchboard and agents over loopback (or on lab
//! hosts, see [`netlab`]), speech files made with espeak-ng, and the audio measurements the
//! assertions use.
#![allow(dead_code)]

pub mod impair;
pub mod netlab;
pub mod pki;
pub mod pulse;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_dialtone");

/// How long a switchboard may take to print its "listening on" line.
const SERVER_START: Duration = Duration::from_secs(30);

pub struct Server {
    child: Child,
    pub url: String,
    /// The address it printed ("listening on ADDR").
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// `dialtone serve` on 127.0.0.1 (a free port), data in `dir/switchboard`.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with(Command::new(BIN), dir, "127.0.0.1:0", extra)
    }

    /// `dialtone serve --listen LISTEN --data-dir DIR/switchboard EXTRA...` from `cmd`, a
    /// command for [`BIN`] without arguments yet: `Command::new(BIN)`, or `lab.cmd(&host, BIN)`
    /// to run it on a lab host (then listen on `"{host.ip}:0"`; `--dev` only admits loopback
    /// clients, so agents on other hosts need tokens). Waits (bounded) for the address line; kills
    /// the process on drop.
    pub fn start_with(mut cmd: Command, dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let data_dir = dir.join("switchboard");
        let mut child = cmd
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .env(
                "DIALTONE_LOG",
                "warn,rtc=error,rtc_ice=error,rtc_dtls=error",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dialtone serve starts");
        // Read the first line on a thread, so that a switchboard that never prints cannot hang
        // the test. The pipe closes after that line, as it always did.
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = out;
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(SERVER_START) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("dialtone serve printed no address within {SERVER_START:?}");
            }
        };
        let Some(addr) = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            let _ = child.kill();
            let status = child.wait();
            panic!("no address in {line:?} from dialtone serve (exit: {status:?})");
        };
        Server {
            child,
            url: format!("ws://{addr}"),
            addr,
            data_dir,
        }
    }

    pub fn dev(dir: &Path) -> Server {
        Server::start(dir, &["--dev"])
    }

    /// A sign-in token for `user`, valid for an hour (`dialtone token issue` on this
    /// switchboard's data dir). Agents on lab hosts need one: `--dev` admits loopback only.
    pub fn token(&self, user: &str) -> String {
        let out = Command::new(BIN)
            .args([
                "token",
                "issue",
                "--user",
                user,
                "--ttl",
                "1h",
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .output()
            .expect("dialtone token issue runs");
        assert!(
            out.status.success(),
            "dialtone token issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Its URL at another address with the same port: where clients reach it through NAT, e.g.
    /// `server.url_at(host.public_ip)` for a switchboard on a 1:1 NAT host.
    pub fn url_at(&self, ip: impl Into<IpAddr>) -> String {
        format!("ws://{}", SocketAddr::new(ip.into(), self.addr.port()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Agent {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<(Instant, Value)>,
    /// When the line of the last value `next` returned was read off the agent's stdout.
    last_at: Instant,
    /// When each of `events` arrived, same order.
    pub event_times: Vec<Instant>,
    /// Every event seen so far, in order.
    pub events: Vec<Value>,
    next_id: u64,
    /// Incoming calls already handed out by `wait_incoming`.
    taken: Vec<String>,
}

impl Agent {
    pub fn start(server: &Server, user: &str, args: &[&str]) -> Agent {
        Agent::start_url(&server.url, Some(user), args)
    }

    pub fn start_url(url: &str, user: Option<&str>, args: &[&str]) -> Agent {
        Agent::start_with(Command::new(BIN), url, user, args)
    }

    /// `dialtone agent --server URL [--user USER] ARGS...` from `cmd`, a command for [`BIN`]
    /// without arguments yet: `Command::new(BIN)`, or `lab.cmd(&host, BIN)` to run it on a lab
    /// host. Its stdout is read as JSON lines; the process is killed on drop.
    pub fn start_with(mut cmd: Command, url: &str, user: Option<&str>, args: &[&str]) -> Agent {
        cmd.args(["agent", "--server", url]);
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        let mut child = cmd
            .args(args)
            // DIALTONE_TEST_LOG widens the agents' log (on stderr) when a test needs a look.
            .env(
                "DIALTONE_LOG",
                std::env::var("DIALTONE_TEST_LOG")
                    .unwrap_or_else(|_| "warn,rtc=error,rtc_ice=error,rtc_dtls=error".to_owned()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dialtone agent starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let label = user.unwrap_or("agent").to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{label}: stdout line is not JSON ({e}): {line:?}"));
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        Agent {
            name: user.unwrap_or("agent").into(),
            child,
            stdin,
            rx,
            events: Vec::new(),
            last_at: Instant::now(),
            event_times: Vec::new(),
            next_id: 1,
            taken: Vec::new(),
        }
    }

    /// Waits until signed in.
    /// An agent on a lab host signed in as `user` over wss:// (`ca` trusted), its microphone a
    /// tone, its speaker recorded to `rec`, named after its host; waits for it to be connected.
    #[allow(clippy::too_many_arguments)]
    pub fn on_host(
        lab: &netlab::Lab,
        host: &netlab::Host,
        server: &Server,
        url: &str,
        ca: &Path,
        user: &str,
        hz: u32,
        rec: &Path,
        extra: &[&str],
    ) -> Agent {
        let mut args = vec![
            "--token".to_string(),
            server.token(user),
            "--ca".into(),
            ca.display().to_string(),
            "--mic".into(),
            format!("tone:{hz}"),
            "--speaker".into(),
            format!("record:{}", rec.display()),
            "--device-name".into(),
            host.name.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut a = Agent::start_with(lab.cmd(host, BIN), url, None, &args);
        a.name = user.into();
        a.connected()
    }

    pub fn connected(mut self) -> Agent {
        self.wait_event(
            "connectionStateChanged",
            |e| e["newState"] == "Connected",
            10,
        );
        self
    }

    pub fn send_raw(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a command and returns its reply (events seen meanwhile are kept).
    pub fn cmd(&mut self, mut v: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        v["id"] = json!(id);
        self.send_raw(&v.to_string());
        self.wait_reply(&json!(id))
    }

    pub fn wait_reply(&mut self, id: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self
                .next(deadline)
                .unwrap_or_else(|| panic!("{}: no reply to id {id}", self.name));
            if v.get("event").is_some() {
                self.events.push(v);
                self.event_times.push(self.last_at);
            } else if &v["id"] == id {
                return v;
            } else {
                panic!("{}: unexpected line {v}", self.name);
            }
        }
    }

    /// Returns the reply to a line sent with `send_raw` that gets `id: null`.
    pub fn wait_null_reply(&mut self) -> Value {
        self.wait_reply(&Value::Null)
    }

    pub fn ok(&mut self, v: Value) -> Value {
        let r = self.cmd(v.clone());
        assert_eq!(r["ok"], true, "{}: {v} failed: {r}", self.name);
        r
    }

    pub fn call(&mut self, to: &str) -> String {
        self.ok(json!({"cmd": "call", "to": [to]}))["callId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn next(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok((at, v)) => {
                self.last_at = at;
                Some(v)
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// When the first event with this name matching `pred` arrived, waiting for it if need be.
    pub fn event_time(&mut self, name: &str, pred: impl Fn(&Value) -> bool, secs: u64) -> Instant {
        self.wait_event(name, &pred, secs);
        let i = self
            .events
            .iter()
            .position(|e| e["event"] == name && pred(e))
            .expect("the event just waited for");
        self.event_times[i]
    }

    /// Waits for an event with this name matching `pred` (looking at events already seen first).
    pub fn wait_event(&mut self, name: &str, pred: impl Fn(&Value) -> bool, secs: u64) -> Value {
        if let Some(e) = self.events.iter().find(|e| e["event"] == name && pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let Some(v) = self.next(deadline) else {
                panic!(
                    "{}: no {name} event within {secs}s; saw {:#?}",
                    self.name, self.events
                )
            };
            if v.get("event").is_some() {
                self.events.push(v.clone());
                self.event_times.push(self.last_at);
                if v["event"] == name && pred(&v) {
                    return v;
                }
            }
        }
    }

    pub fn wait_state(&mut self, call: &str, state: &str) {
        self.wait_event(
            "callStateChanged",
            |e| e["callId"] == call && e["state"] == state,
            10,
        );
    }

    /// The next incoming call not returned before.
    pub fn wait_incoming(&mut self) -> String {
        let taken = self.taken.clone();
        let e = self.wait_event(
            "incomingCall",
            |e| !taken.iter().any(|t| e["callId"] == t.as_str()),
            10,
        );
        let id = e["callId"].as_str().unwrap().to_string();
        self.taken.push(id.clone());
        id
    }

    pub fn wait_ended(&mut self, call: &str) -> (u64, u64) {
        let e = self.wait_event("callEnded", |e| e["callId"] == call, 15);
        (
            e["callEndReason"]["code"].as_u64().unwrap(),
            e["callEndReason"]["subCode"].as_u64().unwrap(),
        )
    }

    /// Collects whatever arrives for a while.
    pub fn drain(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(v) = self.next(deadline) {
            if v.get("event").is_some() {
                self.events.push(v);
                self.event_times.push(self.last_at);
            }
        }
    }

    /// The unix time (µs) at which this agent's device of `kind` started.
    pub fn device_started(&mut self, kind: &str) -> u64 {
        self.wait_event("deviceStarted", |e| e["kind"] == kind, 10)["unixMicros"]
            .as_u64()
            .unwrap()
    }

    pub fn states(&self, call: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "callStateChanged" && e["callId"] == call)
            .map(|e| e["state"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends quit and waits for the process to exit 0 (recordings are final after this).
    pub fn quit(mut self) {
        let r = self.cmd(json!({"cmd": "quit"}));
        assert_eq!(r["ok"], true);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after quit",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Speech at 48 kHz mono 16-bit, made with espeak-ng and sox (scripts/setup.sh installs them).
pub fn speech_wav(dir: &Path, name: &str, text: &str, voice: &str) -> PathBuf {
    let raw = dir.join(format!("{name}-raw.wav"));
    let out = dir.join(format!("{name}.wav"));
    let st = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng is installed (scripts/setup.sh installs it)");
    assert!(st.success());
    let st = Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .status()
        .expect("sox is installed (scripts/setup.sh installs it)");
    assert!(st.success());
    out
}

pub fn read_wav(path: &Path) -> Vec<f32> {
    let mut r =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (48000, 1, 16),
        "{}",
        path.display()
    );
    r.samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

fn block_rms(x: &[f32], block: usize) -> Vec<f32> {
    x.chunks(block)
        .map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt())
        .collect()
}

/// Where `needle` (the source) best aligns inside `hay` (the recording), and the normalised
/// cross-correlation there. Coarse search on 5 ms energy envelopes, then a sample-exact search
/// nearby: a full-rate brute force over seconds of lag would take minutes.
pub fn best_alignment(needle: &[f32], hay: &[f32]) -> (f64, usize) {
    const B: usize = 240;
    let en = block_rms(needle, B);
    let eh = block_rms(hay, B);
    assert!(
        eh.len() >= en.len(),
        "recording ({} blocks) shorter than source ({} blocks)",
        eh.len(),
        en.len()
    );
    let mut best = (f64::MIN, 0usize);
    for lag in 0..=(eh.len() - en.len()) {
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for (i, a) in en.iter().enumerate() {
            let b = eh[lag + i];
            xy += (*a as f64) * (b as f64);
            xx += (*a as f64).powi(2);
            yy += (b as f64).powi(2);
        }
        let c = xy / (xx * yy).sqrt().max(1e-12);
        if c > best.0 {
            best = (c, lag);
        }
    }
    let centre = best.1 * B;
    let lo = centre.saturating_sub(2 * B);
    let hi = (centre + 2 * B).min(hay.len().saturating_sub(needle.len()));
    let mut fine = (f64::MIN, lo);
    for lag in lo..=hi.max(lo) {
        let c = ncc_at(needle, hay, lag);
        if c > fine.0 {
            fine = (c, lag);
        }
    }
    fine
}

pub fn ncc_at(needle: &[f32], hay: &[f32], lag: usize) -> f64 {
    let n = needle.len().min(hay.len().saturating_sub(lag));
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (a, b) = (needle[i] as f64, hay[lag + i] as f64);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    xy / (xx * yy).sqrt().max(1e-12)
}

/// RMS of the recording between two unix times, given the unix time of its first sample.
pub fn rms_between(rec: &[f32], rec_start_us: u64, from_us: u64, to_us: u64) -> f32 {
    let idx = |t: u64| (((t.saturating_sub(rec_start_us)) as f64) * 48_000.0 / 1e6) as usize;
    let (a, b) = (idx(from_us).min(rec.len()), idx(to_us).min(rec.len()));
    if b <= a {
        return 0.0;
    }
    let s = &rec[a..b];
    (s.iter().map(|v| v * v).sum::<f32>() / s.len() as f32).sqrt()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dialtone-test-")
        .tempdir()
        .unwrap()
}

/// How well `needle` (a source) is reproduced inside `hay` (a recording): the source is cut into
/// 1 s windows, each found near the previous window's lag (±60 ms, so the jitter buffer's
/// deliberate one-frame re-alignments after loss or a source switch do not count as damage),
/// and the normalised cross-correlations are averaged, weighted by the window's energy so that
/// pauses between words do not dilute it. Returns (score, lag of the first window).
pub fn speech_correlation(needle: &[f32], hay: &[f32]) -> (f64, usize) {
    const W: usize = 48_000;
    const SLACK: usize = 2_880;
    let (_, start) = best_alignment(needle, hay);
    let mut lag = start;
    let (mut weighted, mut weights) = (0f64, 0f64);
    for (k, win) in needle.chunks(W).enumerate() {
        if win.len() < W / 4 {
            break;
        }
        let energy: f64 = win.iter().map(|v| (*v as f64).powi(2)).sum();
        let base = k * W;
        let lo = (lag + base).saturating_sub(SLACK);
        let hi = (lag + base + SLACK).min(hay.len().saturating_sub(win.len()));
        let mut best = (f64::MIN, lo);
        for at in lo..=hi.max(lo) {
            let c = ncc_at(win, hay, at);
            if c > best.0 {
                best = (c, at);
            }
        }
        lag = best.1.saturating_sub(base);
        weighted += best.0.max(0.0) * energy;
        weights += energy;
    }
    (weighted / weights.max(1e-12), start)
}

/// Power of one frequency in a signal (Goertzel), normalised by length: tells which of several
/// tones a recording holds.
pub fn tone_power(x: &[f32], hz: f32) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f32::consts::PI * hz / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for v in x {
        let s0 = v + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f32 * x.len() as f32)
}

/// The stretch of a recording between two unix times.
pub fn between(rec: &[f32], rec_start_us: u64, from_us: u64, to_us: u64) -> &[f32] {
    let idx = |t: u64| ((t.saturating_sub(rec_start_us) as f64) * 0.048) as usize;
    let (a, b) = (idx(from_us).min(rec.len()), idx(to_us).min(rec.len()));
    &rec[a..b.max(a)]
}

/// 5 ms at 48 kHz: the window the benchmarks judge silence by.
pub const WIN: usize = 240;

/// A window with sound in it (RMS above -30 dBFS).
pub fn loud(x: &[f32]) -> bool {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt() > 0.03
}

/// The sample index of a unix time in a recording that started at `start_us`.
pub fn sample_at(t_us: u64, start_us: u64) -> usize {
    ((t_us.saturating_sub(start_us)) as f64 * 0.048) as usize
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Milliseconds from `t_us` to the first loud window of `rec`.
pub fn ms_to_sound(rec: &[f32], rec_start_us: u64, t_us: u64) -> f64 {
    let from = sample_at(t_us, rec_start_us).min(rec.len());
    rec[from..]
        .chunks(WIN)
        .position(loud)
        .map(|w| w as f64 * 5.0)
        .unwrap_or(f64::NAN)
}

/// The longest silence (ms) in `rec` between two unix times.
pub fn longest_gap_ms(rec: &[f32], rec_start_us: u64, from_us: u64, to_us: u64) -> f64 {
    let (a, b) = (
        sample_at(from_us, rec_start_us).min(rec.len()),
        sample_at(to_us, rec_start_us).min(rec.len()),
    );
    let (mut run, mut longest) = (0usize, 0usize);
    for w in rec[a..b.max(a)].chunks(WIN) {
        run = if loud(w) { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    longest as f64 * 5.0
}

// ---- measurements the benchmarks share -------------------------------------------------------

/// CPU time (utime + stime) of a process so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn ticks_per_sec() -> f64 {
    100.0 // USER_HZ on Linux
}

pub fn vm_hwm_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

/// The chirp train of gen_signal.py: 80 ms 300-3400 Hz chirps at fixed, non-periodic times over a
/// faint noise bed, so cross-correlation has one clear peak.
pub fn chirp_wav(path: &std::path::Path, secs: f64) {
    const MARKERS: [f64; 10] = [0.50, 1.70, 2.60, 4.00, 4.90, 6.30, 7.10, 8.60, 9.40, 10.80];
    let rate = 48_000.0;
    let n = (rate * secs) as usize;
    let mut x = vec![0f64; n];
    let clen = 0.08;
    let m = (clen * rate) as usize;
    let (f0, f1) = (300.0, 3400.0);
    for mk in MARKERS {
        let i0 = (mk * rate) as usize;
        if i0 + m > n {
            continue;
        }
        for k in 0..m {
            let t = k as f64 / rate;
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / (m - 1) as f64).cos();
            x[i0 + k] += 0.5
                * w
                * (2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) / (2.0 * clen) * t * t)).sin();
        }
    }
    let mut seed: u64 = 1;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for v in x {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.006;
        w.write_sample(((v + noise) * 32767.0).clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

/// `caller` calls `callee_name` (who auto-answers) `rounds` times: the ms from `call` to
/// Connected each time, as a script driving the agent sees it.
pub fn dial_times(
    caller: &mut Agent,
    callee: &mut Agent,
    callee_name: &str,
    rounds: usize,
) -> Vec<f64> {
    let mut dial = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let id = caller.call(callee_name);
        caller.wait_state(&id, "Connected");
        dial.push(t0.elapsed().as_secs_f64() * 1000.0);
        caller.ok(json!({"cmd": "hangUp", "callId": id}));
        caller.wait_ended(&id);
        callee.wait_ended(&id);
    }
    dial
}
