//! One function per input event, in the manner of holo-vrrp's `events.rs`: each hands the
//! event to the state machine with the current time and then carries out its actions.

use std::time::{Duration, Instant};

use tandem_net::{LinkEvent, Received};
use tandem_vrrp::{DropReason, Inbound, State, TrackState};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::config::track;
use crate::instance::{GatewayRt, Instance, Stopping};
use crate::network::SocketKey;

impl Instance {
    /// A packet from a VRRP socket. RFC 5798 §7.1: the checks that need no configuration
    /// (`tandem_vrrp::validate`: TTL/hop limit 255, version, type, length, checksum), then
    /// the router's own (VRID, peers, owner) in `handle_advert`. Every drop is counted by
    /// reason, against the router whose VRID the packet names when there is one.
    pub(crate) async fn packet(
        &mut self,
        now: Instant,
        socket: &SocketKey,
        packet: Result<Received, String>,
    ) {
        let packet = match packet {
            Ok(p) => p,
            Err(reason) => {
                debug!(%socket, %reason, "malformed packet dropped");
                self.unattributed.record(DropReason::Malformed);
                return;
            }
        };
        // The VRID is the second byte (§5.2.3); peeking at it lets even a corrupt packet
        // be counted against the router it was meant for.
        let vrid = packet.payload.get(1).copied();
        let target = self.groups.iter().enumerate().find_map(|(gi, g)| {
            g.routers
                .iter()
                .position(|r| r.socket == *socket && Some(r.config.vrid) == vrid)
                .map(|mi| (gi, mi))
        });
        let inbound = Inbound {
            source: packet.src,
            destination: packet.dst,
            hop_limit: packet.ttl,
            vrrp: &packet.payload,
        };
        let advert = tandem_vrrp::validate(&inbound);
        let Some((gi, mi)) = target else {
            let reason = advert.err().unwrap_or(DropReason::VridMismatch);
            debug!(%socket, src = %packet.src, ?vrid, reason = reason.as_str(), "packet for no router of ours");
            self.unattributed.record(reason);
            return;
        };
        let result = advert.and_then(|a| {
            Ok((
                self.groups[gi]
                    .group
                    .handle_advert(now, mi, packet.src, &a)?,
                a,
            ))
        });
        let group = &mut self.groups[gi];
        let router = &mut group.routers[mi];
        match result {
            Err(reason) => {
                debug!(router = %router.config.name, src = %packet.src, reason = reason.as_str(), "advert dropped");
                router.counters.drops.record(reason);
            }
            Ok((accepted, advert)) => {
                router.counters.received += 1;
                if group.group.members()[mi].state() == State::Backup && advert.priority > 0 {
                    router.master = Some(packet.src);
                }
                if accepted.address_list_mismatch {
                    router.counters.mismatches += 1;
                    // §7.1: logged, processed. Once, then every 1000th, not per advert.
                    if router.counters.mismatches % 1000 == 1 {
                        warn!(router = %router.config.name, src = %packet.src,
                            theirs = ?advert.addresses, count = router.counters.mismatches,
                            "the peer advertises other VIPs (RFC 5798 §7.1); is its shared config older or newer?");
                    }
                }
            }
        }
        self.drain_actions().await;
    }

    /// A timer is due: Master_Down_Timer, Adver_Timer (RFC 5798 §6.2), the repeated
    /// announcement, the end of a step-down; or the loop's own shutdown bound.
    pub(crate) async fn timeout(&mut self, now: Instant) {
        for group in &mut self.groups {
            if group.group.poll_timeout().is_some_and(|t| t <= now) {
                group.group.handle_timeout(now);
            }
        }
        self.drain_actions().await;
        if let Some((at, left)) = self.retry_pending_at
            && at <= now
        {
            self.retry_pending().await;
            self.retry_pending_at = (left > 1 && !self.pending.is_empty())
                .then(|| (now + Duration::from_millis(20), left - 1));
        }
        if self.stopping.as_ref().is_some_and(|s| s.deadline <= now) {
            self.force_stop().await;
        }
    }

    /// A tracked object changed. Remembered whether or not a router tracks it.
    pub(crate) async fn set_track(&mut self, now: Instant, name: &str, state: TrackState) {
        let previous = self.tracks.insert(name.to_owned(), state);
        if previous != Some(state) {
            info!(track = name, ?state, "tracked object changed");
        }
        for group in &mut self.groups {
            // Unknown to every member of this group: not tracked here.
            let _ = group.group.set_track(now, name, state);
        }
        self.drain_actions().await;
    }

    /// A link went up or down (`IFF_UP && IFF_RUNNING`, net.md), or away.
    pub(crate) async fn link(&mut self, now: Instant, event: LinkEvent) {
        let name = event.name().to_owned();
        if !self.config.watched_links().contains(&name) {
            return;
        }
        let state = if event.is_up() {
            TrackState::Up
        } else {
            TrackState::Down
        };
        self.set_track(now, &track::link(&name), state).await;
        if state == TrackState::Up && self.pending.contains(&name) {
            // An IPv6 link-local appears a moment after carrier: retry soon, a few times
            // (the 5 s re-read retries too).
            self.retry_pending_at = Some((now, 50));
        }
    }

