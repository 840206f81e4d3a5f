//! The appliance's own firewall: an nftables ruleset made from the validated config.
//!
//! Inputs are typed ([`IfName`] can only hold a valid interface name, addresses are
//! `IpAddr`, ports `u16`), so rendering them into nft's syntax cannot inject anything. The
//! ruleset lives in its own table, `inet tandem`, replaced atomically by one `nft -f`
//! transaction (declare, delete, recreate), and leaves any other table alone.
//!
//! What it lets in (everything else is dropped):
//! - loopback, and packets of connections already allowed (`ct state established,related`);
//! - the ICMP and ICMPv6 messages IP needs: errors (unreachable, too big, time exceeded,
//!   parameter problem; RFC 4890 §4.4.1 for v6), neighbour discovery (RFC 4861), echo
//!   requests (rate-limited);
//! - the management listener (console, REST API, `/metrics`) on the management interface
//!   only, and DHCP replies there when it uses DHCP;
//! - VRRP (IP protocol 112) and the sync link only from the peer's address (RFC 5798 §9:
//!   VRRPv3 has no authentication, so the firewall is a mitigation);
//! - on data interfaces, only the configured services' addresses and ports.

use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};

/// An interface name the kernel accepts: 1 to 15 bytes of letters, digits, `-`, `_`, `.`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<IfName, String> {
        if name.is_empty() || name.len() > 15 {
            return Err(format!(
                "`{name}`: an interface name has 1 to 15 characters"
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "`{name}`: an interface name has only letters, digits, `-`, `_` and `.`"
            ));
        }
        if name == "." || name == ".." {
            return Err(format!("`{name}` is not an interface name"));
        }
        Ok(IfName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Quoted for nft; the constructor admits no quote or backslash.
        write!(f, "\"{}\"", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn keyword(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// The management listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Management {
    pub interface: IfName,
    pub port: u16,
    /// Its own address, when static (the listener binds it); None for DHCP.
    pub address: Option<IpAddr>,
    pub dhcp: bool,
}

/// The peer box, on the HA link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    /// Where its VRRP adverts and sync connection arrive; None: any non-management interface.
    pub interface: Option<IfName>,
    /// The sync link's TCP port (issue 4); None until the sync link exists.
    pub sync_port: Option<u16>,
}

/// A service's listener: `listen` of `shared.services[]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub transport: Transport,
    pub listen: SocketAddr,
}

/// Everything the ruleset is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub management: Option<Management>,
    /// Interfaces that carry VIPs. Empty: services are allowed on every interface but the
    /// management one.
    pub data_interfaces: Vec<IfName>,
    pub peer: Option<Peer>,
    pub services: Vec<ServicePort>,
}

pub const TABLE: &str = "tandem";

impl Policy {
    /// The nft script that replaces table `inet tandem` with this policy in one transaction.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Declaring the table first makes `delete` succeed on the first load too.
        let _ = writeln!(s, "table inet {TABLE}\ndelete table inet {TABLE}\n");
        let _ = writeln!(s, "table inet {TABLE} {{");
        let _ = writeln!(s, "  chain input {{");
        let _ = writeln!(
            s,
            "    type filter hook input priority filter; policy drop;"
        );
        let _ = writeln!(s, "    iif \"lo\" accept");
        let _ = writeln!(s, "    ct state invalid drop");
        let _ = writeln!(s, "    ct state established,related accept");
        let _ = writeln!(
            s,
            "    icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept"
        );
        let _ = writeln!(
            s,
            "    icmp type echo-request limit rate 50/second burst 100 packets accept"
        );
        let _ = writeln!(
            s,
            "    icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }} accept"
        );
        // Neighbour discovery only from the link itself (hop limit 255, RFC 4861 §6.1.1, §7.1.1).
        let _ = writeln!(
            s,
            "    icmpv6 type {{ nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }} ip6 hoplimit 255 accept"
        );
        let _ = writeln!(s, "    icmpv6 type mld-listener-query accept");
        let _ = writeln!(
            s,
            "    icmpv6 type echo-request limit rate 50/second burst 100 packets accept"
        );

