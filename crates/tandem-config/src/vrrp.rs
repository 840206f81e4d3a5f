//! High availability by VRRPv3 (RFC 5798): the virtual routers of the pair.
//!
//! Split as the design splits the config:
//! - `shared.vrrp` ([`VrrpShared`]): what both boxes must agree on — each virtual router's
//!   VRID, VIPs, advert interval, preemption, the tracked pools, the announcements;
//! - `node.vrrp` ([`VrrpNode`]): what belongs to one box — the interface each router runs
//!   on, this box's priority, its peers, the tracking of its own links and gateway, the
//!   notify commands.
//!
//! `tandem-ha` maps both onto `tandem-vrrp`'s per-router configuration. The rules behind
//! the defaults are in `docs/vrrp.md` and `docs/ha.md`.

use crate::service::{default_true, is_true};
use crate::units::Duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `shared.vrrp`: the virtual routers of the pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpShared {
    #[serde(default)]
    pub routers: Vec<VirtualRouter>,
}

impl VrrpShared {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    pub fn router(&self, name: &str) -> Option<&VirtualRouter> {
        self.routers.iter().find(|r| r.name == name)
    }
}

/// One virtual router (RFC 5798 §6.1's parameters). IPv4 and IPv6 need separate routers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualRouter {
    /// Unique name, used by `node.vrrp.routers[].router`, logs and metrics.
    pub name: String,
    /// Virtual Router ID, 1 to 255, unique per interface and address family (§5.2.3).
    pub vrid: u8,
    /// The VIPs with their prefix length, all IPv4 or all IPv6. An IPv6 router lists its
    /// link-local address first (§5.2.9).
    pub vips: Vec<IpNet>,
    /// Advertisement_Interval: whole centiseconds, 10ms to 40.95s (§5.2.7).
    #[serde(default = "default_advert_interval")]
    pub advert_interval: Duration,
    /// Preempt_Mode (§6.1): a higher-priority Backup takes over from a lower Master.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub preempt: bool,
    /// After startup or a cleared fault, wait this long before preempting.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preempt_delay: Duration,
    /// Accept_Mode (§6.1): on by default, unlike the RFC (docs/vrrp.md).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub accept_mode: bool,
    /// Carry the VIPs on a macvlan with the virtual MAC 00:00:5e:00:01:VRID (IPv4) or
    /// 00:00:5e:00:02:VRID (IPv6) (§7.3), so a failover moves the MAC too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub virtual_mac: bool,
    /// Member of the pair's sync group (every router is, by default): its role follows the
    /// group's and makes the pair's role. `false` runs it on its own.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub sync_group: bool,
    /// Pools whose servers being all down lowers the priority or forbids mastership.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_pools: Vec<PoolTrack>,
    /// Gratuitous ARP / unsolicited NA on becoming Master.
    #[serde(default, skip_serializing_if = "Announce::is_default")]
    pub announce: Announce,
}

/// What a tracked object being down does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDown {
    /// The router must not be Master: a Master hands over (priority 0, make before break),
    /// a Backup never takes over. keepalived's behaviour for a tracked object without weight.
    #[default]
    Fault,
    /// Lower the priority by this much (1 to 254), so that a preempting peer takes over.
    Weight(u8),
    /// Shown in the status only.
    Ignore,
}

impl OnDown {
    fn is_fault(&self) -> bool {
        *self == OnDown::Fault
    }
}

/// `track_pools[]`: a pool counts as down when none of its servers is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTrack {
    pub pool: String,
    #[serde(default, skip_serializing_if = "OnDown::is_fault")]
    pub on_down: OnDown,
}

/// The announcement burst on becoming Master, and its repetition (keepalived's
/// `garp_master_repeat`, `garp_interval`, `garp_master_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// Rounds per burst; each round sends one frame per VIP.
    #[serde(default = "default_announce_count")]
    pub count: u32,
    /// Time between rounds.
    #[serde(default)]
    pub spacing: Duration,
    /// A second burst this long after becoming Master; `0s` for none.
    #[serde(default = "default_announce_repeat")]
    pub repeat_after: Duration,
}

impl Default for Announce {
    fn default() -> Self {
        Announce {
            count: default_announce_count(),
            spacing: Duration::default(),
            repeat_after: default_announce_repeat(),
        }
    }
}

impl Announce {
    fn is_default(&self) -> bool {
        *self == Announce::default()
    }
}

