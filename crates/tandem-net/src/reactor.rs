//! Registration of this crate's sockets with the tokio reactor.

use std::io;

use socket2::Socket;
use tokio::io::unix::AsyncFd;

/// Register `socket` with the current tokio runtime's reactor. `None` when no runtime is
/// current (registering would panic).
pub(crate) fn register(socket: Socket) -> Option<io::Result<AsyncFd<Socket>>> {
    tokio::runtime::Handle::try_current().ok()?;
    // SAFETY: a socket2::Socket owns its file descriptor: it is open and valid from
    // creation until the Socket is dropped, and as_raw_fd always returns that same
    // descriptor. The AsyncFd takes ownership of the Socket, so the descriptor outlives the
    // registration, as AsyncFd::register requires.
    let registered = unsafe { AsyncFd::register(socket) };
    Some(registered.map_err(io::Error::from))
}
