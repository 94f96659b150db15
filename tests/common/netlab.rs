//! A network lab for tests: "hosts" made of Linux network namespaces, joined by a backbone router,
//! some of them behind NAT or a UDP-blocking firewall, plus a real TURN server (coturn).
//!
//! Needs root and the tools `scripts/setup.sh --test` installs (iproute2, nftables, coturn,
//! openssl).
//!
//! # Topology
//!
//! ```text
//!                 ┌────────────── backbone router ("the internet", namespace <lab>-net) ──────────────┐
//!                 │ l1 198.18.1.1/24        l2 198.18.2.1/24                 l3 198.18.3.1/24          │
//!                 └──────┬───────────────────────┬──────────────────────────────┬────────────────────┘
//!          eth0 198.18.1.2            wan 198.18.2.2 (public_ip)      wan 198.18.3.2 (public_ip)
//!        host "a" (<lab>-h-a)      NAT router (<lab>-gw-b)            1:1 NAT router (<lab>-gw-c)
//!                                  masquerade, drops unsolicited     DNAT 198.18.3.2 -> 10.3.0.2
//!                                    lan 10.2.0.1/24                   lan 10.3.0.1/24, SNAT back
//!                                          │                                    │
//!                                eth0 10.2.0.2 (ip)                   eth0 10.3.0.2 (ip)
//!                                host "b" (<lab>-h-b)                 host "c" (<lab>-h-c)
//! ```
//!
//! Every host gets its own link `k` (1, 2, 3, ... in creation order) to the backbone router:
//! `198.18.k.0/24`, router `.1`, the host (or its NAT router) `.2`. A host behind a NAT router
//! sits on `10.k.0.0/24` (router `.1`, host `.2`). 198.18.0.0/15 is the range RFC 2544 reserves
//! for benchmarking network devices, so it is never routed anywhere real, and 10/8 is private.
//! The backbone knows no route to any `10.k` network: a NATed host can only be reached through
//! its router.
//!
//! A lab is a closed world: none of its namespaces has a link to the root namespace, to the
//! machine's real interfaces or to another lab. Its packets cannot leave it, so two labs (in one
//! test process or in two concurrent ones) use the same address plan without ever colliding, and
//! nothing a test does can send traffic off the machine. Namespace names are unique per lab:
//! `dtl-<pid>-<n>-...` (pid of the test process, counter within it). Interfaces are created
//! directly inside their namespaces (`ip link add ... netns ...`), so their short names (`eth0`,
//! `wan`, `lan`, `l<k>`, all within the 15-character limit) never meet the root namespace's.
//! IPv6 is off in every lab namespace: an IPv4-only world with one address per host keeps ICE
//! candidates predictable.
//!
//! Routers forward (`ip_forward=1`); the backbone forwards everything between its links. The
//! NAT kinds are in [`Attachment`]; [`Lab::block_udp`] turns a host's first-hop router into a
//! TCP-only firewall.
//!
//! # Running things on a host
//!
//! - A process: [`Lab::cmd`] gives a [`Command`] that runs the program inside the host's
//!   namespace (`ip netns exec NS PROGRAM`, which execs, so the child's pid is the program's and
//!   killing the child kills the program). `Server::start_with` and `Agent::start_with` in
//!   `tests/common/mod.rs` take such a command:
//!
//!   ```ignore
//!   let mut lab = Lab::new();
//!   let (sb, home) = (lab.host("sb"), lab.natted_host("home"));
//!   // Off loopback: TLS (see tests/between_machines.rs) or the insecure flag.
//!   let server = Server::start_with(lab.cmd(&sb, BIN), dir, &format!("{}:0", sb.ip),
//!       &["--insecure-plain-ws"]);
//!   // `--dev` admits loopback clients only: agents on lab hosts sign in with a token.
//!   let token = server.token("alice");
//!   let alice = Agent::start_with(lab.cmd(&home, BIN), &server.url, None,
//!       &["--token", &token, "--mic", "silence", "--speaker", "silence"]).connected();
//!   ```
//!
//!   A switchboard on a [`Lab::one_to_one_nat_host`] listens on its private `ip` and is reached
//!   at `server.url_at(host.public_ip)`. Helpers other than dialtone: [`Background`] kills them
//!   on drop.
//! - A socket in the test itself: [`Lab::run_in`] runs a closure on a thread that has entered the
//!   host's namespace. Sockets stay in the namespace they were made in, so a socket made there
//!   can be returned and used from any thread:
//!   `let l = lab.run_in(&b, move || TcpListener::bind((b_ip, 0))).unwrap();`.
//!   Mind that a blocking receive on a socket with a read timeout can fail with
//!   `ErrorKind::Interrupted` (EINTR) now and then on this machine: retry on it.
//! - A TURN server: [`Coturn::start`], credentials from [`Coturn::credentials`] or
//!   [`TurnCredentials`].
//!
//! When something does not get through, [`Lab::dump`] shows every namespace's addresses, routes,
//! interface counters, sockets and nftables rules (with the NAT's and the block's drops).
//!
//! # Teardown
//!
//! Dropping the [`Lab`] (also while a test panics) kills every process still inside its
//! namespaces and deletes them. [`Lab::new`] also removes namespaces of earlier test processes
//! that no longer exist (for runs that were killed before their `Drop` ran).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every lab namespace name starts with this, then `-<pid>-<n>-`.
const PREFIX: &str = "dtl";
const NETNS_DIR: &str = "/run/netns";
/// Links per lab: `198.18.k.0/24` and `10.k.0.0/24` for k in 1..=MAX_LINKS.
const MAX_LINKS: u8 = 250;

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
/// `ip netns add` sets up /run/netns as a shared mount the first time it runs; two doing that at
/// once can stack two mounts and hide each other's namespaces. Serialise it within the process.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// What sits between a host and the backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Directly on the backbone: everyone reaches it at `ip`.
    Public,
    /// Behind its own NAT router (nftables masquerade, port-preserving when it can, filtering
    /// replies by conntrack: a "port-restricted cone" NAT). It can reach backbone hosts; nobody
    /// can reach it first.
    Nat,
    /// Like `Nat`, but every new flow gets a random public port (`masquerade random`), so the
    /// mapping depends on the destination: a "symmetric" NAT, where hole punching fails and only
    /// TURN gets through.
    SymmetricNat,
    /// Behind a router doing 1:1 NAT for one public address, like a cloud VM: others reach it at
    /// `public_ip` (all ports), its traffic leaves from `public_ip`, and it only knows `ip`.
    OneToOneNat,
}

