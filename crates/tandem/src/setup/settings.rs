//! The appliance's own settings (`/config/appliance.yaml`): what the first-boot wizard asks
//! and the boot needs before tandemd runs — hostname, interfaces and addresses, gateway,
//! DNS, NTP, the HA role and the peer. Each answer has a parser here that returns the value
//! or a message saying what is wrong and how to write it; the wizard shows that message and
//! asks again.
//!
//! tandemd's own config (`/config/tandem.yaml`) is made from these settings
//! ([`super::node_config`]); its schema has no place for interfaces, DNS or NTP.

use crate::firewall::IfName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub const SCHEMA: u32 = 1;
/// The management listener's port (HTTPS): console, REST API and `/metrics`.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 9443;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appliance {
    pub schema: u32,
    pub hostname: String,
    pub management: ManagementNet,
    /// The data interface: VIPs, VRRP and (later) the sync link. None for a box whose
    /// services share the management link's wire (not recommended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataNet>,
    /// The default route; none when DHCP gives one or the box needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp: Vec<String>,
    pub ha: Ha,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementNet {
    pub interface: String,
    pub address: Addressing,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    DEFAULT_MANAGEMENT_PORT
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataNet {
    pub interface: String,
    pub address: IpNet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ha {
    pub role: Role,
    /// The peer box's address on the data (HA) link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    /// SHA-256 of the peer's sync certificate (64 lowercase hex digits), pinned by the sync
    /// link (issue 4). None until the operator enters it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_fingerprint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// One box, no peer.
    Standalone,
    /// The box meant to be active (the higher VRRP priority).
    Primary,
    /// The box meant to be passive.
    Secondary,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Standalone => "standalone",
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        })
    }
}

/// `dhcp` or a static address with its prefix length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Addressing {
    Dhcp,
    Static(IpNet),
}

impl Addressing {
    pub fn static_net(&self) -> Option<IpNet> {
        match self {
            Addressing::Static(n) => Some(*n),
            Addressing::Dhcp => None,
        }
    }
}

impl fmt::Display for Addressing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addressing::Dhcp => f.write_str("dhcp"),
            Addressing::Static(n) => write!(f, "{n}"),
        }
    }
}

impl From<Addressing> for String {
    fn from(a: Addressing) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Addressing {
    type Error = String;
    fn try_from(s: String) -> Result<Addressing, String> {
        parse_addressing(&s)
    }
}

impl Appliance {
    /// The static networks the box is on, for checking a gateway or peer against.
    pub fn networks(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.management.address.static_net().into_iter().collect();
        v.extend(self.data.as_ref().map(|d| d.address));
        v
    }

    pub fn own_addresses(&self) -> Vec<IpAddr> {
        self.networks().iter().map(|n| n.addr()).collect()
    }

    /// Checks the settings as a whole (a file edited by hand, or read back).
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!(
                "appliance settings schema {} is not {SCHEMA}",
                self.schema
            ));
        }
        parse_hostname(&self.hostname)?;
        parse_interface(&self.management.interface, &[])?;
        if let Addressing::Static(n) = &self.management.address {
            check_host_address(n)?;
        }
        if let Some(d) = &self.data {
            parse_interface(&d.interface, &[])?;
            check_host_address(&d.address)?;
            if d.interface == self.management.interface {
                return Err("the data interface must not be the management interface".into());
            }
        }
        if let Some(gw) = self.gateway {
            check_gateway(gw, &self.networks(), &self.own_addresses())?;
        }
        for n in &self.ntp {
            parse_server_name(n)?;
        }
        if let Some(p) = self.ha.peer {
            check_peer(p, self)?;
        }
        if let Some(f) = &self.ha.peer_fingerprint {
            parse_fingerprint(f)?;
        }
        if self.management.port == 0 {
            return Err("the management port is 0".into());
        }
        Ok(())
    }
}

