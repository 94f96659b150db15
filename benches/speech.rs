//! Speech over a bad link (issue "Calls that survive bad networks"): PESQ-WB of the speech bob
//! hears, dialtone beside baresip 1.0 on the same impaired link in the same run, rounds
//! interleaved, at 0 %, 5 % and 15 % loss with 40 ± 10 ms of delay each way; and dialtone's call
//! set-up on the 5 % link.
//!
//!   cargo bench --bench speech      (root; baresip-core, espeak-ng and sox installed)
//!
//! The lab: host `sb` has the switchboard and alice (dialtone), or the calling baresip; host `b`
//! has no network but the impaired link to `sb` (tests/common/impair.rs, a TUN device in each
//! namespace), and bob, or the answering baresip, who records what he hears. Each call is
//! placed as soon as bob is signed in (the hard case: the media link is still being built), and
//! alice speaks 11 s of synthetic speech (espeak-ng) from her `file:` microphone, or baresip's
//! `aufile` source. baresip runs Opus at the same 32 kb/s with in-band FEC on, records with its
//! `sndfile` module and its own jitter buffer. Scores come from benches/anchors/speech_score.py
//! (ITU-T P.862.2 through the `pesq` package) in a Python venv made once under
//! ~/.cache/dialtone/pesq-venv (or the Python named by DIALTONE_PESQ_PYTHON).
//!
//! `cargo test --benches` runs a quick smoke: one round each at 5 %.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::impair::{A_IP, B_IP, ImpairedLink, Impairment};
use common::netlab::{Host, Lab};
use common::pki::Pki;
use common::*;
use serde_json::json;

const ANCHORS: &str = "anchors (the issue, measured interleaved): dialtone vs baresip PESQ-WB 0 % 3.72 vs 3.78, 5 % 3.09 vs 2.10, 15 % 1.34 vs 1.43; call set-up on the 5 % link 386 ms (baresip over SIP/UDP 99 ms)";
const GOALS: [(u32, f64); 3] = [(0, 3.8), (5, 3.5), (15, 2.8)];
const SETUP_GOAL_MS: f64 = 150.0;
const SPEECH: &str = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. \
It is easy to tell the depth of a well. These days a chicken leg is a rare dish. \
Rice is often served in round bowls.";
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (losses, rounds): (&[u32], usize) = if quick { (&[5], 1) } else { (&[0, 5, 15], 3) };
    let dir = tempdir();
    println!(
        "dialtone speech over an impaired link ({} mode)",
        if quick { "quick smoke" } else { "full" }
    );
    println!("  {ANCHORS}");
    let speech = make_speech(dir.path());
    let python = match pesq_python() {
        Ok(p) => Some(p),
        Err(why) => {
            println!("  PESQ: not scored, {why}");
            None
        }
    };
    let baresip = baresip_missing();
    if let Some(why) = &baresip {
        println!("  baresip: skipped, {why}");
    }
    let score = |rec: &Path| -> Option<f64> {
        let py = python.as_ref()?;
        let out = Command::new(py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/anchors/speech_score.py"))
            .arg(&speech)
            .arg(rec)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["pesq_wb"].as_f64()
    };

    let mut rows = Vec::new();
    let (mut setups, mut warm_setups) = (Vec::new(), Vec::new());
    for &loss in losses {
        let imp = Impairment {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(10),
            loss_pct: f64::from(loss),
            seed: 7 + u64::from(loss),
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let (rec, setup_ms, warm_ms) =
                dialtone_round(dir.path(), &speech, imp, &format!("{loss}-{r}"));
            if loss == 5 {
                setups.push(setup_ms);
                warm_setups.push(warm_ms);
            }
            match score(&rec) {
                Some(s) => ours.push(s),
                None => check_heard(&rec),
            }
            if baresip.is_none() {
                match baresip_round(dir.path(), &speech, imp, &format!("{loss}-{r}")) {
                    Ok(rec) => theirs.extend(score(&rec)),
                    Err(e) => println!("  baresip round {loss} % #{r} failed: {e}"),
                }
            }
        }
        rows.push((loss, ours, theirs));
    }

    println!("  PESQ-WB of what bob hears, 40 ± 10 ms each way, medians of {rounds}:");
    println!("    loss  dialtone  baresip  ratio  goal");
    for (loss, ours, theirs) in &rows {
        let m = |v: &[f64]| (!v.is_empty()).then(|| median(v));
        let (o, t) = (m(ours), m(theirs));
        let fmt = |x: Option<f64>| x.map_or("   -".to_owned(), |x| format!("{x:.2}"));
        let ratio = match (o, t) {
            (Some(o), Some(t)) => format!("{:.2}x", o / t),
            _ => "  -".to_owned(),
        };
        let goal = GOALS
            .iter()
            .find(|g| g.0 == *loss)
            .map_or(String::new(), |g| format!(">= {:.1}", g.1));
        println!(
            "    {loss:>3} %  {:>8}  {:>7}  {ratio:>5}  {goal}   (all: {ours:.2?} vs {theirs:.2?})",
            fmt(o),
            fmt(t)
        );
    }
    if !setups.is_empty() {
        println!(
            "  call set-up on the 5 % link (call to Connected at the caller, bob auto-answering), median of {}: {:.0} ms with both media links up (goal <= {SETUP_GOAL_MS:.0} ms), all {warm_setups:.0?}; {:.0} ms placed right after bob's sign-in (his answer waits for his media link), all {setups:.0?}",
            setups.len(),
            median(&warm_setups),
            median(&setups)
        );
    }
}

