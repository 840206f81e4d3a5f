//! Carrying out `tandem-vrrp`'s actions, in the order it gives them: addresses are added
//! before the advert that announces them (RFC 5798 §6.4.1, §6.4.2), announcements go out
//! in bursts of their own task so that a spaced burst never holds the loop.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use tandem_net::announce::announcement_frames;
use tandem_vrrp::{Action, Advert, Reason, RoleChange, State};
use tracing::{debug, error, info, warn};

use crate::instance::Instance;
use crate::status::Transition;

/// An advert's largest encoding: the header and 255 IPv6 addresses.
const ADVERT_BUFFER: usize = 8 + 255 * 16;

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// How long a Master that heard its successor keeps the VIPs before removing them: a quarter
/// of an advert interval, at most 20 ms. Long enough for the replies to requests it already
/// forwarded (a LAN round trip to the servers) and for clients to process the successor's
/// gratuitous ARP; short enough that the two boxes hold a VIP together for well under one
/// advert interval.
pub(crate) fn release_grace(advert_interval: std::time::Duration) -> std::time::Duration {
    (advert_interval / 4).min(std::time::Duration::from_millis(20))
}

impl Instance {
    /// Carries out one action of member `mi` of group `gi`.
    pub(crate) async fn perform(&mut self, gi: usize, mi: usize, action: Action) {
        match action {
            Action::SendAdvert(advert) => self.send_advert(gi, mi, &advert).await,
            Action::AddAddresses {
                addresses,
                accept_traffic,
            } => {
                let rt = &mut self.groups[gi].routers[mi];
                // Becoming Master again within the release grace: the VIPs simply stay.
                if let Some(release) = rt.release.take() {
                    release.abort();
                }
                let rt = &self.groups[gi].routers[mi];
                if !accept_traffic {
                    // tandem-config refuses accept mode off; a hand-built config may not.
                    warn!(router = %rt.config.name, "accept mode is off, but traffic to the VIPs is not filtered");
                }
                for ip in addresses {
                    let net = rt.config.vip_net(ip).unwrap_or_else(|| host_net(ip));
                    // IPv6 VIPs get IFA_F_NODAD (tandem-net): usable at once.
                    if let Err(e) = self.netlink.add_address(rt.link.ifindex, net).await {
                        error!(router = %rt.config.name, vip = %net, error = %e, "cannot add a VIP");
                    }
                }
            }
            Action::RemoveAddresses(addresses) => {
                let rt = &mut self.groups[gi].routers[mi];
                // A burst still going would pull traffic back to this box.
                if let Some(burst) = rt.burst.take() {
                    burst.abort();
                }
                if let Some(previous) = rt.release.take() {
                    previous.abort();
                }
                let nets: Vec<IpNet> = addresses
                    .iter()
                    .map(|ip| rt.config.vip_net(*ip).unwrap_or_else(|| host_net(*ip)))
                    .collect();
                let netlink = self.netlink.clone();
                let (ifindex, name) = (rt.link.ifindex, rt.config.name.clone());
                let remove = async move {
                    for net in nets {
                        if let Err(e) = netlink.remove_address(ifindex, net).await {
                            error!(router = %name, vip = %net, error = %e, "cannot remove a VIP");
                        }
                    }
                };
                if rt.release_grace {
                    // Make before break, to the end (docs/vrrp.md): the new Master has the
                    // VIPs and announced them, but requests this box already forwarded are
                    // still being answered through it, and a client may not have processed
                    // the new Master's gratuitous ARP yet.
                    let grace = release_grace(rt.config.advert_interval);
                    rt.release = Some(tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        remove.await;
                    }));
                } else {
                    remove.await;
                }
            }
            Action::SendGratuitous(addresses) => {
                let rt = &mut self.groups[gi].routers[mi];
                // RFC 5798 §6.4.1/§6.4.2 ask for the Router flag on the NAs; a VIP may be
                // the servers' gateway, and an NA without it removes a default router
                // (RFC 4861 §7.2.5).
                let frames = announcement_frames(rt.link.mac, &addresses, true);
                let announcer = rt.link.announcer.clone();
                let burst = rt.config.announce;
                let name = rt.config.name.clone();
                if let Some(previous) = rt.burst.take() {
                    previous.abort();
                }
                rt.burst = Some(tokio::spawn(async move {
                    if let Err(e) = announcer.send_burst(&frames, burst).await {
                        warn!(router = %name, error = %e, "announcement burst failed");
                    }
                }));
            }
            Action::StateChanged(change) => self.state_changed(gi, mi, change),
        }
    }

    /// Encodes the advert once per destination (the destination is under the checksum,
    /// §5.2.8) and sends it from the primary address with TTL 255 (tandem-net).
    async fn send_advert(&mut self, gi: usize, mi: usize, advert: &Advert) {
        let destinations = self.groups[gi].group.members()[mi]
            .config()
            .advert_destinations();
        let rt = &self.groups[gi].routers[mi];
        let Some(socket) = self.sockets.get(&rt.socket).map(|s| s.socket.clone()) else {
            return;
        };
        let mut buffer = [0u8; ADVERT_BUFFER];
        let mut failed = None;
        for destination in destinations {
            let len = match advert.encode(rt.primary, destination, &mut buffer) {
                Ok(len) => len,
                Err(e) => {
                    error!(router = %rt.config.name, error = %e, "cannot encode an advert");
                    return;
                }
            };
            if let Err(e) = socket.send_to(&buffer[..len], destination).await {
                failed = Some(e.to_string());
            }
        }
        let rt = &mut self.groups[gi].routers[mi];
        match failed {
            None => {
                rt.counters.sent += 1;
                if rt.send_failing {
                    rt.send_failing = false;
                    info!(router = %rt.config.name, "adverts are sent again");
                }
            }
            Some(error) => {
                rt.counters.send_errors += 1;
                if !rt.send_failing {
                    rt.send_failing = true;
                    warn!(router = %rt.config.name, %error, "cannot send adverts");
                } else {
                    debug!(router = %rt.config.name, %error, "cannot send an advert");
                }
            }
        }
    }

    fn state_changed(&mut self, gi: usize, mi: usize, change: RoleChange) {
        let rt = &mut self.groups[gi].routers[mi];
        info!(router = %rt.config.name, vrid = rt.config.vrid, from = %change.from,
            to = %change.to, reason = %change.reason, "VRRP state changed");
        rt.counters.transitions += 1;
        rt.master = match (change.to, change.reason) {
            (State::Master, _) => Some(rt.primary),
            (State::Backup, Reason::Preempted { by, .. }) => Some(by),
            (
                State::Backup,
                Reason::SteppedDown {
                    new_master: Some(by),
                    ..
                },
            ) => Some(by),
            _ => None,
        };
        rt.release_grace = change.to != State::Master
            && matches!(
                change.reason,
                Reason::Preempted { .. }
                    | Reason::SteppedDown {
                        new_master: Some(_),
                        ..
                    }
            );
        rt.last_transition = Some(Transition {
            from: change.from.into(),
            to: change.to.into(),
            reason: change.reason.to_string(),
            at: SystemTime::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::release_grace;
    use std::time::Duration;

    #[test]
    fn the_release_grace_stays_well_under_one_advert_interval() {
        let ms = Duration::from_millis;
        assert_eq!(release_grace(ms(10)), Duration::from_micros(2500));
        assert_eq!(release_grace(ms(20)), ms(5));
        assert_eq!(release_grace(ms(100)), ms(20));
        assert_eq!(release_grace(ms(1000)), ms(20));
    }
}
