//! The switchboard's media port: one UDP port for every device's link, bound on the listen
//! address (or on every interface for a wildcard listen), and the addresses it announces.

use std::io;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;

use crate::media::net::ifaces::usable_ips;

/// One socket of the media port. It is bound with `SO_REUSEPORT` so that each media thread can
/// read the same address through a sibling socket of its own ([`MediaSocket::sibling`]): the
/// kernel then hands a given device address's datagrams always to the same thread.
#[derive(Debug)]
pub struct MediaSocket {
    /// Non-blocking; any thread may send on it.
    pub socket: std::net::UdpSocket,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// The addresses devices may send to that arrive here: the bound one, and first (the one
    /// the links' ICE agents see as local) a 1:1 NAT's public address when there is one.
    pub announce: Vec<SocketAddr>,
}

impl MediaSocket {
    /// The address a link's ICE agent sees as the local end of a datagram on this socket.
    #[must_use]
    pub fn ice_local(&self) -> SocketAddr {
        self.announce[0]
    }

    #[must_use]
    pub fn is_loopback(&self) -> bool {
        self.bound.ip().is_loopback()
    }

    /// Another socket on the same address, in the same `SO_REUSEPORT` group (non-blocking).
    ///
    /// # Errors
    ///
    /// If the kernel refuses the bind.
    pub fn sibling(&self) -> io::Result<std::net::UdpSocket> {
        reuseport_socket(self.bound)
    }
}

/// Where media is served: the listen IP (wildcard: every usable interface, loopback included),
/// the port (0: any free one, the same on every interface) and the public address of a host
/// behind a 1:1 NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaListen {
    pub ip: IpAddr,
    pub port: u16,
    pub public_ip: Option<IpAddr>,
}

impl MediaListen {
    /// The default: the signaling listen address's IP and the port after its port (any free
    /// port when the signaling port is chosen by the system).
    #[must_use]
    pub fn next_to(listen: SocketAddr, public_ip: Option<IpAddr>) -> MediaListen {
        MediaListen {
            ip: listen.ip(),
            port: if listen.port() == 0 {
                0
            } else {
                listen.port().wrapping_add(1)
            },
            public_ip,
        }
    }
}

/// Binds the media port.
///
/// # Errors
///
/// If the port is taken on one of the addresses, or a wildcard listen finds no interface.
pub fn bind(listen: MediaListen) -> anyhow::Result<Vec<MediaSocket>> {
    let ips: Vec<IpAddr> = if listen.ip.is_unspecified() {
        usable_ips(true)
            .into_iter()
            .filter(|ip| ip.is_ipv4() == listen.ip.is_ipv4())
            .collect()
    } else {
        vec![listen.ip]
    };
    if ips.is_empty() {
        anyhow::bail!("no network interface to serve media on for {}", listen.ip);
    }
    // With an ephemeral port every interface must still get the same one: take it on the first
    // and retry the whole set if another address has it already.
    let mut last_err = None;
    for _ in 0..8 {
        match bind_all(&ips, listen.port) {
            Ok(bound) => return Ok(announce(bound, listen.public_ip)),
            Err(e) if listen.port == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e)
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("binding the media port {} on {ips:?}", listen.port));
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
        .context("finding one free media port on every interface")
}

type Bound = (std::net::UdpSocket, SocketAddr);

fn bind_all(ips: &[IpAddr], port: u16) -> io::Result<Vec<Bound>> {
    let mut out = Vec::with_capacity(ips.len());
    let mut port = port;
    for ip in ips {
        // A plain bind first: it fails if anyone holds the port, even another `SO_REUSEPORT`
        // group of the same user (a second switchboard), which would otherwise silently share
        // the port's traffic with us. It also picks the ephemeral port.
        let probe = std::net::UdpSocket::bind(SocketAddr::new(*ip, port))?;
        let addr = probe.local_addr()?;
        drop(probe);
        let socket = reuseport_socket(addr)?;
        port = addr.port();
        out.push((socket, addr));
    }
    Ok(out)
}

/// Which member of a media socket's `SO_REUSEPORT` group the kernel hands datagrams to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// All to the first (the first media thread).
    First,
    /// Spread by a hash of the sender's address (each address always to the same member).
    Spread,
}

