//! What the heartbeat runs: the virtual routers of this box with everything resolved from
//! the node and shared parts of the config, and the tracked objects that act on them.
//!
//! [`HaConfig::from_config`] builds it from `tandem-config`'s validated model; tests and
//! tools may build it by hand. Each router is mapped onto a `tandem_vrrp::Config` once its
//! socket is open (the socket knows the primary address).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tandem_config::{NodeConfig, OnDown, SharedConfig};
use tandem_net::{Burst, IpFamily};
use tandem_vrrp::{Track, TrackEffect, TrackState};

pub use tandem_config::ProbeMethod;

/// Names of the tracked objects. `tandemd` reports pools and the dataplane with
/// [`HaHandle::set_track`](crate::HaHandle::set_track); the heartbeat watches links and the
/// gateway itself.
pub mod track {
    /// The dataplane's own liveness probe.
    pub const DATAPLANE: &str = "dataplane";
    /// The gateway reachability check (split-brain guard).
    pub const GATEWAY: &str = "gateway";
    /// Held down while a graceful handover (`failover_now`) is in progress: a fault.
    pub const HANDOVER: &str = "admin:handover";
    /// Held down after a handover until this box is active again: lowers the priority to 1
    /// so that a preempting box does not take the role straight back.
    pub const YIELD: &str = "admin:yield";

    /// A pool: down when none of its servers is up.
    pub fn pool(name: &str) -> String {
        format!("pool:{name}")
    }

    /// An interface's link (`IFF_UP && IFF_RUNNING`).
    pub fn link(interface: &str) -> String {
        format!("link:{interface}")
    }
}

/// Everything the heartbeat of one box runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    pub routers: Vec<RouterConfig>,
    /// `node.vrrp.track.interfaces`: links tracked by every router, besides each router's
    /// own interface (a fault). `None` effect: shown in the status only.
    pub interface_tracks: Vec<(String, Option<TrackEffect>)>,
    pub gateway: Option<GatewayConfig>,
    /// The dataplane liveness probe; `None`: not tracked.
    pub dataplane: Option<TrackEffect>,
    pub notify: Option<NotifyConfig>,
    /// `SCHED_FIFO` priority of the heartbeat thread; `None` leaves it a normal thread.
    pub realtime_priority: Option<i32>,
    /// States of objects reported by tandemd (pools, dataplane) already known at start, so
    /// that a router does not start as Master only to step down at once.
    pub initial_tracks: BTreeMap<String, TrackState>,
}

/// One virtual router on this box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub vips: Vec<IpNet>,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub accept_mode: bool,
    pub peers: Vec<IpAddr>,
    pub unicast: bool,
    pub virtual_mac: bool,
    /// Member of the pair's sync group, whose state is the pair's role.
    pub sync_group: bool,
    /// `(pool name, effect)`, from `shared.vrrp.routers[].track_pools`.
    pub pool_tracks: Vec<(String, TrackEffect)>,
    pub announce: Burst,
    pub announce_repeat: Option<Duration>,
}

impl RouterConfig {
    /// A router with the documented defaults (priority 100, 100 ms, preempt, accept mode,
    /// multicast, 5 back-to-back announcement rounds repeated after 5 s).
    pub fn new(name: &str, interface: &str, vrid: u8, vips: Vec<IpNet>) -> Self {
        RouterConfig {
            name: name.to_owned(),
            interface: interface.to_owned(),
            vrid,
            vips,
            priority: tandem_vrrp::Config::DEFAULT_PRIORITY,
            advert_interval: tandem_vrrp::Config::DEFAULT_ADVERT_INTERVAL,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: true,
            peers: Vec::new(),
            unicast: false,
            virtual_mac: false,
            sync_group: true,
            pool_tracks: Vec::new(),
            announce: Burst::default(),
            announce_repeat: Some(tandem_vrrp::Config::DEFAULT_GARP_REPEAT_DELAY),
        }
    }

    pub fn family(&self) -> IpFamily {
        match self.vips.first() {
            Some(IpNet::V6(_)) => IpFamily::V6,
            _ => IpFamily::V4,
        }
    }

    pub(crate) fn vip_addresses(&self) -> Vec<IpAddr> {
        self.vips.iter().map(IpNet::addr).collect()
    }

    /// The VIP with its prefix length, for an address the state machine names.
    pub(crate) fn vip_net(&self, address: IpAddr) -> Option<IpNet> {
        self.vips.iter().copied().find(|n| n.addr() == address)
    }
}

/// The gateway reachability check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    pub address: IpAddr,
    pub interface: Option<String>,
    pub method: ProbeMethod,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// `None`: shown in the status only.
    pub effect: Option<TrackEffect>,
}

