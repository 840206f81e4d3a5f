//! One virtual router: RFC 5798 §6.4's state machine, sans-IO.
//!
//! The I/O loop feeds it events with the current time ([`startup`], [`handle_advert`],
//! [`handle_timeout`], [`set_track`], [`shutdown`]), asks [`poll_timeout`] when to call
//! [`handle_timeout`] next, and carries out what [`poll_action`] returns. Nothing here
//! reads a clock or touches a socket, so tests drive it with a simulated clock.
//!
//! [`startup`]: VirtualRouter::startup
//! [`handle_advert`]: VirtualRouter::handle_advert
//! [`handle_timeout`]: VirtualRouter::handle_timeout
//! [`set_track`]: VirtualRouter::set_track
//! [`shutdown`]: VirtualRouter::shutdown
//! [`poll_timeout`]: VirtualRouter::poll_timeout
//! [`poll_action`]: VirtualRouter::poll_action

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::action::Action;
use crate::advert::Advert;
use crate::config::{Config, ConfigError};
use crate::receive::{self, Accepted, DropReason};
use crate::state::{Reason, RoleChange, State, StepDownCause};
use crate::timers::{Timers, fire, master_down_interval, skew_time};
use crate::tracking::{TrackState, Tracker, UnknownTrack};

/// One virtual router (RFC 5798 §6): its configuration, state, timers and pending actions.
#[derive(Debug, Clone)]
pub struct VirtualRouter {
    config: Config,
    tracker: Tracker,
    state: State,
    /// RFC 5798 §6.1 Master_Adver_Interval: the current Master's advert interval, learnt
    /// from its adverts in Backup (§6.4.2).
    master_adver_interval: Duration,
    timers: Timers,
    /// Set while a Master steps down make-before-break: it advertises priority 0 and keeps
    /// the addresses until it hears the new Master.
    step_down: Option<StepDownCause>,
    /// Preempt_Mode takes effect from this time on (the preempt delay extension).
    preempt_from: Option<Instant>,
    /// A lower-priority router claimed Master: announce the addresses again after the next
    /// advert (see `master_receives`), and when that was last done.
    reannounce: Reannounce,
    group: GroupLink,
    actions: VecDeque<Action>,
}

/// The re-announcement after a lower-priority Master was heard.
#[derive(Debug, Clone, Copy, Default)]
struct Reannounce {
    pending: bool,
    last: Option<Instant>,
}

/// At most one re-announcement per this long, whatever a misbehaving peer sends.
const REANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// What a [`SyncGroup`](crate::SyncGroup) needs from a member.
#[derive(Debug, Clone, Copy, Default)]
struct GroupLink {
    /// The Master_Down_Timer only records the wish; the group decides (sync_group.rs).
    gated: bool,
    /// The Master_Down_Timer fired while gated, and no Master was heard since.
    wants_master: bool,
    /// A sibling has a fault.
    fault: bool,
}

