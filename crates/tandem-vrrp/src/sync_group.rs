//! Sync groups: virtual routers that change role together, as keepalived's
//! `vrrp_sync_group` (RFC 5798 has no such notion). A load balancer's client-side VIP and
//! its server-side gateway VIP must sit on the same box, or replies go astray; and the
//! pair's role (active or passive) is the state of this group (design.md).
//!
//! The rules, applied after every event:
//! 1. A fault on any member holds every member: none may be Master while a sibling cannot.
//! 2. When a member stops being Master (a higher-priority advert, a fault, shutdown), every
//!    other Master steps down make-before-break: priority 0, addresses kept until its own
//!    peer announces itself.
//! 3. A member whose Master_Down_Timer fires does not take over alone: it becomes Master
//!    only once every member wants to or already is (keepalived: "only sync to master if
//!    everyone wants to, i.e. prefer backup state to avoid thrashing"). Then all go
//!    together. A member that still hears a Master on its link keeps the group Backup, so
//!    the two boxes never each hold part of the group.
//! 4. When a member becomes Master another way (the address owner's Startup, a fault
//!    cleared during a step-down), the others follow.

use std::net::IpAddr;
use std::time::Instant;

use crate::action::Action;
use crate::advert::Advert;
use crate::receive::{Accepted, DropReason};
use crate::router::VirtualRouter;
use crate::state::State;
use crate::tracking::{TrackState, UnknownTrack};

/// Virtual routers that move together. Members are addressed by their index in the
/// vector given to [`SyncGroup::new`]: VRIDs only need to be unique per link, so two
/// members may share one.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<VirtualRouter>,
    /// Which members held mastership after the last event.
    held: Vec<bool>,
}

impl SyncGroup {
    /// A group of routers in Initialize; [`startup`](SyncGroup::startup) starts them all.
    pub fn new(mut members: Vec<VirtualRouter>) -> Self {
        for member in &mut members {
            member.set_gated(true);
        }
        SyncGroup {
            held: members
                .iter()
                .map(VirtualRouter::holds_mastership)
                .collect(),
            members,
        }
    }

    pub fn members(&self) -> &[VirtualRouter] {
        &self.members
    }

    /// The group's role: Master when every member is, Initialize when every member is (or
    /// there is none), Backup otherwise.
    pub fn state(&self) -> State {
        let all = |s| self.members.iter().all(|m| m.state() == s);
        if all(State::Initialize) {
            State::Initialize
        } else if all(State::Master) {
            State::Master
        } else {
            State::Backup
        }
    }

    pub fn startup(&mut self, now: Instant) {
        for member in &mut self.members {
            member.startup(now);
        }
        self.settle(now);
    }

    pub fn shutdown(&mut self, now: Instant) {
        for member in &mut self.members {
            member.shutdown(now);
        }
        self.settle(now);
    }

    /// An advert received on the link of member `member`.
    ///
    /// # Panics
    /// If `member` is not an index of [`members`](SyncGroup::members).
    pub fn handle_advert(
        &mut self,
        now: Instant,
        member: usize,
        source: IpAddr,
        advert: &Advert,
    ) -> Result<Accepted, DropReason> {
        let result = self.members[member].handle_advert(now, source, advert);
        self.settle(now);
        result
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for member in &mut self.members {
            member.handle_timeout(now);
        }
        self.settle(now);
    }

    /// Sets a tracked object on every member that tracks it.
    pub fn set_track(
        &mut self,
        now: Instant,
        name: &str,
        state: TrackState,
    ) -> Result<(), UnknownTrack> {
        let mut found = false;
        for member in self.members.iter_mut().filter(|m| m.has_track(name)) {
            member.set_track(now, name, state)?;
            found = true;
        }
        if !found {
            return Err(UnknownTrack(name.to_owned()));
        }
        self.settle(now);
        Ok(())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.members.iter().filter_map(|m| m.poll_timeout()).min()
    }

    /// The next action and the index of the member it belongs to; each member's actions
    /// come in their order.
    pub fn poll_action(&mut self) -> Option<(usize, Action)> {
        self.members
            .iter_mut()
            .enumerate()
            .find_map(|(index, member)| Some((index, member.poll_action()?)))
    }