/// Commands run on role changes, by argv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    pub active: Vec<String>,
    pub passive: Vec<String>,
    pub fault: Vec<String>,
    pub timeout: Duration,
}

/// The default `SCHED_FIFO` priority of the heartbeat thread: above ordinary real-time
/// helpers, below the kernel's own threaded interrupt handlers (50).
pub const DEFAULT_REALTIME_PRIORITY: i32 = 40;

fn effect(on_down: OnDown) -> Option<TrackEffect> {
    match on_down {
        OnDown::Fault => Some(TrackEffect::Fault),
        OnDown::Weight(w) => Some(TrackEffect::Weight(w)),
        OnDown::Ignore => None,
    }
}

impl HaConfig {
    /// An empty configuration with the defaults (dataplane tracked as a fault, real time).
    pub fn new(routers: Vec<RouterConfig>) -> Self {
        HaConfig {
            routers,
            interface_tracks: Vec::new(),
            gateway: None,
            dataplane: Some(TrackEffect::Fault),
            notify: None,
            realtime_priority: Some(DEFAULT_REALTIME_PRIORITY),
            initial_tracks: BTreeMap::new(),
        }
    }

    /// This box's heartbeat from a validated config: `None` for a standalone box (no router
    /// placed on it). A router named by the node part but missing from the shared part, or
    /// the reverse, is left out (validation reports both; a replicated shared part may
    /// briefly disagree with the node part while an operator adds a router to both boxes).
    pub fn from_config(node: &NodeConfig, shared: &SharedConfig) -> Option<HaConfig> {
        let routers: Vec<RouterConfig> = node
            .vrrp
            .routers
            .iter()
            .filter_map(|placement| {
                let r = shared.vrrp.router(&placement.router)?;
                Some(RouterConfig {
                    name: r.name.clone(),
                    interface: placement.interface.clone(),
                    vrid: r.vrid,
                    vips: r.vips.clone(),
                    priority: placement.priority,
                    advert_interval: r.advert_interval.get(),
                    preempt: r.preempt,
                    preempt_delay: r.preempt_delay.get(),
                    accept_mode: r.accept_mode,
                    peers: placement.peers.clone(),
                    unicast: placement.unicast,
                    virtual_mac: r.virtual_mac,
                    sync_group: r.sync_group,
                    pool_tracks: r
                        .track_pools
                        .iter()
                        .filter_map(|t| Some((t.pool.clone(), effect(t.on_down)?)))
                        .collect(),
                    announce: Burst {
                        count: r.announce.count,
                        spacing: r.announce.spacing.get(),
                    },
                    announce_repeat: Some(r.announce.repeat_after.get()).filter(|d| !d.is_zero()),
                })
            })
            .collect();
        if routers.is_empty() {
            return None;
        }
        let track = &node.vrrp.track;
        Some(HaConfig {
            routers,
            interface_tracks: track
                .interfaces
                .iter()
                .map(|t| (t.interface.clone(), effect(t.on_down)))
                .collect(),
            gateway: track.gateway.as_ref().map(|g| GatewayConfig {
                address: g.address,
                interface: g.interface.clone(),
                method: g.method,
                interval: g.interval.get(),
                timeout: g.timeout.get(),
                rise: g.rise,
                fall: g.fall,
                effect: effect(g.on_down),
            }),
            dataplane: effect(track.dataplane),
            notify: node.vrrp.notify.as_ref().map(|n| NotifyConfig {
                active: n.active.clone(),
                passive: n.passive.clone(),
                fault: n.fault.clone(),
                timeout: n.timeout.get(),
            }),
            realtime_priority: Some(DEFAULT_REALTIME_PRIORITY),
            initial_tracks: BTreeMap::new(),
        })
    }