/// 11 s of speech at 48 kHz mono, 16 bit.
fn make_speech(dir: &Path) -> PathBuf {
    let raw = dir.join("speech-raw.wav");
    let out = dir.join("speech.wav");
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(SPEECH)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sox")
            .arg(&raw)
            .args(["-r", "48000", "-c", "1", "-b", "16"])
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "espeak-ng and sox make the speech (scripts/setup.sh --test installs them)"
    );
    out
}

/// Without a scorer, at least the speech must have arrived: its recording is not silent.
fn check_heard(rec: &Path) {
    let r = read_wav(rec);
    let rms = (r.iter().map(|v| v * v).sum::<f32>() / r.len().max(1) as f32).sqrt();
    println!("    (unscored round: recording RMS {rms:.4})");
    assert!(rms > 1e-3, "bob heard nothing: {}", rec.display());
}

/// A Python with numpy, scipy, soundfile and pesq: DIALTONE_PESQ_PYTHON, or a venv made once.
fn pesq_python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("DIALTONE_PESQ_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").map_err(|_| "no HOME for the venv".to_owned())?;
    let venv = Path::new(&home).join(".cache/dialtone/pesq-venv");
    let python = venv.join("bin/python");
    let works = |py: &Path| {
        Command::new(py)
            .args(["-c", "import numpy, scipy, soundfile, pesq"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(&python) {
        return Ok(python);
    }
    println!(
        "  setting up {} for PESQ (numpy, scipy, soundfile, pesq; once, about a minute)...",
        venv.display()
    );
    let run = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
    let made = run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        && run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "-q",
            "numpy",
            "scipy",
            "soundfile",
            "pesq",
        ]));
    if made && works(&python) {
        Ok(python)
    } else {
        Err(format!(
            "could not make {} (pip install failed)",
            venv.display()
        ))
    }
}

/// A lab with `sb` and an isolated `b` joined by the impaired link.
fn lab(imp: Impairment) -> (Lab, Host, Host, ImpairedLink) {
    let mut lab = Lab::new();
    let s = lab.host("sb");
    let b = lab.isolated_host("b");
    let link = ImpairedLink::new(&lab, &s, &b, imp, true);
    (lab, s, b, link)
}

/// One dialtone call placed right after bob signs in, and a second one once his link is up:
/// bob's recording of the first, and each call's set-up time in ms.
fn dialtone_round(dir: &Path, speech: &Path, imp: Impairment, tag: &str) -> (PathBuf, f64, f64) {
    let (lab, s, b, _link) = lab(imp);
    let round = dir.join(format!("dialtone-{tag}"));
    std::fs::create_dir_all(&round).unwrap();
    let pki = Pki::new(&round, "bench", &[&s.ip.to_string()]);
    let tls = pki.serve_args();
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    let server = Server::start_with(lab.cmd(&s, BIN), &round, &format!("{}:0", s.ip), &args);
    let url = format!("wss://{}:{}", s.ip, server.addr.port());
    let ca = pki.ca.display().to_string();
    let start = |host: &Host, user: &str, mic: String, rec: &Path, extra: &[&str]| {
        let token = server.token(user);
        let speaker = format!("record:{}", rec.display());
        let mut args = vec![
            "--token",
            &token,
            "--ca",
            &ca,
            "--mic",
            &mic,
            "--speaker",
            &speaker,
        ];
        args.extend_from_slice(extra);
        let mut a = Agent::start_with(lab.cmd(host, BIN), &url, None, &args);
        a.name = user.into();
        a.connected()
    };
    let mut alice = start(
        &s,
        "alice",
        format!("file:{}", speech.display()),
        &round.join("alice.wav"),
        &[],
    );
    let bob_rec = round.join("bob.wav");
    let mut bob = start(&b, "bob", "silence".into(), &bob_rec, &["--auto-answer"]);
    // Right after bob's sign-in: his media link is still being built.
    let t0 = Instant::now();
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let setup_ms = t0.elapsed().as_secs_f64() * 1000.0;
    bob.wait_state(&id, "Connected");
    // The speech, the path's delay and the jitter buffer.
    std::thread::sleep(Duration::from_millis(11_200 + 1_500));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    alice.wait_ended(&id);
    bob.wait_ended(&id);
    // A second call with both links up: the set-up of an ordinary call on this link.
    let t0 = Instant::now();
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let warm_ms = t0.elapsed().as_secs_f64() * 1000.0;
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    alice.wait_ended(&id);
    bob.wait_ended(&id);
    bob.quit();
    alice.quit();
    (bob_rec, setup_ms, warm_ms)
}