/// `node.vrrp`: where and how this box runs the pair's virtual routers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpNode {
    #[serde(default)]
    pub routers: Vec<RouterPlacement>,
    #[serde(default, skip_serializing_if = "NodeTrack::is_default")]
    pub track: NodeTrack,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

impl VrrpNode {
    pub fn is_empty(&self) -> bool {
        *self == VrrpNode::default()
    }
}

/// `node.vrrp.routers[]`: one shared router on this box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterPlacement {
    /// The name of a router of `shared.vrrp.routers`.
    pub router: String,
    /// The interface it advertises on and holds its VIPs on.
    pub interface: String,
    /// This box's priority, 1 to 254; the box meant to be active gets the higher one.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The peer's address(es) on this link. When given, adverts from anyone else are
    /// dropped (VRRPv3 has no authentication, RFC 5798 §9).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
    /// Send adverts to `peers` instead of 224.0.0.18 / ff02::12, for networks that block
    /// multicast.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unicast: bool,
}

/// `node.vrrp.track`: tracking of this box's own links, gateway and dataplane. It applies to
/// every router (the sync group moves as one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTrack {
    /// Interfaces whose link going down lowers the priority or forbids mastership. Each
    /// router's own interface is tracked as a fault without being listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceTrack>,
    /// The split-brain guard: a box that cannot reach its gateway gives the VIPs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayCheck>,
    /// tandemd's own liveness probe of its listeners: a wedged dataplane gives the VIPs up.
    #[serde(default, skip_serializing_if = "OnDown::is_fault")]
    pub dataplane: OnDown,
}

impl Default for NodeTrack {
    fn default() -> Self {
        NodeTrack {
            interfaces: Vec::new(),
            gateway: None,
            dataplane: OnDown::Fault,
        }
    }
}

impl NodeTrack {
    fn is_default(&self) -> bool {
        *self == NodeTrack::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceTrack {
    pub interface: String,
    #[serde(default, skip_serializing_if = "OnDown::is_fault")]
    pub on_down: OnDown,
}

/// A reachability check of the gateway, `fall` failures in a row to go down and `rise`
/// successes to come back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayCheck {
    pub address: IpAddr,
    /// The interface the gateway is on: replies over another path do not count. Required
    /// for `method: arp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default)]
    pub method: ProbeMethod,
    #[serde(default = "default_gateway_interval")]
    pub interval: Duration,
    #[serde(default = "default_gateway_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
    #[serde(default, skip_serializing_if = "OnDown::is_fault")]
    pub on_down: OnDown,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMethod {
    /// ICMP echo (IPv4 or IPv6).
    #[default]
    Icmp,
    /// ARP request on the gateway's link (IPv4): works where ICMP is filtered.
    Arp,
}

/// Commands run when the pair's role changes, by argv (never through a shell), with the
/// role and the reason in `TANDEM_ROLE`, `TANDEM_PREVIOUS_ROLE` and `TANDEM_REASON`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Run when this box becomes active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Run when this box becomes passive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passive: Vec<String>,
    /// Run when a fault starts holding this box passive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault: Vec<String>,
    /// A command still running after this long is killed.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Duration,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(d: &Duration) -> bool {
    d.is_zero()
}

fn default_advert_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_announce_count() -> u32 {
    5
}

fn default_announce_repeat() -> Duration {
    Duration::from_secs(5)
}

fn default_priority() -> u8 {
    100
}

fn default_gateway_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_gateway_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

fn default_notify_timeout() -> Duration {
    Duration::from_secs(10)
}

// ---------------------------------------------------------------------------------------
// Validation, called from `validate.rs` with the same diagnostics as the rest.

use crate::diagnostic::Diagnostic;
use crate::load::at_path;
use crate::source_map::{DocPath, SourceMap};
use crate::{Config, SharedConfig};
use std::collections::{HashMap, HashSet};

/// Most VIPs of one router: an advert carries at most 255 (§5.2.5), and an IPv6 advert must
/// fit a 1500-byte MTU (tandem-vrrp's limits).
const MAX_VIPS_V4: usize = 255;
const MAX_VIPS_V6: usize = 90;
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

struct Problems<'a> {
    map: &'a SourceMap,
    items: Vec<Diagnostic>,
}

