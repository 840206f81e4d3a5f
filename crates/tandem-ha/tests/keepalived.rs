//! Interoperability with keepalived (Debian's 2.2.7, VRRPv3): each elects the other by
//! priority, fails over and preempts. keepalived runs in its box's namespace with a
//! generated config and is stopped by its PIDs.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use tandem_ha::Role;
use tandem_net::netns::NetnsGuard;

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Keepalived {
    child: Option<Child>,
    dir: PathBuf,
}

impl Keepalived {
    /// keepalived on eth0 of `ns`: VRID 51, 100 ms adverts, the lab's VIP.
    fn start(ns: &NetnsGuard, priority: u8, preempt: bool) -> Keepalived {
        let dir = std::env::temp_dir().join(format!(
            "tandem-ha-keepalived-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "global_defs {{
    router_id {name}
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance front {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    {preempt}
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
",
            name = ns.name(),
            preempt = if preempt { "" } else { "nopreempt" },
        );
        let path = dir.join("keepalived.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--vrrp",
                "--no-syslog",
            ])
            .arg(format!("--use-file={}", path.display()))
            .arg(format!("--pid={}", dir.join("keepalived.pid").display()))
            .arg(format!("--vrrp_pid={}", dir.join("vrrp.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keepalived (installed by .ci/run)");
        let k = Keepalived {
            child: Some(child),
            dir,
        };
        wait_for(Duration::from_secs(10), || k.vrrp_pid())
            .unwrap_or_else(|| panic!("keepalived's VRRP process did not start: {}", k.log()));
        k
    }

    fn vrrp_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("vrrp.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn signal(pid: u32, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM: keepalived sends priority 0 and removes its VIPs (RFC 5798 §6.4.3).
    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            Self::signal(child.id(), "-TERM");
            let _ = child.wait();
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = self.vrrp_pid() {
                Self::signal(pid, "-KILL");
            }
            Self::signal(child.id(), "-KILL");
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("keepalived log:\n{}", self.log());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn has_vip(lab: &Lab, i: usize, want: bool, limit: Duration, what: &str) {
    wait_for(limit, || (lab.has_address(i, VIP) == want).then_some(()))
        .unwrap_or_else(|| panic!("{what}: VIP on box {i} should be {want}"));
}

#[test]
fn keepalived_with_the_higher_priority_is_master_and_tandem_backs_it_up() {
    let lab = Lab::new(2);
    let k = Keepalived::start(&lab.boxes[1], 200, true);
    has_vip(&lab, 1, true, Duration::from_secs(10), "keepalived alone");
    let t = lab.start(0, config(router(51, 100, 100, &["192.0.2.100/24"])));
    stays(
        &t,
        Role::Passive,
        Duration::from_secs(1),
        "Tandem below keepalived",
    );
    let status = t.status();
    let r = status.router("front").unwrap();
    assert_eq!(r.master, Some(box_ip(1).parse().unwrap()), "{r:#?}");
    assert!(r.adverts_received >= 5, "{r:#?}");
    assert!(
        r.drops.iter().all(|(_, n)| *n == 0),
        "nothing of keepalived's dropped: {r:#?}"
    );
    assert_eq!(r.address_list_mismatches, 0);
    assert!(lab.lacks_address(0, VIP));

    // keepalived stops (priority 0): Tandem takes over after its Skew_Time.
    k.stop();
    wait_role(
        &t,
        Role::Active,
        Duration::from_secs(1),
        "Tandem after keepalived stopped",
    );
    has_vip(&lab, 0, true, Duration::from_secs(1), "Tandem");

    // keepalived comes back with the higher priority and preempts.
    let _k = Keepalived::start(&lab.boxes[1], 200, true);
    wait_role(
        &t,
        Role::Passive,
        Duration::from_secs(10),
        "Tandem preempted by keepalived",
    );
    has_vip(&lab, 1, true, Duration::from_secs(2), "keepalived again");
    has_vip(&lab, 0, false, Duration::from_secs(1), "Tandem let go");
}

#[test]
fn tandem_with_the_higher_priority_is_master_and_keepalived_backs_it_up() {
    let lab = Lab::new(2);
    let t = lab.start(0, config(router(51, 200, 100, &["192.0.2.100/24"])));
    wait_role(&t, Role::Active, Duration::from_secs(3), "Tandem alone");
    let k = Keepalived::start(&lab.boxes[1], 100, true);
    // keepalived hears Tandem and stays backup: it never adds the VIP.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        lab.lacks_address(1, VIP),
        "keepalived backs Tandem up: {}",
        k.log()
    );
    stays(&t, Role::Active, Duration::from_millis(500), "Tandem");

    // Tandem crashes: keepalived takes over after its Master_Down_Interval.
    lab.set_link(0, false);
    drop(t);
    has_vip(
        &lab,
        1,
        true,
        Duration::from_secs(3),
        "keepalived after Tandem's crash",
    );

    // Tandem restarts (removing the VIP its predecessor left) and preempts keepalived.
    lab.set_link(0, true);
    lab.link_local(0);
    let t = lab.start(0, config(router(51, 200, 100, &["192.0.2.100/24"])));
    wait_role(
        &t,
        Role::Active,
        Duration::from_secs(5),
        "Tandem preempting keepalived",
    );
    has_vip(&lab, 1, false, Duration::from_secs(2), "keepalived let go");
    assert!(lab.has_address(0, VIP));

    // A graceful stop of Tandem hands over to keepalived at once.
    block_on(t.shutdown()).unwrap();
    has_vip(
        &lab,
        1,
        true,
        Duration::from_secs(1),
        "keepalived after Tandem's stop",
    );
    assert!(lab.lacks_address(0, VIP));
}