/// Why baresip cannot run here, if it cannot.
fn baresip_missing() -> Option<String> {
    for m in ["opus", "aufile", "aubridge", "sndfile"] {
        let path = Path::new(BARESIP_MODULES).join(format!("{m}.so"));
        if !path.exists() {
            return Some(format!(
                "{} is missing (apt-get install baresip-core)",
                path.display()
            ));
        }
    }
    None
}

/// One baresip instance's home: its config and account.
fn baresip_home(dir: &Path, name: &str, ip: std::net::Ipv4Addr, audio: &str) -> PathBuf {
    let home = dir.join(format!("baresip-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t{ip}:5060\n\
         {audio}\
         audio_level\t\tno\n\
         rtp_stats\t\tno\n\
         statmode_default\toff\n\
         module_path\t\t{BARESIP_MODULES}\n\
         module\t\t\topus.so\n\
         module\t\t\taufile.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tsndfile.so\n\
         snd_path\t\t{}\n\
         module_app\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         opus_bitrate\t\t32000\n\
         opus_stereo\t\tno\n\
         opus_sprop_stereo\tno\n\
         opus_inbandfec\t\tyes\n",
        home.display()
    );
    std::fs::write(home.join("config"), config).unwrap();
    std::fs::write(
        home.join("accounts"),
        format!("<sip:{name}@{ip}:5060>;regint=0;answermode=auto;audio_codecs=opus/48000/2\n"),
    )
    .unwrap();
    std::fs::write(home.join("contacts"), "").unwrap();
    home
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One baresip call across the same link: bob's decoded audio (its `sndfile` dump).
fn baresip_round(dir: &Path, speech: &Path, imp: Impairment, tag: &str) -> Result<PathBuf, String> {
    let (lab, s, b, _link) = lab(imp);
    let round = dir.join(format!("baresip-{tag}"));
    std::fs::create_dir_all(&round).unwrap();
    let bob_home = baresip_home(
        &round,
        "bob",
        B_IP,
        "audio_player\t\taubridge,bob\naudio_source\t\taubridge,bob\naudio_alert\t\taubridge,bob\n",
    );
    let alice_home = baresip_home(
        &round,
        "alice",
        A_IP,
        &format!(
            "audio_player\t\taubridge,alice\naudio_source\t\taufile,{}\naudio_alert\t\taubridge,alice\n",
            speech.display()
        ),
    );
    let bob_log = round.join("bob.log");
    let mut bob = lab.cmd(&b, "baresip");
    bob.stdin(Stdio::null())
        .stdout(std::fs::File::create(&bob_log).map_err(|e| e.to_string())?)
        .stderr(Stdio::null());
    let _bob = Killed(
        bob.arg("-f")
            .arg(&bob_home)
            .spawn()
            .map_err(|e| format!("baresip: {e}"))?,
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut alice = lab.cmd(&s, "baresip");
    alice
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _alice = Killed(
        alice
            .arg("-f")
            .arg(&alice_home)
            .args(["-e", &format!("/dial sip:bob@{B_IP}:5060")])
            .spawn()
            .map_err(|e| format!("baresip: {e}"))?,
    );
    // alice's baresip hangs up when its file ends; bob's closes the recording then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&bob_log).is_ok_and(|l| l.contains("terminated")) {
        if Instant::now() > deadline {
            return Err(format!(
                "the baresip call did not end within 30 s; bob said:\n{}",
                std::fs::read_to_string(&bob_log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let dump = std::fs::read_dir(&bob_home)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .ok_or("baresip wrote no recording")?;
    Ok(dump)
}