impl Problems<'_> {
    fn add(&mut self, path: &DocPath, message: impl Into<String>, hint: impl AsRef<str>) {
        self.items
            .push(at_path(self.map, path, message.into(), hint.as_ref()));
    }

    fn weight(&mut self, path: &DocPath, on_down: OnDown) {
        if let OnDown::Weight(w) = on_down
            && !(1..=254).contains(&w)
        {
            self.add(
                &path.key("weight"),
                format!("weight {w} is outside 1..254"),
                "a weight lowers the priority by that much; use `fault` to forbid mastership",
            );
        }
    }

    fn interface(&mut self, path: &DocPath, name: &str) {
        let valid = (1..=15).contains(&name.len())
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
        if !valid {
            self.add(
                path,
                format!("`{name}` is not a valid interface name"),
                "give the Linux interface name, 1 to 15 characters, e.g. `eth1` or `bond0.20`",
            );
        }
    }

    fn delay(&mut self, path: &DocPath, d: Duration, what: &str) {
        if d.get() > MAX_DELAY {
            self.add(
                path,
                format!("the {what} {d} is longer than one hour"),
                "use at most `1h`",
            );
        }
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn is_unusable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_loopback()
        }
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast() || v6.is_loopback(),
    }
}

/// The checks of `shared.vrrp` that need nothing else than the shared part.
pub(crate) fn validate_shared(shared: &SharedConfig, map: &SourceMap) -> Vec<Diagnostic> {
    let mut p = Problems {
        map,
        items: Vec::new(),
    };
    let list = DocPath::root().key("shared").key("vrrp").key("routers");
    let mut names = HashSet::new();
    let mut vip_owner: HashMap<IpAddr, &str> = HashMap::new();
    let mut group_tracks: HashMap<&str, (OnDown, &str)> = HashMap::new();
    for (i, r) in shared.vrrp.routers.iter().enumerate() {
        let at = list.index(i);
        if !crate::validate::is_name(&r.name) {
            p.add(
                &at.key("name"),
                format!("`{}` is not a valid router name", r.name),
                "use letters, digits, `-` and `_` (1 to 64 characters)",
            );
        } else if !names.insert(r.name.as_str()) {
            p.add(
                &at.key("name"),
                format!("there is already a router named `{}`", r.name),
                "give each router its own name",
            );
        }
        if r.vrid == 0 {
            p.add(
                &at.key("vrid"),
                "VRID 0 is not valid (RFC 5798 §5.2.3)",
                "use 1 to 255, the same on both boxes",
            );
        }
        router_vips(&mut p, r, &at, &mut vip_owner);
        let ms = r.advert_interval.get().as_millis();
        if !(10..=40_950).contains(&ms) || r.advert_interval.get().as_nanos() % 10_000_000 != 0 {
            p.add(
                &at.key("advert_interval"),
                format!(
                    "advert interval {} is not whole centiseconds between 10ms and 40.95s",
                    r.advert_interval
                ),
                "VRRPv3 carries it in centiseconds (RFC 5798 §5.2.7): e.g. `100ms`, or `10ms`-`20ms` on a dedicated HA link",
            );
        }
        p.delay(&at.key("preempt_delay"), r.preempt_delay, "preempt delay");
        if !r.accept_mode {
            p.add(
                &at.key("accept_mode"),
                "`accept_mode: false` is not supported",
                "a load balancer must accept traffic to its VIPs; remove the key (docs/vrrp.md)",
            );
        }
        let an = at.key("announce");
        if !(1..=100).contains(&r.announce.count) {
            p.add(
                &an.key("count"),
                format!("count {} is outside 1..100", r.announce.count),
                "keepalived's default is 5 rounds",
            );
        }
        if r.announce.spacing.get() > std::time::Duration::from_secs(1) {
            p.add(
                &an.key("spacing"),
                format!("spacing {} is longer than 1s", r.announce.spacing),
                "rounds are usually sent back to back (`0s`) or a few ms apart",
            );
        }
        p.delay(
            &an.key("repeat_after"),
            r.announce.repeat_after,
            "repeat delay",
        );
        let mut pools = HashSet::new();
        for (j, t) in r.track_pools.iter().enumerate() {
            let tp = at.key("track_pools").index(j);
            if shared.pool(&t.pool).is_none() {
                let mut known: Vec<_> = shared
                    .pools
                    .iter()
                    .map(|p| format!("`{}`", p.name))
                    .collect();
                known.sort();
                p.add(
                    &tp.key("pool"),
                    format!("no pool named `{}`", t.pool),
                    if known.is_empty() {
                        "define it under `shared.pools`".to_owned()
                    } else {
                        format!("use one of: {}", known.join(", "))
                    },
                );
            } else if !pools.insert(t.pool.as_str()) {
                p.add(
                    &tp.key("pool"),
                    format!("pool `{}` is tracked twice by this router", t.pool),
                    "list each pool once",
                );
            }
            p.weight(&tp.key("on_down"), t.on_down);
            if r.sync_group {
                match group_tracks.get(t.pool.as_str()) {
                    Some((effect, other)) if *effect != t.on_down => p.add(
                        &tp.key("on_down"),
                        format!(
                            "pool `{}` is tracked with another effect by router `{other}`",
                            t.pool
                        ),
                        "the sync group moves as one, so a tracked pool counts for every member: give it one effect",
                    ),
                    Some(_) => {}
                    None => {
                        group_tracks.insert(&t.pool, (t.on_down, &r.name));
                    }
                }
            }
        }
    }
    p.items
}

