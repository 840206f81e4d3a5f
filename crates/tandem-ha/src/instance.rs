//! The heartbeat's state and its loop: the sync groups of `tandem-vrrp` routers, the
//! sockets and links they use, the tracked objects, the pair's role.
//!
//! One task on a current-thread runtime owns all of it. It waits on the next protocol
//! deadline (`poll_timeout`), the packets and other inputs of its tasks, and the commands
//! of the [`HaHandle`](crate::HaHandle); handles one at a time (events.rs); carries out the
//! resulting actions in order (actions.rs); and publishes the status.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tandem_config::ProbeMethod;
use tandem_net::gateway_probe::ArpProbe;
use tandem_net::{Delivery, IpFamily, LinkWatch, Netlink};
use tandem_vrrp::{DropCounters, State, SyncGroup, Track, TrackState, VirtualRouter};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{GatewayConfig, HaConfig, RouterConfig, track};
use crate::handle::HaError;
use crate::network::{
    SocketKey, SocketRt, VipLink, interface_error, prepare_vip_link, vmac_source,
};
use crate::notify::{Job, Notifier};
use crate::status::{HaStatus, Role, RouterStatus, TrackStatus, Transition};
use crate::tasks::{GatewayProbe, Input, spawn_gateway_prober, spawn_link_watch};

/// What the [`HaHandle`](crate::HaHandle) asks of the loop.
#[derive(Debug)]
pub(crate) enum Command {
    SetTrack(String, TrackState),
    FailoverNow,
    Shutdown(oneshot::Sender<()>),
    Apply(Box<HaConfig>, oneshot::Sender<Result<(), HaError>>),
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: u64,
    pub received: u64,
    pub send_errors: u64,
    pub mismatches: u64,
    pub transitions: u64,
    pub drops: DropCounters,
}

/// One virtual router's I/O side; its protocol side is the `VirtualRouter` at the same
/// index of its group.
#[derive(Debug)]
pub(crate) struct RouterRt {
    pub config: RouterConfig,
    pub tracks: Vec<Track>,
    pub socket: SocketKey,
    /// Our address on the link: the source of our adverts (RFC 5798 §5.1.1.1, §5.1.2.1).
    pub primary: IpAddr,
    pub link: VipLink,
    pub counters: Counters,
    pub master: Option<IpAddr>,
    pub last_transition: Option<Transition>,
    /// The running announcement burst, cancelled when the router lets go.
    pub burst: Option<JoinHandle<()>>,
    /// The VIPs' removal, delayed by [`release_grace`] after a Master let go to another
    /// Master it heard (actions.rs); cancelled if this router becomes Master again first.
    pub release: Option<JoinHandle<()>>,
    /// The last state change was a Master letting go to a Master it heard.
    pub release_grace: bool,
    pub send_failing: bool,
}

impl Drop for RouterRt {
    fn drop(&mut self) {
        if let Some(burst) = self.burst.take() {
            burst.abort();
        }
    }
}

#[derive(Debug)]
pub(crate) struct GroupRt {
    pub group: SyncGroup,
    pub routers: Vec<RouterRt>,
    /// The pair's sync group, whose state is the pair's role.
    pub pair: bool,
}

#[derive(Debug)]
pub(crate) struct GatewayRt {
    pub config: GatewayConfig,
    /// The prober; `None` only in unit tests.
    pub task: Option<JoinHandle<()>>,
    pub successes: u32,
    pub failures: u32,
}

impl Drop for GatewayRt {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug)]
pub(crate) struct Stopping {
    pub reply: Option<oneshot::Sender<()>>,
    /// The state machine ends every step-down within Master_Down_Interval; this is the
    /// loop's own bound in case it did not.
    pub deadline: Instant,
}

