//! The lab: one switch namespace with a bridge (`br0`, multicast snooping off, so the
//! VRRP group reaches every port) and N box namespaces, each joined to it by a veth whose
//! box end is `eth0` with 192.0.2.(i+1)/24 (TEST-NET-1) and an IPv6 link-local address.
//! Every namespace is a `NetnsGuard` (unique per process and call), deleted on drop, also
//! when a test panics. A namespace that cannot be created fails the test; nothing skips.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tandem_ha::{Ha, HaConfig, HaHandle, Role, RouterConfig};
use tandem_net::netns::NetnsGuard;

pub const VIP: &str = "192.0.2.100";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tandem_ha=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct Lab {
    pub sw: NetnsGuard,
    pub boxes: Vec<NetnsGuard>,
}

pub fn box_ip(i: usize) -> String {
    format!("192.0.2.{}", i + 1)
}

impl Lab {
    pub fn new(count: usize) -> Lab {
        init_tracing();
        let sw =
            NetnsGuard::create("tha").expect("create the switch namespace (root and iproute2?)");
        sw.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .expect("create the bridge");
        sw.ip(&["link", "set", "dev", "br0", "up"]).unwrap();
        let mut boxes = Vec::new();
        for i in 0..count {
            let ns = NetnsGuard::create("tha").expect("create a box namespace");
            let port = format!("p{i}");
            ns.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                sw.name(),
            ])
            .expect("create the veth");
            sw.ip(&["link", "set", "dev", &port, "master", "br0", "up"])
                .unwrap();
            sysctl(&ns, "net/ipv6/conf/eth0/accept_dad", "0");
            ns.ip(&["addr", "add", &format!("{}/24", box_ip(i)), "dev", "eth0"])
                .unwrap();
            ns.ip(&["link", "set", "dev", "eth0", "up"]).unwrap();
            boxes.push(ns);
        }
        let lab = Lab { sw, boxes };
        for i in 0..count {
            lab.link_local(i);
        }
        lab
    }

    /// A second segment: bridge `br1` and an `eth1` on every box with 198.51.100.(i+1)/24
    /// (TEST-NET-2), e.g. for a server-side router.
    pub fn add_second_segment(&self) {
        self.sw
            .ip(&[
                "link",
                "add",
                "br1",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])
            .unwrap();
        self.sw.ip(&["link", "set", "dev", "br1", "up"]).unwrap();
        for (i, ns) in self.boxes.iter().enumerate() {
            let port = format!("q{i}");
            ns.ip(&[
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                self.sw.name(),
            ])
            .unwrap();
            self.sw
                .ip(&["link", "set", "dev", &port, "master", "br1", "up"])
                .unwrap();
            ns.ip(&[
                "addr",
                "add",
                &format!("198.51.100.{}/24", i + 1),
                "dev",
                "eth1",
            ])
            .unwrap();
            ns.ip(&["link", "set", "dev", "eth1", "up"]).unwrap();
        }
    }

    /// The IPv6 link-local address of box `i`'s eth0, once usable.
    pub fn link_local(&self, i: usize) -> IpAddr {
        wait_for(Duration::from_secs(10), || {
            let out = self.boxes[i]
                .ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])
                .ok()?;
            if out.contains("tentative") {
                return None;
            }
            let word = out
                .split_whitespace()
                .skip_while(|w| *w != "inet6")
                .nth(1)?;
            word.split('/').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("box {i} has no link-local address"))
    }

    /// Whether box `i` has `address` on eth0 (any prefix length).
    pub fn has_address(&self, i: usize, address: &str) -> bool {
        addresses(&self.boxes[i], "eth0")
            .iter()
            .any(|a| a == address)
    }

    /// Whether box `i` lacks `address` on eth0, allowing for the release grace: a box that
    /// let the VIPs go to a box it heard removes them up to 20 ms after its role changed.
    pub fn lacks_address(&self, i: usize, address: &str) -> bool {
        wait_for(Duration::from_millis(500), || {
            (!self.has_address(i, address)).then_some(())
        })
        .is_some()
    }

    /// `ip link set dev eth0 up|down` in box `i`.
    pub fn set_link(&self, i: usize, up: bool) {
        self.boxes[i]
            .ip(&["link", "set", "dev", "eth0", if up { "up" } else { "down" }])
            .unwrap();
    }

    pub fn start(&self, i: usize, config: HaConfig) -> HaHandle {
        self.boxes[i]
            .run(|| Ha::start(config))
            .expect("enter the box namespace")
            .unwrap_or_else(|e| panic!("start the heartbeat of box {i}: {e}"))
    }
}