fn router_vips<'a>(
    p: &mut Problems<'_>,
    r: &'a VirtualRouter,
    at: &DocPath,
    vip_owner: &mut HashMap<IpAddr, &'a str>,
) {
    let vips = at.key("vips");
    let Some(first) = r.vips.first() else {
        p.add(
            &vips,
            format!("router `{}` has no VIP", r.name),
            "list its addresses with their prefix length, e.g. `[10.0.0.100/24]`",
        );
        return;
    };
    let v6 = first.addr().is_ipv6();
    let max = if v6 { MAX_VIPS_V6 } else { MAX_VIPS_V4 };
    if r.vips.len() > max {
        p.add(
            &vips,
            format!("{} VIPs do not fit one advert; at most {max}", r.vips.len()),
            "split them over several routers of the sync group",
        );
    }
    let mut seen = HashSet::new();
    for (k, net) in r.vips.iter().enumerate() {
        let ip = net.addr();
        let vp = vips.index(k);
        if ip.is_ipv6() != v6 {
            p.add(
                &vp,
                format!(
                    "{ip} is {}, but this router's first VIP is {}",
                    family(&ip),
                    family(&first.addr())
                ),
                "IPv4 and IPv6 need separate virtual routers (RFC 5798 §1): add a router for the other family",
            );
        } else if is_unusable(&ip) {
            p.add(
                &vp,
                format!("{ip} cannot be a VIP"),
                "a VIP is a unicast address (not loopback, multicast, broadcast or unspecified)",
            );
        } else if !seen.insert(ip) {
            p.add(&vp, format!("{ip} is listed twice"), "list each VIP once");
        } else if let Some(other) = vip_owner.insert(ip, &r.name) {
            p.add(
                &vp,
                format!("{ip} is also a VIP of router `{other}`"),
                "a VIP belongs to one router, or both could hold it",
            );
        }
    }
    if v6 && !is_link_local_v6(&first.addr()) {
        p.add(
            &vips.index(0),
            format!(
                "the first VIP of IPv6 router `{}` is {}, not a link-local address",
                r.name,
                first.addr()
            ),
            "RFC 5798 §5.2.9 puts the router's link-local address first, e.g. `fe80::1/64`; hosts use it as their gateway",
        );
    }
}