pub fn parse_hostname(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 63 {
        return Err("a hostname has 1 to 63 characters, e.g. `lb-a`".into());
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "`{s}` has characters a hostname cannot have: use letters, digits and `-` only (no dots: this is the box's own name, not a domain)"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("`{s}` starts or ends with `-`: a hostname cannot"));
    }
    Ok(s.to_ascii_lowercase())
}

/// An interface name that exists on this box (`available`, when known).
pub fn parse_interface(s: &str, available: &[String]) -> Result<String, String> {
    let s = s.trim();
    let name = IfName::new(s)?;
    if !available.is_empty() && !available.iter().any(|a| a == s) {
        return Err(format!(
            "this box has no interface `{s}`; it has: {}",
            available.join(", ")
        ));
    }
    Ok(name.as_str().to_owned())
}

pub fn parse_addressing(s: &str) -> Result<Addressing, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("dhcp") {
        return Ok(Addressing::Dhcp);
    }
    parse_host_address(s).map(Addressing::Static)
}

/// `192.0.2.10/24` or `2001:db8::10/64`: an address for this box, with its prefix length.
pub fn parse_host_address(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match IpNet::from_str(s) {
        Ok(n) => n,
        Err(_) if IpAddr::from_str(s).is_ok() => {
            return Err(format!(
                "`{s}` has no prefix length: write it as `{s}/24` (or the length of your network)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{s}` is not an address with a prefix length, e.g. `192.0.2.10/24` or `2001:db8::10/64`"
            ));
        }
    };
    check_host_address(&net)?;
    Ok(net)
}

fn check_host_address(net: &IpNet) -> Result<(), String> {
    let a = net.addr();
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
        return Err(format!("{a} cannot be a box's own address"));
    }
    if let (IpAddr::V4(v4), IpNet::V4(n)) = (a, net)
        && n.prefix_len() < 31
    {
        if v4 == n.network() {
            return Err(format!(
                "{a} is the network address of {}: choose a host address",
                n.trunc()
            ));
        }
        if v4 == n.broadcast() {
            return Err(format!(
                "{a} is the broadcast address of {}: choose a host address",
                n.trunc()
            ));
        }
        if v4.is_broadcast() {
            return Err(format!("{a} cannot be a box's own address"));
        }
    }
    Ok(())
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let s = s.trim();
    IpAddr::from_str(s)
        .map_err(|_| format!("`{s}` is not an IP address, e.g. `192.0.2.1` or `2001:db8::1`"))
}

/// The gateway must be on one of the box's networks, and not the box itself.
pub fn check_gateway(gw: IpAddr, networks: &[IpNet], own: &[IpAddr]) -> Result<(), String> {
    if own.contains(&gw) {
        return Err(format!("{gw} is this box's own address, not a gateway"));
    }
    if gw.is_unspecified() || gw.is_multicast() || gw.is_loopback() {
        return Err(format!("{gw} cannot be a gateway"));
    }
    if !networks.is_empty() && !networks.iter().any(|n| n.contains(&gw)) {
        let nets: Vec<String> = networks.iter().map(|n| n.trunc().to_string()).collect();
        return Err(format!(
            "{gw} is not on this box's networks ({}): a gateway must be directly reachable",
            nets.join(", ")
        ));
    }
    Ok(())
}

