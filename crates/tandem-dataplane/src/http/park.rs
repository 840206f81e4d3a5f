//! An idle plain HTTP/1.1 client, parked between two requests (see `serve_plain`).
//!
//! Thousands of these wait at once, so each byte counts: this future is written by hand and
//! holds only what the next request needs (32 + 8 + 8 bytes), its keep-alive timer and its
//! hard-stop wait — 240 bytes, where an `async fn` holding the same took 456 (its task 640
//! bytes against 384 now). The client's address is asked of the socket again on wake-up
//! rather than kept.

use super::serve_plain;
use crate::limits::Admission;
use crate::service::{ServiceRuntime, ServiceSlot};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

pin_project_lite::pin_project! {
    /// Resolves when the client sends again (its connection is then served in a new task),
    /// when its keep-alive wait ends, or when the service stops for good (the connection is
    /// closed then).
    pub(super) struct Park {
        // `None` once handed on.
        next: Option<Next>,
        #[pin]
        idle_over: Sleep,
        #[pin]
        stopping: WaitForCancellationFutureOwned,
    }
}

/// What serving the next request needs.
struct Next {
    ctx: Arc<ServiceRuntime>,
    stream: TcpStream,
    slot: Option<ServiceSlot>,
}

impl Park {
    pub(super) fn new(
        ctx: Arc<ServiceRuntime>,
        stream: TcpStream,
        idle_until: Instant,
        slot: Option<ServiceSlot>,
    ) -> Park {
        Park {
            stopping: ctx.hard_stop.clone().cancelled_owned(),
            idle_over: tokio::time::sleep_until(idle_until),
            next: Some(Next { ctx, stream, slot }),
        }
    }
}

impl Future for Park {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(next) = this.next.as_ref() else {
            return Poll::Ready(());
        };
        // `poll_read_ready`, not `readable()`: it takes the stream's read-waker slot, which
        // still holds the waker of the finished task that served the last request; left
        // there, that waker would keep the finished task's memory while the client idles.
        match next.stream.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => {
                let Next { ctx, stream, slot } = this.next.take().expect("checked above");
                // A client gone meanwhile has no address: nothing to serve.
                if let Ok(peer) = stream.peer_addr() {
                    tokio::spawn(serve_plain(ctx, stream, peer, Admission::Allowed, slot));
                }
                return Poll::Ready(());
            }
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => {}
        }
        if this.idle_over.poll(cx).is_ready() || this.stopping.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_client_stays_small() {
        // The task around it adds about 120 bytes; at 256 and below it fits the allocator's
        // 384-byte class (10,000 idle clients: docs/performance.md).
        let size = std::mem::size_of::<Park>();
        assert!(size <= 256, "Park is {size} bytes");
    }
}