    pub fn router(&self, name: &str) -> Option<&RouterConfig> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The tracked objects of router `index`, as `tandem-vrrp` gets them:
    /// - its own interface's link, a fault (keepalived tracks the VRRP interface the same
    ///   way) unless `interface_tracks` names it with another effect; for a member of the
    ///   pair's sync group, every member's interface;
    /// - `interface_tracks`, the gateway and the dataplane;
    /// - its tracked pools; for a member of the pair's sync group, those of every member,
    ///   since the group moves as one (docs/vrrp.md: give every member the same weights);
    /// - the two objects of a graceful handover.
    pub fn tracks_for(&self, index: usize) -> Vec<Track> {
        let router = &self.routers[index];
        let mut tracks: BTreeMap<String, TrackEffect> = BTreeMap::new();
        tracks.insert(track::link(&router.interface), TrackEffect::Fault);
        for (interface, effect) in &self.interface_tracks {
            match effect {
                Some(e) => tracks.insert(track::link(interface), *e),
                None => tracks.remove(&track::link(interface)),
            };
        }
        if let Some(e) = self.gateway.as_ref().and_then(|g| g.effect) {
            tracks.insert(track::GATEWAY.to_owned(), e);
        }
        if let Some(e) = self.dataplane {
            tracks.insert(track::DATAPLANE.to_owned(), e);
        }
        if router.sync_group {
            // The group moves as one: a member whose link is down holds the others, even
            // one that could not start yet for want of an address on that link.
            for other in self.routers.iter().filter(|r| r.sync_group) {
                let name = track::link(&other.interface);
                let listed = self
                    .interface_tracks
                    .iter()
                    .any(|(i, _)| *i == other.interface);
                if !listed {
                    tracks.insert(name, TrackEffect::Fault);
                }
            }
        }
        let pool_sources: Vec<&RouterConfig> = if router.sync_group {
            self.routers.iter().filter(|r| r.sync_group).collect()
        } else {
            vec![router]
        };
        for r in pool_sources {
            for (pool, e) in &r.pool_tracks {
                tracks.entry(track::pool(pool)).or_insert(*e);
            }
        }
        tracks.insert(track::HANDOVER.to_owned(), TrackEffect::Fault);
        tracks.insert(track::YIELD.to_owned(), TrackEffect::Weight(254));
        tracks
            .into_iter()
            .map(|(name, effect)| Track { name, effect })
            .collect()
    }

    /// Every interface whose link the heartbeat watches: the routers' and the tracked ones.
    pub(crate) fn watched_links(&self) -> Vec<String> {
        let mut links: Vec<String> = self
            .routers
            .iter()
            .map(|r| r.interface.clone())
            .chain(self.interface_tracks.iter().map(|(i, _)| i.clone()))
            .collect();
        links.sort();
        links.dedup();
        links
    }