/// Up to `max` addresses separated by commas or spaces; empty for none.
pub fn parse_ip_list(s: &str, max: usize) -> Result<Vec<IpAddr>, String> {
    let items: Vec<&str> = s.split([',', ' ']).filter(|x| !x.is_empty()).collect();
    if items.len() > max {
        return Err(format!("give at most {max} addresses"));
    }
    let mut out = Vec::new();
    for i in items {
        let ip = parse_ip(i)?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{ip} cannot be a server's address"));
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// An NTP server: an IP address or a DNS name.
pub fn parse_server_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if IpAddr::from_str(s).is_ok() {
        return Ok(s.to_owned());
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        return Err(format!(
            "`{s}` is neither an IP address nor a DNS name, e.g. `192.0.2.123` or `pool.ntp.org`"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

pub fn parse_server_list(s: &str, max: usize) -> Result<Vec<String>, String> {
    let items: Vec<&str> = s.split([',', ' ']).filter(|x| !x.is_empty()).collect();
    if items.len() > max {
        return Err(format!("give at most {max} servers"));
    }
    items.into_iter().map(parse_server_name).collect()
}

pub fn parse_role(s: &str) -> Result<Role, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "standalone" | "1" => Ok(Role::Standalone),
        "primary" | "2" => Ok(Role::Primary),
        "secondary" | "3" => Ok(Role::Secondary),
        other => Err(format!(
            "`{other}` is not a role: answer standalone, primary or secondary (or 1, 2, 3)"
        )),
    }
}

/// The peer is on the data (HA) link's network: VRRP adverts do not cross routers.
pub fn check_peer(peer: IpAddr, a: &Appliance) -> Result<(), String> {
    if a.own_addresses().contains(&peer) {
        return Err(format!(
            "{peer} is this box's own address; give the other box's"
        ));
    }
    if peer.is_unspecified() || peer.is_multicast() || peer.is_loopback() {
        return Err(format!("{peer} cannot be the peer's address"));
    }
    if let Some(d) = &a.data
        && !d.address.contains(&peer)
    {
        return Err(format!(
            "{peer} is not on the data network {} ({}): the peer must be on the same link, as VRRP adverts do not cross routers",
            d.address.trunc(),
            d.interface
        ));
    }
    Ok(())
}

/// A SHA-256 fingerprint: 64 hex digits, with or without `:` or spaces. Returns lowercase
/// hex without separators.
pub fn parse_fingerprint(s: &str) -> Result<String, String> {
    let hexits: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if hexits.len() != 64 || !hexits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a SHA-256 fingerprint has 64 hex digits (pairs may be separated by `:`); this has {} {}",
            hexits.len(),
            if hexits.bytes().all(|b| b.is_ascii_hexdigit()) {
                "digits"
            } else {
                "characters, not all hex"
            }
        ));
    }
    Ok(hexits.to_ascii_lowercase())
}