pub(crate) struct Instance {
    pub config: HaConfig,
    pub netlink: Netlink,
    pub sockets: HashMap<SocketKey, SocketRt>,
    pub groups: Vec<GroupRt>,
    /// The last known state of every object anyone reported, tracked or not.
    pub tracks: BTreeMap<String, TrackState>,
    pub gateway: Option<GatewayRt>,
    pub unattributed: DropCounters,
    pub inputs: UnboundedSender<Input>,
    input_rx: Option<UnboundedReceiver<Input>>,
    link_watch: Option<JoinHandle<()>>,
    pub role: Role,
    pub role_changes: u64,
    role_tx: watch::Sender<Role>,
    status: Arc<ArcSwap<HaStatus>>,
    realtime: bool,
    notifier: Notifier,
    /// `admin:handover` is held down: a graceful handover is in progress.
    pub handover: bool,
    /// `admin:yield` is held down, until this box is active again.
    pub yielding: bool,
    /// A fault object holds the pair's routers (for the `fault` notify command).
    faulted: bool,
    pub stopping: Option<Stopping>,
    /// Interfaces of routers that wait for an address to advertise from.
    pub pending: Vec<String>,
    /// When to try starting them again, and how many more tries.
    pub retry_pending_at: Option<(Instant, u32)>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(watch) = self.link_watch.take() {
            watch.abort();
        }
    }
}

/// The pair's role from the states of the routers that make it: active while any is
/// Master.
pub(crate) fn role_of(states: impl IntoIterator<Item = State>) -> Role {
    if states.into_iter().any(|s| s == State::Master) {
        Role::Active
    } else {
        Role::Passive
    }
}

/// A tokio deadline far enough away to mean "never".
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

impl Instance {
    pub(crate) async fn start(
        config: HaConfig,
        role_tx: watch::Sender<Role>,
        status: Arc<ArcSwap<HaStatus>>,
        notifier: Notifier,
        realtime: bool,
    ) -> Result<Instance, HaError> {
        let (inputs, input_rx) = mpsc::unbounded_channel();
        let netlink = Netlink::open().map_err(|e| HaError::Thread(e.to_string()))?;
        // Open the watch before reading link states, so that no change falls in between.
        let watch = LinkWatch::open().map_err(|e| HaError::Thread(e.to_string()))?;
        let link_watch = Some(spawn_link_watch(watch, inputs.clone()));
        let mut instance = Instance {
            tracks: config.initial_tracks.clone(),
            config: HaConfig::new(Vec::new()),
            netlink,
            sockets: HashMap::new(),
            groups: Vec::new(),
            gateway: None,
            unattributed: DropCounters::default(),
            inputs,
            input_rx: Some(input_rx),
            link_watch,
            role: Role::Passive,
            role_changes: 0,
            role_tx,
            status,
            realtime,
            notifier,
            handover: false,
            yielding: false,
            faulted: false,
            stopping: None,
            pending: Vec::new(),
            retry_pending_at: None,
        };
        instance.apply(config).await?;
        info!(
            routers = instance.config.routers.len(),
            role = %instance.role,
            "heartbeat started"
        );
        Ok(instance)
    }

    /// The loop. Returns when the handle is dropped (at once, touching nothing, like a
    /// crash) or when a graceful shutdown has finished.
    pub(crate) async fn run(&mut self, mut commands: UnboundedReceiver<Command>) {
        let mut inputs = self.input_rx.take().expect("run is called once");
        // A netlink buffer overflow loses link notifications silently (net.md): re-read
        // the tracked links now and then.
        let mut reread = tokio::time::interval(Duration::from_secs(5));
        reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reread.tick().await;
        loop {
            let deadline = self
                .next_deadline()
                .map_or_else(far_future, tokio::time::Instant::from_std);
            // Biased: a command or an advert that arrived by the time a timer is due is
            // handled first, as the wire had it first.
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else {
                        warn!("heartbeat handle dropped: stopping at once, VIPs left in place");
                        return;
                    };
                    self.command(command).await;
                }
                Some(input) = inputs.recv() => self.input(input).await,
                () = tokio::time::sleep_until(deadline) => self.timeout(Instant::now()).await,
                _ = reread.tick() => self.reread_links().await,
            }
            self.after_event().await;
            if self.stopped().await {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .iter()
            .filter_map(|g| g.group.poll_timeout())
            .chain(self.stopping.as_ref().map(|s| s.deadline))
            .chain(self.retry_pending_at.map(|(at, _)| at))
            .min()
    }

