//! A two-namespace lab: namespaces A and B joined by a veth pair (`va` in A, `vb` in B),
//! with TEST-NET-1 / documentation IPv6 addresses. Every namespace is a `NetnsGuard`, so
//! it is deleted when the lab is dropped, also when the test panics. Creating a namespace
//! that fails is a test failure (panic with `ip`'s stderr), never a skip.
#![allow(dead_code)]

use std::io::Read;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tandem_net::MacAddr;
use tandem_net::netns::NetnsGuard;

pub const A_V4: &str = "192.0.2.1";
pub const B_V4: &str = "192.0.2.2";
pub const A_V6: &str = "2001:db8::1";
pub const B_V6: &str = "2001:db8::2";

pub struct Lab {
    pub a: NetnsGuard,
    pub b: NetnsGuard,
}

pub struct LabOptions {
    /// IPv6 duplicate address detection on the veth ends. Off by default, so link-locals
    /// are usable at once; on to prove that NODAD VIPs skip it.
    pub dad: bool,
    pub addresses: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            dad: false,
            addresses: true,
        }
    }
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with(LabOptions::default())
    }

    pub fn with(options: LabOptions) -> Lab {
        let a = NetnsGuard::create("tn").expect("create namespace A (are we root with iproute2?)");
        let b = NetnsGuard::create("tn").expect("create namespace B");
        a.ip(&[
            "link",
            "add",
            "va",
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            b.name(),
        ])
        .expect("create the veth pair");
        let lab = Lab { a, b };
        if !options.dad {
            lab.sysctl(&lab.a, "net/ipv6/conf/va/accept_dad", "0");
            lab.sysctl(&lab.b, "net/ipv6/conf/vb/accept_dad", "0");
        }
        if options.addresses {
            lab.a
                .ip(&["addr", "add", &format!("{A_V4}/24"), "dev", "va"])
                .unwrap();
            lab.b
                .ip(&["addr", "add", &format!("{B_V4}/24"), "dev", "vb"])
                .unwrap();
            lab.a
                .ip(&["addr", "add", &format!("{A_V6}/64"), "dev", "va", "nodad"])
                .unwrap();
            lab.b
                .ip(&["addr", "add", &format!("{B_V6}/64"), "dev", "vb", "nodad"])
                .unwrap();
        }
        lab.a.ip(&["link", "set", "dev", "va", "up"]).unwrap();
        lab.b.ip(&["link", "set", "dev", "vb", "up"]).unwrap();
        // The kernel configures IPv6 on a link (link-local, the ff00::/8 route) only once it
        // sees carrier, asynchronously; until then IPv6 packets are dropped. Wait for it.
        link_local_of(&lab.a, "va");
        link_local_of(&lab.b, "vb");
        lab
    }

    /// Write a `/proc/sys` file inside `ns`, from a thread in that namespace.
    pub fn sysctl(&self, ns: &NetnsGuard, path: &str, value: &str) {
        let path = format!("/proc/sys/{path}");
        ns.run(|| std::fs::write(&path, value))
            .unwrap()
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }

    pub fn read_sysctl(&self, ns: &NetnsGuard, path: &str) -> String {
        let path = format!("/proc/sys/{path}");
        ns.run(|| std::fs::read_to_string(&path))
            .unwrap()
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// `ip -j -n NS ARGS…` parsed.
pub fn ip_json(ns: &NetnsGuard, args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["-j"];
    argv.extend_from_slice(args);
    let out = ns.ip(&argv).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip {argv:?}: {e}: {out}"))
}

pub fn link_json(ns: &NetnsGuard, dev: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", dev])[0].clone()
}

pub fn mac_of(ns: &NetnsGuard, dev: &str) -> MacAddr {
    link_json(ns, dev)["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn ifindex_of(ns: &NetnsGuard, dev: &str) -> u32 {
    link_json(ns, dev)["ifindex"].as_u64().unwrap() as u32
}

/// The IPv6 link-local address of `dev`.
pub fn link_local_of(ns: &NetnsGuard, dev: &str) -> std::net::Ipv6Addr {
    wait_for(Duration::from_secs(10), || {
        let addrs = ip_json(ns, &["-6", "addr", "show", "dev", dev, "scope", "link"]);
        addrs[0]["addr_info"]
            .as_array()?
            .iter()
            // iproute2 prints `{}` for addresses its filter left out.
            .filter(|a| a.get("tentative").is_none())
            .find_map(|a| a.get("local")?.as_str()?.parse().ok())
    })
    .unwrap_or_else(|| panic!("{dev} has no usable link-local address"))
}

/// The neighbour-table MAC of `ip` on `dev`, if any.
pub fn neighbour_mac(ns: &NetnsGuard, ip: &str, dev: &str) -> Option<MacAddr> {
    let entries = ip_json(ns, &["neigh", "show", ip, "dev", dev]);
    entries
        .as_array()?
        .first()?
        .get("lladdr")?
        .as_str()?
        .parse()
        .ok()
}

/// Poll `f` every 20 ms until it returns `Some`, for at most `limit`.
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

/// A blocking `AF_PACKET` listener for every frame of every interface of a namespace
/// (created inside it), independent of the code under test.
pub struct FrameListener {
    socket: Socket,
}

impl FrameListener {
    pub fn open_in(ns: &NetnsGuard) -> FrameListener {
        let socket = ns
            .run(|| {
                let all = i32::from((libc::ETH_P_ALL as u16).to_be());
                Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all)))
            })
            .unwrap()
            .expect("AF_PACKET socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        FrameListener { socket }
    }

    /// Collect frames for which `keep` is true until `count` were seen or `limit` passed.
    pub fn collect(
        &mut self,
        count: usize,
        limit: Duration,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<(Instant, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        let mut buffer = [0u8; 2048];
        while frames.len() < count && Instant::now() < deadline {
            match (&self.socket).read(&mut buffer) {
                Ok(len) if keep(&buffer[..len]) => {
                    frames.push((Instant::now(), buffer[..len].to_vec()))
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("AF_PACKET read: {e}"),
            }
        }
        frames
    }
}
