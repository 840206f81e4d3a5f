//! A Tandem pair in the lab: two real tandemd processes (`lb-a`, `lb-b`) on one switch with a
//! client and two backends, sharing a VIP by VRRP.
//!
//! ```text
//!   client 10.0.0.1 (also the boxes' gateway) ─┐
//!   lb-a   10.0.0.2  tandemd, priority 200     ├─ switch (bridge br0, own namespace)
//!   lb-b   10.0.0.3  tandemd, priority 100     │    VIP 10.0.0.100: UDP echo :7000, TCP echo :7001
//!   web    10.0.0.11 web1, 10.0.0.12 web2 ─────┘
//! ```
//!
//! Each box's interface is `eth0`; the switch port of box `i` is [`PairLab::port`]. Every
//! namespace and process is removed when the lab drops.

use crate::{Netns, Proc, Switch, Tandemd, bins, wait_for};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const VIP: &str = "10.0.0.100";
pub const CLIENT: &str = "10.0.0.1";
pub const BOX_ADDR: [&str; 2] = ["10.0.0.2", "10.0.0.3"];
pub const BOX_NAME: [&str; 2] = ["lb-a", "lb-b"];
pub const BOX_PRIORITY: [u8; 2] = [200, 100];
pub const WEB: [&str; 2] = ["10.0.0.11", "10.0.0.12"];
/// UDP echo through the VIP: answers `web1:` or `web2:` followed by the datagram.
pub const UDP_PORT: u16 = 7000;
/// TCP echo through the VIP: a greeting line naming the server, then an echo.
pub const TCP_PORT: u16 = 7001;

/// What the generated config of both boxes says.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// `advert_interval`, e.g. `"100ms"`.
    pub advert: String,
    pub preempt: bool,
    /// `node.vrrp.track.gateway` towards the client (10.0.0.1), ICMP every 200 ms.
    pub gateway: bool,
    /// A TCP health check on the pools (every 200 ms) and `track_pools: [tcp]` (a fault).
    pub track_pool: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            advert: "100ms".into(),
            preempt: true,
            gateway: false,
            track_pool: false,
        }
    }
}

impl PairOptions {
    /// The config of box `i`.
    pub fn config(&self, i: usize) -> String {
        let mut track = String::new();
        if self.gateway {
            track = format!(
                "    track:\n      gateway: {{ address: {CLIENT}, interval: 200ms, timeout: 150ms, rise: 2, fall: 3 }}\n"
            );
        }
        let check = if self.track_pool {
            "      health_check: { interval: 200ms, timeout: 150ms, rise: 2, fall: 2, tcp: {} }\n"
        } else {
            ""
        };
        let track_pools = if self.track_pool {
            "        track_pools: [{ pool: tcp }]\n"
        } else {
            ""
        };
        format!(
            "\
schema: 1
node:
  name: {name}
  management:
    listen: 127.0.0.1:9443
  vrrp:
    routers:
      - {{ router: front, interface: eth0, priority: {priority} }}
{track}shared:
  services:
    - {{ name: udp, listen: '{VIP}:{UDP_PORT}', protocol: udp, pool: udp }}
    - {{ name: tcp, listen: '{VIP}:{TCP_PORT}', protocol: tcp, pool: tcp }}
  pools:
    - name: udp
      servers:
        - {{ id: web1, address: '{w1}:{UDP_PORT}' }}
        - {{ id: web2, address: '{w2}:{UDP_PORT}' }}
    - name: tcp
{check}      servers:
        - {{ id: web1, address: '{w1}:{TCP_PORT}' }}
        - {{ id: web2, address: '{w2}:{TCP_PORT}' }}
  vrrp:
    routers:
      - name: front
        vrid: 51
        vips: [{VIP}/24]
        advert_interval: {advert}
        preempt: {preempt}
{track_pools}",
            name = BOX_NAME[i],
            priority = BOX_PRIORITY[i],
            w1 = WEB[0],
            w2 = WEB[1],
            advert = self.advert,
            preempt = self.preempt,
        )
    }
}

pub struct PairLab {
    pub options: PairOptions,
    // Dropped in this order: daemons and backends first, then the namespaces.
    daemons: [Option<Tandemd>; 2],
    _backends: Vec<Proc>,
    _logs: tempfile::TempDir,
    pub client: Netns,
    pub web: Netns,
    pub boxes: [Netns; 2],
    pub switch: Switch,
}

impl PairLab {
    /// Builds the network and starts the backends; no box runs yet.
    pub fn new(options: PairOptions) -> PairLab {
        let switch = Switch::new();
        let client = Netns::new("pc");
        let boxes = [Netns::new("pa"), Netns::new("pb")];
        let web = Netns::new("pw");
        // Ports in attach order: p0 client, p1 lb-a, p2 lb-b, p3 web.
        switch.attach(&client, "eth0", &format!("{CLIENT}/24"));
        for (i, b) in boxes.iter().enumerate() {
            switch.attach(b, "eth0", &format!("{}/24", BOX_ADDR[i]));
        }
        switch.attach(&web, "eth0", &format!("{}/24", WEB[0]));
        web.ip(&["addr", "add", &format!("{}/24", WEB[1]), "dev", "eth0"]);
        let logs = tempfile::tempdir().expect("temp dir for backend logs");
        let backends = ["web1", "web2"]
            .iter()
            .zip(WEB)
            .map(|(name, addr)| backend(&web, name, addr, logs.path()))
            .collect();
        PairLab {
            options,
            daemons: [None, None],
            _backends: backends,
            _logs: logs,
            client,
            web,
            boxes,
            switch,
        }
    }