    /// Checks what `tandem-config` validates, for configurations built by hand.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for r in &self.routers {
            if !seen.insert(r.name.as_str()) {
                return Err(format!("router `{}` is listed twice", r.name));
            }
            if r.vips.is_empty() {
                return Err(format!("router `{}` has no VIP", r.name));
            }
            if r.priority == 255 {
                return Err(format!(
                    "router `{}`: priority 255 (address owner) is not supported; use 1 to 254",
                    r.name
                ));
            }
            if r.virtual_mac && r.unicast {
                return Err(format!(
                    "router `{}`: a virtual MAC needs multicast adverts",
                    r.name
                ));
            }
            if !r.accept_mode {
                return Err(format!(
                    "router `{}`: accept_mode off is not supported",
                    r.name
                ));
            }
        }
        for (i, a) in self.routers.iter().enumerate() {
            for b in &self.routers[..i] {
                if a.interface == b.interface && a.family() == b.family() && a.vrid == b.vrid {
                    return Err(format!(
                        "routers `{}` and `{}` share VRID {} on {}",
                        b.name, a.name, a.vrid, a.interface
                    ));
                }
                if let Some(vip) = a.vips.iter().find(|v| b.vip_net(v.addr()).is_some()) {
                    return Err(format!(
                        "{} is a VIP of both `{}` and `{}`",
                        vip.addr(),
                        b.name,
                        a.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIR: &str = "\
schema: 1
node:
  name: lb-a
  management:
    listen: 192.0.2.10:9443
  vrrp:
    routers:
      - { router: front, interface: eth1, priority: 150, peers: [10.0.0.3] }
      - { router: back, interface: eth2, priority: 150, unicast: true, peers: [10.1.0.3] }
    track:
      interfaces:
        - { interface: eth3, on_down: { weight: 30 } }
        - { interface: eth1, on_down: { weight: 20 } }
      gateway: { address: 10.0.0.1, on_down: { weight: 40 }, interval: 2s }
      dataplane: ignore
    notify:
      active: [/bin/true, active]
      timeout: 3s
shared:
  pools:
    - name: web
      servers: [{ id: w1, address: 10.1.0.11:80 }]
    - name: api
      servers: [{ id: a1, address: 10.1.0.12:80 }]
  vrrp:
    routers:
      - name: front
        vrid: 51
        vips: [10.0.0.100/24]
        advert_interval: 20ms
        preempt_delay: 30s
        track_pools: [{ pool: web, on_down: { weight: 50 } }]
        announce: { count: 3, spacing: 10ms, repeat_after: 0s }
      - name: back
        vrid: 52
        vips: [10.1.0.1/24]
        track_pools: [{ pool: api }]
";

    #[test]
    fn a_validated_config_maps_onto_the_heartbeat() {
        let c = tandem_config::parse(PAIR, None).unwrap();
        let ha = HaConfig::from_config(&c.node, &c.shared).unwrap();
        ha.check().unwrap();
        let front = ha.router("front").unwrap();
        assert_eq!(front.interface, "eth1");
        assert_eq!(front.priority, 150);
        assert_eq!(front.advert_interval, Duration::from_millis(20));
        assert_eq!(front.preempt_delay, Duration::from_secs(30));
        assert_eq!(front.peers, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert!(!front.unicast);
        assert_eq!(
            front.announce,
            Burst {
                count: 3,
                spacing: Duration::from_millis(10)
            }
        );
        assert_eq!(front.announce_repeat, None, "0s means no repeat");
        let back = ha.router("back").unwrap();
        assert!(back.unicast);
        assert_eq!(back.announce_repeat, Some(Duration::from_secs(5)));
        assert_eq!(ha.dataplane, None, "`ignore`");
        let gw = ha.gateway.as_ref().unwrap();
        assert_eq!(gw.effect, Some(TrackEffect::Weight(40)));
        assert_eq!(
            (gw.interval, gw.rise, gw.fall),
            (Duration::from_secs(2), 2, 3)
        );
        assert_eq!(ha.notify.as_ref().unwrap().timeout, Duration::from_secs(3));
        assert_eq!(ha.watched_links(), ["eth1", "eth2", "eth3"]);
    }

    #[test]
    fn sync_group_members_share_every_tracked_object() {
        let c = tandem_config::parse(PAIR, None).unwrap();
        let ha = HaConfig::from_config(&c.node, &c.shared).unwrap();
        let names = |i| {
            ha.tracks_for(i)
                .into_iter()
                .map(|t| (t.name, t.effect))
                .collect::<BTreeMap<_, _>>()
        };
        let front = names(0);
        // Its own interface, tracked explicitly with a weight: the weight wins.
        assert_eq!(front["link:eth1"], TrackEffect::Weight(20));
        assert_eq!(front["link:eth3"], TrackEffect::Weight(30));
        assert_eq!(front["gateway"], TrackEffect::Weight(40));
        // Both members' pools.
        assert_eq!(front["pool:web"], TrackEffect::Weight(50));
        assert_eq!(front["pool:api"], TrackEffect::Fault);
        assert_eq!(front[track::HANDOVER], TrackEffect::Fault);
        assert!(!front.contains_key("dataplane"));
        // `back`'s interface holds `front` too: the group moves as one.
        assert_eq!(front["link:eth2"], TrackEffect::Fault);
        let back = names(1);
        // `back`'s own interface is a fault, as keepalived tracks its VRRP interface.
        assert_eq!(back["link:eth2"], TrackEffect::Fault);
        assert_eq!(back["link:eth1"], TrackEffect::Weight(20));
        assert_eq!(back["pool:web"], TrackEffect::Weight(50));
    }

    #[test]
    fn a_router_outside_the_sync_group_tracks_only_its_own_pools() {
        let text = PAIR.replace(
            "        track_pools: [{ pool: api }]\n",
            "        track_pools: [{ pool: api }]\n        sync_group: false\n",
        );
        let c = tandem_config::parse(&text, None).unwrap();
        let ha = HaConfig::from_config(&c.node, &c.shared).unwrap();
        let back: Vec<String> = ha.tracks_for(1).into_iter().map(|t| t.name).collect();
        assert!(back.contains(&"pool:api".to_owned()));
        assert!(!back.contains(&"pool:web".to_owned()));
    }

    #[test]
    fn a_standalone_box_has_no_heartbeat() {
        let text =
            "schema: 1\nnode:\n  name: a\n  management:\n    listen: 127.0.0.1:9443\nshared: {}\n";
        let c = tandem_config::parse(text, None).unwrap();
        assert_eq!(HaConfig::from_config(&c.node, &c.shared), None);
    }

    #[test]
    fn hand_built_configs_are_checked() {
        let a = RouterConfig::new("a", "eth1", 1, vec!["10.0.0.1/24".parse().unwrap()]);
        let mut b = RouterConfig::new("b", "eth1", 1, vec!["10.0.0.2/24".parse().unwrap()]);
        assert!(HaConfig::new(vec![a.clone(), b.clone()]).check().is_err());
        b.vrid = 2;
        HaConfig::new(vec![a.clone(), b.clone()]).check().unwrap();
        b.vips = a.vips.clone();
        assert!(HaConfig::new(vec![a, b]).check().is_err());
    }
}