/// `SO_ATTACH_REUSEPORT_CBPF` (Linux 4.5; not in the libc crate for this target).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Steers `socket`'s whole `SO_REUSEPORT` group, with a one-instruction classic BPF program
/// returning the member's index: 0 for [`Steer::First`], an index past the end for
/// [`Steer::Spread`], which the kernel answers by falling back to its hash.
///
/// # Errors
///
/// If the kernel refuses the filter.
pub fn steer(socket: &std::net::UdpSocket, to: Steer) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    /// `BPF_RET | BPF_K`: return the constant.
    const RET_K: u16 = 0x06;
    let index = match to {
        Steer::First => 0,
        Steer::Spread => u32::MAX,
    };
    let mut program = [libc::sock_filter {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>())
        .map_err(io::Error::other)?;
    // SAFETY: `fprog` points at `program`, both alive across the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEPORT`.
fn reuseport_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn announce(bound: Vec<Bound>, public_ip: Option<IpAddr>) -> Vec<MediaSocket> {
    // The public address belongs to the first socket that is not loopback, of its family.
    let public_on = public_ip.and_then(|p| {
        bound
            .iter()
            .position(|(_, a)| !a.ip().is_loopback() && a.is_ipv4() == p.is_ipv4())
    });
    bound
        .into_iter()
        .enumerate()
        .map(|(i, (socket, bound))| {
            let mut announce = Vec::with_capacity(2);
            if let (Some(p), Some(j)) = (public_ip, public_on)
                && i == j
            {
                announce.push(SocketAddr::new(p, bound.port()));
            }
            announce.push(bound);
            MediaSocket {
                socket,
                bound,
                announce,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_specific_address_binds_once_and_a_wildcard_binds_every_interface() {
        let one = bind(MediaListen {
            ip: "127.0.0.1".parse().unwrap(),
            port: 0,
            public_ip: None,
        })
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].announce, vec![one[0].bound]);
        assert!(one[0].is_loopback());

        let all = bind(MediaListen {
            ip: "0.0.0.0".parse().unwrap(),
            port: 0,
            public_ip: Some("203.0.113.7".parse().unwrap()),
        })
        .unwrap();
        assert!(all.iter().any(MediaSocket::is_loopback));
        let port = all[0].bound.port();
        assert!(
            all.iter().all(|s| s.bound.port() == port),
            "one port on every interface"
        );
        let with_public: Vec<_> = all.iter().filter(|s| s.announce.len() == 2).collect();
        // A host with only loopback has nowhere to put the public address.
        if all.iter().any(|s| !s.is_loopback()) {
            assert_eq!(with_public.len(), 1);
            assert_eq!(
                with_public[0].ice_local(),
                SocketAddr::new("203.0.113.7".parse().unwrap(), port)
            );
        }
    }

    #[test]
    fn a_sibling_shares_the_port_and_a_second_switchboard_does_not() {
        let listen = MediaListen {
            ip: "127.0.0.1".parse().unwrap(),
            port: 0,
            public_ip: None,
        };
        let first = bind(listen).unwrap();
        let sibling = first[0].sibling().unwrap();
        assert_eq!(sibling.local_addr().unwrap(), first[0].bound);
        let again = bind(MediaListen {
            port: first[0].bound.port(),
            ..listen
        });
        assert!(
            again.is_err(),
            "a second switchboard must not join the port"
        );
    }

    /// Which of `group`'s members each of 24 senders' datagrams reached.
    fn members_reached(group: &[std::net::UdpSocket]) -> std::collections::BTreeSet<usize> {
        let to = group[0].local_addr().unwrap();
        for _ in 0..24 {
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.send_to(b"x", to).unwrap();
        }
        let mut reached = std::collections::BTreeSet::new();
        let mut got = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = [0u8; 8];
        while got < 24 && std::time::Instant::now() < deadline {
            for (i, s) in group.iter().enumerate() {
                if s.recv_from(&mut buf).is_ok() {
                    reached.insert(i);
                    got += 1;
                }
            }
        }
        assert_eq!(got, 24, "every datagram arrives somewhere");
        reached
    }

    #[test]
    fn steering_sends_every_sender_to_the_first_member_or_spreads_them() {
        let first = bind(MediaListen {
            ip: "127.0.0.1".parse().unwrap(),
            port: 0,
            public_ip: None,
        })
        .unwrap();
        let group = vec![
            first[0].socket.try_clone().unwrap(),
            first[0].sibling().unwrap(),
        ];
        steer(&group[0], Steer::First).unwrap();
        assert_eq!(members_reached(&group), [0].into());
        steer(&group[1], Steer::Spread).unwrap();
        // 24 senders hashed over two members all landing on one: one chance in 2^23.
        assert_eq!(members_reached(&group), [0, 1].into());
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let err = bind(MediaListen {
            ip: "127.0.0.1".parse().unwrap(),
            port,
            public_ip: None,
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains(&port.to_string()), "{err:#}");
    }
}