    async fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::SetTrack(name, state) => self.set_track(now, &name, state).await,
            Command::FailoverNow => self.failover_now(now).await,
            Command::Shutdown(reply) => self.shutdown(now, reply).await,
            Command::Apply(config, reply) => {
                let result = self.apply(*config).await;
                let _ = reply.send(result);
            }
        }
    }

    async fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Packet { socket, packet } => self.packet(now, &socket, packet).await,
            Input::Link(event) => self.link(now, event).await,
            Input::Gateway(result) => self.gateway_result(now, result).await,
        }
    }

    /// Carries out every pending action of every group, in order.
    pub(crate) async fn drain_actions(&mut self) {
        loop {
            let mut any = false;
            for gi in 0..self.groups.len() {
                while let Some((mi, action)) = self.groups[gi].group.poll_action() {
                    any = true;
                    self.perform(gi, mi, action).await;
                }
            }
            if !any {
                return;
            }
        }
    }

    fn any_master(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.group.members().iter().any(|m| m.state() == State::Master))
    }

    /// Active while any router of the pair's sync group is Master. The group's rules keep
    /// its members together; "any" rather than "all" keeps the role while a router added
    /// by a reload is still being elected, and through a make-before-break step-down
    /// (the VIPs are still here and served).
    fn current_role(&self) -> Role {
        let pair: Vec<&GroupRt> = self.groups.iter().filter(|g| g.pair).collect();
        let groups = if pair.is_empty() {
            self.groups.iter().collect()
        } else {
            pair
        };
        role_of(
            groups
                .iter()
                .flat_map(|g| g.group.members().iter().map(VirtualRouter::state)),
        )
    }

    /// Bookkeeping after every event: the end of a handover, the pair's role, the fault
    /// notification, the published status.
    async fn after_event(&mut self) {
        let now = Instant::now();
        if self.handover && !self.any_master() {
            // The peer has announced itself and every router let go: the handover is over.
            self.handover = false;
            self.set_track(now, track::HANDOVER, TrackState::Up).await;
        }
        let role = self.current_role();
        if role != self.role {
            if role == Role::Active && self.yielding && !self.handover {
                self.yielding = false;
                self.set_track(now, track::YIELD, TrackState::Up).await;
            }
            let previous = self.role;
            self.role = role;
            self.role_changes += 1;
            let reason = self
                .groups
                .iter()
                .flat_map(|g| &g.routers)
                .filter_map(|r| r.last_transition.as_ref())
                .max_by_key(|t| t.at)
                .map(|t| t.reason.clone())
                .unwrap_or_default();
            info!(%previous, %role, %reason, "pair role changed");
            let argv = self.config.notify.as_ref().map(|n| match role {
                Role::Active => n.active.clone(),
                Role::Passive => n.passive.clone(),
            });
            self.notify(argv, role, previous, reason);
        }
        let faults: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| g.group.members())
            .flat_map(|m| m.faults().map(str::to_owned).collect::<Vec<_>>())
            .filter(|f| f != track::HANDOVER)
            .collect();
        let faulted = !faults.is_empty();
        if faulted != self.faulted {
            self.faulted = faulted;
            if faulted {
                warn!(?faults, "a fault holds this box passive");
                let argv = self.config.notify.as_ref().map(|n| n.fault.clone());
                self.notify(argv, self.role, self.role, faults.join(","));
            } else {
                info!("no fault holds this box any more");
            }
        }
        // The status first: whoever wakes up on the new role finds it there.
        self.publish();
        if *self.role_tx.borrow() != self.role {
            self.role_tx.send_replace(self.role);
        }
    }

    fn notify(&self, argv: Option<Vec<String>>, role: Role, previous: Role, reason: String) {
        let Some(argv) = argv.filter(|a| !a.is_empty()) else {
            return;
        };
        let timeout = self
            .config
            .notify
            .as_ref()
            .map_or(Duration::from_secs(10), |n| n.timeout);
        self.notifier.submit(Job {
            argv,
            env: vec![
                ("TANDEM_ROLE", role.to_string()),
                ("TANDEM_PREVIOUS_ROLE", previous.to_string()),
                ("TANDEM_REASON", reason),
            ],
            timeout,
        });
    }

    /// True once a graceful shutdown has finished: every router is in Initialize (the
    /// Masters handed over or timed out). Removes the virtual MAC interfaces, publishes
    /// the final status and answers the shutdown.
    async fn stopped(&mut self) -> bool {
        let Some(stopping) = &mut self.stopping else {
            return false;
        };
        let done = self
            .groups
            .iter()
            .all(|g| g.group.state() == State::Initialize);
        if !done {
            return false;
        }
        let reply = stopping.reply.take();
        let mut vmacs = Vec::new();
        for router in self.groups.iter_mut().flat_map(|g| &mut g.routers) {
            if let Some(burst) = router.burst.take() {
                burst.abort();
            }
            // A stopped box holds no VIP: let the release grace run out.
            if let Some(release) = router.release.take() {
                let _ = release.await;
            }
            vmacs.extend(router.link.vmac.take());
        }
        // The last one created saw the parent's original sysctls: restore it last.
        vmacs.reverse();
        remove_vmacs(&self.netlink, vmacs).await;
        self.publish();
        let mut status = (**self.status.load()).clone();
        status.stopped = true;
        status.role = Role::Passive;
        self.status.store(Arc::new(status));
        info!("heartbeat stopped");
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
        true
    }

    /// Builds the published snapshot.
    fn publish(&self) {
        let mut status = HaStatus {
            role: self.role,
            role_changes: self.role_changes,
            yielding: self.yielding,
            realtime: self.realtime,
            routers: Vec::new(),
            tracks: self
                .tracks
                .iter()
                .map(|(name, state)| TrackStatus {
                    name: name.clone(),
                    up: *state == TrackState::Up,
                })
                .collect(),
            unattributed_drops: self
                .unattributed
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            stopped: false,
        };
        for group in &self.groups {
            for (vr, rt) in group.group.members().iter().zip(&group.routers) {
                status.routers.push(RouterStatus {
                    name: rt.config.name.clone(),
                    interface: rt.config.interface.clone(),
                    vrid: rt.config.vrid,
                    vips: rt.config.vips.clone(),
                    state: vr.state().into(),
                    stepping_down: vr.step_down().map(|c| format!("{c:?}").to_lowercase()),
                    priority: rt.config.priority,
                    effective_priority: vr.priority(),
                    faults: vr.faults().map(str::to_owned).collect(),
                    primary_address: Some(rt.primary),
                    master: rt.master,
                    last_transition: rt.last_transition.clone(),
                    transitions: rt.counters.transitions,
                    adverts_sent: rt.counters.sent,
                    adverts_received: rt.counters.received,
                    send_errors: rt.counters.send_errors,
                    address_list_mismatches: rt.counters.mismatches,
                    drops: rt
                        .counters
                        .drops
                        .iter()
                        .map(|(r, n)| (r.as_str().to_owned(), n))
                        .collect(),
                });
            }
        }
        let order: HashMap<&str, usize> = self
            .config
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        status
            .routers
            .sort_by_key(|r| order.get(r.name.as_str()).copied().unwrap_or(usize::MAX));
        self.status.store(Arc::new(status));
    }

    /// Applies a configuration: at start (from nothing) or on a reload. Unchanged routers
    /// keep their `VirtualRouter` (state, timers) and VIPs; changed and removed ones let
    /// go of their VIPs; new and changed ones start in Initialize → Startup (§6.4.1).
    /// A router that cannot be set up is left out and reported; the others run.
    pub(crate) async fn apply(&mut self, config: HaConfig) -> Result<(), HaError> {
        let now = Instant::now();
        let new_tracks: Vec<Vec<Track>> = (0..config.routers.len())
            .map(|i| config.tracks_for(i))
            .collect();
        let mut kept: HashMap<String, (VirtualRouter, RouterRt)> = HashMap::new();
        for group in std::mem::take(&mut self.groups) {
            let members = group.group.members().to_vec();
            for (vr, rt) in members.into_iter().zip(group.routers) {
                let unchanged = config
                    .routers
                    .iter()
                    .zip(&new_tracks)
                    .any(|(c, t)| *c == rt.config && *t == rt.tracks);
                if unchanged {
                    kept.insert(rt.config.name.clone(), (vr, rt));
                } else {
                    self.retire(vr, rt).await;
                }
            }
        }
        // Link and gateway tracking first: routers start with the real states.
        let old_links = self.config.watched_links();
        let gateway_changed = self.config.gateway != config.gateway;
        self.config = config.clone();
        let new_links: Vec<String> = config
            .watched_links()
            .into_iter()
            .filter(|l| !old_links.contains(l))
            .collect();
        let watched = config.watched_links();
        self.tracks.retain(|name, _| {
            name.strip_prefix("link:")
                .is_none_or(|l| watched.iter().any(|w| w == l))
        });
        self.read_links(now, &new_links).await;
        if gateway_changed {
            self.start_gateway().await?;
        }
        // Delivery per socket: multicast if any router there uses it.
        let mut deliveries: HashMap<(String, IpFamily), Delivery> = HashMap::new();
        for r in &config.routers {
            let d = deliveries
                .entry((r.interface.clone(), r.family()))
                .or_insert(Delivery::Unicast);
            if !r.unicast {
                *d = Delivery::Multicast;
            }
        }
        let mut failures = Vec::new();
        let mut pending = Vec::new();
        let mut pair: (Vec<VirtualRouter>, Vec<RouterRt>) = (Vec::new(), Vec::new());
        let mut alone = Vec::new();
        for (i, rc) in config.routers.iter().enumerate() {
            let built = match kept.remove(&rc.name) {
                Some(k) => Ok(k),
                None => {
                    let delivery = deliveries[&(rc.interface.clone(), rc.family())];
                    self.prepare_router(rc, new_tracks[i].clone(), delivery, now)
                        .await
                }
            };
            match built {
                Ok((vr, rt)) if rc.sync_group => {
                    pair.0.push(vr);
                    pair.1.push(rt);
                }
                Ok((vr, rt)) => alone.push((vr, rt)),
                Err(e @ HaError::NotReady { .. }) => {
                    warn!(router = %rc.name, error = %e, "router waits for its interface");
                    pending.push(rc.interface.clone());
                }
                Err(e) => {
                    error!(router = %rc.name, error = %e, "router not started");
                    failures.push(e.to_string());
                }
            }
        }
        if !pair.0.is_empty() {
            self.groups.push(GroupRt {
                group: SyncGroup::new(pair.0),
                routers: pair.1,
                pair: true,
            });
        }
        for (vr, rt) in alone {
            self.groups.push(GroupRt {
                group: SyncGroup::new(vec![vr]),
                routers: vec![rt],
                pair: false,
            });
        }
        // Sockets no router uses any more.
        let used: Vec<SocketKey> = self
            .groups
            .iter()
            .flat_map(|g| g.routers.iter().map(|r| r.socket.clone()))
            .collect();
        self.sockets.retain(|key, _| used.contains(key));
        // §6.4.1 Startup for the new routers; running ones ignore it.
        for group in &mut self.groups {
            group.group.startup(now);
        }
        self.pending = pending;
        self.drain_actions().await;
        self.after_event().await;
        match failures.len() {
            0 => Ok(()),
            _ => Err(HaError::Config(failures.join("; "))),
        }
    }

    /// Sets up one router: its interface, stale VIPs removed, the VIP link, the socket.
    async fn prepare_router(
        &mut self,
        rc: &RouterConfig,
        tracks: Vec<Track>,
        delivery: Delivery,
        now: Instant,
    ) -> Result<(VirtualRouter, RouterRt), HaError> {
        let err = interface_error(&rc.interface);
        let parent = self
            .netlink
            .interface_by_name(&rc.interface)
            .await
            .map_err(|e| err(e.to_string()))?;
        let vips = rc.vip_addresses();
        // A predecessor killed while Master left its VIPs: a Backup holding them would
        // answer for them (split brain). Remove them before anything else.
        let removed = self
            .netlink
            .remove_stale(parent.index, &vips)
            .await
            .map_err(|e| err(e.to_string()))?;
        if !removed.is_empty() {
            warn!(router = %rc.name, ?removed, "removed VIPs left by a previous run");
        }
        let link = prepare_vip_link(&self.netlink, rc, &parent).await?;
        let (key, source) = match &link.vmac {
            Some((name, _)) => (
                SocketKey {
                    interface: name.to_string(),
                    family: rc.family(),
                },
                Some(vmac_source(&self.netlink, rc, parent.index, link.ifindex).await?),
            ),
            None => (
                SocketKey {
                    interface: rc.interface.clone(),
                    family: rc.family(),
                },
                None,
            ),
        };
        let reuse = self
            .sockets
            .get(&key)
            .is_some_and(|s| s.delivery() == delivery && source.is_none());
        if !reuse {
            let socket = SocketRt::open(&key, delivery, source, self.inputs.clone())?;
            self.sockets.insert(key.clone(), socket);
        }
        let primary = self.sockets[&key].socket.local_address();
        if vips.contains(&primary) {
            return Err(HaError::Router {
                router: rc.name.clone(),
                message: format!(
                    "the advert source {primary} is one of the VIPs; give {} an address of its own",
                    rc.interface
                ),
            });
        }
        let vrrp = tandem_vrrp::Config {
            vrid: rc.vrid,
            priority: rc.priority,
            advert_interval: rc.advert_interval,
            virtual_addresses: vips,
            primary_address: primary,
            preempt: rc.preempt,
            preempt_delay: rc.preempt_delay,
            accept_mode: rc.accept_mode,
            peers: rc.peers.clone(),
            unicast: rc.unicast,
            garp_repeat_delay: rc.announce_repeat,
            tracks: tracks.clone(),
        };
        let mut vr = VirtualRouter::new(vrrp).map_err(|e| HaError::Router {
            router: rc.name.clone(),
            message: e.to_string(),
        })?;
        for t in &tracks {
            if let Some(state) = self.tracks.get(&t.name) {
                let _ = vr.set_track(now, &t.name, *state);
            }
        }
        info!(router = %rc.name, interface = %rc.interface, vrid = rc.vrid, %primary,
            priority = rc.priority, interval = ?rc.advert_interval, "virtual router ready");
        let rt = RouterRt {
            config: rc.clone(),
            tracks,
            socket: key,
            primary,
            link,
            counters: Counters::default(),
            master: None,
            last_transition: None,
            burst: None,
            release: None,
            release_grace: false,
            send_failing: false,
        };
        Ok((vr, rt))
    }

    /// A router removed or changed by a reload: its VIPs go at once if it held them (the
    /// peer applies the same shared config), and its virtual MAC interface with them.
    async fn retire(&mut self, vr: VirtualRouter, mut rt: RouterRt) {
        if let Some(burst) = rt.burst.take() {
            burst.abort();
        }
        if vr.state() == State::Master {
            for net in &rt.config.vips {
                if let Err(e) = self.netlink.remove_address(rt.link.ifindex, *net).await {
                    error!(router = %rt.config.name, vip = %net, error = %e, "cannot remove a VIP");
                }
            }
        }
        info!(router = %rt.config.name, "virtual router stopped by a reload");
        let vmac = rt.link.vmac.take();
        remove_vmacs(&self.netlink, vmac.into_iter().collect()).await;
    }

    /// (Re)starts the gateway check, probing once before returning so that routers start
    /// with its real state.
    async fn start_gateway(&mut self) -> Result<(), HaError> {
        self.gateway = None;
        let Some(gw) = self.config.gateway.clone() else {
            self.tracks.remove(track::GATEWAY);
            return Ok(());
        };
        let probe = match gw.method {
            ProbeMethod::Icmp => GatewayProbe::open_icmp(gw.address, gw.interface.as_deref())
                .map_err(|e| HaError::Config(format!("gateway probe: {e}")))?,
            ProbeMethod::Arp => {
                let (IpAddr::V4(target), Some(interface)) = (gw.address, gw.interface.as_deref())
                else {
                    return Err(HaError::Config(
                        "an ARP gateway probe needs an IPv4 address and an interface".into(),
                    ));
                };
                let err = interface_error(interface);
                let info = self
                    .netlink
                    .interface_by_name(interface)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let sender = self
                    .netlink
                    .addresses(info.index)
                    .await
                    .map_err(|e| err(e.to_string()))?
                    .into_iter()
                    .find_map(|a| match a.addr() {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    });
                let mac = info.mac.ok_or_else(|| err("no MAC address".into()))?;
                let probe = ArpProbe::open(info.index, mac).map_err(|e| err(e.to_string()))?;
                GatewayProbe::Arp {
                    probe,
                    sender,
                    target,
                }
            }
        };
        let first = probe.probe(gw.timeout).await;
        let state = match first {
            Ok(true) => TrackState::Up,
            Ok(false) => TrackState::Down,
            Err(e) => {
                warn!(error = %e, "the gateway probe could not run; counting the gateway as up");
                TrackState::Up
            }
        };
        info!(gateway = %gw.address, ?state, "gateway check started");
        self.tracks.insert(track::GATEWAY.to_owned(), state);
        let task = spawn_gateway_prober(probe, gw.interval, gw.timeout, self.inputs.clone());
        let reachable = state == TrackState::Up;
        self.gateway = Some(GatewayRt {
            config: gw,
            task: Some(task),
            successes: u32::from(reachable),
            failures: u32::from(!reachable),
        });
        Ok(())
    }

    /// Reads the link state of `names` and records it (a missing interface is down).
    pub(crate) async fn read_links(&mut self, now: Instant, names: &[String]) {
        for name in names {
            let up = match self.netlink.interface_by_name(name).await {
                Ok(info) => info.status.is_up(),
                Err(e) => {
                    warn!(interface = %name, error = %e, "tracked interface not found: down");
                    false
                }
            };
            let state = if up { TrackState::Up } else { TrackState::Down };
            let key = track::link(name);
            if self.tracks.get(&key) != Some(&state) {
                self.set_track(now, &key, state).await;
            }
        }
    }

    async fn reread_links(&mut self) {
        let links = self.config.watched_links();
        self.read_links(Instant::now(), &links).await;
        self.retry_pending().await;
    }

    /// Starts the routers that were waiting for their interface, if they can start now:
    /// applying the same configuration again starts what is missing and leaves the rest.
    pub(crate) async fn retry_pending(&mut self) {
        if self.pending.is_empty() || self.stopping.is_some() {
            return;
        }
        let config = self.config.clone();
        if let Err(e) = self.apply(config).await {
            warn!(error = %e, "starting the waiting routers");
        }
    }
}

async fn remove_vmacs(
    netlink: &Netlink,
    vmacs: Vec<(
        tandem_net::InterfaceName,
        tandem_net::macvlan::ParentRestore,
    )>,
) {
    for (name, restore) in vmacs {
        if let Err(e) = netlink.delete_macvlan(&name).await {
            warn!(interface = %name, error = %e, "cannot delete the virtual MAC interface");
        }
        if let Err(e) = restore.restore(&tandem_net::sysctl::Sysctl::new()) {
            warn!(error = %e, "cannot restore the parent's sysctls");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_is_active_while_any_router_of_its_group_is_master() {
        use State::*;
        assert_eq!(role_of([Master, Master]), Role::Active);
        // A router added by a reload is still being elected: the pair stays active.
        assert_eq!(role_of([Master, Backup]), Role::Active);
        assert_eq!(role_of([Backup, Backup]), Role::Passive);
        assert_eq!(role_of([Initialize]), Role::Passive);
        assert_eq!(role_of([]), Role::Passive);
    }
}
