//! Network namespaces, veth links and bridges, built with iproute2 (argv, never a shell).

use crate::unique;
use std::ffi::OsStr;
use std::process::{Command, Output};
use tandem_net::netns::NetnsGuard;

/// A network namespace with its loopback up, deleted on drop (a thin, panicking wrapper
/// around `tandem_net::netns::NetnsGuard`, for tests).
pub struct Netns {
    guard: NetnsGuard,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let guard = NetnsGuard::create(prefix).unwrap_or_else(|e| {
            panic!("cannot create a network namespace (lab tests need root and iproute2): {e}")
        });
        Netns { guard }
    }

    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// Runs `ip ARGS` inside the namespace, panicking on failure; returns its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        self.guard
            .ip(args)
            .unwrap_or_else(|e| panic!("in namespace {}: {e}", self.name()))
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name()]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name()))
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live there).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.guard
            .run(f)
            .unwrap_or_else(|e| panic!("cannot enter namespace {}: {e}", self.name()))
    }
}

/// An L2 segment: a bridge inside a namespace of its own, to which host namespaces are
/// attached by veth pairs.
pub struct Switch {
    ns: Netns,
    bridge: String,
    ports: std::cell::Cell<u32>,
}

impl Switch {
    pub fn new() -> Switch {
        let ns = Netns::new("sw");
        let bridge = "br0".to_owned();
        ns.ip(&["link", "add", &bridge, "type", "bridge"]);
        // Multicast snooping would hide VRRP adverts from ports that never joined.
        ns.ip(&[
            "link",
            "set",
            &bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ns.ip(&["link", "set", &bridge, "up"]);
        Switch {
            ns,
            bridge,
            ports: std::cell::Cell::new(0),
        }
    }

    /// Plugs `host` into the switch with an interface named `ifname` inside `host`, carrying
    /// `addr` (CIDR, e.g. `10.0.0.11/24`), and brings it up.
    pub fn attach(&self, host: &Netns, ifname: &str, addr: &str) {
        let n = self.ports.get();
        self.ports.set(n + 1);
        let port = format!("p{n}");
        let tmp = unique("v");
        // Create the pair in the switch namespace, then move one end into the host.
        self.ns
            .ip(&["link", "add", &port, "type", "veth", "peer", "name", &tmp]);
        self.ns.ip(&["link", "set", &tmp, "netns", host.name()]);
        host.ip(&["link", "set", &tmp, "name", ifname]);
        self.ns.ip(&["link", "set", &port, "master", &self.bridge]);
        self.ns.ip(&["link", "set", &port, "up"]);
        host.ip(&["addr", "add", addr, "dev", ifname]);
        host.ip(&["link", "set", ifname, "up"]);
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The name of the switch-side port of the n-th attached host (for link-down tests).
    pub fn port_name(n: u32) -> String {
        format!("p{n}")
    }
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}
