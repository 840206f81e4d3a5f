//! The pair (issue 3): two real tandemd boxes in network namespaces on a switch, with a client
//! and two backends (`tandem_lab::pair`): lb-a at priority 200, lb-b at 100, one VIP serving UDP
//! and TCP echo. Each test builds its own lab.
//!
//! What a client loses is measured with a UDP probe every 5 ms through the VIP. Deadlines are
//! generous (at least three times the expected figure) so that a loaded machine does not fail
//! them; the figures themselves come from `bench/failover.sh` and live in
//! `docs/performance.md`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tandem_lab::pair::{BOX_ADDR, TCP_PORT, UDP_PORT, VIP, cpu_seconds};
use tandem_lab::{
    AddressWatch, Frozen, Overlaps, PairLab, PairOptions, TwoMachines, UdpProbe, wait_for,
};

const A: usize = 0;
const B: usize = 1;

/// RFC 5798 §6.1 Master_Down_Interval = 3 × interval + (256 − priority) / 256 × interval.
fn master_down(priority: u32, interval: Duration) -> Duration {
    3 * interval + interval * (256 - priority) / 256
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(VIP.parse().unwrap(), port)
}

fn probe(lab: &PairLab) -> UdpProbe {
    UdpProbe::start(&lab.client, vip(UDP_PORT), Duration::from_millis(5))
}

/// Lets the probe run a little on both sides of an event.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn vip_ip() -> Ipv4Addr {
    VIP.parse().unwrap()
}

/// The crash deadline: box B's Master_Down_Interval at 100 ms, three times, and a second for
/// polling through tandemctl on a loaded machine.
fn crash_deadline() -> Duration {
    3 * master_down(100, Duration::from_millis(100)) + Duration::from_secs(1)
}

#[test]
fn the_higher_priority_wins_a_crashed_master_is_replaced_and_it_preempts_on_return() {
    let mut lab = PairLab::new(PairOptions::default());
    // lb-b alone takes the VIP; lb-a (200) arriving later takes it over by preemption.
    lab.start(B);
    lab.wait_active(B, Duration::from_secs(5), "lb-b alone");
    lab.start(A);
    lab.wait_active(A, Duration::from_secs(5), "lb-a preempts lb-b");
    lab.wait_served(Duration::from_secs(5), "the client through lb-a");

    // A crash: SIGKILL and the link down at once. lb-b takes the VIP and serves the client.
    let dir = lab.crash(A);
    let took = lab.wait_active(B, crash_deadline(), "lb-b after lb-a crashed");
    lab.wait_served(Duration::from_secs(5), "the client through lb-b");
    let ha = lab.ha(B);
    assert_eq!(
        ha["routers"][0]["last_transition"]["reason"], "master down timer fired",
        "{ha:#}"
    );
    eprintln!("crash: lb-b active {took:?} after the crash (as seen through tandemctl)");

    // lb-a returns: its link up, tandemd on its old state. It preempts, and the client loses
    // nothing while the VIP moves back (make before break on lb-b's side: it lets go only on
    // hearing lb-a, which has added the VIP by then).
    let probe = probe(&lab);
    settle();
    lab.set_link(A, true);
    lab.restart(A, dir);
    lab.wait_active(A, Duration::from_secs(5), "lb-a preempts on return");
    settle();
    let report = probe.stop();
    assert!(report.lost.is_empty(), "failback: {}", report.summary());
    let ha = lab.ha(B);
    let reason = ha["routers"][0]["last_transition"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("10.0.0.2") && reason.contains("200"),
        "lb-b let go on hearing lb-a: {reason}"
    );
}

#[test]
fn without_preemption_the_returning_box_stays_passive() {
    let mut lab = PairLab::running(PairOptions {
        preempt: false,
        ..Default::default()
    });
    let dir = lab.crash(A);
    lab.wait_active(B, crash_deadline(), "lb-b after lb-a crashed");
    lab.set_link(A, true);
    lab.restart(A, dir);
    // Well past lb-a's Master_Down_Interval (322 ms) and its preemption chances.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(
            lab.holds_vip(B) && !lab.holds_vip(A),
            "the VIP moved without preemption:\n{}",
            lab.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lab.role(A), "passive");
    assert_eq!(lab.role(B), "active");
    lab.wait_served(Duration::from_secs(5), "the client through lb-b");
}

