//! An impaired link between two lab hosts, in user space: the kernel here has no netem, so a TUN
//! device in each namespace (`ta` in one, `tb` in the other, point to point 10.98.0.1 <->
//! 10.98.0.2) and a thread that carries each packet across after a delay with uniform jitter,
//! or drops it. Packets keep their order, as on one real path (a late one holds back those
//! behind it). Loss is independent per packet, from a seeded generator, so runs are repeatable.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netlab::{Host, Lab};

/// The addresses of the two ends.
pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);

/// What the link does to every packet, the same both ways.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    pub delay: Duration,
    /// Each packet's delay is `delay` ± up to this, uniformly.
    pub jitter: Duration,
    /// Percent of packets dropped.
    pub loss_pct: f64,
    pub seed: u64,
}

/// The running link; stops (and the TUN devices go) when dropped.
pub struct ImpairedLink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub forwarded: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Opens a TUN device named `name` in the calling thread's network namespace.
fn open_tun(name: &str) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("impair: /dev/net/tun opens (root, tun module)");
    // struct ifreq: the name, then the flags.
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    req[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: the fd is open and `req` is an ifreq-sized buffer that outlives the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
    assert_eq!(
        r,
        0,
        "impair: TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: F_SETFL on an open fd.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    file
}

fn ip(args: &str) {
    let out = Command::new("sh")
        .args(["-c", &format!("ip {args}")])
        .output()
        .expect("ip runs");
    assert!(
        out.status.success(),
        "impair: ip {args}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A small, fast, seeded generator (xorshift64*), so the loss pattern repeats run to run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl ImpairedLink {
    /// Links `a` (10.98.0.1) and `b` (10.98.0.2). When `b_default` is set, `b` sends everything
    /// through the link (a host made with [`Lab::isolated_host`] has no other way out), so `a`'s
    /// other addresses are reachable from `b` across it too.
    pub fn new(lab: &Lab, a: &Host, b: &Host, imp: Impairment, b_default: bool) -> ImpairedLink {
        let ta = lab.run_in(a, || open_tun("ta"));
        let tb = lab.run_in(b, || open_tun("tb"));
        for (ns, dev, me, peer) in [(&a.ns, "ta", A_IP, B_IP), (&b.ns, "tb", B_IP, A_IP)] {
            ip(&format!("-n {ns} addr add {me} peer {peer} dev {dev}"));
            ip(&format!("-n {ns} link set {dev} up"));
        }
        if b_default {
            ip(&format!("-n {} route replace default dev tb", b.ns));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, forwarded, dropped) = (stop.clone(), forwarded.clone(), dropped.clone());
            std::thread::spawn(move || carry([ta, tb], imp, &stop, &forwarded, &dropped))
        };
        ImpairedLink {
            stop,
            thread: Some(thread),
            forwarded,
            dropped,
        }
    }
}

/// Moves packets between the two devices until stopped: `queues[i]` holds what is due out of
/// device `i`, in order.
fn carry(
    mut devs: [File; 2],
    imp: Impairment,
    stop: &AtomicBool,
    forwarded: &AtomicU64,
    dropped: &AtomicU64,
) {
    let mut rng = Rng(imp.seed.max(1));
    let mut queues: [VecDeque<(Instant, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut buf = vec![0u8; 65_536];
    let jitter = imp.jitter.as_secs_f64();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let next_due = queues.iter().filter_map(|q| q.front().map(|p| p.0)).min();
        let wait_ms = next_due.map_or(5, |d| {
            d.saturating_duration_since(now).as_millis().clamp(0, 5) as i32
        });
        let mut fds = [
            libc::pollfd {
                fd: devs[0].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: devs[1].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
        for (from, dev) in devs.iter_mut().enumerate() {
            let to = 1 - from;
            // Non-blocking: an error is "nothing more now".
            while let Ok(n) = dev.read(&mut buf) {
                if rng.next_f64() * 100.0 < imp.loss_pct {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let offset = (rng.next_f64() * 2.0 - 1.0) * jitter;
                let delay = (imp.delay.as_secs_f64() + offset).max(0.0);
                let mut due = Instant::now() + Duration::from_secs_f64(delay);
                // In order: never before the packet ahead of it.
                if let Some(last) = queues[to].back() {
                    due = due.max(last.0);
                }
                queues[to].push_back((due, buf[..n].to_vec()));
            }
        }
        let now = Instant::now();
        for (i, q) in queues.iter_mut().enumerate() {
            while q.front().is_some_and(|p| p.0 <= now) {
                let (_, pkt) = q.pop_front().expect("front checked");
                let _ = devs[i].write(&pkt);
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for ImpairedLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
