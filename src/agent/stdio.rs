//! The agent's stdin and stdout without threads. tokio's `stdin()` and `stdout()` run every read
//! and write on its blocking pool: a thread parked in `read(2)` on stdin for the agent's whole
//! life, and one more kept alive by the event lines written during a call. When stdin or stdout
//! is a pipe or a socket (a script driving the agent), it is switched to non-blocking mode and
//! polled by the runtime's own reactor instead, so those two threads do not exist. A terminal or
//! a regular file keeps tokio's blocking version (epoll cannot wait on a regular file, and a
//! terminal's mode is shared with the shell). The original flags are restored on drop.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Standard input: a polled pipe when it is one, tokio's blocking stdin otherwise.
pub fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    match Pipe::open(libc::STDIN_FILENO) {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdin()),
    }
}

/// Standard output: a polled pipe when it is one, tokio's blocking stdout otherwise.
pub fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    match Pipe::open(libc::STDOUT_FILENO) {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdout()),
    }
}

/// A borrowed descriptor: never closed here (it is the process's stdin or stdout).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

struct Pipe {
    fd: AsyncFd<Fd>,
    /// `fcntl(F_GETFL)` before we set `O_NONBLOCK`, restored on drop.
    flags: libc::c_int,
}

impl Pipe {
    fn open(fd: RawFd) -> Option<Pipe> {
        // SAFETY: fstat and fcntl on a descriptor number only read or set its flags; a closed
        // descriptor makes them fail, which is handled.
        let flags = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                return None;
            }
            let kind = st.st_mode & libc::S_IFMT;
            if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
                return None;
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return None;
            }
            flags
        };
        // SAFETY: descriptors 0 and 1 stay open, on the same file description, for the whole
        // process: nothing in dialtone closes or replaces them.
        match unsafe { AsyncFd::register(Fd(fd)) } {
            Ok(fd) => Some(Pipe { fd, flags }),
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
                None
            }
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: as in `open`; the descriptor is still open (we never close it).
        unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, self.flags) };
    }
}

/// The result of a read(2) or write(2) as io::Result.
fn io_result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // SAFETY: reads at most `unfilled.len()` bytes into initialized memory we borrow.
            let read = guard.try_io(|fd| {
                io_result(unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                })
            });
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness was cleared, wait again.
                Err(_) => continue,
            }
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            // SAFETY: writes at most `data.len()` bytes from memory we borrow.
            let written = guard.try_io(|fd| {
                io_result(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
            });
            match written {
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