#[test]
fn a_restarted_daemon_removes_the_vip_its_crashed_predecessor_left() {
    let mut lab = PairLab::running(PairOptions {
        preempt: false,
        ..Default::default()
    });
    // SIGKILL alone: the kernel keeps the VIP on lb-a's interface.
    let dir = lab.take(A).crash();
    lab.wait_active(B, crash_deadline(), "lb-b after lb-a was killed");
    assert!(lab.holds_vip(A), "the dead daemon left its VIP in place");

    let watch = AddressWatch::start(&lab.boxes[A], vip_ip());
    assert!(watch.initially);
    lab.restart(A, dir);
    // tandemd answers its control socket only after the heartbeat started, which removes the
    // stale VIP before anything else.
    let changes = watch.changes();
    assert!(
        changes.first().is_some_and(|(_, added)| !added),
        "the restarted lb-a removed the stale VIP first: {changes:?}"
    );
    assert!(!lab.holds_vip(A));
    assert_eq!(lab.role(A), "passive");
    assert!(lab.holds_vip(B));
    assert!(
        lab.daemon(A).log().contains("10.0.0.100"),
        "the removal is logged:\n{}",
        lab.daemon(A).log()
    );
    lab.wait_served(Duration::from_secs(5), "the client through lb-b");
}

#[test]
fn a_graceful_stop_hands_over_at_once_and_the_client_loses_nothing() {
    let mut lab = PairLab::running(PairOptions::default());
    let watch = AddressWatch::start(&lab.boxes[B], vip_ip());
    let probe = probe(&lab);
    settle();
    let mut a = lab.take(A);
    let stopped = Instant::now();
    let code = a.proc().stop(Duration::from_secs(15));
    let took = wait_for("lb-b to add the VIP", Duration::from_secs(5), || {
        watch
            .changes()
            .iter()
            .find(|(_, added)| *added)
            .map(|(at, _)| at.duration_since(stopped))
    });
    settle();
    let report = probe.stop();
    assert_eq!(code, Some(0), "lb-a stops cleanly:\n{}", a.log());
    assert!(
        report.lost.is_empty(),
        "graceful stop: {}",
        report.summary()
    );
    // Priority 0 makes lb-b take over after its Skew_Time (61 ms), not Master_Down_Interval.
    let bound = master_down(100, Duration::from_millis(100));
    assert!(
        took < bound,
        "lb-b took the VIP {took:?} after SIGTERM; a crash would take {bound:?}"
    );
    assert!(a.log().contains("handing the VIPs over"), "{}", a.log());
    lab.wait_active(B, Duration::from_secs(2), "lb-b after lb-a stopped");
    eprintln!(
        "graceful stop: lb-b added the VIP {took:?} after SIGTERM; {}",
        report.summary()
    );
}