/// The checks of `node.vrrp`, which refer to `shared.vrrp`.
pub(crate) fn validate_node(config: &Config, map: &SourceMap) -> Vec<Diagnostic> {
    let mut p = Problems {
        map,
        items: Vec::new(),
    };
    let node = &config.node.vrrp;
    let shared = &config.shared.vrrp;
    let root = DocPath::root().key("node").key("vrrp");
    let list = root.key("routers");
    let mut placed = HashSet::new();
    let mut vrids: HashMap<(&str, bool, u8), &str> = HashMap::new();
    for (i, pl) in node.routers.iter().enumerate() {
        let at = list.index(i);
        p.interface(&at.key("interface"), &pl.interface);
        let Some(router) = shared.router(&pl.router) else {
            let mut known: Vec<_> = shared
                .routers
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect();
            known.sort();
            p.add(
                &at.key("router"),
                format!("no router named `{}` in `shared.vrrp.routers`", pl.router),
                if known.is_empty() {
                    "define the router under `shared.vrrp.routers` first".to_owned()
                } else {
                    format!("use one of: {}", known.join(", "))
                },
            );
            continue;
        };
        if !placed.insert(pl.router.as_str()) {
            p.add(
                &at.key("router"),
                format!("router `{}` is placed twice on this box", pl.router),
                "a router runs on one interface; list it once",
            );
            continue;
        }
        match pl.priority {
            0 => p.add(
                &at.key("priority"),
                "priority 0 is reserved for a Master that stops (RFC 5798 §5.2.4)",
                "use 1 to 254; the box meant to be active gets the higher one",
            ),
            255 => p.add(
                &at.key("priority"),
                "priority 255 would make this box the owner of the VIPs (RFC 5798 §3), but Tandem's VIPs float between the boxes",
                "use 1 to 254; the box meant to be active gets the higher one (docs/ha.md)",
            ),
            _ => {}
        }
        let v6 = router.vips.first().is_some_and(|v| v.addr().is_ipv6());
        if let Some(other) = vrids.insert((pl.interface.as_str(), v6, router.vrid), &pl.router) {
            p.add(
                &at.key("router"),
                format!(
                    "routers `{other}` and `{}` both use VRID {} for {} on {}",
                    pl.router,
                    router.vrid,
                    if v6 { "IPv6" } else { "IPv4" },
                    pl.interface
                ),
                "VRIDs must be unique per interface and address family (RFC 5798 §5.2.3)",
            );
        }
        let mut peers = HashSet::new();
        for (k, peer) in pl.peers.iter().enumerate() {
            let pp = at.key("peers").index(k);
            if peer.is_ipv6() != v6 {
                p.add(
                    &pp,
                    format!(
                        "peer {peer} is {}, but router `{}` is {}",
                        family(peer),
                        pl.router,
                        if v6 { "IPv6" } else { "IPv4" }
                    ),
                    "give the peer's address of the router's family",
                );
            } else if is_unusable(peer) {
                p.add(
                    &pp,
                    format!("{peer} cannot be a peer's address"),
                    "give the peer box's own unicast address on this link",
                );
            } else if v6 && !is_link_local_v6(peer) {
                p.add(
                    &pp,
                    format!("IPv6 peer {peer} is not a link-local address"),
                    "IPv6 adverts come from the sender's link-local address (RFC 5798 §5.1.2.1): give the peer's fe80:: address",
                );
            } else if !peers.insert(*peer) {
                p.add(
                    &pp,
                    format!("peer {peer} is listed twice"),
                    "list each peer once",
                );
            }
        }
        if pl.unicast && router.virtual_mac {
            p.add(
                &at.key("unicast"),
                format!("router `{}` has a virtual MAC, which needs multicast adverts", pl.router),
                "a virtual MAC moves with multicast adverts on one link; remove `unicast` or `virtual_mac`",
            );
        }
        if pl.unicast && pl.peers.is_empty() {
            p.add(
                &at.key("unicast"),
                "unicast adverts need at least one peer",
                "list the peer box's address under `peers`",
            );
        }
    }
    for r in &shared.routers {
        if !placed.contains(r.name.as_str()) && crate::validate::is_name(&r.name) {
            p.add(
                &list,
                format!("router `{}` of `shared.vrrp` is not placed on this box", r.name),
                format!(
                    "add `- {{ router: {}, interface: IFACE, priority: N }}` to `node.vrrp.routers`",
                    r.name
                ),
            );
        }
    }
    let track = root.key("track");
    let mut ifaces = HashSet::new();
    for (i, t) in node.track.interfaces.iter().enumerate() {
        let at = track.key("interfaces").index(i);
        p.interface(&at.key("interface"), &t.interface);
        if !ifaces.insert(t.interface.as_str()) {
            p.add(
                &at.key("interface"),
                format!("interface `{}` is tracked twice", t.interface),
                "list each interface once",
            );
        }
        p.weight(&at.key("on_down"), t.on_down);
    }
    p.weight(&track.key("dataplane"), node.track.dataplane);
    if let Some(gw) = &node.track.gateway {
        gateway(&mut p, gw, &track.key("gateway"));
    }
    if let Some(n) = &node.notify {
        let at = root.key("notify");
        for (key, argv) in [
            ("active", &n.active),
            ("passive", &n.passive),
            ("fault", &n.fault),
        ] {
            if let Some(program) = argv.first()
                && !program.starts_with('/')
            {
                p.add(
                    &at.key(key).index(0),
                    format!("`{program}` is not an absolute path"),
                    "notify commands run by argv, never through a shell: give the program's full path, e.g. `[/usr/local/bin/notify, active]`",
                );
            }
            if argv.iter().any(|a| a.contains('\0')) {
                p.add(&at.key(key), "an argument contains a NUL byte", "remove it");
            }
        }
        let t = n.timeout.get();
        if t.is_zero() || t > std::time::Duration::from_secs(600) {
            p.add(
                &at.key("timeout"),
                format!("timeout {} is outside 1ms..10m", n.timeout),
                "e.g. `10s`; a command still running then is killed",
            );
        }
    }
    p.items
}