    /// A lab with both boxes started (lb-a first) and lb-a active.
    pub fn running(options: PairOptions) -> PairLab {
        let mut lab = PairLab::new(options);
        lab.start(0);
        lab.start(1);
        lab.wait_active(0, Duration::from_secs(10), "the higher priority at start");
        lab
    }

    /// The switch port of box `i` (`ip -n SWITCH link set PORT down` cuts its cable).
    pub fn port(i: usize) -> String {
        Switch::port_name(i as u32 + 1)
    }

    /// Starts tandemd on box `i` with a fresh state directory; returns once it answers.
    pub fn start(&mut self, i: usize) {
        assert!(self.daemons[i].is_none(), "{} runs already", BOX_NAME[i]);
        self.daemons[i] = Some(Tandemd::start(&self.boxes[i], &self.options.config(i)));
    }

    /// Starts tandemd on box `i` again on the directory of a crashed predecessor.
    pub fn restart(&mut self, i: usize, dir: tempfile::TempDir) {
        assert!(self.daemons[i].is_none(), "{} runs already", BOX_NAME[i]);
        self.daemons[i] = Some(Tandemd::start_in(&self.boxes[i], dir));
    }

    pub fn daemon(&self, i: usize) -> &Tandemd {
        self.daemons[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", BOX_NAME[i]))
    }

    pub fn daemon_mut(&mut self, i: usize) -> &mut Tandemd {
        self.daemons[i]
            .as_mut()
            .unwrap_or_else(|| panic!("{} is not running", BOX_NAME[i]))
    }

    /// Takes box `i`'s daemon out of the lab (to stop it by hand).
    pub fn take(&mut self, i: usize) -> Tandemd {
        self.daemons[i]
            .take()
            .unwrap_or_else(|| panic!("{} is not running", BOX_NAME[i]))
    }

    /// A crash: SIGKILL of tandemd and, at the same instant, box `i`'s link down (a SIGKILL
    /// alone leaves the VIP on the dead box's interface). Returns the daemon's directory.
    pub fn crash(&mut self, i: usize) -> tempfile::TempDir {
        let d = self.take(i);
        let dir = d.crash();
        self.set_link(i, false);
        dir
    }

    /// `ip link set eth0 up|down` inside box `i`.
    pub fn set_link(&self, i: usize, up: bool) {
        self.boxes[i].ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
    }

    /// Whether box `i` has the VIP on eth0.
    pub fn holds_vip(&self, i: usize) -> bool {
        holds(&self.boxes[i], VIP)
    }

    /// `active`, `passive` (or `standalone`) from `tandemctl status --json`.
    pub fn role(&self, i: usize) -> String {
        self.daemon(i).status()["role"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    }

    /// The heartbeat's part of box `i`'s status.
    pub fn ha(&self, i: usize) -> serde_json::Value {
        self.daemon(i).status()["ha"].clone()
    }

    /// Waits until box `i` is active and holds the VIP and the other box (if running) is
    /// passive without it; returns how long that took.
    pub fn wait_active(&self, i: usize, limit: Duration, what: &str) -> Duration {
        let other = 1 - i;
        let start = Instant::now();
        let deadline = start + limit;
        loop {
            let me = self.holds_vip(i) && self.role(i) == "active";
            let peer = self.daemons[other].is_none()
                || (!self.holds_vip(other) && self.role(other) == "passive");
            if me && peer {
                return start.elapsed();
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: {} is not the only active box after {limit:?}\n{}",
                    BOX_NAME[i],
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Both boxes' roles, VIP and HA status, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, daemon) in self.daemons.iter().enumerate() {
            let status = daemon
                .as_ref()
                .map(|d| {
                    let out = d.ctl(&["status"]);
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
                .unwrap_or_else(|| "(not running)".into());
            s += &format!(
                "== {} holds VIP: {}\n{status}\n",
                BOX_NAME[i],
                self.holds_vip(i)
            );
        }
        s
    }

    /// Sends one datagram from the client to the VIP's UDP echo and returns the answer.
    pub fn udp_ask(&self, payload: &str) -> Option<String> {
        let payload = payload.to_owned();
        self.client.enter(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            for _ in 0..3 {
                s.send_to(payload.as_bytes(), (VIP, UDP_PORT)).ok()?;
                let mut buf = [0u8; 512];
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            None
        })
    }

    /// Waits until the client gets an answer through the VIP.
    pub fn wait_served(&self, limit: Duration, what: &str) {
        wait_for(what, limit, || {
            self.udp_ask("ping")
                .filter(|a| a.ends_with(":ping"))
                .map(|_| ())
        });
    }
}

fn backend(ns: &Netns, name: &str, addr: &str, dir: &Path) -> Proc {
    let mut cmd = ns.command(bins::lab_backend());
    cmd.args(["--name", name])
        .args(["--udp", &format!("{addr}:{UDP_PORT}")])
        .args(["--tcp", &format!("{addr}:{TCP_PORT}")]);
    let p = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    wait_for(&format!("backend {name}"), Duration::from_secs(10), || {
        p.log().contains("ready").then_some(())
    });
    p
}

/// Whether `ns` has `address` on any interface.
pub fn holds(ns: &Netns, address: &str) -> bool {
    ns.ip(&["-o", "-4", "addr", "show"])
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(address))
}

/// The seconds of CPU (user + system) process `pid` has used, all threads together.
pub fn cpu_seconds(pid: nix::unistd::Pid) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // /proc counts in USER_HZ, which the Linux ABI fixes at 100.
    ticks / 100.0
}

/// Runs `program args` in `ns` and panics with its output when it fails.
pub fn run_ok(ns: &Netns, program: &str, args: &[&str]) -> String {
    let out = ns.run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed in {}: {}{}",
        ns.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tandemctl ARGS` without a daemon guard, for a box whose daemon the test holds itself.
pub fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bins::tandemctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run tandemctl")
}