impl VirtualRouter {
    /// A virtual router in Initialize (RFC 5798 §6.4.1), waiting for [`startup`]. Set the
    /// state of tracked objects before starting it, so it does not start as Master only to
    /// step down at once.
    ///
    /// [`startup`]: VirtualRouter::startup
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(VirtualRouter {
            tracker: Tracker::new(&config.tracks),
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            timers: Timers::default(),
            step_down: None,
            preempt_from: None,
            reannounce: Reannounce::default(),
            group: GroupLink::default(),
            actions: VecDeque::new(),
        })
    }

    /// The Startup event (RFC 5798 §6.4.1). Does nothing outside Initialize.
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        self.master_adver_interval = self.config.advert_interval;
        if self.config.is_address_owner() && !self.is_faulted() {
            // §6.4.1 "If the Priority = 255 ... Transition to the {Master} state".
            self.become_master(now, Reason::AddressOwner);
        } else {
            // §6.4.1 "else ... Set Master_Adver_Interval to Advertisement_Interval, Set the
            // Master_Down_Timer to Master_Down_Interval, Transition to the {Backup} state".
            self.set_state(State::Backup, Reason::Startup);
            self.preempt_from = Some(now + self.config.preempt_delay);
            self.arm_master_down(now + self.master_down_interval());
        }
    }

    /// The Shutdown event. In Backup: RFC 5798 §6.4.2. In Master, make-before-break
    /// instead of §6.4.3's immediate Initialize: advertise priority 0 but keep the
    /// addresses until the new Master is heard or Master_Down_Interval passes
    /// (docs/vrrp.md). Call it again later: it does not repeat anything.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {}
            State::Backup => {
                // §6.4.2 "If a Shutdown event is received, then: Cancel the
                // Master_Down_Timer, Transition to the {Initialize} state".
                self.timers.cancel_all();
                self.group.wants_master = false;
                self.set_state(State::Initialize, Reason::Shutdown);
            }
            State::Master => match self.step_down {
                None => self.begin_step_down(now, StepDownCause::Shutdown),
                Some(_) => self.step_down = Some(StepDownCause::Shutdown),
            },
        }
    }

    /// A received advert that passed [`validate`](crate::validate). Runs the checks of
    /// RFC 5798 §7.1 that need this router's configuration, then §6.4.2 or §6.4.3.
    pub fn handle_advert(
        &mut self,
        now: Instant,
        source: IpAddr,
        advert: &Advert,
    ) -> Result<Accepted, DropReason> {
        // While stepping down the owner must hear its successor, so it listens then.
        let owner_drops = self.config.is_address_owner() && self.step_down.is_none();
        let accepted = receive::check_for_router(&self.config, owner_drops, source, advert)?;
        match (self.state, self.step_down) {
            (State::Initialize, _) => {}
            (State::Backup, _) => self.backup_receives(now, advert),
            (State::Master, None) => self.master_receives(now, source, advert),
            (State::Master, Some(_)) => {
                // Backups do not advertise, so a non-zero priority advert from another
                // router is the new Master announcing itself: let go now.
                if advert.priority > 0 {
                    self.finish_step_down(now, Some((source, advert.max_advert_interval)));
                }
            }
        }
        Ok(accepted)
    }

    /// Runs the timers due at `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if fire(&mut self.timers.master_down, now) {
                    if self.group.gated {
                        self.group.wants_master = true;
                    } else {
                        // §6.4.2 "If the Master_Down_Timer fires, then: Send an
                        // ADVERTISEMENT ... Transition to the {Master} state".
                        self.become_master(now, Reason::MasterDown);
                    }
                }
            }
            State::Master => {
                if fire(&mut self.timers.step_down_deadline, now) {
                    self.finish_step_down(now, None);
                    return;
                }
                if fire(&mut self.timers.adver, now) {
                    // §6.4.3 "If the Adver_Timer fires, then: Send an ADVERTISEMENT, Reset
                    // the Adver_Timer to Advertisement_Interval". A Master stepping down
                    // keeps repeating priority 0, in case the first one was lost.
                    let priority = if self.step_down.is_some() {
                        0
                    } else {
                        self.priority()
                    };
                    self.send_advert(now, priority);
                    if std::mem::take(&mut self.reannounce.pending) && self.step_down.is_none() {
                        self.reannounce.last = Some(now);
                        self.actions.push_back(Action::SendGratuitous(
                            self.config.virtual_addresses.clone(),
                        ));
                    }
                }
                if fire(&mut self.timers.garp_repeat, now) {
                    self.actions.push_back(Action::SendGratuitous(
                        self.config.virtual_addresses.clone(),
                    ));
                }
            }
        }
    }

    /// Records the state of a tracked object ([`Track`](crate::Track)). A lower priority
    /// is advertised at once when Master; a fault makes a Master step down and keeps a
    /// Backup from taking over.
    pub fn set_track(
        &mut self,
        now: Instant,
        name: &str,
        state: TrackState,
    ) -> Result<(), UnknownTrack> {
        let before = self.eligibility();
        self.tracker.set(name, state)?;
        self.after_eligibility_change(now, before);
        Ok(())
    }

    /// When to call [`handle_timeout`](VirtualRouter::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Why this Master is stepping down, while it is.
    pub fn step_down(&self) -> Option<StepDownCause> {
        self.step_down
    }

    /// RFC 5798 §6.1 Priority as lowered by tracking: what this router advertises, except
    /// while stepping down, when it advertises 0.
    pub fn priority(&self) -> u8 {
        self.tracker.effective_priority(self.config.priority)
    }

    /// True while a fault forbids mastership: one of this router's fault objects, or one
    /// of a sync group sibling's.
    pub fn is_faulted(&self) -> bool {
        self.tracker.is_faulted() || self.group.fault
    }

    /// Names of this router's fault objects that are down.
    pub fn faults(&self) -> impl Iterator<Item = &str> {
        self.tracker.faults()
    }

    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // RFC 5798 §6.4.2, "If an ADVERTISEMENT is received".
    fn backup_receives(&mut self, now: Instant, advert: &Advert) {
        if advert.priority == 0 {
            // "If the Priority in the ADVERTISEMENT is zero, then: Set the
            // Master_Down_Timer to Skew_Time".
            self.arm_master_down(now + skew_time(self.priority(), self.master_adver_interval));
        } else if !self.preempts(now) || advert.priority >= self.priority() {
            // "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is greater
            // than or equal to the local Priority, then: Set Master_Adver_Interval to Adver
            // Interval contained in the ADVERTISEMENT, Recompute the Master_Down_Interval,
            // Reset the Master_Down_Timer to Master_Down_Interval".
            self.master_adver_interval = advert.max_advert_interval;
            self.group.wants_master = false;
            self.arm_master_down(now + self.master_down_interval());
        }
        // "else ... Discard the ADVERTISEMENT": the lower-priority Master no longer resets
        // the Master_Down_Timer, which fires, and this router preempts it.
    }

    // RFC 5798 §6.4.3, "If an ADVERTISEMENT is received".
    fn master_receives(&mut self, now: Instant, source: IpAddr, advert: &Advert) {
        let local = self.priority();
        if advert.priority == 0 {
            // "If the Priority in the ADVERTISEMENT is zero, then: Send an ADVERTISEMENT,
            // Reset the Adver_Timer to Advertisement_Interval".
            self.send_advert(now, local);
        } else if advert.priority > local
            || (advert.priority == local && source > self.config.primary_address)
        {
            // "If the Priority in the ADVERTISEMENT is greater than the local Priority or
            // the Priority in the ADVERTISEMENT is equal to the local Priority and the
            // primary IPvX address of the sender is greater than the local primary IPvX
            // address (based on an unsigned integer comparison of the IPvX addresses in
            // network byte order)": `IpAddr`'s order within a family is exactly that.
            let reason = Reason::Preempted {
                by: source,
                priority: advert.priority,
            };
            self.leave_master(now, reason, advert.max_advert_interval);
        } else if self
            .reannounce
            .last
            .is_none_or(|last| now.duration_since(last) >= REANNOUNCE_EVERY)
        {
            // "else ... Discard ADVERTISEMENT" — and the protocol is satisfied: our next
            // advert makes that router a Backup again. But it took the addresses for a
            // moment and announced them, so clients may now send to its MAC, which is about
            // to stop answering for them. Announce them again right after that advert (not
            // now: its own announcement may still be on the wire), as keepalived's
            // `garp_lower_prio_repeat` does. Outside VRRP's messages: no protocol deviation.
            self.reannounce.pending = true;
        }
    }

    fn preempts(&self, now: Instant) -> bool {
        self.config.preempt && self.preempt_from.is_none_or(|from| now >= from)
    }

    fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority(), self.master_adver_interval)
    }

    /// A faulted router never arms the Master_Down_Timer: it must not become Master.
    fn arm_master_down(&mut self, at: Instant) {
        if !self.is_faulted() {
            self.timers.master_down = Some(at);
        }
    }

    fn send_advert(&mut self, now: Instant, priority: u8) {
        self.actions.push_back(Action::SendAdvert(Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_interval: self.config.advert_interval,
            addresses: self.config.virtual_addresses.clone(),
        }));
        self.timers.adver = Some(now + self.config.advert_interval);
    }

    fn set_state(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.actions
            .push_back(Action::StateChanged(RoleChange { from, to, reason }));
    }

    /// RFC 5798 §6.4.1 (owner) and §6.4.2 (Master_Down_Timer fired): send an
    /// ADVERTISEMENT, announce the addresses, set the Adver_Timer, become Master. The
    /// addresses are added first: they must be in place before anyone hears the advert.
    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.timers.master_down = None;
        self.group.wants_master = false;
        self.set_state(State::Master, reason);
        let addresses = self.config.virtual_addresses.clone();
        self.actions.push_back(Action::AddAddresses {
            addresses: addresses.clone(),
            // §6.4.3 "MUST accept packets addressed to the IPvX address(es) associated
            // with the virtual router if it is the IPvX address owner or if Accept_Mode is
            // True".
            accept_traffic: self.config.accept_mode || self.config.is_address_owner(),
        });
        self.send_advert(now, self.priority());
        self.actions.push_back(Action::SendGratuitous(addresses));
        self.timers.garp_repeat = self.config.garp_repeat_delay.map(|delay| now + delay);
    }

    /// RFC 5798 §6.4.3: "Cancel Adver_Timer, Set Master_Adver_Interval to Adver Interval
    /// contained in the ADVERTISEMENT, Recompute the Skew_Time, Recompute the
    /// Master_Down_Interval, Set Master_Down_Timer to Master_Down_Interval, Transition to
    /// the {Backup} state".
    fn leave_master(&mut self, now: Instant, reason: Reason, master_adver_interval: Duration) {
        self.step_down = None;
        self.timers.cancel_all();
        self.set_state(State::Backup, reason);
        self.actions.push_back(Action::RemoveAddresses(
            self.config.virtual_addresses.clone(),
        ));
        self.master_adver_interval = master_adver_interval;
        self.arm_master_down(now + self.master_down_interval());
    }

    fn begin_step_down(&mut self, now: Instant, cause: StepDownCause) {
        self.step_down = Some(cause);
        // A repeated announcement now would pull traffic back from the new Master.
        self.timers.garp_repeat = None;
        // The priority 0 advert makes a Backup take over after its Skew_Time (§6.4.2);
        // if none does, give up after the time a Backup would wait for a dead Master.
        self.send_advert(now, 0);
        self.timers.step_down_deadline =
            Some(now + master_down_interval(self.priority(), self.config.advert_interval));
    }

    /// Ends a step-down: `heard` is the new Master and its interval, `None` on timeout.
    fn finish_step_down(&mut self, now: Instant, heard: Option<(IpAddr, Duration)>) {
        let Some(cause) = self.step_down.take() else {
            return;
        };
        let reason = Reason::SteppedDown {
            cause,
            new_master: heard.map(|(source, _)| source),
        };
        match cause {
            StepDownCause::Shutdown => {
                self.timers.cancel_all();
                self.set_state(State::Initialize, reason);
                self.actions.push_back(Action::RemoveAddresses(
                    self.config.virtual_addresses.clone(),
                ));
            }
            StepDownCause::Fault | StepDownCause::SyncGroup => {
                let interval = heard.map_or(self.config.advert_interval, |(_, i)| i);
                self.leave_master(now, reason, interval);
            }
        }
    }

    /// The reason to step down went away before anyone took over: stay Master and say so
    /// with our real priority at once.
    fn cancel_step_down(&mut self, now: Instant) {
        self.step_down = None;
        self.timers.step_down_deadline = None;
        self.send_advert(now, self.priority());
    }

    fn eligibility(&self) -> (bool, u8) {
        (self.is_faulted(), self.priority())
    }

    fn after_eligibility_change(&mut self, now: Instant, (was_faulted, old_priority): (bool, u8)) {
        let faulted = self.is_faulted();
        if faulted && !was_faulted {
            self.enter_fault(now);
        } else if was_faulted && !faulted {
            self.leave_fault(now);
        } else if self.priority() != old_priority
            && self.state == State::Master
            && self.step_down.is_none()
        {
            // Advertise the new priority now rather than at the next Adver_Timer, so a
            // Backup with preemption stops resetting its Master_Down_Timer at once.
            self.send_advert(now, self.priority());
        }
    }

    fn enter_fault(&mut self, now: Instant) {
        match self.state {
            State::Master if self.step_down.is_none() => {
                self.begin_step_down(now, StepDownCause::Fault);
            }
            State::Backup => {
                self.timers.master_down = None;
                self.group.wants_master = false;
            }
            State::Master | State::Initialize => {}
        }
    }

    fn leave_fault(&mut self, now: Instant) {
        match self.state {
            State::Master if self.step_down == Some(StepDownCause::Fault) => {
                self.cancel_step_down(now);
            }
            State::Backup if self.config.is_address_owner() => {
                self.become_master(now, Reason::AddressOwner);
            }
            State::Backup => {
                // Like a Startup (§6.4.1), preempt delay included.
                self.preempt_from = Some(now + self.config.preempt_delay);
                self.arm_master_down(now + self.master_down_interval());
            }
            State::Master | State::Initialize => {}
        }
    }
}