/// One machine of the lab: a network namespace with `lo` and one `eth0`.
#[derive(Clone, Debug)]
pub struct Host {
    /// The name the test gave it.
    pub name: String,
    /// Its network namespace (`ip netns exec <ns> ...`).
    pub ns: String,
    /// Its own address, the one on its `eth0` (private when behind a NAT router).
    pub ip: Ipv4Addr,
    /// Where the rest of the lab sees it: its NAT router's backbone address, or `ip` when it is
    /// on the backbone itself.
    pub public_ip: Ipv4Addr,
    pub attachment: Attachment,
    /// The router in front of it (the backbone router, or its NAT router) and that router's
    /// interface facing it: where `block_udp` filters.
    gateway_ns: String,
    gateway_if: String,
    link: u8,
}

/// A set of hosts around one backbone router. See the module docs for the topology.
pub struct Lab {
    /// `dtl-<pid>-<n>`: the prefix of all its namespace names.
    id: String,
    backbone: String,
    /// Every namespace made, in creation order.
    namespaces: Vec<String>,
    hosts: Vec<Host>,
    next_link: u8,
}

impl Lab {
    /// Makes the backbone router. Panics (with the command and its stderr) when something cannot
    /// be set up, e.g. when not run as root.
    pub fn new() -> Lab {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "netlab needs root (network namespaces, nftables); run the tests as root"
        );
        cleanup_stale();
        let id = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            backbone: format!("{id}-net"),
            id,
            namespaces: Vec::new(),
            hosts: Vec::new(),
            next_link: 1,
        };
        let backbone = lab.backbone.clone();
        lab.add_namespace(&backbone, true);
        lab
    }

    /// A host with its own link to the backbone router, reachable by everyone at `ip`.
    pub fn host(&mut self, name: &str) -> Host {
        self.add_host(name, Attachment::Public)
    }

    /// A host behind its own NAT router (see [`Attachment::Nat`]). `ip` is its private address,
    /// `public_ip` the router's backbone address its traffic appears from.
    pub fn natted_host(&mut self, name: &str) -> Host {
        self.add_host(name, Attachment::Nat)
    }

    /// A host behind its own symmetric NAT (see [`Attachment::SymmetricNat`]).
    pub fn symmetric_natted_host(&mut self, name: &str) -> Host {
        self.add_host(name, Attachment::SymmetricNat)
    }

    /// A host with a private `ip` behind a router doing 1:1 NAT for `public_ip`, like a cloud VM
    /// (see [`Attachment::OneToOneNat`]).
    pub fn one_to_one_nat_host(&mut self, name: &str) -> Host {
        self.add_host(name, Attachment::OneToOneNat)
    }

    /// A host with no link at all (only `lo`): [`super::impair::ImpairedLink`] gives it one.
    /// Its `ip` is unspecified until then.
    pub fn isolated_host(&mut self, name: &str) -> Host {
        let ns = format!("{}-h-{name}", self.id);
        assert!(
            !self.hosts.iter().any(|h| h.name == name),
            "host name {name:?} is already taken in this lab"
        );
        self.add_namespace(&ns, false);
        let host = Host {
            name: name.into(),
            ns: ns.clone(),
            ip: Ipv4Addr::UNSPECIFIED,
            public_ip: Ipv4Addr::UNSPECIFIED,
            attachment: Attachment::Public,
            gateway_ns: ns,
            gateway_if: "lo".into(),
            link: 0,
        };
        self.hosts.push(host.clone());
        host
    }

    /// Makes a host attached as `attachment`. Names: 1-24 characters of `a-z`, `0-9`, `-`, unique
    /// within the lab.
    pub fn add_host(&mut self, name: &str, attachment: Attachment) -> Host {
        assert!(
            !name.is_empty()
                && name.len() <= 24
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "host name {name:?}: use 1-24 characters of a-z, 0-9 and -"
        );
        assert!(
            !self.hosts.iter().any(|h| h.name == name),
            "host name {name:?} is already taken in this lab"
        );
        assert!(
            self.next_link <= MAX_LINKS,
            "a lab holds at most {MAX_LINKS} hosts"
        );
        let k = self.next_link;
        self.next_link += 1;
        let bb_if = format!("l{k}");
        let bb_ip = Ipv4Addr::new(198, 18, k, 1);
        let edge_ip = Ipv4Addr::new(198, 18, k, 2);
        let ns = format!("{}-h-{name}", self.id);
        self.add_namespace(&ns, false);

        let host = if attachment == Attachment::Public {
            self.link((&self.backbone, &bb_if, bb_ip), (&ns, "eth0", edge_ip));
            Host {
                name: name.into(),
                ns,
                ip: edge_ip,
                public_ip: edge_ip,
                attachment,
                gateway_ns: self.backbone.clone(),
                gateway_if: bb_if,
                link: k,
            }
        } else {
            let gw = format!("{}-gw-{name}", self.id);
            self.add_namespace(&gw, true);
            self.link((&self.backbone, &bb_if, bb_ip), (&gw, "wan", edge_ip));
            let lan_ip = Ipv4Addr::new(10, k, 0, 1);
            let host_ip = Ipv4Addr::new(10, k, 0, 2);
            self.link((&gw, "lan", lan_ip), (&ns, "eth0", host_ip));
            let rules = match attachment {
                Attachment::Nat | Attachment::SymmetricNat => {
                    let random = if attachment == Attachment::SymmetricNat {
                        " random"
                    } else {
                        ""
                    };
                    format!(
                        "table ip lab_nat {{
                           chain postrouting {{
                             type nat hook postrouting priority srcnat; policy accept;
                             oifname \"wan\" masquerade{random}
                           }}
                         }}
                         table inet lab_filter {{
                           chain forward {{
                             type filter hook forward priority filter; policy drop;
                             ct state established,related accept
                             iifname \"lan\" oifname \"wan\" accept
                             counter drop
                           }}
                           chain input {{
                             type filter hook input priority filter; policy accept;
                             iifname \"wan\" ct state != {{ established, related }} counter drop
                           }}
                         }}"
                    )
                }
                Attachment::OneToOneNat => format!(
                    "table ip lab_nat {{
                       chain prerouting {{
                         type nat hook prerouting priority dstnat; policy accept;
                         iifname \"wan\" ip daddr {edge_ip} dnat to {host_ip}
                       }}
                       chain postrouting {{
                         type nat hook postrouting priority srcnat; policy accept;
                         oifname \"wan\" ip saddr {host_ip} snat to {edge_ip}
                       }}
                     }}"
                ),
                Attachment::Public => unreachable!(),
            };
            nft(&gw, &rules);
            Host {
                name: name.into(),
                ns,
                ip: host_ip,
                public_ip: edge_ip,
                attachment,
                gateway_ns: gw,
                gateway_if: "lan".into(),
                link: k,
            }
        };
        self.hosts.push(host.clone());
        host
    }

    /// Drops everything but TCP and ICMP to and from `host`, like a corporate network that only
    /// lets TCP out: UDP (STUN, TURN over UDP, media) vanishes silently. The filter sits on the
    /// router in front of the host, so the host's own sockets see no errors, only silence, and
    /// UDP on the host's `lo` still works.
    pub fn block_udp(&self, host: &Host) {
        let (table, i) = (format!("block_l{}", host.link), &host.gateway_if);
        nft(
            &host.gateway_ns,
            &format!(
                "table inet {table} {{
                   chain forward {{
                     type filter hook forward priority filter - 10; policy accept;
                     iifname \"{i}\" meta l4proto != {{ tcp, icmp }} counter drop
                     oifname \"{i}\" meta l4proto != {{ tcp, icmp }} counter drop
                   }}
                   chain input {{
                     type filter hook input priority filter - 10; policy accept;
                     iifname \"{i}\" meta l4proto != {{ tcp, icmp }} counter drop
                   }}
                   chain output {{
                     type filter hook output priority filter - 10; policy accept;
                     oifname \"{i}\" meta l4proto != {{ tcp, icmp }} counter drop
                   }}
                 }}"
            ),
        );
    }

    /// Cuts `host` off: everything to and from it is dropped at the router in front of it, as
    /// when a cable is pulled or Wi-Fi drops. Its own sockets see no error, only silence.
    pub fn cut(&self, host: &Host) {
        let (table, i) = (format!("cut_l{}", host.link), &host.gateway_if);
        nft(
            &host.gateway_ns,
            &format!(
                "table inet {table} {{
                   chain forward {{
                     type filter hook forward priority filter - 20; policy accept;
                     iifname \"{i}\" counter drop
                     oifname \"{i}\" counter drop
                   }}
                   chain input {{
                     type filter hook input priority filter - 20; policy accept;
                     iifname \"{i}\" counter drop
                   }}
                   chain output {{
                     type filter hook output priority filter - 20; policy accept;
                     oifname \"{i}\" counter drop
                   }}
                 }}"
            ),
        );
    }

    /// Drops `percent` % of every packet to and from `host`, at random, at the router in front
    /// of it: a bad Wi-Fi link for everything (UDP media and the TCP of signaling alike). The
    /// kernel has no netem; nftables' random numbers do loss alone.
    pub fn lossy(&self, host: &Host, percent: u32) {
        let (table, i) = (format!("loss_l{}", host.link), &host.gateway_if);
        nft(
            &host.gateway_ns,
            &format!(
                "table inet {table} {{
                   chain forward {{
                     type filter hook forward priority filter - 15; policy accept;
                     iifname \"{i}\" numgen random mod 100 < {percent} counter drop
                     oifname \"{i}\" numgen random mod 100 < {percent} counter drop
                   }}
                 }}"
            ),
        );
    }

    /// Gives `host` a new address on its network, as when a laptop moves from Wi-Fi to cable:
    /// the old address goes (sockets bound to it are stranded, its TCP connections hear nothing
    /// more), the next one in the subnet comes, with the default route. Returns the host as it
    /// is now.
    pub fn readdress(&mut self, host: &Host) -> Host {
        let [a, b, c, d] = host.ip.octets();
        let new_ip = Ipv4Addr::new(a, b, c, d + 1);
        let gateway = Ipv4Addr::new(a, b, c, 1);
        let ns = &host.ns;
        run(&format!("ip -n {ns} addr del {}/24 dev eth0", host.ip));
        run(&format!("ip -n {ns} addr add {new_ip}/24 dev eth0"));
        run(&format!("ip -n {ns} route replace default via {gateway}"));
        let moved = self
            .hosts
            .iter_mut()
            .find(|h| h.ns == host.ns)
            .expect("a host of this lab");
        if moved.public_ip == moved.ip {
            moved.public_ip = new_ip;
        }
        moved.ip = new_ip;
        moved.clone()
    }

    /// Undoes [`Lab::cut`].
    pub fn reconnect(&self, host: &Host) {
        let table = format!("cut_l{}", host.link);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.gateway_ns,
                "nft",
                "delete",
                "table",
                "inet",
                &table,
            ])
            .output()
            .expect("nft runs");
        assert!(
            out.status.success(),
            "netlab: cannot remove {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// A command that runs `program` inside `host`'s namespace (`ip netns exec`). `ip` execs the
    /// program, so the child's pid is the program's own and `Child::kill` stops it. Environment,
    /// working directory and stdio set on the command apply to the program as usual.
    pub fn cmd(&self, host: &Host, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered `host`'s network namespace, and returns what it
    /// returns (a panic in `f` is re-raised here). Sockets made in `f` belong to the host and
    /// keep working when moved to other threads.
    pub fn run_in<T: Send>(&self, host: &Host, f: impl FnOnce() -> T + Send) -> T {
        run_in_ns(&host.ns, f)
    }

    /// A snapshot of the lab's state for failure messages: per namespace, its addresses, routes,
    /// interface counters, sockets, nftables ruleset (the drop rules count what they dropped) and
    /// the processes in it.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for ns in &self.namespaces {
            let _ = writeln!(out, "=== {ns}");
            for args in [
                &["ip", "-br", "addr"][..],
                &["ip", "route"],
                &["ip", "-s", "link"],
                &["ss", "-uatnp"],
                &["nft", "list", "ruleset"],
            ] {
                match Command::new("ip")
                    .args(["netns", "exec", ns])
                    .args(args)
                    .output()
                {
                    Ok(o) => {
                        out.push_str(&String::from_utf8_lossy(&o.stdout));
                        out.push_str(&String::from_utf8_lossy(&o.stderr));
                    }
                    Err(e) => {
                        let _ = writeln!(out, "{}: {e}", args.join(" "));
                    }
                }
            }
            let _ = writeln!(out, "pids: {:?}", namespace_pids(ns));
        }
        out
    }

    /// The hosts made so far.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The names of all namespaces this lab made (hosts, NAT routers, the backbone router).
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    fn add_namespace(&mut self, ns: &str, router: bool) {
        {
            let _guard = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
            run(&format!("ip netns add {ns}"));
        }
        // Recorded at once, so that Drop removes it even if the rest of the setup panics.
        self.namespaces.push(ns.to_string());
        run(&format!("ip -n {ns} link set lo up"));
        let mut settings = vec![
            ("net/ipv6/conf/all/disable_ipv6", "1"),
            ("net/ipv6/conf/default/disable_ipv6", "1"),
        ];
        if router {
            settings.push(("net/ipv4/ip_forward", "1"));
        }
        let ns_owned = ns.to_string();
        run_in_ns(ns, move || {
            for (key, value) in settings {
                let path = Path::new("/proc/sys").join(key);
                fs::write(&path, value).unwrap_or_else(|e| {
                    panic!(
                        "netlab: writing {value} to {} in {ns_owned}: {e}",
                        path.display()
                    )
                });
            }
        });
    }

    /// A veth pair between two namespaces, addressed `/24`, up; the `b` side routes everything
    /// through `a`.
    fn link(&self, a: (&str, &str, Ipv4Addr), b: (&str, &str, Ipv4Addr)) {
        let ((a_ns, a_if, a_ip), (b_ns, b_if, b_ip)) = (a, b);
        run(&format!(
            "ip link add {a_if} netns {a_ns} type veth peer name {b_if} netns {b_ns}"
        ));
        run(&format!("ip -n {a_ns} addr add {a_ip}/24 dev {a_if}"));
        run(&format!("ip -n {b_ns} addr add {b_ip}/24 dev {b_if}"));
        run(&format!("ip -n {a_ns} link set {a_if} up"));
        run(&format!("ip -n {b_ns} link set {b_if} up"));
        wait_until_up(a_ns, a_if);
        wait_until_up(b_ns, b_if);
        run(&format!("ip -n {b_ns} route add default via {a_ip}"));
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut errors = Vec::new();
        // Hosts first (their processes are the tests' servers and agents), routers last.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = delete_namespace(ns) {
                errors.push(e);
            }
        }
        // A panic here while the test is already unwinding would abort the whole test binary.
        if !errors.is_empty() {
            eprintln!("netlab: teardown of {}: {}", self.id, errors.join("; "));
        }
    }
}