    /// Applies the group's rules until nothing changes. Each pass either stops or moves
    /// members one way (all down, or all up), so a few passes suffice.
    fn settle(&mut self, now: Instant) {
        // Rule 1.
        let fault = self.members.iter().any(VirtualRouter::has_own_fault);
        for member in &mut self.members {
            member.set_group_fault(now, fault);
        }
        for _ in 0..=self.members.len() + 2 {
            let holds: Vec<bool> = self
                .members
                .iter()
                .map(VirtualRouter::holds_mastership)
                .collect();
            let lost = holds
                .iter()
                .zip(&self.held)
                .any(|(now, before)| *before && !now);
            let gained = holds
                .iter()
                .zip(&self.held)
                .any(|(now, before)| !before && *now);
            self.held = holds;
            if lost {
                // Rule 2; losing wins over gaining, as Backup is the safe side.
                for member in &mut self.members {
                    member.group_step_down(now);
                }
            } else if gained {
                // Rule 4.
                for member in &mut self.members {
                    member.group_promote(now);
                }
            } else if self.members.iter().any(VirtualRouter::wants_master)
                && self
                    .members
                    .iter()
                    .all(|m| m.wants_master() || m.holds_mastership())
            {
                // Rule 3.
                for member in self.members.iter_mut().filter(|m| m.wants_master()) {
                    member.group_promote(now);
                }
            } else {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::router::tests::{ip, origin};
    use crate::state::{Reason, StepDownCause};
    use crate::timers::master_down_interval;
    use crate::tracking::Track;

    const SECOND: Duration = Duration::from_secs(1);

    /// Member 0: VRID 10 on the client side; member 1: VRID 20 on the server side.
    fn members(priority: u8, tracks: [Vec<Track>; 2]) -> Vec<VirtualRouter> {
        let sides = [
            (10, "192.0.2.2", "192.0.2.100"),
            (20, "198.51.100.2", "198.51.100.1"),
        ];
        sides
            .into_iter()
            .zip(tracks)
            .map(|((vrid, primary, vip), tracks)| {
                let mut config = Config::new(vrid, ip(primary), vec![ip(vip)]);
                config.priority = priority;
                config.advert_interval = SECOND;
                config.tracks = tracks;
                VirtualRouter::new(config).unwrap()
            })
            .collect()
    }

    fn group(priority: u8) -> SyncGroup {
        SyncGroup::new(members(priority, [vec![], vec![]]))
    }

    fn advert_for(group: &SyncGroup, member: usize, priority: u8) -> Advert {
        let config = group.members()[member].config();
        Advert {
            vrid: config.vrid,
            priority,
            max_advert_interval: SECOND,
            addresses: config.virtual_addresses.clone(),
        }
    }

    const PEERS: [&str; 2] = ["192.0.2.3", "198.51.100.3"];

    fn drain(group: &mut SyncGroup) -> Vec<(usize, Action)> {
        std::iter::from_fn(|| group.poll_action()).collect()
    }

    fn states(group: &SyncGroup) -> Vec<State> {
        group.members().iter().map(VirtualRouter::state).collect()
    }

    /// A started group whose members both became Master together.
    fn master_group(tracks: [Vec<Track>; 2]) -> (SyncGroup, Instant) {
        let t0 = origin();
        let mut group = SyncGroup::new(members(200, tracks));
        group.startup(t0);
        let at = group.poll_timeout().unwrap();
        group.handle_timeout(at);
        assert_eq!(group.state(), State::Master);
        drain(&mut group);
        (group, at)
    }

    #[test]
    fn members_start_as_backup_and_become_master_together() {
        let t0 = origin();
        let mut group = group(200);
        group.startup(t0);
        assert_eq!(group.state(), State::Backup);
        let at = group.poll_timeout().unwrap();
        assert_eq!(at, t0 + master_down_interval(200, SECOND));
        group.handle_timeout(at);
        assert_eq!(states(&group), [State::Master, State::Master]);
        let adverts = drain(&mut group)
            .into_iter()
            .filter(|(_, a)| matches!(a, Action::SendAdvert(_)))
            .map(|(member, _)| member)
            .collect::<Vec<_>>();
        assert_eq!(adverts, [0, 1]);
    }

    #[test]
    fn member_that_wants_master_waits_while_a_sibling_still_hears_a_master() {
        let t0 = origin();
        let mut group = group(100);
        group.startup(t0);
        // The peer keeps advertising on link 1 only: link 0's Master went silent.
        let mut at = t0;
        while at < t0 + 10 * SECOND {
            let advert = advert_for(&group, 1, 200);
            group.handle_advert(at, 1, ip(PEERS[1]), &advert).unwrap();
            group.handle_timeout(at);
            at += SECOND;
        }
        assert_eq!(states(&group), [State::Backup, State::Backup]);
        assert!(group.members()[0].wants_master());
        // Link 1's Master goes silent too: now both want, and both take over at once.
        let when = group.poll_timeout().unwrap();
        assert_eq!(when, at - SECOND + master_down_interval(100, SECOND));
        group.handle_timeout(when);
        assert_eq!(states(&group), [State::Master, State::Master]);
        assert!(drain(&mut group).iter().any(|(_, a)| matches!(
            a,
            Action::StateChanged(c) if c.reason == Reason::MasterDown
        )));
    }

    #[test]
    fn member_preempted_makes_the_others_step_down_make_before_break() {
        let (mut group, since) = master_group([vec![], vec![]]);
        let advert = advert_for(&group, 0, 250);
        group
            .handle_advert(since, 0, ip(PEERS[0]), &advert)
            .unwrap();
        assert_eq!(group.members()[0].state(), State::Backup);
        assert_eq!(group.members()[1].state(), State::Master);
        assert_eq!(
            group.members()[1].step_down(),
            Some(StepDownCause::SyncGroup)
        );
        let actions = drain(&mut group);
        assert!(actions.iter().any(
            |(m, a)| *m == 1 && matches!(a, Action::SendAdvert(advert) if advert.priority == 0)
        ));
        assert!(
            !actions
                .iter()
                .any(|(m, a)| *m == 1 && matches!(a, Action::RemoveAddresses(_))),
            "member 1 keeps its VIP until its peer announces itself"
        );
        // Member 1's peer takes over and announces itself.
        let advert = advert_for(&group, 1, 100);
        group
            .handle_advert(since + SECOND, 1, ip(PEERS[1]), &advert)
            .unwrap();
        assert_eq!(group.state(), State::Backup);
        assert_eq!(states(&group), [State::Backup, State::Backup]);
    }

    #[test]
    fn fault_on_one_member_moves_the_whole_group_to_backup() {
        // Only member 1 tracks the server-side link.
        let (mut group, since) = master_group([vec![], vec![Track::fault("link:eth2")]]);
        let at = since + SECOND / 2;
        group.set_track(at, "link:eth2", TrackState::Down).unwrap();
        for member in group.members() {
            assert_eq!(member.step_down(), Some(StepDownCause::Fault));
            assert!(member.is_faulted());
        }
        // Both hand over, then neither takes over while the fault lasts.
        for (member, peer) in PEERS.iter().enumerate() {
            let advert = advert_for(&group, member, 100);
            group.handle_advert(at, member, ip(peer), &advert).unwrap();
        }
        assert_eq!(states(&group), [State::Backup, State::Backup]);
        assert_eq!(group.poll_timeout(), None);
        // The fault clears: both wait for their Master_Down_Timer again.
        let clear = at + 30 * SECOND;
        group.set_track(clear, "link:eth2", TrackState::Up).unwrap();
        assert_eq!(
            group.poll_timeout(),
            Some(clear + master_down_interval(200, SECOND))
        );
        assert!(group.set_track(clear, "link:eth9", TrackState::Up).is_err());
    }

    #[test]
    fn fault_cleared_during_step_down_keeps_the_whole_group_master() {
        let gateway = vec![Track::fault("gateway")];
        let (mut group, since) = master_group([gateway.clone(), gateway]);
        group.set_track(since, "gateway", TrackState::Down).unwrap();
        assert!(group.members().iter().all(|m| m.step_down().is_some()));
        group
            .set_track(since + SECOND / 2, "gateway", TrackState::Up)
            .unwrap();
        assert!(group.members().iter().all(VirtualRouter::holds_mastership));
    }

    #[test]
    fn owner_startup_pulls_the_other_members_to_master() {
        let t0 = origin();
        let mut members = members(100, [vec![], vec![]]);
        let mut owner = members[0].config().clone();
        owner.priority = 255;
        members[0] = VirtualRouter::new(owner).unwrap();
        let mut group = SyncGroup::new(members);
        group.startup(t0);
        assert_eq!(states(&group), [State::Master, State::Master]);
        assert!(drain(&mut group).iter().any(|(m, a)| *m == 1
            && matches!(a, Action::StateChanged(c) if c.reason == Reason::SyncGroup)));
    }

    #[test]
    fn group_shutdown_hands_every_member_over() {
        let (mut group, since) = master_group([vec![], vec![]]);
        group.shutdown(since);
        assert_eq!(group.state(), State::Master, "still holding until heard");
        let deadline = since + master_down_interval(200, SECOND);
        group.handle_timeout(deadline);
        assert_eq!(group.state(), State::Initialize);
    }

    #[test]
    fn single_member_group_behaves_like_its_router() {
        let t0 = origin();
        let mut config = Config::new(1, ip("192.0.2.2"), vec![ip("192.0.2.100")]);
        config.advert_interval = SECOND;
        let mut alone = VirtualRouter::new(config.clone()).unwrap();
        let mut group = SyncGroup::new(vec![VirtualRouter::new(config).unwrap()]);
        alone.startup(t0);
        group.startup(t0);
        assert_eq!(group.poll_timeout(), alone.poll_timeout());
        let at = alone.poll_timeout().unwrap();
        alone.handle_timeout(at);
        group.handle_timeout(at);
        assert_eq!(group.state(), alone.state());
        let from_alone: Vec<_> = std::iter::from_fn(|| alone.poll_action()).collect();
        let from_group: Vec<_> = drain(&mut group).into_iter().map(|(_, a)| a).collect();
        assert_eq!(from_group, from_alone);
    }
}