/// The hooks a [`SyncGroup`](crate::SyncGroup) drives its members with.
impl VirtualRouter {
    pub(crate) fn set_gated(&mut self, gated: bool) {
        self.group.gated = gated;
    }

    pub(crate) fn wants_master(&self) -> bool {
        self.group.wants_master
    }

    /// Master and not stepping down.
    pub(crate) fn holds_mastership(&self) -> bool {
        self.state == State::Master && self.step_down.is_none()
    }

    pub(crate) fn has_own_fault(&self) -> bool {
        self.tracker.is_faulted()
    }

    pub(crate) fn has_track(&self, name: &str) -> bool {
        self.tracker.has(name)
    }

    pub(crate) fn set_group_fault(&mut self, now: Instant, fault: bool) {
        let before = self.eligibility();
        self.group.fault = fault;
        self.after_eligibility_change(now, before);
    }

    /// The group goes Master: a Backup takes over, a group step-down is called off.
    pub(crate) fn group_promote(&mut self, now: Instant) {
        match self.state {
            State::Backup if !self.is_faulted() => {
                let reason = if self.group.wants_master {
                    Reason::MasterDown
                } else {
                    Reason::SyncGroup
                };
                self.become_master(now, reason);
            }
            State::Master if self.step_down == Some(StepDownCause::SyncGroup) => {
                self.cancel_step_down(now);
            }
            _ => {}
        }
    }

