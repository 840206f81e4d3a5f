//! The tokio tasks that feed the loop, all on the heartbeat thread's own runtime: one
//! receiver per VRRP socket, the link watch, the gateway prober. Each turns what it waits
//! for into an [`Input`] on one channel; the loop alone touches the state.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tandem_net::gateway_probe::{ArpProbe, IcmpProbe, ProbeOutcome};
use tandem_net::vrrp_socket::RecvError;
use tandem_net::{IpFamily, LinkEvent, LinkWatch, Received, VrrpSocket};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::network::SocketKey;

/// Something the loop must handle.
#[derive(Debug)]
pub(crate) enum Input {
    /// A packet from a VRRP socket, or one the socket found malformed (the reason).
    Packet {
        socket: SocketKey,
        packet: Result<Received, String>,
    },
    Link(LinkEvent),
    /// One gateway probe: reachable or not; `Err` when the probe could not run at all
    /// (that is not "gateway down", net.md).
    Gateway(Result<bool, String>),
}

/// Receives from `socket` until the task is aborted.
pub(crate) fn spawn_receiver(
    key: SocketKey,
    socket: Arc<VrrpSocket>,
    inputs: UnboundedSender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let packet = match socket.recv().await {
                Ok(received) => Ok(received),
                Err(RecvError::Malformed(reason)) => Err(reason.to_string()),
                Err(RecvError::Io(error)) => {
                    // The socket itself is in trouble (rare: the interface went away).
                    // Back off rather than spin; the link watch reports the interface.
                    warn!(socket = %key, %error, "receiving adverts failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if inputs
                .send(Input::Packet {
                    socket: key.clone(),
                    packet,
                })
                .is_err()
            {
                return;
            }
        }
    })
}

/// Forwards link changes.
pub(crate) fn spawn_link_watch(
    mut watch: LinkWatch,
    inputs: UnboundedSender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = watch.next_event().await {
            if inputs.send(Input::Link(event)).is_err() {
                return;
            }
        }
        warn!("the link watch ended; links are re-read every few seconds instead");
    })
}

/// A gateway probe of either kind.
#[derive(Debug)]
pub(crate) enum GatewayProbe {
    Icmp(IcmpProbe, IpAddr),
    Arp {
        probe: ArpProbe,
        sender: Option<Ipv4Addr>,
        target: Ipv4Addr,
    },
}

impl GatewayProbe {
    pub(crate) fn open_icmp(address: IpAddr, interface: Option<&str>) -> Result<Self, String> {
        let family = IpFamily::of(&address);
        IcmpProbe::open(family, interface)
            .map(|p| GatewayProbe::Icmp(p, address))
            .map_err(|e| e.to_string())
    }

    /// One probe: reachable or not.
    pub(crate) async fn probe(&self, timeout: Duration) -> Result<bool, String> {
        let outcome = match self {
            GatewayProbe::Icmp(probe, target) => probe.probe(*target, timeout).await,
            GatewayProbe::Arp {
                probe,
                sender,
                target,
            } => probe.probe(*sender, *target, timeout).await,
        };
        match outcome {
            Ok(ProbeOutcome::Reachable { rtt, .. }) => {
                debug!(?rtt, "gateway reachable");
                Ok(true)
            }
            Ok(ProbeOutcome::Unreachable(why)) => {
                debug!(%why, "gateway unreachable");
                Ok(false)
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Probes every `interval` (the first one `interval` after the start: the loop probed once
/// before starting the routers).
pub(crate) fn spawn_gateway_prober(
    probe: GatewayProbe,
    interval: Duration,
    timeout: Duration,
    inputs: UnboundedSender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = probe.probe(timeout).await;
            if inputs.send(Input::Gateway(result)).is_err() {
                return;
            }
        }
    })
}
