//! Tracking: a link, the gateway and tandemd's own reports make a Master give the VIPs up.

mod common;

use std::time::Duration;

use common::*;
use tandem_ha::{GatewayConfig, ProbeMethod, Role, TrackEffect, TrackState, track};

/// A second interface on A: one end of a veth pair whose other end stays up, so that
/// `ip link set eth1 down` is what takes it down.
fn second_link(lab: &Lab) {
    lab.boxes[0]
        .ip(&[
            "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ])
        .unwrap();
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1p", "up"])
        .unwrap();
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1", "up"])
        .unwrap();
}

#[test]
fn a_tracked_link_going_down_fails_over_and_back() {
    let lab = Lab::new(2);
    // A second interface on A, tracked as a fault.
    second_link(&lab);
    let mut ca = config(router(51, 200, 20, &["192.0.2.100/24"]));
    ca.interface_tracks = vec![("eth1".into(), Some(TrackEffect::Fault))];
    let a = lab.start(0, ca);
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1", "down"])
        .unwrap();
    wait_role(
        &b,
        Role::Active,
        Duration::from_secs(1),
        "B after A's eth1 went down",
    );
    wait_role(
        &a,
        Role::Passive,
        Duration::from_secs(1),
        "A with eth1 down",
    );
    assert!(lab.has_address(1, VIP) && lab.lacks_address(0, VIP));
    let status = a.status();
    assert_eq!(status.router("front").unwrap().faults, ["link:eth1"]);
    assert!(status.tracks.iter().any(|t| t.name == "link:eth1" && !t.up));
    // A fault holds even a box whose peer dies.
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1", "up"])
        .unwrap();
    wait_role(
        &a,
        Role::Active,
        Duration::from_secs(2),
        "A preempting once eth1 is back",
    );
    wait_role(&b, Role::Passive, Duration::from_secs(1), "B");
}

#[test]
fn a_tracked_link_with_a_weight_lets_a_preempting_peer_take_over() {
    let lab = Lab::new(2);
    second_link(&lab);
    let mut ca = config(router(51, 150, 20, &["192.0.2.100/24"]));
    ca.interface_tracks = vec![("eth1".into(), Some(TrackEffect::Weight(100)))];
    let a = lab.start(0, ca);
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1", "down"])
        .unwrap();
    // 150 - 100 = 50 < 100: B preempts one Master_Down_Interval later.
    wait_role(&b, Role::Active, Duration::from_secs(1), "B preempting");
    wait_role(&a, Role::Passive, Duration::from_secs(1), "A preempted");
    assert_eq!(a.status().router("front").unwrap().effective_priority, 50);
}

#[test]
fn a_box_cut_off_from_its_gateway_gives_the_vips_up() {
    let lab = Lab::new(3);
    // Box 2 plays the gateway (192.0.2.3); it runs no heartbeat.
    let gateway = GatewayConfig {
        address: box_ip(2).parse().unwrap(),
        interface: Some("eth0".into()),
        method: ProbeMethod::Icmp,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        rise: 2,
        fall: 2,
        effect: Some(TrackEffect::Fault),
    };
    let mut ca = config(router(51, 200, 20, &["192.0.2.100/24"]));
    ca.gateway = Some(gateway.clone());
    let mut cb = config(router(51, 100, 20, &["192.0.2.100/24"]));
    cb.gateway = Some(gateway.clone());
    let a = lab.start(0, ca);
    let b = lab.start(1, cb);
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    // A loses its way to the gateway while its link (and the adverts) stay up: its
    // echo requests go to a MAC nobody has.
    let gw = box_ip(2);
    lab.boxes[0]
        .ip(&[
            "neigh",
            "replace",
            &gw,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
    // fall 2 × 100 ms, then a make-before-break handover.
    wait_role(
        &b,
        Role::Active,
        Duration::from_secs(2),
        "B after A lost the gateway",
    );
    wait_role(
        &a,
        Role::Passive,
        Duration::from_secs(1),
        "A without gateway",
    );
    assert!(lab.lacks_address(0, VIP) && lab.has_address(1, VIP));
    assert_eq!(a.status().router("front").unwrap().faults, ["gateway"]);
    // The gateway comes back (rise 2): A preempts again.
    lab.boxes[0]
        .ip(&["neigh", "del", &gw, "dev", "eth0"])
        .unwrap();
    wait_role(
        &a,
        Role::Active,
        Duration::from_secs(3),
        "A with its gateway back",
    );
}

#[test]
fn a_box_that_starts_without_its_gateway_never_takes_the_vips() {
    let lab = Lab::new(1);
    let mut ca = config(router(51, 200, 20, &["192.0.2.100/24"]));
    ca.gateway = Some(GatewayConfig {
        address: "192.0.2.77".parse().unwrap(),
        interface: None,
        method: ProbeMethod::Arp,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        rise: 2,
        fall: 3,
        effect: Some(TrackEffect::Fault),
    });
    // An ARP probe needs the interface.
    let err = lab.boxes[0]
        .run(|| tandem_ha::Ha::start(ca.clone()))
        .unwrap();
    assert!(err.is_err());
    ca.gateway.as_mut().unwrap().interface = Some("eth0".into());
    let a = lab.start(0, ca);
    stays(
        &a,
        Role::Passive,
        5 * master_down(200, 20),
        "A alone without a gateway",
    );
    assert!(lab.lacks_address(0, VIP));
}

#[test]
fn a_fault_reported_by_tandemd_gives_the_vips_up() {
    let lab = Lab::new(2);
    let a = lab.start(0, config(router(51, 200, 20, &["192.0.2.100/24"])));
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    // The dataplane's liveness probe failed (a fault by default).
    a.set_track(track::DATAPLANE, TrackState::Down);
    wait_role(
        &b,
        Role::Active,
        Duration::from_secs(1),
        "B after A's dataplane failed",
    );
    wait_role(&a, Role::Passive, Duration::from_secs(1), "A");
    assert!(lab.lacks_address(0, VIP) && lab.has_address(1, VIP));
    // Untracked names are remembered and harmless.
    a.set_track(&track::pool("nobody-tracks-this"), TrackState::Down);
    a.set_track(track::DATAPLANE, TrackState::Up);
    wait_role(
        &a,
        Role::Active,
        Duration::from_secs(2),
        "A once its dataplane is back",
    );
}

#[test]
fn a_pool_tracked_with_a_weight_moves_the_pair_to_the_box_that_has_servers() {
    let lab = Lab::new(2);
    let mut ra = router(51, 150, 20, &["192.0.2.100/24"]);
    ra.pool_tracks = vec![("web".into(), TrackEffect::Weight(60))];
    let mut rb = router(51, 100, 20, &["192.0.2.100/24"]);
    rb.pool_tracks = ra.pool_tracks.clone();
    let a = lab.start(0, config(ra));
    let b = lab.start(1, config(rb));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    a.set_track(&track::pool("web"), TrackState::Down);
    wait_role(
        &b,
        Role::Active,
        Duration::from_secs(1),
        "B: its pool is up",
    );
    wait_role(
        &a,
        Role::Passive,
        Duration::from_secs(1),
        "A: its pool is down",
    );
}

#[test]
fn the_sync_group_moves_as_one_when_one_members_link_fails() {
    let lab = Lab::new(2);
    lab.add_second_segment();
    let pair = |priority| {
        let front = router(51, priority, 20, &["192.0.2.100/24"]);
        let mut back = router(52, priority, 20, &["198.51.100.254/24"]);
        back.name = "back".into();
        back.interface = "eth1".into();
        tandem_ha::HaConfig::new(vec![front, back])
    };
    let a = lab.start(0, pair(200));
    let b = lab.start(1, pair(100));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    let on = |i: usize, dev: &str, ip: &str| addresses(&lab.boxes[i], dev).iter().any(|a| a == ip);
    assert!(on(0, "eth0", VIP) && on(0, "eth1", "198.51.100.254"));
    // The server side's link fails on A: the client side's VIP moves with it, so replies
    // never go astray.
    lab.boxes[0]
        .ip(&["link", "set", "dev", "eth1", "down"])
        .unwrap();
    wait_role(&b, Role::Active, Duration::from_secs(1), "B");
    wait_role(&a, Role::Passive, Duration::from_secs(1), "A");
    assert!(on(1, "eth0", VIP) && on(1, "eth1", "198.51.100.254"));
    assert!(!on(0, "eth0", VIP), "the client-side VIP left A too");
    let status = b.status();
    assert!(
        status
            .routers
            .iter()
            .all(|r| r.state == tandem_ha::RouterState::Master)
    );
}