/// Whether a namespace of this name exists (`/run/netns/<name>`).
pub fn namespace_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Kills whatever runs inside `ns`, then deletes it.
fn delete_namespace(ns: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = namespace_pids(ns);
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("processes {pids:?} in {ns} survive SIGKILL"));
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new("ip")
        .args(["netns", "del", ns])
        .output()
        .map_err(|e| format!("ip netns del {ns}: {e}"))?;
    if out.status.success() || !namespace_exists(ns) {
        Ok(())
    } else {
        Err(format!(
            "ip netns del {ns}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Pids of the processes inside `ns` (`ip netns pids`); exited ones (zombies) are not listed.
fn namespace_pids(ns: &str) -> Vec<i32> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Deletes lab namespaces whose test process is gone (a run killed before its `Drop`).
fn cleanup_stale() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another test process may be cleaning up the same leftovers: errors do not matter.
        let _ = delete_namespace(&name);
    }
}

fn run_in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            let file = fs::File::open(&path)
                .unwrap_or_else(|e| panic!("netlab: opening {}: {e}", path.display()));
            // SAFETY: the fd is valid for the call; entering a network namespace only affects
            // this thread, which ends when `f` returns.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "netlab: setns({}): {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        });
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs a command line (words separated by spaces, no quoting), panicking with it and its
/// stderr when it fails.
fn run(line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("netlab: cannot run `{line}`: {e}"));
    assert!(
        out.status.success(),
        "netlab: `{line}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Waits until the kernel has really brought an interface up. A veth end brought up while its
/// peer is still down has no carrier, so the kernel leaves it on the `noop` queueing discipline,
/// which drops every packet, and switches it later from the link watcher, a work item that needs
/// the RTNL lock. With many namespaces coming and going (parallel tests) that can lag, and
/// packets sent meanwhile would vanish.
fn wait_until_up(ns: &str, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", "dev", dev])
            .output()
            .unwrap_or_else(|e| panic!("netlab: cannot run ip link show: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains(" state UP ") && !text.contains(" qdisc noop ") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "netlab: {dev} in {ns} not up after 30 s: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Loads an nftables ruleset into a namespace (`nft -f -`), panicking with the ruleset and nft's
/// complaint when it is refused.
fn nft(ns: &str, ruleset: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("netlab: cannot run nft in {ns}: {e} (is nftables installed?)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .expect("nft reads its ruleset");
    let out = child.wait_with_output().expect("nft runs");
    assert!(
        out.status.success(),
        "netlab: `ip netns exec {ns} nft -f -` failed ({}): {}\nruleset:\n{ruleset}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A child process that is killed (and reaped) when dropped, e.g. a helper a test starts on a
/// host: `Background(lab.cmd(&host, "turnutils_peer").spawn().unwrap())`.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- TURN ------------------------------------------------------------------------------------

/// Time-limited TURN credentials (the "TURN REST API" scheme coturn's `use-auth-secret` checks):
/// `username = "<unix expiry>:<name>"`, `password = base64(HMAC-SHA1(secret, username))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
}

impl TurnCredentials {
    /// Credentials for `name`, valid for `ttl` from now.
    pub fn new(secret: &str, ttl: Duration, name: &str) -> TurnCredentials {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        TurnCredentials::expiring_at(secret, (now + ttl).as_secs(), name)
    }

    /// Credentials for `name` that expire at `unix_secs` (in the past for expired ones).
    pub fn expiring_at(secret: &str, unix_secs: u64, name: &str) -> TurnCredentials {
        use base64::Engine as _;
        use hmac::Mac as _;
        let username = format!("{unix_secs}:{name}");
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(username.as_bytes());
        let password =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        TurnCredentials { username, password }
    }
}

/// A coturn `turnserver` running inside a lab host, with time-limited credentials
/// (`use-auth-secret`), listening on the host's `ip`:
/// - 3478 UDP and TCP (`turn:`), 5349 TLS (`turns:`, self-signed certificate, [`Coturn::cert`]);
/// - relaying from the host's `ip`; on a 1:1 NAT host it announces `public_ip` as the relay
///   address (`external-ip`), like a TURN server on a cloud VM;
/// - peers anywhere in the lab (198.18.0.0/15, 10/8); loopback peers stay denied (coturn 4.6's
///   default) and so do multicast ones.
///
/// Dropping it kills the server. Its log is [`Coturn::log`].
pub struct Coturn {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens (the host's own address).
    pub ip: Ipv4Addr,
    /// Where the rest of the lab reaches it (the host's `public_ip`).
    pub public_ip: Ipv4Addr,
    pub secret: String,
    pub realm: String,
}

impl Coturn {
    pub const PORT: u16 = 3478;
    pub const TLS_PORT: u16 = 5349;
    pub const REALM: &'static str = "dialtone.test";

    /// Starts coturn in `host` and waits (up to 10 s) until its TCP, TLS and UDP listeners
    /// answer; panics with its log if it does not come up.
    pub fn start(lab: &Lab, host: &Host, secret: &str) -> Coturn {
        let dir = tempfile::Builder::new()
            .prefix("dialtone-coturn-")
            .tempdir()
            .expect("temp dir for coturn");
        let d = dir.path();
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=turn.dialtone.test", "-addext"])
            .arg(format!(
                "subjectAltName=DNS:turn.dialtone.test,IP:{},IP:{}",
                host.ip, host.public_ip
            ))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs (scripts/setup.sh --test installs it)");
        assert!(
            out.status.success(),
            "netlab: openssl req failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );

        let mut conf = String::new();
        let mut line = |l: String| {
            conf.push_str(&l);
            conf.push('\n');
        };
        line(format!("listening-ip={}", host.ip));
        line(format!("relay-ip={}", host.ip));
        if host.public_ip != host.ip {
            line(format!("external-ip={}/{}", host.public_ip, host.ip));
        }
        line(format!("listening-port={}", Coturn::PORT));
        line(format!("tls-listening-port={}", Coturn::TLS_PORT));
        line("no-dtls".into());
        line(format!("cert={}", cert.display()));
        line(format!("pkey={}", key.display()));
        line("use-auth-secret".into());
        line(format!("static-auth-secret={secret}"));
        line(format!("realm={}", Coturn::REALM));
        line("fingerprint".into());
        // Logs each session and its requests (allocations, permissions, refreshes), so that a
        // test can see in `log()` whether and how a client used the relay.
        line("verbose".into());
        line("no-cli".into());
        line("no-multicast-peers".into());
        // coturn 4.6 allows these by default (it denies loopback); saying so guards the tests
        // against a packaged default that denies private ranges.
        line("allowed-peer-ip=198.18.0.0-198.19.255.255".into());
        line("allowed-peer-ip=10.0.0.0-10.255.255.255".into());
        // Everything it writes stays in the temp dir (the defaults are /var/...).
        line(format!("log-file={}", d.join("turnserver.log").display()));
        line("simple-log".into());
        line("no-stdout-log".into());
        line(format!("pidfile={}", d.join("turnserver.pid").display()));
        line(format!("userdb={}", d.join("turndb").display()));
        let conf_path = d.join("turnserver.conf");
        fs::write(&conf_path, &conf).expect("write turnserver.conf");

        let child = lab
            .cmd(host, "turnserver")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("stderr.txt")).expect("coturn stderr file"))
            .spawn()
            .expect("turnserver runs (scripts/setup.sh --test installs coturn)");
        let mut turn = Coturn {
            child,
            dir,
            ip: host.ip,
            public_ip: host.public_ip,
            secret: secret.into(),
            realm: Coturn::REALM.into(),
        };
        turn.wait_ready(lab, host);
        turn
    }

    fn wait_ready(&mut self, lab: &Lab, host: &Host) {
        let ip = self.ip;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on turnserver") {
                panic!(
                    "netlab: turnserver exited ({status}) before it was ready\n{}",
                    self.diagnostics()
                );
            }
            let ready = lab.run_in(host, move || {
                let t = Duration::from_millis(200);
                let tcp = |port| TcpStream::connect_timeout(&SocketAddr::from((ip, port)), t);
                tcp(Coturn::PORT).is_ok()
                    && tcp(Coturn::TLS_PORT).is_ok()
                    && stun_binding(SocketAddrV4::new(ip, Coturn::PORT), t).is_some()
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "netlab: turnserver not answering on {ip}:{} (TCP, UDP) and :{} (TLS) within 10 s\n{}",
                Coturn::PORT,
                Coturn::TLS_PORT,
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Credentials for `name`, valid for `ttl`, under this server's secret.
    pub fn credentials(&self, name: &str, ttl: Duration) -> TurnCredentials {
        TurnCredentials::new(&self.secret, ttl, name)
    }

    /// The ICE server URLs where the lab reaches it: UDP, TCP, TLS.
    pub fn urls(&self) -> [String; 3] {
        let ip = self.public_ip;
        [
            format!("turn:{ip}:{}?transport=udp", Coturn::PORT),
            format!("turn:{ip}:{}?transport=tcp", Coturn::PORT),
            format!("turns:{ip}:{}?transport=tcp", Coturn::TLS_PORT),
        ]
    }

    /// `dialtone serve` flags that hand devices this relay over TCP: `--turn-url` and
    /// `--turn-secret-file` (the secret written to a file in `dir`).
    pub fn serve_args(&self, dir: &Path) -> [String; 4] {
        let file = dir.join("turn-secret");
        fs::write(&file, format!("{}\n", self.secret)).expect("TURN secret file");
        [
            "--turn-url".into(),
            self.urls()[1].clone(),
            "--turn-secret-file".into(),
            file.display().to_string(),
        ]
    }

    /// Its self-signed certificate (PEM), for clients that verify the server.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("turnserver.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn diagnostics(&self) -> String {
        let stderr = fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default();
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let mut s = String::new();
        let _ = write!(s, "stderr:\n{stderr}\nlog (last lines):\n");
        for l in tail.iter().rev() {
            let _ = writeln!(s, "{l}");
        }
        s
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a STUN Binding request to `to` (again every 200 ms) and returns the address the response
/// says we came from (XOR-MAPPED-ADDRESS), or None if nothing valid came back within `timeout`.
/// Call it inside a host (`lab.run_in`).
pub fn stun_binding(to: SocketAddrV4, timeout: Duration) -> Option<SocketAddrV4> {
    const MAGIC: u32 = 0x2112_A442;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // Unique enough: the socket is ours alone, this only guards against stray datagrams.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ u128::from(std::process::id());
    let txid: [u8; 12] = std::array::from_fn(|i| (seed >> (8 * i)) as u8);
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&0x0001u16.to_be_bytes()); // Binding request
    req.extend_from_slice(&0u16.to_be_bytes()); // no attributes
    req.extend_from_slice(&MAGIC.to_be_bytes());
    req.extend_from_slice(&txid);
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + timeout;
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        if now >= next_send {
            let _ = sock.send_to(&req, to);
            next_send = now + Duration::from_millis(200);
        }
        let wait = next_send.min(deadline) - now;
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .ok()?;
        // Errors are timeouts (send again) or EINTR: a blocking receive with a timeout is not
        // restarted after the process was interrupted, even by a signal it ignores.
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = &buf[..n];
        if n < 20 || msg[0..2] != [0x01, 0x01] || msg[8..20] != txid {
            continue;
        }
        let mut at = 20;
        while at + 4 <= n {
            let ty = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
            let v = msg.get(at + 4..at + 4 + len)?;
            if ty == 0x0020 && len == 8 && v[1] == 0x01 {
                let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
                let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
                return Some(SocketAddrV4::new(Ipv4Addr::from(ip), port));
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        return None;
    }
}