    /// One gateway probe's result: `fall` failures in a row take the gateway down, `rise`
    /// successes bring it back.
    pub(crate) async fn gateway_result(&mut self, now: Instant, result: Result<bool, String>) {
        let Some(gw) = &mut self.gateway else {
            return;
        };
        let reachable = match result {
            Ok(r) => r,
            Err(error) => {
                // The probe could not run: no verdict about the gateway (net.md).
                warn!(%error, "gateway probe failed to run");
                return;
            }
        };
        let current = self
            .tracks
            .get(track::GATEWAY)
            .copied()
            .unwrap_or(TrackState::Up);
        let next = gw.record(current, reachable);
        if next != current {
            let address = gw.config.address;
            match next {
                TrackState::Down => warn!(gateway = %address, "gateway unreachable"),
                TrackState::Up => info!(gateway = %address, "gateway reachable again"),
            }
            self.set_track(now, track::GATEWAY, next).await;
        }
    }

    /// A graceful handover: `admin:handover` (a fault) makes every Master step down make
    /// before break; `admin:yield` (weight 254, so priority 1) keeps this box from taking
    /// the role back by preemption until it is active again.
    pub(crate) async fn failover_now(&mut self, now: Instant) {
        if !self
            .groups
            .iter()
            .any(|g| g.group.members().iter().any(|m| m.state() == State::Master))
        {
            info!("handover asked, but no router is Master here");
            return;
        }
        info!("graceful handover to the peer");
        self.handover = true;
        self.yielding = true;
        self.set_track(now, track::HANDOVER, TrackState::Down).await;
        self.set_track(now, track::YIELD, TrackState::Down).await;
    }

    /// Graceful stop: Backups go to Initialize (§6.4.2); Masters step down make before
    /// break (docs/vrrp.md) and go to Initialize on hearing the new Master, or after
    /// Master_Down_Interval.
    pub(crate) async fn shutdown(&mut self, now: Instant, reply: oneshot::Sender<()>) {
        info!("graceful stop");
        let bound = self
            .groups
            .iter()
            .flat_map(|g| g.group.members())
            .map(|m| tandem_vrrp::master_down_interval(1, m.config().advert_interval))
            .max()
            .unwrap_or_default();
        self.stopping = Some(Stopping {
            reply: Some(reply),
            deadline: now + bound + Duration::from_secs(1),
        });
        for group in &mut self.groups {
            group.group.shutdown(now);
        }
        self.drain_actions().await;
    }

    /// The shutdown bound passed with a router not yet in Initialize (it should not
    /// happen: the state machine bounds every step-down). Let go of everything.
    async fn force_stop(&mut self) {
        warn!("graceful stop did not finish in time; removing the VIPs");
        for group in &mut self.groups {
            for (vr, rt) in group.group.members().iter().zip(&mut group.routers) {
                if vr.state() == State::Master {
                    for net in &rt.config.vips {
                        let _ = self.netlink.remove_address(rt.link.ifindex, *net).await;
                    }
                }
            }
            let configs: Vec<_> = group
                .group
                .members()
                .iter()
                .map(|m| m.config().clone())
                .collect();
            group.group = tandem_vrrp::SyncGroup::new(
                configs
                    .into_iter()
                    .filter_map(|c| tandem_vrrp::VirtualRouter::new(c).ok())
                    .collect(),
            );
        }
    }
}

impl GatewayRt {
    /// Counts one probe and returns the gateway's state after it: `fall` failures in a
    /// row take an up gateway down, `rise` successes in a row bring a down one back.
    pub(crate) fn record(&mut self, current: TrackState, reachable: bool) -> TrackState {
        if reachable {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        match current {
            TrackState::Up if self.failures >= self.config.fall => TrackState::Down,
            TrackState::Down if self.successes >= self.config.rise => TrackState::Up,
            same => same,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GatewayConfig, ProbeMethod};
    use tandem_vrrp::TrackEffect;

    fn gateway(rise: u32, fall: u32) -> GatewayRt {
        GatewayRt {
            config: GatewayConfig {
                address: "192.0.2.254".parse().unwrap(),
                interface: None,
                method: ProbeMethod::Icmp,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise,
                fall,
                effect: Some(TrackEffect::Fault),
            },
            task: None,
            successes: 0,
            failures: 0,
        }
    }

    #[test]
    fn the_gateway_goes_down_after_fall_failures_in_a_row_and_up_after_rise_successes() {
        let mut gw = gateway(2, 3);
        let mut state = TrackState::Up;
        for (reachable, expected) in [
            (false, TrackState::Up),
            (false, TrackState::Up),
            (true, TrackState::Up), // the run of failures is broken
            (false, TrackState::Up),
            (false, TrackState::Up),
            (false, TrackState::Down),
            (true, TrackState::Down),
            (false, TrackState::Down),
            (true, TrackState::Down),
            (true, TrackState::Up),
            (true, TrackState::Up),
        ] {
            state = gw.record(state, reachable);
            assert_eq!(state, expected, "after {reachable}");
        }
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_probe() {
        let mut gw = gateway(1, 1);
        assert_eq!(gw.record(TrackState::Up, false), TrackState::Down);
        assert_eq!(gw.record(TrackState::Down, true), TrackState::Up);
    }
}
