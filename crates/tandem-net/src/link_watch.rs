//! Link up/down changes from the kernel, for interface tracking.
//!
//! A [`LinkWatch`] subscribes to the `RTNLGRP_LINK` netlink multicast group: the kernel
//! sends an `RTM_NEWLINK` with the full state of an interface whenever anything about it
//! changes, and `RTM_DELLINK` when it goes away. The watch turns these into [`LinkEvent`]s
//! and only yields one when an interface's up/down verdict ([`LinkStatus::is_up`])
//! changes, or the first time it hears of an interface: MTU changes, statistics and
//! promiscuity bumps do not wake the VRRP loop.
//!
//! "Up" means `IFF_UP && IFF_RUNNING` (keepalived's rule). `IFF_RUNNING` follows RFC 2863
//! operstate: it is set for `Up` and `Unknown`, so a cable pull or a veth whose peer went
//! down (carrier loss, operstate `Down`), `ip link set dev X down` (no `IFF_UP`), and a dead
//! lower device (operstate `LowerLayerDown`: a macvlan or VLAN whose parent lost carrier)
//! are all "down", and drivers that never report operstate (`Unknown`) are "up" while
//! admin-up.
//!
//! To get the initial state without a race: open the watch first, then read the current
//! state ([`Netlink::interface_by_index`](crate::Netlink::interface_by_index)); any change
//! after the read is in the watch. If the kernel drops notifications because the socket
//! buffer overflowed (thousands of link changes at once), the watch cannot tell; the loop
//! re-reads the state of its tracked interfaces on a slow timer to heal that.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::interface::{InterfaceInfo, LinkStatus};
use crate::netlink::NetlinkError;

/// A change of an interface's up/down verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface exists; `status.is_up()` differs from what the watch last reported for
    /// it (or it is the first report).
    Changed {
        ifindex: u32,
        name: String,
        status: LinkStatus,
    },
    /// The interface was deleted.
    Removed { ifindex: u32, name: String },
}

impl LinkEvent {
    pub fn ifindex(&self) -> u32 {
        match self {
            LinkEvent::Changed { ifindex, .. } | LinkEvent::Removed { ifindex, .. } => *ifindex,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            LinkEvent::Changed { name, .. } | LinkEvent::Removed { name, .. } => name,
        }
    }

    /// Whether the interface can carry traffic now; a removed interface cannot.
    pub fn is_up(&self) -> bool {
        match self {
            LinkEvent::Changed { status, .. } => status.is_up(),
            LinkEvent::Removed { .. } => false,
        }
    }
}

type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A stream of [`LinkEvent`]s for every interface of the network namespace the watch was
/// opened in.
pub struct LinkWatch {
    messages: Messages,
    connection: JoinHandle<()>,
    last_up: HashMap<u32, bool>,
}

impl std::fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatch")
            .field("known", &self.last_up.len())
            .finish_non_exhaustive()
    }
}

impl LinkWatch {
    /// Subscribe to link notifications in the calling thread's network namespace; the
    /// connection task runs on the current tokio runtime.
    pub fn open() -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (connection, _handle, messages) =
            new_multicast_connection(&[MulticastGroup::Link]).map_err(NetlinkError::Socket)?;
        let connection = runtime.spawn(connection);
        Ok(LinkWatch {
            messages,
            connection,
            last_up: HashMap::new(),
        })
    }

    /// The next event; `None` only if the netlink connection ended.
    pub async fn next_event(&mut self) -> Option<LinkEvent> {
        self.next().await
    }

    fn interpret(&mut self, message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        interpret(&mut self.last_up, message)
    }
}

fn interpret(
    last_up: &mut HashMap<u32, bool>,
    message: NetlinkMessage<RouteNetlinkMessage>,
) -> Option<LinkEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            let info = InterfaceInfo::from_message(&link);
            let up = info.status.is_up();
            if last_up.insert(info.index, up) == Some(up) {
                return None;
            }
            debug!(ifindex = info.index, name = %info.name, up, status = ?info.status, "link changed");
            Some(LinkEvent::Changed {
                ifindex: info.index,
                name: info.name,
                status: info.status,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            let info = InterfaceInfo::from_message(&link);
            last_up.remove(&info.index);
            debug!(ifindex = info.index, name = %info.name, "link removed");
            Some(LinkEvent::Removed {
                ifindex: info.index,
                name: info.name,
            })
        }
        _ => None,
    }
}

impl Stream for LinkWatch {
    type Item = LinkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        loop {
            match self.messages.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some((message, _))) => {
                    if let Some(event) = self.interpret(message) {
                        return Poll::Ready(Some(event));
                    }
                }
            }
        }
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        // The connection task owns the socket; ending it closes the subscription.
        self.connection.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};

    fn link(index: u32, flags: LinkFlags, state: State) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes = vec![
            LinkAttribute::IfName(format!("if{index}")),
            LinkAttribute::OperState(state),
        ];
        m
    }

    fn new_link(m: LinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::from(RouteNetlinkMessage::NewLink(m))
    }

    #[test]
    fn yields_only_changes_of_the_up_verdict() {
        let mut last = HashMap::new();
        let up = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
        let first = interpret(&mut last, new_link(link(3, up, State::Up))).unwrap();
        assert!(first.is_up());
        assert_eq!(first.name(), "if3");
        // Same verdict again (e.g. an MTU change): nothing.
        assert!(interpret(&mut last, new_link(link(3, up, State::Up))).is_none());
        // Peer went away: admin-up but lower layer down.
        let down = interpret(
            &mut last,
            new_link(link(3, LinkFlags::Up, State::LowerLayerDown)),
        )
        .unwrap();
        assert!(!down.is_up());
        assert_eq!(down.ifindex(), 3);
        // Another interface is independent.
        assert!(
            interpret(&mut last, new_link(link(4, up, State::Up)))
                .unwrap()
                .is_up()
        );
        // Admin down.
        assert!(
            !interpret(
                &mut last,
                new_link(link(4, LinkFlags::empty(), State::Down))
            )
            .unwrap()
            .is_up()
        );
    }

    #[test]
    fn reports_removal_and_forgets_the_interface() {
        let mut last = HashMap::new();
        let up = LinkFlags::Up | LinkFlags::Running;
        interpret(&mut last, new_link(link(5, up, State::Up))).unwrap();
        let removed = interpret(
            &mut last,
            NetlinkMessage::from(RouteNetlinkMessage::DelLink(link(
                5,
                LinkFlags::empty(),
                State::Down,
            ))),
        )
        .unwrap();
        assert_eq!(
            removed,
            LinkEvent::Removed {
                ifindex: 5,
                name: "if5".into()
            }
        );
        assert!(!removed.is_up());
        // A new interface reusing the index is reported afresh.
        assert!(interpret(&mut last, new_link(link(5, up, State::Up))).is_some());
    }

    #[test]
    fn unknown_operstate_counts_as_up_when_running() {
        let mut last = HashMap::new();
        let event = interpret(
            &mut last,
            new_link(link(1, LinkFlags::Up | LinkFlags::Running, State::Unknown)),
        )
        .unwrap();
        assert!(event.is_up());
    }
}