/// The addresses on `dev` in `ns`.
pub fn addresses(ns: &NetnsGuard, dev: &str) -> Vec<String> {
    let out = ns
        .ip(&["-o", "addr", "show", "dev", dev])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let mut words = l
                .split_whitespace()
                .skip_while(|w| *w != "inet" && *w != "inet6");
            words.next()?;
            Some(words.next()?.split('/').next()?.to_owned())
        })
        .collect()
}

pub fn sysctl(ns: &NetnsGuard, path: &str, value: &str) {
    let path = format!("/proc/sys/{path}");
    ns.run(|| std::fs::write(&path, value))
        .unwrap()
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// A router on eth0 with `vips`, at `priority`, advertising every `interval_ms`.
pub fn router(vrid: u8, priority: u8, interval_ms: u64, vips: &[&str]) -> RouterConfig {
    let mut r = RouterConfig::new(
        "front",
        "eth0",
        vrid,
        vips.iter().map(|v| v.parse().unwrap()).collect(),
    );
    r.priority = priority;
    r.advert_interval = Duration::from_millis(interval_ms);
    r
}

pub fn config(router: RouterConfig) -> HaConfig {
    HaConfig::new(vec![router])
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `handle`'s role is `role`, polling every millisecond; returns when it got
/// there, or panics after `limit`.
pub fn wait_role(handle: &HaHandle, role: Role, limit: Duration, what: &str) -> Instant {
    let rx = handle.role();
    let deadline = Instant::now() + limit;
    loop {
        if *rx.borrow() == role {
            return Instant::now();
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: not {role} within {limit:?}; status: {:#?}",
                handle.status()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Asserts that `handle` keeps `role` for `period`.
pub fn stays(handle: &HaHandle, role: Role, period: Duration, what: &str) {
    let rx = handle.role();
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        assert_eq!(
            *rx.borrow(),
            role,
            "{what}: left {role}; status: {:#?}",
            handle.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a future of the handle (shutdown, apply) to completion.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// RFC 5798 §6.1 Master_Down_Interval.
pub fn master_down(priority: u8, interval_ms: u64) -> Duration {
    let interval = Duration::from_millis(interval_ms);
    3 * interval + interval * (256 - u32::from(priority)) / 256
}

/// A tshark capture running in a namespace, ready once it said "Capturing on".
pub struct Capture {
    child: std::process::Child,
}

impl Capture {
    /// Captures up to `count` packets matching the capture `filter` on `dev` (for at most
    /// `seconds`), printing `fields` comma-separated, one packet per line.
    pub fn start(
        ns: &NetnsGuard,
        dev: &str,
        filter: &str,
        fields: &[&str],
        count: u32,
        seconds: u32,
    ) -> Capture {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut argv: Vec<String> = [
            "netns",
            "exec",
            ns.name(),
            "tshark",
            "-n",
            "-l",
            "-i",
            dev,
            "-f",
            filter,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend([
            "-c".into(),
            count.to_string(),
            "-a".into(),
            format!("duration:{seconds}"),
        ]);
        argv.extend(["-T", "fields", "-E", "separator=,"].map(String::from));
        for f in fields {
            argv.extend(["-e".to_owned(), f.to_string()]);
        }
        let mut child = Command::new("ip")
            .args(&argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark (installed by .ci/run)");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("tshark did not start capturing");
        Capture { child }
    }

    /// Waits for tshark to end (count reached or duration over) and returns its lines.
    pub fn lines(self) -> Vec<Vec<String>> {
        let out = self.child.wait_with_output().expect("tshark output");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    }
}
