//! Moving bytes from one TCP socket to another: zero-copy with splice(2) through a pipe on
//! Linux, or a plain read/write copy with one buffer per direction.
//!
//! One direction is one [`pump`]: read as much as the socket holds into the pipe (one
//! `splice`), write all of it out to the other socket (one or more `splice`), repeat. At end of
//! stream it shuts down the other socket's write side, so a half-close travels through the
//! proxy and the opposite direction keeps flowing until its own end.
//!
//! Readiness: a read is only attempted through `try_io` after `readable()` while the pipe is
//! empty, so an `EAGAIN` always means "socket empty" and the cleared readiness is right (an
//! `EAGAIN` caused by a full pipe would leave a ready socket marked not ready and stall it).
//!
//! Pipes are taken lazily (an idle connection holds none) from a small process-wide pool and
//! returned empty, so a connection costs no `pipe2` call in the common case and there is no
//! allocation per transfer.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes asked for per splice from a socket.
const CHUNK: usize = 1 << 20;
/// Pipe size asked for (the kernel may give less; the default is 64 KiB).
const PIPE_SIZE: i32 = 256 * 1024;
/// Empty pipes kept for reuse.
const POOL_MAX: usize = 256;
/// Copy-mode buffer per direction.
const COPY_BUF: usize = 16 * 1024;

static PIPES: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = PIPES.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(p);
        }
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Best effort: a larger pipe means fewer system calls per megabyte.
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { read, write })
    }

    /// Returns an empty pipe to the pool (a pipe with data left in it is closed instead).
    fn give_back(self, empty: bool) {
        if empty {
            let mut pool = PIPES.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        }
    }
}

/// How bytes are moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Splice,
    Copy,
}

/// Last activity of a connection, in milliseconds since `start`, shared by both directions and
/// the idle watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    pub async fn idle_for(&self, idle: std::time::Duration) {
        loop {
            let deadline =
                self.start + std::time::Duration::from_millis(self.last_ms.load(Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves bytes from `src` to `dst` until `src` ends, then shuts down `dst`'s write side.
/// `moved(n)` is called for every `n` bytes delivered. Returns the total.
pub async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    mode: Mode,
    activity: &Activity,
    moved: impl Fn(u64),
) -> io::Result<u64> {
    let total = match mode {
        Mode::Splice => match splice_pump(src, dst, activity, &moved).await {
            // No splice for these sockets (never seen on Linux TCP, but cheap to handle):
            // nothing was moved yet, so the copy loop can take over.
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                copy_pump(src, dst, activity, &moved).await?
            }
            r => r?,
        },
        Mode::Copy => copy_pump(src, dst, activity, &moved).await?,
    };
    // The peer may already be gone; the other direction will notice.
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(total)
}

async fn splice_pump(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    moved: &impl Fn(u64),
) -> io::Result<u64> {
    use nix::fcntl::{SpliceFFlags, splice};
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut pipe: Option<Pipe> = None;
    let mut total = 0u64;
    let result = async {
        loop {
            src.readable().await?;
            let p = match &pipe {
                Some(p) => p,
                None => pipe.insert(Pipe::take()?),
            };
            let n = match src.try_io(Interest::READABLE, || {
                splice(src.as_fd(), None, p.write.as_fd(), None, CHUNK, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            activity.touch();
            let mut left = n;
            while left > 0 {
                match dst.try_io(Interest::WRITABLE, || {
                    splice(p.read.as_fd(), None, dst.as_fd(), None, left, flags)
                        .map_err(io::Error::from)
                }) {
                    Ok(w) => {
                        left -= w;
                        total += w as u64;
                        moved(w as u64);
                        activity.touch();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    .await;
    if let Some(p) = pipe {
        p.give_back(result.is_ok());
    }
    result
}

async fn copy_pump(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    moved: &impl Fn(u64),
) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        activity.touch();
        let mut off = 0;
        while off < n {
            match dst.try_write(&buf[off..n]) {
                Ok(w) => {
                    off += w;
                    total += w as u64;
                    moved(w as u64);
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    async fn moves_everything_then_half_closes(mode: Mode) {
        // writer → [a_far, a_near] → pump → [b_near, b_far] → reader
        let (mut writer, a_near) = pair().await;
        let (b_near, mut reader) = pair().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let w = tokio::spawn(async move {
            writer.write_all(&data).await.unwrap();
            writer.shutdown().await.unwrap();
            writer
        });
        let counted = AtomicU64::new(0);
        let activity = Activity::new();
        let total = pump(&a_near, &b_near, mode, &activity, |n| {
            counted.fetch_add(n, Relaxed);
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap(); // ends: the FIN was forwarded
        assert_eq!(total, 3_000_000);
        assert_eq!(counted.load(Relaxed), 3_000_000);
        assert!(got == expected);
        // The other direction is still open: the far writer can still read.
        reader.write_all(b"still open").await.unwrap();
        let mut back = [0u8; 10];
        let mut b_near = b_near;
        b_near.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still open");
        drop(w.await.unwrap());
    }

    #[tokio::test]
    async fn splice_moves_everything_then_half_closes() {
        moves_everything_then_half_closes(Mode::Splice).await;
    }

    #[tokio::test]
    async fn copy_moves_everything_then_half_closes() {
        moves_everything_then_half_closes(Mode::Copy).await;
    }
}
