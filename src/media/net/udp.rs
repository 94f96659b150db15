//! Reading from several UDP sockets in one task, as a device's link (one socket per address)
//! and the switchboard's hub (one per interface of its media port) both do.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// Something that owns one of the sockets read.
pub trait HasSocket {
    fn socket(&self) -> &UdpSocket;
}

/// What one read gave: the socket's index, and the datagram's length and sender (or the error).
pub type Received = (usize, io::Result<(usize, SocketAddr)>);

/// The next datagram on any of `sockets`, into `buf`. Cancel-safe: nothing is read unless it
/// is returned. Never completes for an empty list.
pub async fn recv_any<S: HasSocket>(sockets: &[S], buf: &mut [u8]) -> Received {
    if sockets.is_empty() {
        return std::future::pending().await;
    }
    poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let mut rb = ReadBuf::new(buf);
            match s.socket().poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(peer)) => return Poll::Ready((i, Ok((rb.filled().len(), peer)))),
                Poll::Ready(Err(e)) => return Poll::Ready((i, Err(e))),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// A datagram already waiting on any of `sockets`, without waiting.
pub fn try_recv_any<S: HasSocket>(sockets: &[S], buf: &mut [u8]) -> Option<Received> {
    for (i, s) in sockets.iter().enumerate() {
        match s.socket().try_recv_from(buf) {
            Ok(r) => return Some((i, Ok(r))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Some((i, Err(e))),
        }
    }
    None
}