    /// The group goes Backup: a Master steps down make-before-break.
    pub(crate) fn group_step_down(&mut self, now: Instant) {
        if self.holds_mastership() {
            self.begin_step_down(now, StepDownCause::SyncGroup);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tracking::Track;

    pub(crate) fn origin() -> Instant {
        #[allow(clippy::disallowed_methods)] // the simulated clock's origin
        Instant::now()
    }

    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);
    const PEER: &str = "10.0.0.3";

    /// VRID 51, us at 10.0.0.2, VIP 10.0.0.100, 1 s adverts.
    fn config(priority: u8) -> Config {
        let mut config = Config::new(51, ip("10.0.0.2"), vec![ip("10.0.0.100")]);
        config.priority = priority;
        config.advert_interval = SECOND;
        config
    }

    fn advert(priority: u8, interval: Duration) -> Advert {
        Advert {
            vrid: 51,
            priority,
            max_advert_interval: interval,
            addresses: vec![ip("10.0.0.100")],
        }
    }

    fn drain(router: &mut VirtualRouter) -> Vec<Action> {
        std::iter::from_fn(|| router.poll_action()).collect()
    }

    fn started(config: Config, t0: Instant) -> VirtualRouter {
        let mut router = VirtualRouter::new(config).unwrap();
        router.startup(t0);
        drain(&mut router);
        router
    }

    /// A router that became Master at `t0 + Master_Down_Interval`; returns that time.
    fn master(config: Config, t0: Instant) -> (VirtualRouter, Instant) {
        let mut router = started(config, t0);
        let at = router.poll_timeout().unwrap();
        router.handle_timeout(at);
        assert_eq!(router.state(), State::Master);
        drain(&mut router);
        (router, at)
    }

    fn sent_priorities(actions: &[Action]) -> Vec<u8> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendAdvert(advert) => Some(advert.priority),
                _ => None,
            })
            .collect()
    }

    fn changes(actions: &[Action]) -> Vec<RoleChange> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StateChanged(change) => Some(*change),
                _ => None,
            })
            .collect()
    }

    fn removes(actions: &[Action]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, Action::RemoveAddresses(_)))
    }

    #[test]
    fn new_router_waits_in_initialize() {
        let mut router = VirtualRouter::new(config(100)).unwrap();
        assert_eq!(router.state(), State::Initialize);
        assert_eq!(router.poll_timeout(), None);
        assert_eq!(router.poll_action(), None);
        assert!(VirtualRouter::new(config(0)).is_err());
    }

    #[test]
    fn rfc5798_6_4_1_address_owner_becomes_master_at_startup() {
        let t0 = origin();
        let mut config = config(255);
        config.accept_mode = false;
        let mut router = VirtualRouter::new(config).unwrap();
        router.startup(t0);
        let vips = vec![ip("10.0.0.100")];
        assert_eq!(
            drain(&mut router),
            vec![
                Action::StateChanged(RoleChange {
                    from: State::Initialize,
                    to: State::Master,
                    reason: Reason::AddressOwner
                }),
                // §6.4.3: the owner accepts traffic whatever Accept_Mode says.
                Action::AddAddresses {
                    addresses: vips.clone(),
                    accept_traffic: true
                },
                Action::SendAdvert(advert(255, SECOND)),
                Action::SendGratuitous(vips),
            ]
        );
        // "Set the Adver_Timer to Advertisement_Interval".
        assert_eq!(router.poll_timeout(), Some(t0 + SECOND));
    }

    #[test]
    fn rfc5798_6_4_1_non_owner_starts_as_backup_with_master_down_timer() {
        let t0 = origin();
        let mut router = VirtualRouter::new(config(100)).unwrap();
        router.startup(t0);
        assert_eq!(
            drain(&mut router),
            vec![Action::StateChanged(RoleChange {
                from: State::Initialize,
                to: State::Backup,
                reason: Reason::Startup
            })]
        );
        assert_eq!(router.master_adver_interval(), SECOND);
        assert_eq!(
            router.poll_timeout(),
            Some(t0 + Duration::from_micros(3_609_375))
        );
        router.startup(t0 + SECOND);
        assert!(drain(&mut router).is_empty(), "Startup outside Initialize");
    }

    #[test]
    fn rfc5798_6_4_2_master_down_timer_makes_backup_master() {
        let t0 = origin();
        let mut router = started(config(100), t0);
        let fires_at = router.poll_timeout().unwrap();
        router.handle_timeout(fires_at - Duration::from_nanos(1));
        assert_eq!(router.state(), State::Backup, "not a nanosecond early");
        router.handle_timeout(fires_at);
        assert_eq!(router.state(), State::Master);
        let actions = drain(&mut router);
        assert_eq!(
            changes(&actions),
            [RoleChange {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterDown
            }]
        );
        assert_eq!(sent_priorities(&actions), [100]);
        assert!(actions.contains(&Action::SendGratuitous(vec![ip("10.0.0.100")])));
        assert!(actions.contains(&Action::AddAddresses {
            addresses: vec![ip("10.0.0.100")],
            accept_traffic: true
        }));
        assert_eq!(router.poll_timeout(), Some(fires_at + SECOND));
    }

    #[test]
    fn rfc5798_6_4_2_backup_learns_master_adver_interval() {
        let t0 = origin();
        let mut router = started(config(100), t0);
        let at = t0 + Duration::from_millis(500);
        let slow = Duration::from_millis(2500);
        router
            .handle_advert(at, ip(PEER), &advert(200, slow))
            .unwrap();
        assert_eq!(router.master_adver_interval(), slow);
        // 3 * 2.5 s + (156 / 256) * 2.5 s
        assert_eq!(
            router.poll_timeout(),
            Some(at + Duration::from_nanos(9_023_437_500))
        );
    }

    #[test]
    fn rfc5798_6_4_2_priority_zero_sets_master_down_timer_to_skew_time() {
        let t0 = origin();
        let mut router = started(config(100), t0);
        router
            .handle_advert(t0, ip(PEER), &advert(200, SECOND))
            .unwrap();
        let at = t0 + Duration::from_millis(700);
        router
            .handle_advert(at, ip(PEER), &advert(0, SECOND))
            .unwrap();
        assert_eq!(
            router.poll_timeout(),
            Some(at + Duration::from_micros(609_375))
        );
        router.handle_timeout(at + Duration::from_micros(609_375));
        assert_eq!(router.state(), State::Master);
    }

    #[test]
    fn rfc5798_6_4_2_with_preempt_lower_priority_adverts_are_discarded() {
        let t0 = origin();
        let mut router = started(config(150), t0);
        let armed = router.poll_timeout();
        router
            .handle_advert(t0 + SECOND, ip(PEER), &advert(100, SECOND))
            .unwrap();
        assert_eq!(router.poll_timeout(), armed, "timer not reset");
        router.handle_timeout(armed.unwrap());
        assert_eq!(router.state(), State::Master, "preempted the lower Master");
    }

    #[test]
    fn rfc5798_6_4_2_without_preempt_lower_priority_adverts_reset_the_timer() {
        let t0 = origin();
        let mut config = config(150);
        config.preempt = false;
        let mut router = started(config, t0);
        for n in 1..=10 {
            let at = t0 + n * SECOND;
            router
                .handle_advert(at, ip(PEER), &advert(100, SECOND))
                .unwrap();
            router.handle_timeout(at);
            assert_eq!(
                router.poll_timeout(),
                Some(at + master_down_interval(150, SECOND))
            );
        }
        assert_eq!(router.state(), State::Backup);
    }

    #[test]
    fn rfc5798_6_4_2_equal_priority_resets_the_timer_even_with_preempt() {
        let t0 = origin();
        let mut router = started(config(150), t0);
        let at = t0 + SECOND;
        router
            .handle_advert(at, ip(PEER), &advert(150, SECOND))
            .unwrap();
        assert_eq!(
            router.poll_timeout(),
            Some(at + master_down_interval(150, SECOND))
        );
    }

    #[test]
    fn rfc5798_6_4_2_shutdown_in_backup_goes_to_initialize() {
        let t0 = origin();
        let mut router = started(config(100), t0);
        router.shutdown(t0 + SECOND);
        assert_eq!(router.state(), State::Initialize);
        assert_eq!(router.poll_timeout(), None, "Master_Down_Timer cancelled");
        assert_eq!(
            changes(&drain(&mut router)),
            [RoleChange {
                from: State::Backup,
                to: State::Initialize,
                reason: Reason::Shutdown
            }]
        );
        // Initialize ignores adverts and can start again.
        assert!(
            router
                .handle_advert(t0, ip(PEER), &advert(0, SECOND))
                .is_ok()
        );
        router.startup(t0 + 2 * SECOND);
        assert_eq!(router.state(), State::Backup);
    }

    #[test]
    fn rfc5798_6_4_3_master_advertises_every_advertisement_interval() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        for n in 1..=5 {
            assert_eq!(router.poll_timeout(), Some(since + n * SECOND));
            router.handle_timeout(since + n * SECOND);
            assert_eq!(sent_priorities(&drain(&mut router)), [100]);
        }
    }

    #[test]
    fn rfc5798_6_4_3_master_answers_priority_zero_with_an_advert_at_once() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        let at = since + Duration::from_millis(300);
        router
            .handle_advert(at, ip(PEER), &advert(0, SECOND))
            .unwrap();
        assert_eq!(sent_priorities(&drain(&mut router)), [100]);
        assert_eq!(
            router.poll_timeout(),
            Some(at + SECOND),
            "Adver_Timer reset"
        );
        assert_eq!(router.state(), State::Master);
    }

    #[test]
    fn rfc5798_6_4_3_master_yields_to_higher_priority() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        let at = since + Duration::from_millis(300);
        let their_interval = Duration::from_millis(200);
        router
            .handle_advert(at, ip(PEER), &advert(101, their_interval))
            .unwrap();
        let actions = drain(&mut router);
        assert_eq!(
            changes(&actions),
            [RoleChange {
                from: State::Master,
                to: State::Backup,
                reason: Reason::Preempted {
                    by: ip(PEER),
                    priority: 101
                }
            }]
        );
        assert!(removes(&actions));
        assert!(sent_priorities(&actions).is_empty());
        assert_eq!(router.master_adver_interval(), their_interval);
        assert_eq!(
            router.poll_timeout(),
            Some(at + master_down_interval(100, their_interval)),
            "Adver_Timer cancelled, Master_Down_Timer set"
        );
    }

    #[test]
    fn rfc5798_6_4_3_equal_priority_from_higher_address_wins() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        router
            .handle_advert(since, ip("10.0.0.1"), &advert(100, SECOND))
            .unwrap();
        assert_eq!(
            router.state(),
            State::Master,
            "10.0.0.1 < 10.0.0.2: discarded"
        );
        router
            .handle_advert(since, ip("10.0.0.3"), &advert(100, SECOND))
            .unwrap();
        assert_eq!(router.state(), State::Backup, "10.0.0.3 > 10.0.0.2");
    }

    #[test]
    fn rfc5798_6_4_3_tie_break_compares_ipv6_addresses_as_unsigned_integers() {
        let t0 = origin();
        let mut config = Config::new(5, ip("fe80::2:0"), vec![ip("fe80::100")]);
        config.advert_interval = SECOND;
        let (mut router, since) = master(config, t0);
        let mut v6 = advert(100, SECOND);
        v6.vrid = 5;
        v6.addresses = vec![ip("fe80::100")];
        router
            .handle_advert(since, ip("fe80::1:ffff"), &v6)
            .unwrap();
        assert_eq!(router.state(), State::Master);
        router.handle_advert(since, ip("fe80::2:1"), &v6).unwrap();
        assert_eq!(router.state(), State::Backup);
    }

    #[test]
    fn rfc5798_6_4_3_master_discards_lower_priority() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        let timer = router.poll_timeout();
        router
            .handle_advert(since, ip(PEER), &advert(99, SECOND))
            .unwrap();
        assert_eq!(router.state(), State::Master);
        assert!(drain(&mut router).is_empty());
        assert_eq!(router.poll_timeout(), timer);
    }

    #[test]
    fn a_master_that_heard_a_lower_priority_master_announces_again_after_its_next_advert() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        router
            .handle_advert(since, ip(PEER), &advert(99, SECOND))
            .unwrap();
        let at = router.poll_timeout().unwrap();
        router.handle_timeout(at);
        let actions = drain(&mut router);
        assert!(
            matches!(
                actions.as_slice(),
                [Action::SendAdvert(_), Action::SendGratuitous(_)]
            ),
            "{actions:?}"
        );
        // Once: the next advert goes out alone.
        let at = router.poll_timeout().unwrap();
        router.handle_timeout(at);
        assert!(matches!(
            drain(&mut router).as_slice(),
            [Action::SendAdvert(_)]
        ));
        // A peer that keeps claiming gets at most one re-announcement a second.
        let mut announced = 0;
        let mut now = at;
        while now < at + Duration::from_millis(2500) {
            router
                .handle_advert(now, ip(PEER), &advert(99, SECOND))
                .unwrap();
            now = router.poll_timeout().unwrap();
            router.handle_timeout(now);
            announced += drain(&mut router)
                .iter()
                .filter(|a| matches!(a, Action::SendGratuitous(_)))
                .count();
        }
        assert!(
            (2..=3).contains(&announced),
            "{announced} re-announcements in 2.5 s"
        );
    }

    #[test]
    fn rfc5798_6_4_3_accept_mode_decides_whether_the_master_accepts_traffic() {
        for (accept_mode, expected) in [(true, true), (false, false)] {
            let mut config = config(100);
            config.accept_mode = accept_mode;
            let mut router = started(config, origin());
            let at = router.poll_timeout().unwrap();
            router.handle_timeout(at);
            assert!(drain(&mut router).contains(&Action::AddAddresses {
                addresses: vec![ip("10.0.0.100")],
                accept_traffic: expected
            }));
        }
    }

    #[test]
    fn rfc5798_7_1_address_owner_drops_adverts_but_not_while_stepping_down() {
        let t0 = origin();
        let mut router = started(config(255), t0);
        assert_eq!(
            router.handle_advert(t0, ip(PEER), &advert(255, SECOND)),
            Err(DropReason::AddressOwner)
        );
        router.shutdown(t0);
        assert!(
            router
                .handle_advert(t0, ip(PEER), &advert(100, SECOND))
                .is_ok()
        );
        assert_eq!(router.state(), State::Initialize);
    }

    #[test]
    fn adverts_failing_router_checks_change_nothing() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        let mut other_vrid = advert(200, SECOND);
        other_vrid.vrid = 52;
        assert_eq!(
            router.handle_advert(since, ip(PEER), &other_vrid),
            Err(DropReason::VridMismatch)
        );
        assert_eq!(router.state(), State::Master);
        let mut config = config(100);
        config.peers = vec![ip(PEER)];
        let (mut router, since) = master(config, t0);
        assert_eq!(
            router.handle_advert(since, ip("10.0.0.66"), &advert(200, SECOND)),
            Err(DropReason::UnknownSource)
        );
        assert_eq!(router.state(), State::Master);
    }

    #[test]
    fn address_list_mismatch_is_processed_and_reported() {
        let t0 = origin();
        let (mut router, since) = master(config(100), t0);
        let mut other_list = advert(200, SECOND);
        other_list.addresses = vec![ip("10.0.0.101")];
        assert_eq!(
            router.handle_advert(since, ip(PEER), &other_list),
            Ok(Accepted {
                address_list_mismatch: true
            })
        );
        assert_eq!(router.state(), State::Backup);
    }

    #[test]
    fn graceful_shutdown_sends_priority_zero_and_keeps_addresses_until_new_master() {
        let t0 = origin();
        let (mut router, since) = master(config(200), t0);
        let stop = since + Duration::from_millis(250);
        router.shutdown(stop);
        let actions = drain(&mut router);
        assert_eq!(sent_priorities(&actions), [0]);
        assert!(!removes(&actions), "make before break: addresses stay");
        assert_eq!(router.state(), State::Master);
        assert_eq!(router.step_down(), Some(StepDownCause::Shutdown));

        // The Backup takes over after its Skew_Time and announces itself.
        let heard = stop + Duration::from_millis(610);
        router
            .handle_advert(heard, ip(PEER), &advert(100, SECOND))
            .unwrap();
        let actions = drain(&mut router);
        assert_eq!(
            changes(&actions),
            [RoleChange {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::SteppedDown {
                    cause: StepDownCause::Shutdown,
                    new_master: Some(ip(PEER))
                }
            }]
        );
        assert!(removes(&actions));
        assert_eq!(router.poll_timeout(), None);
    }

    #[test]
    fn graceful_shutdown_repeats_priority_zero_each_interval_until_the_deadline() {
        let t0 = origin();
        let (mut router, since) = master(config(200), t0);
        router.shutdown(since);
        drain(&mut router);
        let deadline = since + master_down_interval(200, SECOND);
        for n in 1..=3 {
            router.handle_timeout(since + n * SECOND);
            assert_eq!(sent_priorities(&drain(&mut router)), [0]);
        }
        assert_eq!(router.poll_timeout(), Some(deadline));
        router.handle_timeout(deadline);
        let actions = drain(&mut router);
        assert!(removes(&actions), "nobody took over: let go at the bound");
        assert_eq!(
            changes(&actions)[0].reason,
            Reason::SteppedDown {
                cause: StepDownCause::Shutdown,
                new_master: None
            }
        );
        assert_eq!(router.state(), State::Initialize);
    }

    #[test]
    fn step_down_ignores_priority_zero_and_a_second_shutdown() {
        let t0 = origin();
        let (mut router, since) = master(config(200), t0);
        router.shutdown(since);
        drain(&mut router);
        // Another router stopping too is not a new Master.
        router
            .handle_advert(since, ip(PEER), &advert(0, SECOND))
            .unwrap();
        assert_eq!(router.state(), State::Master);
        let deadline = since + master_down_interval(200, SECOND);
        router.shutdown(since + SECOND / 2);
        assert!(drain(&mut router).is_empty(), "nothing is repeated");
        router.handle_timeout(deadline);
        assert_eq!(
            router.state(),
            State::Initialize,
            "the first deadline holds"
        );
    }

    #[test]
    fn garp_is_repeated_after_the_configured_delay_and_not_after_leaving_master() {
        let t0 = origin();
        let mut config = config(100);
        config.garp_repeat_delay = Some(Duration::from_millis(2500));
        let (mut router, since) = master(config.clone(), t0);
        let repeat = since + Duration::from_millis(2500);
        router.handle_timeout(since + 2 * SECOND);
        drain(&mut router);
        router.handle_timeout(repeat);
        assert_eq!(
            drain(&mut router),
            vec![Action::SendGratuitous(vec![ip("10.0.0.100")])]
        );

        let (mut router, since) = master(config.clone(), t0);
        router.shutdown(since + SECOND);
        for n in 2..=3 {
            router.handle_timeout(since + n * SECOND);
        }
        assert!(
            !drain(&mut router)
                .iter()
                .any(|a| matches!(a, Action::SendGratuitous(_))),
            "a stepping-down Master must not pull traffic back"
        );

        config.garp_repeat_delay = None;
        let (router, since) = master(config, t0);
        assert_eq!(router.poll_timeout(), Some(since + SECOND));
    }

    #[test]
    fn preempt_delay_holds_preemption_after_startup() {
        let t0 = origin();
        let mut config = config(200);
        config.preempt_delay = Duration::from_secs(10);
        let mut router = started(config, t0);
        // A lower-priority Master advertising every second keeps us Backup for 10 s...
        let mut at = t0;
        while at < t0 + Duration::from_secs(10) {
            router
                .handle_advert(at, ip(PEER), &advert(100, SECOND))
                .unwrap();
            router.handle_timeout(at);
            assert_eq!(router.state(), State::Backup, "at {:?}", at - t0);
            at += SECOND;
        }
        // ...then its adverts are discarded and the timer runs out.
        let armed = router.poll_timeout().unwrap();
        router
            .handle_advert(at, ip(PEER), &advert(100, SECOND))
            .unwrap();
        assert_eq!(router.poll_timeout(), Some(armed));
        router.handle_timeout(armed);
        assert_eq!(router.state(), State::Master);
    }

    #[test]
    fn lowering_priority_in_master_is_advertised_at_once() {
        let t0 = origin();
        let mut config = config(200);
        config.tracks = vec![Track::weight("pool:web", 120)];
        let (mut router, since) = master(config, t0);
        let at = since + Duration::from_millis(100);
        router.set_track(at, "pool:web", TrackState::Down).unwrap();
        assert_eq!(router.priority(), 80);
        assert_eq!(sent_priorities(&drain(&mut router)), [80]);
        assert_eq!(router.poll_timeout(), Some(at + SECOND));
        // The same state again changes nothing.
        router.set_track(at, "pool:web", TrackState::Down).unwrap();
        assert!(drain(&mut router).is_empty());
        assert_eq!(
            router.set_track(at, "nope", TrackState::Down),
            Err(UnknownTrack("nope".into()))
        );
    }

    #[test]
    fn fault_makes_the_master_step_down_make_before_break() {
        let t0 = origin();
        let mut config = config(200);
        config.tracks = vec![Track::fault("gateway")];
        let (mut router, since) = master(config, t0);
        router
            .set_track(since, "gateway", TrackState::Down)
            .unwrap();
        assert!(router.is_faulted());
        assert_eq!(router.faults().collect::<Vec<_>>(), ["gateway"]);
        let actions = drain(&mut router);
        assert_eq!(sent_priorities(&actions), [0]);
        assert!(!removes(&actions));
        let heard = since + Duration::from_millis(700);
        router
            .handle_advert(heard, ip(PEER), &advert(100, SECOND))
            .unwrap();
        let actions = drain(&mut router);
        assert!(removes(&actions));
        assert_eq!(router.state(), State::Backup);
        assert_eq!(
            changes(&actions)[0].reason,
            Reason::SteppedDown {
                cause: StepDownCause::Fault,
                new_master: Some(ip(PEER))
            }
        );
        // A faulted Backup never takes over, even when the Master goes silent.
        assert_eq!(router.poll_timeout(), None);
        router
            .handle_advert(heard, ip(PEER), &advert(0, SECOND))
            .unwrap();
        assert_eq!(router.poll_timeout(), None);
        // Once the fault clears it waits Master_Down_Interval like at startup.
        let clear = heard + 60 * SECOND;
        router.set_track(clear, "gateway", TrackState::Up).unwrap();
        assert_eq!(
            router.poll_timeout(),
            Some(clear + master_down_interval(200, SECOND))
        );
    }

    #[test]
    fn fault_cleared_during_step_down_keeps_the_master() {
        let t0 = origin();
        let mut config = config(200);
        config.tracks = vec![Track::fault("link:eth1")];
        let (mut router, since) = master(config, t0);
        router
            .set_track(since, "link:eth1", TrackState::Down)
            .unwrap();
        drain(&mut router);
        let back = since + Duration::from_millis(300);
        router.set_track(back, "link:eth1", TrackState::Up).unwrap();
        assert_eq!(router.step_down(), None);
        assert_eq!(router.state(), State::Master);
        assert_eq!(sent_priorities(&drain(&mut router)), [200]);
        assert_eq!(router.poll_timeout(), Some(back + SECOND));
    }

    #[test]
    fn fault_at_startup_keeps_the_owner_backup_until_it_clears() {
        let t0 = origin();
        let mut config = config(255);
        config.tracks = vec![Track::fault("dataplane")];
        let mut router = VirtualRouter::new(config).unwrap();
        router.set_track(t0, "dataplane", TrackState::Down).unwrap();
        router.startup(t0);
        assert_eq!(router.state(), State::Backup);
        assert_eq!(router.poll_timeout(), None);
        router
            .set_track(t0 + SECOND, "dataplane", TrackState::Up)
            .unwrap();
        assert_eq!(router.state(), State::Master);
        assert_eq!(
            changes(&drain(&mut router)).last().unwrap().reason,
            Reason::AddressOwner
        );
    }
}
