//! The rtnetlink connection that address, interface and macvlan operations go through.
//!
//! One [`Netlink`] per thread that manages the network is enough: it is a cheap, cloneable
//! handle onto one `NETLINK_ROUTE` socket whose connection task runs on the tokio runtime
//! that was current when it was opened. The socket belongs to the network namespace of the
//! thread that opened it, for its whole life.

use std::io;

use nix::errno::Errno;
use rtnetlink::Handle;

use crate::interface::InvalidInterfaceName;

/// A handle onto an rtnetlink connection. Operations are defined next to what they act on:
/// [`crate::address`], [`crate::interface`], [`crate::macvlan`].
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Open a `NETLINK_ROUTE` socket in the calling thread's network namespace and spawn its
    /// connection task on the current tokio runtime (a current-thread runtime is fine, as
    /// long as it is being driven while requests are awaited).
    pub fn open() -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        runtime.spawn(connection);
        Ok(Netlink { handle })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// A netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("no tokio runtime is current: netlink needs one to drive its connection")]
    NoRuntime,
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused the request with this errno.
    #[error("netlink {operation}: {errno} ({})", errno.desc())]
    Kernel {
        operation: &'static str,
        errno: Errno,
    },
    /// The conversation itself failed (the connection closed, an undecodable answer).
    #[error("netlink {operation}: {message}")]
    Protocol {
        operation: &'static str,
        message: String,
    },
    #[error("no interface named {0:?}")]
    NoSuchInterfaceName(String),
    #[error("no interface with index {0}")]
    NoSuchInterfaceIndex(u32),
    #[error("interface {name:?} exists but is not a {expected} interface; refusing to touch it")]
    NotOurInterface {
        name: String,
        expected: &'static str,
    },
    #[error(transparent)]
    InvalidName(#[from] InvalidInterfaceName),
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub(crate) fn from_rtnetlink(operation: &'static str, error: rtnetlink::Error) -> Self {
        match error {
            rtnetlink::Error::NetlinkError(message) => {
                // The kernel reports a negative errno; zero would be an ACK, not an error.
                let code = message.raw_code().unsigned_abs() as i32;
                NetlinkError::Kernel {
                    operation,
                    errno: Errno::from_raw(code),
                }
            }
            other => NetlinkError::Protocol {
                operation,
                message: other.to_string(),
            },
        }
    }
}