#[test]
fn tandemctl_failover_hands_over_without_losing_a_probe_and_is_refused_on_the_passive_box() {
    let lab = PairLab::running(PairOptions::default());
    let probe = probe(&lab);
    settle();
    let out = lab.daemon(A).ctl(&["failover"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("handed over: 10.0.0.3 is active now"),
        "{text}"
    );
    lab.wait_active(B, Duration::from_secs(2), "lb-b after the handover");
    // lb-a yields: priority 1 until it is active again, so it does not preempt back.
    std::thread::sleep(master_down(1, Duration::from_millis(100)));
    assert!(lab.holds_vip(B) && !lab.holds_vip(A));
    let ha = lab.ha(A);
    assert_eq!(ha["yielding"], true, "{ha:#}");
    assert_eq!(ha["routers"][0]["effective_priority"], 1, "{ha:#}");

    let out = lab.daemon(A).ctl(&["failover"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "refused: this box is passive; a handover starts on the active box (10.0.0.3)"
        ),
        "{err}"
    );

    // And back: lb-b hands over to lb-a, again without a loss.
    let out = lab.daemon(B).ctl(&["failover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_active(A, Duration::from_secs(2), "lb-a after the handover back");
    settle();
    let report = probe.stop();
    assert!(
        report.lost.is_empty(),
        "two handovers: {}",
        report.summary()
    );
    let status = String::from_utf8_lossy(&lab.daemon(B).ctl(&["status"]).stdout).into_owned();
    assert!(status.contains("role passive"), "{status}");
    assert!(
        status.contains("fault: handed over to 10.0.0.2"),
        "{status}"
    );
}

#[test]
fn a_cable_pulled_from_the_master_fails_over_and_it_returns_with_the_link() {
    let lab = PairLab::running(PairOptions::default());
    let port = PairLab::port(A);
    lab.switch.netns().ip(&["link", "set", &port, "down"]);
    lab.wait_active(B, crash_deadline(), "lb-b after lb-a's cable was pulled");
    let ha = lab.ha(A);
    let faults = ha["routers"][0]["faults"].to_string();
    assert!(faults.contains("link:eth0"), "{ha:#}");
    lab.wait_served(Duration::from_secs(5), "the client through lb-b");

    lab.switch.netns().ip(&["link", "set", &port, "up"]);
    lab.wait_active(A, Duration::from_secs(5), "lb-a with its link back");
}

#[test]
fn a_box_that_loses_its_gateway_gives_the_vip_up() {
    let lab = PairLab::running(PairOptions {
        gateway: true,
        ..Default::default()
    });
    // The gateway (the client's namespace) stops answering lb-a only: lb-a and lb-b still
    // hear each other, but lb-a is cut off from the network it serves.
    let blackhole = format!("{}/32", BOX_ADDR[A]);
    lab.client.ip(&["route", "add", "blackhole", &blackhole]);
    // fall 3 × 200 ms, then a make-before-break handover.
    lab.wait_active(
        B,
        Duration::from_secs(5),
        "lb-b after lb-a lost its gateway",
    );
    let ha = lab.ha(A);
    assert!(
        ha["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "gateway" && t["up"] == false),
        "{ha:#}"
    );
    lab.client.ip(&["route", "del", "blackhole", &blackhole]);
    lab.wait_active(A, Duration::from_secs(5), "lb-a with its gateway back");
}

#[test]
fn a_box_whose_tracked_pool_is_down_gives_the_vip_up() {
    let lab = PairLab::running(PairOptions {
        track_pool: true,
        ..Default::default()
    });
    // The servers stop answering lb-a's health checks (only lb-a's): its pool is down.
    let blackhole = format!("{}/32", BOX_ADDR[A]);
    lab.web.ip(&["route", "add", "blackhole", &blackhole]);
    lab.wait_active(
        B,
        Duration::from_secs(5),
        "lb-b after lb-a's pool went down",
    );
    let ha = lab.ha(A);
    let faults = ha["routers"][0]["faults"].to_string();
    assert!(faults.contains("pool:tcp"), "{ha:#}");
    lab.web.ip(&["route", "del", "blackhole", &blackhole]);
    lab.wait_active(A, Duration::from_secs(5), "lb-a with its pool back");
}

#[test]
fn an_applied_config_reloads_the_vrrp_routers_on_both_boxes() {
    let lab = PairLab::running(PairOptions::default());
    // A second VIP on the router, committed on each box (the sync link will replicate it;
    // here each box gets it by `tandemctl apply`), the passive box first.
    for i in [B, A] {
        let text = lab.options.config(i).replace(
            &format!("vips: [{VIP}/24]"),
            &format!("vips: [{VIP}/24, 10.0.0.101/24]"),
        );
        let file = lab.daemon(i).dir().join("two-vips.yaml");
        std::fs::write(&file, text).unwrap();
        let out = lab.daemon(i).ctl(&["apply", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("the VRRP routers changed and were reloaded"),
            "{stdout}"
        );
    }
    // The changed router is recreated and elected again: lb-a holds both VIPs.
    wait_for("lb-a to hold the new VIP", Duration::from_secs(5), || {
        (tandem_lab::pair::holds(&lab.boxes[A], "10.0.0.101")
            && !tandem_lab::pair::holds(&lab.boxes[B], "10.0.0.101"))
        .then_some(())
    });
    lab.wait_active(A, Duration::from_secs(5), "lb-a after the reload");
    let ha = lab.ha(A);
    assert_eq!(
        ha["routers"][0]["vips"].as_array().unwrap().len(),
        2,
        "{ha:#}"
    );
    // The same content again changes nothing.
    let file = lab.daemon(A).dir().join("two-vips.yaml");
    let out = lab.daemon(A).ctl(&["apply", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no change"));
}

/// A wedged dataplane: every thread of lb-a's tandemd except the heartbeat (`tandem-ha`, its
/// notify runner) and the dataplane watchdog (`tandem-watchdog`) is frozen by the cgroup
/// freezer, as a deadlock or an endless loop in the dataplane would leave them: the listeners'
/// sockets still complete TCP handshakes in the kernel, but nothing accepts, proxies or
/// answers the control socket. The heartbeat keeps advertising, so lb-b would never take over
/// by itself; the watchdog must notice that the listeners no longer accept and have lb-a give
/// the VIP up. Thawed, lb-a's dataplane proves itself again and lb-a takes the role back.
#[test]
fn a_wedged_dataplane_gives_the_vip_up() {
    let mut lab = PairLab::running(PairOptions::default());
    lab.wait_served(Duration::from_secs(5), "the client through lb-a");
    let pid = lab.daemon_mut(A).proc().pid();
    let name = format!("tandem-lab-{}-{}", std::process::id(), pid);
    let frozen = Frozen::threads_except(pid, &["tandem-ha", "tandem-watchdog"], &name);
    assert!(
        frozen.threads().iter().any(|(_, n)| n.starts_with("tokio")),
        "the dataplane's runtime threads are frozen: {:?}",
        frozen.threads()
    );
    let wedged = Instant::now();
    // lb-a's control socket is frozen too: watch its VIP from outside, and lb-b by tandemctl.
    // Expected: FALL (2) rounds of PROBE_INTERVAL (1 s) + PROBE_TIMEOUT (1.5 s), then a
    // make-before-break handover.
    wait_for(
        "lb-b to take the VIP from the wedged lb-a",
        Duration::from_secs(15),
        || (lab.holds_vip(B) && !lab.holds_vip(A) && lab.role(B) == "active").then_some(()),
    );
    let took = wedged.elapsed();
    lab.wait_served(Duration::from_secs(5), "the client through lb-b");
    let log = lab.daemon(A).log();
    assert!(log.contains("the dataplane stopped accepting"), "{log}");
    assert!(
        log.contains(r#"tracked object changed track="dataplane" state=Down"#),
        "{log}"
    );
    // A step-down (priority 0, make before break), not a silent heartbeat.
    assert!(log.contains("fault: handed over to 10.0.0.3"), "{log}");
    eprintln!("wedged dataplane: lb-b active {took:?} after the freeze");

    drop(frozen);
    // RISE (3) good rounds, then lb-a (200) preempts.
    lab.wait_active(A, Duration::from_secs(15), "lb-a with its dataplane thawed");
    lab.wait_served(Duration::from_secs(5), "the client through lb-a again");
}

/// Split brain is bounded: over 100 forced failovers in a row (`tandemctl failover` on the
/// active box, alternately, at 10 ms adverts), the two live boxes never both hold the VIP
/// for longer than one advert interval.
///
/// "Hold" is measured in each box's namespace by a real-time netlink observer
/// (`AddressWatch`): the VIP is held from the RTM_NEWADDR to the RTM_DELADDR the kernel
/// announces, which is exactly the window in which the box answers ARP for it and accepts
/// its traffic. The overlap of one failover is the time from the new box's RTM_NEWADDR to
/// the old box's RTM_DELADDR. By design (make before break) it is one advert's trip: the new
/// Master adds the VIP, advertises, and the old one removes it on hearing that advert.
#[test]
fn two_live_boxes_never_both_hold_the_vip_longer_than_one_advert_interval() {
    let interval = Duration::from_millis(10);
    let lab = PairLab::running(PairOptions {
        advert: "10ms".into(),
        ..Default::default()
    });
    let watches = [
        AddressWatch::start(&lab.boxes[A], vip_ip()),
        AddressWatch::start(&lab.boxes[B], vip_ip()),
    ];
    assert!(watches[A].initially && !watches[B].initially);
    let probe = probe(&lab);
    let origin = Instant::now();
    let mut active = A;
    for n in 0..100 {
        let out = lab.daemon(active).ctl(&["failover"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("handed over"),
            "failover {n} from box {active}: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.describe()
        );
        active = 1 - active;
        // tandemctl answers once the old box is passive; it lets the VIP go a release grace
        // (2.5 ms here) later.
        wait_for(
            &format!("the VIP on box {active} only after failover {n}"),
            Duration::from_secs(2),
            || (lab.holds_vip(active) && !lab.holds_vip(1 - active)).then_some(()),
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let end = Instant::now();
    let report = probe.stop();
    let o = Overlaps::of(&watches[A], &watches[B], origin, end);
    let mut both = o.both.clone();
    both.sort();
    let max_gap = o.neither.iter().max().copied().unwrap_or_default();
    eprintln!(
        "100 handovers at 10 ms adverts: {} overlaps, median {:?}, max {:?}; {} gaps (max {max_gap:?}); {}",
        both.len(),
        both.get(both.len() / 2).copied().unwrap_or_default(),
        both.last().copied().unwrap_or_default(),
        o.neither.len(),
        report.summary()
    );
    assert_eq!(
        both.len(),
        100,
        "one overlap per handover: {both:?}\nlb-a: {:?}\nlb-b: {:?}",
        watches[A].changes(),
        watches[B].changes()
    );
    assert!(
        both.iter().all(|d| *d < interval),
        "an overlap reached one advert interval ({interval:?}): {both:?}"
    );
    assert!(
        max_gap < interval,
        "a handover left the VIP without a holder for {max_gap:?}: {:?}",
        o.neither
    );
}

/// No false failover under load: 30 s of TCP echo traffic through the VIP from 64 client
/// connections keeps lb-a's dataplane busy (its CPU use is printed) at 10 ms adverts — a
/// Master_Down_Interval of 36 ms for lb-b — and neither box changes role.
#[test]
fn a_saturated_dataplane_causes_no_failover() {
    let mut lab = PairLab::running(PairOptions {
        advert: "10ms".into(),
        ..Default::default()
    });
    // lb-b, and the wire's work for its adverts, on a CPU of its own, as on two machines.
    let placed = TwoMachines::place(&mut lab);
    let watches = [
        AddressWatch::start(&lab.boxes[A], vip_ip()),
        AddressWatch::start(&lab.boxes[B], vip_ip()),
    ];
    let changes_before = [&lab.ha(A), &lab.ha(B)].map(|h| h["role_changes"].as_u64().unwrap());
    let pid = lab.daemon_mut(A).proc().pid();
    let cpu_before = cpu_seconds(pid);
    let seconds = 30;
    let (load, broken) = tcp_load(&lab, 64, Duration::from_secs(seconds), placed.as_ref());
    let cpu = (cpu_seconds(pid) - cpu_before) / seconds as f64;
    let changes_after = [&lab.ha(A), &lab.ha(B)].map(|h| h["role_changes"].as_u64().unwrap());
    eprintln!(
        "saturation: {load} echo round trips in {seconds} s ({broken} connections broke); lb-a's tandemd used {:.0} % of a core; load average {}",
        cpu * 100.0,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    assert_eq!(broken, 0, "load connections broke");
    assert!(load > 10_000, "the load ran: {load} round trips");
    assert_eq!(
        changes_before, changes_after,
        "role changes during the load"
    );
    for (i, w) in watches.iter().enumerate() {
        assert!(
            w.changes().is_empty(),
            "box {i}'s VIP moved: {:?}",
            w.changes()
        );
    }
    assert!(lab.holds_vip(A) && !lab.holds_vip(B));
    let ha = lab.ha(B);
    assert_eq!(ha["routers"][0]["state"], "backup", "{ha:#}");
}

/// Echo round trips of 1 KiB through the VIP's TCP service from `connections` clients for
/// `duration`, on lb-a's CPUs when `placed`; returns how many completed, and how many
/// connections broke.
fn tcp_load(
    lab: &PairLab,
    connections: usize,
    duration: Duration,
    placed: Option<&TwoMachines>,
) -> (u64, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let target = vip(TCP_PORT);
    let sockets: Vec<std::net::TcpStream> = lab
        .client
        .enter(move || {
            (0..connections)
                .map(|_| std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)))
                .collect::<Result<_, _>>()
        })
        .expect("connect the load clients");
    let done = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let placed = placed.cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            if let Some(p) = &placed {
                p.pin_current_thread();
            }
        })
        .build()
        .unwrap();
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + duration;
        let mut tasks = Vec::new();
        for s in sockets {
            s.set_nonblocking(true).unwrap();
            let s = tokio::net::TcpStream::from_std(s).unwrap();
            let done = done.clone();
            let broken = broken.clone();
            tasks.push(tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let mut greeting = String::new();
                if r.read_line(&mut greeting).await.is_err() {
                    broken.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let out = vec![b'x'; 1024];
                let mut back = vec![0u8; 1024];
                while tokio::time::Instant::now() < deadline {
                    if w.write_all(&out).await.is_err() || r.read_exact(&mut back).await.is_err() {
                        broken.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    (done.load(Ordering::Relaxed), broken.load(Ordering::Relaxed))
}
