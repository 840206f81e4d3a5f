//! Elections between real heartbeats on a bridged segment: who wins, what a crash, a
//! graceful stop, a handover and preemption do, and that a restart cleans up after a crash.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_ha::{Role, RouterState};

#[test]
fn the_higher_priority_wins_and_alone_owns_the_vip() {
    let lab = Lab::new(2);
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    let a = lab.start(0, config(router(51, 150, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A (150)");
    // B started first and may have been Master briefly: A preempts it.
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B (100)");
    stays(&b, Role::Passive, Duration::from_millis(300), "B");
    assert!(lab.has_address(0, VIP), "the VIP is on A");
    assert!(lab.lacks_address(1, VIP), "and not on B");

    let sa = a.status();
    let ra = sa.router("front").unwrap();
    assert_eq!(ra.state, RouterState::Master);
    assert_eq!(ra.master, Some(box_ip(0).parse().unwrap()));
    assert!(ra.adverts_sent > 5, "{ra:?}");
    let sb = b.status();
    let rb = sb.router("front").unwrap();
    assert_eq!(rb.state, RouterState::Backup);
    assert_eq!(
        rb.master,
        Some(box_ip(0).parse().unwrap()),
        "B knows who is Master"
    );
    assert!(rb.adverts_received > 5, "{rb:?}");
    assert!(
        sb.realtime,
        "the heartbeat thread runs SCHED_FIFO with memory locked (root)"
    );
    let metrics = sb.render_prometheus();
    assert!(
        metrics.contains("tandem_vrrp_state{router=\"front\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_ha_role 0"), "{metrics}");
}

/// A crash: the Master's link goes down and its heartbeat stops without a word (the
/// handle dropped). The Backup takes over after Master_Down_Interval.
fn crash_takeover(interval_ms: u64) -> Duration {
    let lab = Lab::new(2);
    let a = lab.start(0, config(router(51, 200, interval_ms, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let b = lab.start(1, config(router(51, 100, interval_ms, &["192.0.2.100/24"])));
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    stays(
        &b,
        Role::Passive,
        Duration::from_millis(200),
        "B while A advertises",
    );
    let crash = Instant::now();
    lab.set_link(0, false);
    drop(a);
    let bound = master_down(100, interval_ms);
    let took_over = wait_role(
        &b,
        Role::Active,
        3 * bound + Duration::from_millis(100),
        "B after A's crash",
    );
    let elapsed = took_over - crash;
    assert!(lab.has_address(1, VIP), "B holds the VIP");
    // The dead box keeps its VIP, as a real crash does; a restart removes it (below).
    assert!(lab.has_address(0, VIP));
    eprintln!(
        "crash takeover at {interval_ms} ms adverts: {elapsed:?} (Master_Down_Interval {bound:?})"
    );
    elapsed
}

#[test]
fn a_crashed_master_is_replaced_within_master_down_interval_at_10ms() {
    let elapsed = crash_takeover(10);
    // Never before the Master_Down_Interval minus the last advert's age.
    assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
}

#[test]
fn a_crashed_master_is_replaced_within_master_down_interval_at_100ms() {
    let elapsed = crash_takeover(100);
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
}

#[test]
fn a_graceful_stop_hands_over_at_once_and_makes_before_it_breaks() {
    let lab = Lab::new(2);
    let a = lab.start(0, config(router(51, 200, 100, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let b = lab.start(1, config(router(51, 100, 100, &["192.0.2.100/24"])));
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    let a_role = a.role();
    let stop = Instant::now();
    let stopping = std::thread::spawn(move || block_on(a.shutdown()));
    let b_active = wait_role(&b, Role::Active, Duration::from_secs(2), "B after A's stop");
    // A kept the role (and the VIP) until B had it.
    let a_passive = wait_for(Duration::from_secs(2), || {
        (*a_role.borrow() == Role::Passive).then(Instant::now)
    })
    .expect("A lets go");
    assert!(a_passive >= b_active, "A let go before B took over");
    let handover = b_active - stop;
    // Skew_Time (61 ms at priority 100) plus a wire delay, far below the 361 ms a
    // crash costs.
    assert!(
        handover < Duration::from_millis(250),
        "handover took {handover:?}"
    );
    eprintln!("graceful handover at 100 ms adverts: {handover:?}");
    stopping.join().unwrap().unwrap();
    assert!(
        lab.lacks_address(0, VIP),
        "A removed the VIP once B was heard"
    );
    assert!(lab.has_address(1, VIP));
}

#[test]
fn preemption_on_takes_the_role_back_and_off_leaves_it() {
    for preempt in [true, false] {
        let lab = Lab::new(2);
        let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
        wait_role(&b, Role::Active, Duration::from_secs(3), "B alone");
        let mut r = router(51, 200, 20, &["192.0.2.100/24"]);
        r.preempt = preempt;
        let a = lab.start(0, config(r));
        if preempt {
            wait_role(&a, Role::Active, Duration::from_secs(3), "A preempting");
            wait_role(&b, Role::Passive, Duration::from_secs(1), "B preempted");
            assert!(lab.has_address(0, VIP) && lab.lacks_address(1, VIP));
        } else {
            stays(
                &a,
                Role::Passive,
                5 * master_down(200, 20),
                "A without preemption",
            );
            assert!(b.status().router("front").unwrap().state == RouterState::Master);
            assert!(lab.has_address(1, VIP) && lab.lacks_address(0, VIP));
        }
    }
}

#[test]
fn failover_now_hands_over_and_does_not_preempt_back() {
    let lab = Lab::new(2);
    let a = lab.start(0, config(router(51, 200, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    assert!(matches!(
        b.failover_now(),
        Err(tandem_ha::HaError::NotActive)
    ));
    let asked = Instant::now();
    a.failover_now().unwrap();
    let b_active = wait_role(
        &b,
        Role::Active,
        Duration::from_secs(1),
        "B after the handover",
    );
    wait_role(
        &a,
        Role::Passive,
        Duration::from_secs(1),
        "A after the handover",
    );
    eprintln!(
        "failover_now handover at 20 ms adverts: {:?}",
        b_active - asked
    );
    // A has priority 200 and preempts, but yields: it stays passive.
    stays(&a, Role::Passive, 10 * master_down(200, 20), "A yielding");
    let status = a.status();
    assert!(status.yielding);
    assert_eq!(status.router("front").unwrap().effective_priority, 1);
    assert!(lab.has_address(1, VIP) && lab.lacks_address(0, VIP));
    // If B dies, A takes over and stops yielding.
    lab.set_link(1, false);
    drop(b);
    wait_role(
        &a,
        Role::Active,
        Duration::from_secs(2),
        "A after B's crash",
    );
    let status = a.status();
    assert!(!status.yielding);
    assert_eq!(status.router("front").unwrap().effective_priority, 200);
}

#[test]
fn a_restarted_heartbeat_removes_the_vip_its_crashed_predecessor_left() {
    let lab = Lab::new(2);
    let b = lab.start(1, config(router(51, 200, 20, &["192.0.2.100/24"])));
    wait_role(&b, Role::Active, Duration::from_secs(3), "B");
    // What a predecessor killed while Master leaves behind.
    lab.boxes[0]
        .ip(&["addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    assert!(lab.has_address(0, VIP));
    let a = lab.start(0, config(router(51, 100, 20, &["192.0.2.100/24"])));
    assert!(
        lab.lacks_address(0, VIP),
        "removed before the heartbeat started"
    );
    stays(&a, Role::Passive, Duration::from_millis(300), "A");
    assert!(lab.has_address(1, VIP));
}

#[test]
fn a_reload_keeps_unchanged_routers_running_and_starts_new_ones() {
    let lab = Lab::new(2);
    let mut second = router(52, 200, 20, &["192.0.2.101/24"]);
    second.name = "back".into();
    let a = lab.start(0, config(router(51, 200, 20, &["192.0.2.100/24"])));
    let b = lab.start(1, config(router(51, 100, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    let transitions = a.status().router("front").unwrap().transitions;
    // The same config again: nothing moves.
    block_on(a.apply(config(router(51, 200, 20, &["192.0.2.100/24"])))).unwrap();
    // A second router in the sync group on both boxes.
    let mut both = config(router(51, 200, 20, &["192.0.2.100/24"]));
    both.routers.push(second.clone());
    block_on(a.apply(both.clone())).unwrap();
    let mut both_b = config(router(51, 100, 20, &["192.0.2.100/24"]));
    second.priority = 100;
    both_b.routers.push(second);
    block_on(b.apply(both_b)).unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || lab
            .has_address(0, "192.0.2.101")
            .then_some(()))
        .is_some(),
        "the new router's VIP comes up on the active box: {:#?}",
        a.status()
    );
    stays(
        &a,
        Role::Active,
        Duration::from_millis(200),
        "A through the reload",
    );
    let status = a.status();
    assert_eq!(
        status.router("front").unwrap().transitions,
        transitions,
        "the unchanged router kept running"
    );
    assert_eq!(status.router("back").unwrap().state, RouterState::Master);
    assert!(lab.lacks_address(1, "192.0.2.101"));
    assert!(lab.has_address(0, VIP));
    // Removing the router removes its VIP.
    block_on(a.apply(config(router(51, 200, 20, &["192.0.2.100/24"])))).unwrap();
    assert!(lab.lacks_address(0, "192.0.2.101"));
    assert!(lab.has_address(0, VIP));
}

#[test]
fn a_virtual_mac_router_moves_the_vip_on_its_macvlan() {
    let lab = Lab::new(2);
    let mut ra = router(51, 200, 20, &["192.0.2.100/24"]);
    ra.virtual_mac = true;
    let mut rb = router(51, 100, 20, &["192.0.2.100/24"]);
    rb.virtual_mac = true;
    let capture = Capture::start(
        &lab.boxes[1],
        "eth0",
        "arp or ip proto 112",
        &["eth.src", "arp.src.proto_ipv4", "ip.src"],
        4,
        20,
    );
    let a = lab.start(0, config(ra));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let b = lab.start(1, config(rb));
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    let vmac = "00:00:5e:00:01:33";
    let links = lab.boxes[0].ip(&["-o", "link", "show"]).unwrap();
    let macvlan = links
        .lines()
        .find(|l| l.contains(vmac))
        .and_then(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no macvlan with {vmac}: {links}"));
    assert!(
        addresses(&lab.boxes[0], &macvlan).contains(&VIP.to_owned()),
        "VIP on {macvlan}"
    );
    assert!(lab.lacks_address(0, VIP), "not on the parent");
    // Adverts and gratuitous ARPs leave from the virtual MAC (RFC 5798 §7.3), adverts
    // from the parent's address.
    let lines = capture.lines();
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l[0], vmac, "{l:?}");
        assert!(l[1] == VIP || l[2] == box_ip(0), "{l:?}");
    }
    // A graceful stop removes the macvlan; B takes over on its own.
    block_on(a.shutdown()).unwrap();
    wait_role(&b, Role::Active, Duration::from_secs(1), "B");
    let links = lab.boxes[0].ip(&["-o", "link", "show"]).unwrap();
    assert!(!links.contains(vmac), "macvlan removed: {links}");
}

#[test]
fn notify_commands_run_by_argv_on_role_changes() {
    let lab = Lab::new(1);
    let dir = std::env::temp_dir().join(format!("tandem-ha-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("role");
    let script =
        "printf '%s %s %s' \"$TANDEM_ROLE\" \"$TANDEM_PREVIOUS_ROLE\" \"$TANDEM_REASON\" > \"$0\"";
    let mut c = config(router(51, 150, 20, &["192.0.2.100/24"]));
    c.notify = Some(tandem_ha::NotifyConfig {
        active: vec![
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
            file.display().to_string(),
        ],
        passive: vec![],
        fault: vec![],
        timeout: Duration::from_secs(5),
    });
    let a = lab.start(0, c);
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let written = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&file).ok()
    })
    .expect("the active command ran");
    assert_eq!(written, "active passive master down timer fired");
    let _ = std::fs::remove_dir_all(&dir);
}