        if let Some(m) = &self.management {
            let _ = writeln!(s, "    # management: console, REST API and /metrics");
            match m.address {
                Some(a) => {
                    let _ = writeln!(
                        s,
                        "    iifname {} {} daddr {} tcp dport {} accept",
                        m.interface,
                        family(a),
                        a,
                        m.port
                    );
                }
                None => {
                    let _ = writeln!(s, "    iifname {} tcp dport {} accept", m.interface, m.port);
                }
            }
            if m.dhcp {
                let _ = writeln!(
                    s,
                    "    iifname {} udp sport 67 udp dport 68 accept",
                    m.interface
                );
                let _ = writeln!(
                    s,
                    "    iifname {} udp sport 547 udp dport 546 accept",
                    m.interface
                );
            }
        }
        if let Some(p) = &self.peer {
            let on = match &p.interface {
                Some(i) => format!("iifname {i} "),
                None => String::new(),
            };
            let fam = family(p.address);
            let proto = match p.address {
                IpAddr::V4(_) => "ip protocol",
                IpAddr::V6(_) => "meta l4proto",
            };
            let _ = writeln!(s, "    # the peer: VRRP (RFC 5798) and the sync link");
            let _ = writeln!(s, "    {on}{fam} saddr {} {proto} 112 accept", p.address);
            if let Some(port) = p.sync_port {
                let _ = writeln!(
                    s,
                    "    {on}{fam} saddr {} tcp dport {port} accept",
                    p.address
                );
            }
        }
        let mut services = self.services.clone();
        services.sort();
        services.dedup();
        if !services.is_empty() {
            let _ = writeln!(s, "    # services on the VIPs");
        }
        for svc in &services {
            let ip = svc.listen.ip();
            let dst = if ip.is_unspecified() {
                String::new()
            } else {
                format!("{} daddr {} ", family(ip), ip)
            };
            let t = svc.transport.keyword();
            let port = svc.listen.port();
            if self.data_interfaces.is_empty() {
                let not_mgmt = match &self.management {
                    Some(m) => format!("iifname != {} ", m.interface),
                    None => String::new(),
                };
                let _ = writeln!(s, "    {not_mgmt}{dst}{t} dport {port} accept");
            } else {
                for i in &self.data_interfaces {
                    let _ = writeln!(s, "    iifname {i} {dst}{t} dport {port} accept");
                }
            }
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  chain forward {{");
        let _ = writeln!(
            s,
            "    type filter hook forward priority filter; policy drop;"
        );
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }
}

fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

/// The transport of a service's listener.
pub fn transport(protocol: tandem_config::Protocol) -> Transport {
    match protocol {
        tandem_config::Protocol::Udp => Transport::Udp,
        _ => Transport::Tcp,
    }
}

/// Loads the ruleset with `nft -f -`.
pub fn load(policy: &Policy) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(policy.render().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifn(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    fn pair_box() -> Policy {
        Policy {
            management: Some(Management {
                interface: ifn("eth0"),
                port: 9443,
                address: Some("192.0.2.10".parse().unwrap()),
                dhcp: false,
            }),
            data_interfaces: vec![ifn("eth1")],
            peer: Some(Peer {
                address: "10.0.0.3".parse().unwrap(),
                interface: Some(ifn("eth1")),
                sync_port: Some(7400),
            }),
            services: vec![
                ServicePort {
                    transport: Transport::Tcp,
                    listen: "10.0.0.100:443".parse().unwrap(),
                },
                ServicePort {
                    transport: Transport::Udp,
                    listen: "10.0.0.100:53".parse().unwrap(),
                },
                ServicePort {
                    transport: Transport::Tcp,
                    listen: "[2001:db8::100]:80".parse().unwrap(),
                },
            ],
        }
    }

    #[test]
    fn interface_names_with_anything_but_safe_characters_are_refused() {
        for bad in [
            "",
            "eth0\"; flush ruleset",
            "a b",
            "sixteen-chars-xx",
            "eth0\n",
            "..",
            "é",
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?}");
        }
        for good in ["eth0", "enp3s0f1", "bond0.100", "ha_link", "br-x"] {
            IfName::new(good).unwrap();
        }
    }

    #[test]
    fn the_management_listener_is_open_on_the_management_interface_only() {
        let r = pair_box().render();
        assert!(
            r.contains("iifname \"eth0\" ip daddr 192.0.2.10 tcp dport 9443 accept"),
            "{r}"
        );
        assert_eq!(r.matches("9443").count(), 1);
        assert!(!r.contains("udp dport 68"), "no DHCP without DHCP");
    }

    #[test]
    fn vrrp_and_sync_come_only_from_the_peer() {
        let r = pair_box().render();
        assert!(
            r.contains("iifname \"eth1\" ip saddr 10.0.0.3 ip protocol 112 accept"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"eth1\" ip saddr 10.0.0.3 tcp dport 7400 accept"),
            "{r}"
        );
        assert_eq!(r.matches(" 112 ").count(), 1);
        let mut v6 = pair_box();
        v6.peer = Some(Peer {
            address: "fe80::3".parse().unwrap(),
            interface: Some(ifn("eth1")),
            sync_port: None,
        });
        let r = v6.render();
        assert!(
            r.contains("ip6 saddr fe80::3 meta l4proto 112 accept"),
            "{r}"
        );
        assert!(!r.contains("7400"));
    }

    #[test]
    fn data_interfaces_admit_only_the_service_ports() {
        let r = pair_box().render();
        assert!(
            r.contains("iifname \"eth1\" ip daddr 10.0.0.100 tcp dport 443 accept"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"eth1\" ip daddr 10.0.0.100 udp dport 53 accept"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"eth1\" ip6 daddr 2001:db8::100 tcp dport 80 accept"),
            "{r}"
        );
        // Default drop, established traffic and ICMP essentials.
        assert!(r.contains("policy drop;"));
        assert!(r.contains("ct state established,related accept"));
        assert!(r.contains("packet-too-big"));
    }

    #[test]
    fn without_data_interfaces_services_are_open_everywhere_but_management() {
        let mut p = pair_box();
        p.data_interfaces.clear();
        p.services.truncate(1);
        let r = p.render();
        assert!(
            r.contains("iifname != \"eth0\" ip daddr 10.0.0.100 tcp dport 443 accept"),
            "{r}"
        );
    }

    #[test]
    fn a_box_before_setup_lets_nothing_in() {
        let r = Policy::default().render();
        assert!(!r.contains("dport"), "{r}");
        assert!(r.starts_with("table inet tandem\ndelete table inet tandem\n"));
    }

    #[test]
    fn dhcp_management_opens_the_client_port_and_any_address() {
        let mut p = pair_box();
        p.management = Some(Management {
            interface: ifn("eth0"),
            port: 9443,
            address: None,
            dhcp: true,
        });
        let r = p.render();
        assert!(r.contains("iifname \"eth0\" tcp dport 9443 accept"), "{r}");
        assert!(r.contains("iifname \"eth0\" udp sport 67 udp dport 68 accept"));
    }

    /// `nft -c` parses the ruleset without loading it, where nft is installed and we may use
    /// netlink (root); skipped elsewhere.
    #[test]
    fn nft_accepts_the_ruleset() {
        use std::io::Write as _;
        let Ok(mut child) = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("nft not installed: skipped");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pair_box().render().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            && (err.contains("Operation not permitted") || err.contains("Permission denied"))
        {
            eprintln!("nft -c needs privileges: skipped");
            return;
        }
        assert!(out.status.success(), "{err}");
    }
}