fn gateway(p: &mut Problems<'_>, gw: &GatewayCheck, at: &DocPath) {
    if is_unusable(&gw.address) {
        p.add(
            &at.key("address"),
            format!("{} cannot be probed", gw.address),
            "give the gateway's unicast address",
        );
    }
    if let Some(iface) = &gw.interface {
        p.interface(&at.key("interface"), iface);
    }
    if gw.method == ProbeMethod::Arp {
        if gw.address.is_ipv6() {
            p.add(
                &at.key("method"),
                "ARP probes IPv4 gateways only",
                "use `method: icmp` for an IPv6 gateway",
            );
        }
        if gw.interface.is_none() {
            p.add(
                at,
                "`method: arp` needs the gateway's `interface`",
                "add `interface: IFACE`, the link the gateway is on",
            );
        }
    }
    let interval = gw.interval.get();
    if interval < std::time::Duration::from_millis(100) || interval > MAX_DELAY {
        p.add(
            &at.key("interval"),
            format!("interval {} is outside 100ms..1h", gw.interval),
            "e.g. `1s`",
        );
    }
    if gw.timeout.is_zero() || gw.timeout > gw.interval {
        p.add(
            &at.key("timeout"),
            format!(
                "timeout {} is zero or longer than the interval {}",
                gw.timeout, gw.interval
            ),
            "make the timeout positive and at most the interval, e.g. `500ms`",
        );
    }
    for (name, v) in [("rise", gw.rise), ("fall", gw.fall)] {
        if !(1..=100).contains(&v) {
            p.add(
                &at.key(name),
                format!("{name} {v} is outside 1..100"),
                "typical values are rise 2, fall 3",
            );
        }
    }
    p.weight(&at.key("on_down"), gw.on_down);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Diagnostics, parse};
    use std::path::Path;

    /// A pair box with one IPv4 and one IPv6 router.
    const PAIR: &str = "\
schema: 1
node:
  name: lb-a
  management:
    listen: 192.0.2.10:9443
  vrrp:
    routers:
      - router: front
        interface: eth1
        priority: 150
        peers: [10.0.0.3]
      - router: front6
        interface: eth1
        priority: 150
    track:
      interfaces:
        - { interface: eth2, on_down: { weight: 30 } }
      gateway: { address: 10.0.0.1 }
    notify:
      active: [/usr/local/bin/notify, active]
shared:
  pools:
    - name: web
      servers:
        - { id: web1, address: 10.0.1.11:8080 }
  vrrp:
    routers:
      - name: front
        vrid: 51
        vips: [10.0.0.100/24, 10.0.0.101/24]
        track_pools:
          - { pool: web, on_down: { weight: 50 } }
      - name: front6
        vrid: 51
        vips: [fe80::51/64, 2001:db8::100/64]
        advert_interval: 20ms