/// `ab12…` → `AB:12:…`, in lines of 16 pairs, as both consoles show it.
pub fn format_fingerprint(hex: &str) -> String {
    let pairs: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
        .collect();
    pairs
        .chunks(16)
        .map(|line| line.join(":"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Appliance {
        Appliance {
            schema: SCHEMA,
            hostname: "lb-a".into(),
            management: ManagementNet {
                interface: "eth0".into(),
                address: Addressing::Static("192.0.2.10/24".parse().unwrap()),
                port: 9443,
            },
            data: Some(DataNet {
                interface: "eth1".into(),
                address: "10.0.0.2/24".parse().unwrap(),
            }),
            gateway: Some("10.0.0.1".parse().unwrap()),
            dns: vec!["192.0.2.53".parse().unwrap()],
            ntp: vec!["pool.ntp.org".into()],
            ha: Ha {
                role: Role::Primary,
                peer: Some("10.0.0.3".parse().unwrap()),
                peer_fingerprint: Some("ab".repeat(32)),
            },
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(parse_hostname(" LB-A ").unwrap(), "lb-a");
        assert!(
            parse_hostname("lb.example.com")
                .unwrap_err()
                .contains("no dots")
        );
        assert!(parse_hostname("-a").is_err());
        assert!(parse_hostname("").is_err());
        assert!(parse_hostname(&"a".repeat(64)).is_err());
    }

    #[test]
    fn interfaces_must_exist_when_the_list_is_known() {
        let have = vec!["eth0".to_owned(), "eth1".to_owned()];
        assert_eq!(parse_interface("eth1", &have).unwrap(), "eth1");
        let e = parse_interface("eth7", &have).unwrap_err();
        assert!(e.contains("eth0, eth1"), "{e}");
        assert!(parse_interface("eth0; reboot", &[]).is_err());
    }

    #[test]
    fn addresses_need_a_prefix_and_must_be_a_host() {
        assert_eq!(parse_addressing("DHCP").unwrap(), Addressing::Dhcp);
        assert!(
            parse_addressing("192.0.2.10")
                .unwrap_err()
                .contains("192.0.2.10/24")
        );
        assert!(
            parse_addressing("192.0.2.0/24")
                .unwrap_err()
                .contains("network address")
        );
        assert!(
            parse_addressing("192.0.2.255/24")
                .unwrap_err()
                .contains("broadcast")
        );
        assert!(parse_addressing("127.0.0.1/8").is_err());
        assert!(parse_addressing("hello").unwrap_err().contains("e.g."));
        parse_addressing("192.0.2.1/32").unwrap();
        parse_addressing("2001:db8::10/64").unwrap();
    }

    #[test]
    fn gateway_must_be_on_a_network_of_the_box() {
        let a = sample();
        check_gateway(
            "10.0.0.1".parse().unwrap(),
            &a.networks(),
            &a.own_addresses(),
        )
        .unwrap();
        let e = check_gateway(
            "172.16.0.1".parse().unwrap(),
            &a.networks(),
            &a.own_addresses(),
        )
        .unwrap_err();
        assert!(
            e.contains("192.0.2.0/24") && e.contains("10.0.0.0/24"),
            "{e}"
        );
        assert!(
            check_gateway(
                "10.0.0.2".parse().unwrap(),
                &a.networks(),
                &a.own_addresses()
            )
            .is_err()
        );
    }

    #[test]
    fn lists_of_servers() {
        assert_eq!(parse_ip_list("192.0.2.1, 192.0.2.2", 3).unwrap().len(), 2);
        assert!(parse_ip_list("1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4", 3).is_err());
        assert!(parse_ip_list("dns.example", 3).is_err());
        assert!(parse_ip_list("", 3).unwrap().is_empty());
        assert_eq!(
            parse_server_list("Pool.NTP.org 192.0.2.123", 4).unwrap(),
            vec!["pool.ntp.org", "192.0.2.123"]
        );
        assert!(parse_server_list("bad_name", 4).is_err());
    }

    #[test]
    fn the_peer_is_on_the_data_link_and_not_this_box() {
        let a = sample();
        check_peer("10.0.0.3".parse().unwrap(), &a).unwrap();
        assert!(
            check_peer("10.0.0.2".parse().unwrap(), &a)
                .unwrap_err()
                .contains("own address")
        );
        assert!(
            check_peer("192.0.2.11".parse().unwrap(), &a)
                .unwrap_err()
                .contains("same link")
        );
    }

    #[test]
    fn fingerprints_accept_colons_and_any_case() {
        let hex = "AB".repeat(32);
        let colons = format_fingerprint(&hex).replace('\n', ":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), "ab".repeat(32));
        assert!(
            parse_fingerprint("abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(
            parse_fingerprint(&"zz".repeat(32))
                .unwrap_err()
                .contains("not all hex")
        );
        assert_eq!(format_fingerprint(&"ab".repeat(32)).lines().count(), 2);
    }

    #[test]
    fn settings_round_trip_through_yaml_and_validate() {
        let a = sample();
        let text = serde_saphyr::to_string(&a).unwrap();
        assert!(text.contains("address: 192.0.2.10/24"), "{text}");
        let back: Appliance = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, a);
        back.validate().unwrap();
        let mut dhcp = a.clone();
        dhcp.management.address = Addressing::Dhcp;
        let back: Appliance =
            serde_saphyr::from_str(&serde_saphyr::to_string(&dhcp).unwrap()).unwrap();
        assert_eq!(back.management.address, Addressing::Dhcp);
        let mut bad = a;
        bad.data.as_mut().unwrap().interface = "eth0".into();
        assert!(bad.validate().is_err());
    }
}
