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
//!
//! With [`PairOptions::sync`] the boxes also run the sync link (`node.sync`) over the same
//! segment, each pinning the other's certificate ([`SyncPins`], made for the lab).

use crate::{Netns, Proc, Switch, Tandemd, bins, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
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
/// The backends' HTTP port, with [`PairOptions::http_backends`] (answers name the server).
pub const HTTP_PORT: u16 = 8080;
/// The sync link's port (`node.sync.port`).
pub const SYNC_PORT: u16 = 7420;

/// Certificates and keys for the sync link of both boxes, and each one's fingerprint (what the
/// other box pins). Kept in a directory that lives as long as any clone.
#[derive(Clone, Debug)]
pub struct SyncPins {
    dir: Arc<tempfile::TempDir>,
    /// `sha256:` + hex of box `i`'s certificate.
    pub fingerprints: [String; 2],
}

impl SyncPins {
    pub fn generate() -> SyncPins {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir for sync certificates"));
        let fingerprints = BOX_NAME.map(|name| write_identity(dir.path(), name));
        SyncPins { dir, fingerprints }
    }

    pub fn cert(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.crt", BOX_NAME[i]))
    }

    pub fn key(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.key", BOX_NAME[i]))
    }

    /// Another valid certificate named `name` that neither box pins (an impostor, a third
    /// box): returns its certificate and key files and its fingerprint.
    pub fn other(&self, name: &str) -> (PathBuf, PathBuf, String) {
        let fp = write_identity(self.dir.path(), name);
        (
            self.dir.path().join(format!("{name}.crt")),
            self.dir.path().join(format!("{name}.key")),
            fp,
        )
    }

    /// The box that listens on the link (the larger fingerprint; the other dials).
    pub fn listener(&self) -> usize {
        if self.fingerprints[0] > self.fingerprints[1] {
            0
        } else {
            1
        }
    }

    /// `node.sync` of box `i`, indented for the node part.
    pub fn node_yaml(&self, i: usize) -> String {
        format!(
            "  sync:\n    listen: {me}\n    peer: {peer}\n    port: {SYNC_PORT}\n    peer_fingerprint: {fp}\n    cert_file: {cert}\n    key_file: {key}\n",
            me = BOX_ADDR[i],
            peer = BOX_ADDR[1 - i],
            fp = self.fingerprints[1 - i],
            cert = self.cert(i).display(),
            key = self.key(i).display(),
        )
    }
}

/// A self-signed ECDSA P-256 certificate for `name`, written as `name.crt` / `name.key`;
/// returns its fingerprint as `node.sync.peer_fingerprint` takes it.
fn write_identity(dir: &Path, name: &str) -> String {
    use sha2::Digest;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("certificate params");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write certificate");
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(cert.der())))
}

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
    /// `node.sync` on both boxes, each pinning the other's certificate; none by default.
    pub sync: Option<SyncPins>,
    /// The router's `preempt_delay` (e.g. `"3s"`); the default (none) leaves it out.
    pub preempt_delay: Option<String>,
    /// Lines added to `shared.services`, `shared.pools` and the shared part itself, indented
    /// as the list or map they join; empty by default.
    pub services_extra: String,
    pub pools_extra: String,
    pub shared_extra: String,
    /// The backends also serve HTTP on [`HTTP_PORT`] (`/health` included).
    pub http_backends: bool,
    /// `node.management.metrics.allow`: a network that may scrape `/metrics` without a token
    /// (e.g. `127.0.0.1/32`); none by default.
    pub metrics_allow: Option<String>,
    /// `node.management.listen` on the box's own address (`BOX_ADDR[i]:9443`, reachable from
    /// the client) instead of `127.0.0.1:9443`; off by default.
    pub management_on_box: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            advert: "100ms".into(),
            preempt: true,
            gateway: false,
            track_pool: false,
            sync: None,
            preempt_delay: None,
            services_extra: String::new(),
            pools_extra: String::new(),
            shared_extra: String::new(),
            http_backends: false,
            metrics_allow: None,
            management_on_box: false,
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
        // The shared router's optional keys.
        let mut router_extra = if self.track_pool {
            "        track_pools: [{ pool: tcp }]\n".to_owned()
        } else {
            String::new()
        };
        if let Some(delay) = &self.preempt_delay {
            router_extra += &format!("        preempt_delay: {delay}\n");
        }
        let metrics = self
            .metrics_allow
            .as_ref()
            .map(|net| format!("    metrics: {{ allow: ['{net}'] }}\n"))
            .unwrap_or_default();
        let management = if self.management_on_box {
            BOX_ADDR[i]
        } else {
            "127.0.0.1"
        };
        let sync = self
            .sync
            .as_ref()
            .map(|s| s.node_yaml(i))
            .unwrap_or_default();
        format!(
            "\
schema: 1
node:
  name: {name}
  management:
    listen: {management}:9443
{metrics}  vrrp:
    routers:
      - {{ router: front, interface: eth0, priority: {priority} }}
{track}{sync}shared:
  services:
    - {{ name: udp, listen: '{VIP}:{UDP_PORT}', protocol: udp, pool: udp }}
    - {{ name: tcp, listen: '{VIP}:{TCP_PORT}', protocol: tcp, pool: tcp }}
{services_extra}  pools:
    - name: udp
      servers:
        - {{ id: web1, address: '{w1}:{UDP_PORT}' }}
        - {{ id: web2, address: '{w2}:{UDP_PORT}' }}
    - name: tcp
{check}      servers:
        - {{ id: web1, address: '{w1}:{TCP_PORT}' }}
        - {{ id: web2, address: '{w2}:{TCP_PORT}' }}
{pools_extra}  vrrp:
    routers:
      - name: front
        vrid: 51
        vips: [{VIP}/24]
        advert_interval: {advert}
        preempt: {preempt}
{router_extra}{shared_extra}",
            name = BOX_NAME[i],
            priority = BOX_PRIORITY[i],
            w1 = WEB[0],
            w2 = WEB[1],
            advert = self.advert,
            preempt = self.preempt,
            services_extra = self.services_extra,
            pools_extra = self.pools_extra,
            shared_extra = self.shared_extra,
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
            .map(|(name, addr)| backend(&web, name, addr, logs.path(), options.http_backends))
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

    /// While it exists, backend `name`'s `/health` answers 503 (with
    /// [`PairOptions::http_backends`]).
    pub fn fail_health_file(&self, name: &str) -> PathBuf {
        self._logs.path().join(format!("{name}.fail-health"))
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

    /// A partition between the boxes only: the switch drops every frame from one box's port
    /// to the other's (VRRP adverts and the sync link alike), while both still reach the
    /// client and the servers, and their links stay up (no tracked fault). `false` heals it.
    pub fn partition(&self, cut: bool) {
        let sw = self.switch.netns();
        if !cut {
            run_ok(sw, "nft", &["delete", "table", "bridge", "partition"]);
            return;
        }
        run_ok(sw, "nft", &["add", "table", "bridge", "partition"]);
        run_ok(
            sw,
            "nft",
            &[
                "add",
                "chain",
                "bridge",
                "partition",
                "forward",
                "{ type filter hook forward priority 0; }",
            ],
        );
        let (a, b) = (PairLab::port(0), PairLab::port(1));
        for (from, to) in [(&a, &b), (&b, &a)] {
            run_ok(
                sw,
                "nft",
                &[
                    "add",
                    "rule",
                    "bridge",
                    "partition",
                    "forward",
                    "iifname",
                    from,
                    "oifname",
                    to,
                    "drop",
                ],
            );
        }
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

fn backend(ns: &Netns, name: &str, addr: &str, dir: &Path, http: bool) -> Proc {
    let mut cmd = ns.command(bins::lab_backend());
    cmd.args(["--name", name])
        .args(["--udp", &format!("{addr}:{UDP_PORT}")])
        .args(["--tcp", &format!("{addr}:{TCP_PORT}")]);
    if http {
        cmd.args(["--http", &format!("{addr}:{HTTP_PORT}")])
            // While this file exists, the server's `/health` answers 503.
            .arg("--fail-health-file")
            .arg(dir.join(format!("{name}.fail-health")));
    }
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