";

    fn errors(text: &str) -> Diagnostics {
        parse(text, Some(Path::new("lb.yaml"))).expect_err("the config should be refused")
    }

    fn has(d: &Diagnostics, path: &str, message: &str) -> bool {
        d.items
            .iter()
            .any(|i| i.path == path && i.message.contains(message))
    }

    #[test]
    fn a_pair_config_parses_with_the_documented_defaults() {
        let c = parse(PAIR, None).unwrap();
        let front = c.shared.vrrp.router("front").unwrap();
        assert_eq!(front.advert_interval.get().as_millis(), 100);
        assert!(front.preempt && front.accept_mode && front.sync_group && !front.virtual_mac);
        assert!(front.preempt_delay.is_zero());
        assert_eq!(front.announce, Announce::default());
        assert_eq!(front.announce.count, 5);
        assert_eq!(front.announce.repeat_after.get().as_secs(), 5);
        assert_eq!(front.track_pools[0].on_down, OnDown::Weight(50));
        let node = &c.node.vrrp;
        assert_eq!(node.routers[0].priority, 150);
        assert!(!node.routers[0].unicast);
        assert_eq!(node.track.dataplane, OnDown::Fault);
        assert_eq!(node.track.interfaces[0].on_down, OnDown::Weight(30));
        let gw = node.track.gateway.as_ref().unwrap();
        assert_eq!((gw.rise, gw.fall, gw.method), (2, 3, ProbeMethod::Icmp));
        assert_eq!(gw.on_down, OnDown::Fault);
        let notify = node.notify.as_ref().unwrap();
        assert_eq!(notify.timeout.get().as_secs(), 10);
    }

    #[test]
    fn the_shared_routers_round_trip_through_the_canonical_form() {
        let c = parse(PAIR, None).unwrap();
        let text = c.shared.to_canonical_yaml();
        let doc = crate::parse_shared_document(&text).unwrap();
        assert_eq!(doc.shared, c.shared);
        // Defaults are not written out.
        assert!(!text.contains("preempt"), "{text}");
    }

    #[test]
    fn a_config_without_vrrp_keeps_its_canonical_form() {
        // Stored versions are hashed: a box without VRRP must not gain a `vrrp` key.
        let shared = SharedConfig::default();
        assert!(!shared.to_canonical_yaml().contains("vrrp"));
        let node: crate::NodeConfig =
            serde_saphyr::from_str("name: a\nmanagement:\n  listen: 127.0.0.1:9443\n").unwrap();
        let node = serde_saphyr::to_string(&node).unwrap();
        assert!(!node.contains("vrrp"), "{node}");
    }

    #[test]
    fn an_unknown_router_name_points_at_its_line_and_lists_the_known_ones() {
        let d = errors(&PAIR.replace("      - router: front6\n", "      - router: frnt6\n"));
        let item = d
            .items
            .iter()
            .find(|i| i.path == "node.vrrp.routers[1].router")
            .expect("unknown router reported");
        assert_eq!((item.line, item.column), (12, 17));
        assert!(item.message.contains("no router named `frnt6`"));
        assert!(item.hint.contains("`front`") && item.hint.contains("`front6`"));
        // And `front6` is now unplaced.
        assert!(has(
            &d,
            "node.vrrp.routers",
            "`front6` of `shared.vrrp` is not placed"
        ));
    }

    #[test]
    fn duplicate_vrids_per_interface_and_family_are_refused() {
        // Same VRID 51 for IPv4 and IPv6 on eth1 is fine (PAIR); two IPv4 routers are not.
        let text = PAIR.replace(
            "vips: [fe80::51/64, 2001:db8::100/64]",
            "vips: [10.0.0.200/24]",
        );
        let d = errors(&text);
        assert!(has(
            &d,
            "node.vrrp.routers[1].router",
            "both use VRID 51 for IPv4 on eth1"
        ));
        // On another interface it is fine.
        let text = text.replace(
            "      - router: front6\n        interface: eth1",
            "      - router: front6\n        interface: eth3",
        );
        parse(&text, None).unwrap();
    }

    #[test]
    fn mixed_families_and_a_missing_link_local_are_refused() {
        let d = errors(&PAIR.replace(
            "vips: [fe80::51/64, 2001:db8::100/64]",
            "vips: [2001:db8::100/64, 10.0.0.7/24]",
        ));
        assert!(has(&d, "shared.vrrp.routers[1].vips[1]", "is IPv4, but"));
        assert!(has(
            &d,
            "shared.vrrp.routers[1].vips[0]",
            "not a link-local address"
        ));
    }

    #[test]
    fn advert_intervals_are_whole_centiseconds_from_10ms_to_40_95s() {
        for bad in ["5ms", "15ms", "41s", "0s"] {
            let d =
                errors(&PAIR.replace("advert_interval: 20ms", &format!("advert_interval: {bad}")));
            assert!(
                has(
                    &d,
                    "shared.vrrp.routers[1].advert_interval",
                    "whole centiseconds"
                ),
                "{bad}: {d}"
            );
        }
        for good in ["10ms", "40950ms", "1s"] {
            parse(
                &PAIR.replace("advert_interval: 20ms", &format!("advert_interval: {good}")),
                None,
            )
            .unwrap();
        }
    }

    #[test]
    fn priorities_0_and_255_are_refused_with_the_reason() {
        let d = errors(&PAIR.replace(
            "priority: 150\n        peers",
            "priority: 255\n        peers",
        ));
        assert!(has(
            &d,
            "node.vrrp.routers[0].priority",
            "owner of the VIPs"
        ));
        let d = errors(&PAIR.replace("priority: 150\n        peers", "priority: 0\n        peers"));
        assert!(has(&d, "node.vrrp.routers[0].priority", "reserved"));
    }

    #[test]
    fn peers_must_match_the_family_and_unicast_needs_them() {
        let d = errors(&PAIR.replace("peers: [10.0.0.3]", "peers: [2001:db8::3]"));
        assert!(has(
            &d,
            "node.vrrp.routers[0].peers[0]",
            "is IPv6, but router `front` is IPv4"
        ));
        let d = errors(&PAIR.replace(
            "      - router: front6\n        interface: eth1\n",
            "      - router: front6\n        interface: eth1\n        unicast: true\n        peers: [2001:db8::3]\n",
        ));
        assert!(has(&d, "node.vrrp.routers[1].peers[0]", "not a link-local"));
        let d = errors(&PAIR.replace("peers: [10.0.0.3]", "unicast: true"));
        assert!(has(
            &d,
            "node.vrrp.routers[0].unicast",
            "need at least one peer"
        ));
    }

    #[test]
    fn tracked_pools_must_exist_and_agree_within_the_sync_group() {
        let d = errors(&PAIR.replace("- { pool: web, on_down", "- { pool: api, on_down"));
        assert!(has(
            &d,
            "shared.vrrp.routers[0].track_pools[0].pool",
            "no pool named `api`"
        ));
        let d = errors(&PAIR.replace(
            "        advert_interval: 20ms\n",
            "        advert_interval: 20ms\n        track_pools: [{ pool: web }]\n",
        ));
        assert!(has(
            &d,
            "shared.vrrp.routers[1].track_pools[0].on_down",
            "tracked with another effect by router `front`"
        ));
    }

    #[test]
    fn weights_gateway_and_notify_are_checked() {
        let d = errors(&PAIR.replace("{ weight: 30 }", "{ weight: 0 }"));
        assert!(has(
            &d,
            "node.vrrp.track.interfaces[0].on_down.weight",
            "outside 1..254"
        ));
        let d = errors(&PAIR.replace(
            "gateway: { address: 10.0.0.1 }",
            "gateway: { address: 10.0.0.1, method: arp, timeout: 2s }",
        ));
        assert!(has(
            &d,
            "node.vrrp.track.gateway",
            "needs the gateway's `interface`"
        ));
        assert!(has(
            &d,
            "node.vrrp.track.gateway.timeout",
            "longer than the interval"
        ));
        let d = errors(&PAIR.replace("[/usr/local/bin/notify, active]", "[notify, active]"));
        assert!(has(
            &d,
            "node.vrrp.notify.active[0]",
            "not an absolute path"
        ));
    }

    #[test]
    fn the_same_vip_in_two_routers_and_accept_mode_off_are_refused() {
        let d = errors(
            &PAIR
                .replace(
                    "10.0.0.101/24]",
                    "10.0.0.101/24]\n        accept_mode: false",
                )
                .replace(
                    "vips: [fe80::51/64, 2001:db8::100/64]",
                    "vips: [fe80::51/64, 2001:db8::100/64, fe80::51/64]",
                ),
        );
        assert!(has(
            &d,
            "shared.vrrp.routers[0].accept_mode",
            "not supported"
        ));
        assert!(has(&d, "shared.vrrp.routers[1].vips[2]", "listed twice"));
        let text = PAIR.replace(
            "        advert_interval: 20ms\n",
            "        advert_interval: 20ms\n      - name: other\n        vrid: 52\n        vips: [10.0.0.100/32]\n",
        );
        let d = errors(&text);
        assert!(has(
            &d,
            "shared.vrrp.routers[2].vips[0]",
            "also a VIP of router `front`"
        ));
    }

    #[test]
    fn a_shared_router_not_placed_on_the_box_is_refused() {
        let d = errors(&PAIR.replace(
            "      - router: front6\n        interface: eth1\n        priority: 150\n",
            "",
        ));
        assert!(has(
            &d,
            "node.vrrp.routers",
            "`front6` of `shared.vrrp` is not placed"
        ));
    }
}
