//! The first-boot wizard: every question of the appliance's settings, each answer checked on
//! the spot (the parsers of [`super::settings`]), a summary, and nothing written until the
//! operator confirms it. The console menu runs the same wizard with the current settings as
//! defaults.

use super::password;
use super::prompt::{Aborted, Prompt};
use super::settings::{self, Addressing, Appliance, DataNet, Ha, ManagementNet, Role};

/// What the wizard knows about the box.
pub struct Context {
    /// The network interfaces (but loopback).
    pub interfaces: Vec<String>,
    /// This box's sync certificate fingerprint (hex).
    pub own_fingerprint: String,
    /// The settings to start from (the console menu), if any.
    pub current: Option<Appliance>,
}

/// The confirmed answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub appliance: Appliance,
    /// The new admin password; None keeps the current one (only offered when there is one).
    pub password: Option<String>,
}

/// Runs the wizard. `Ok(None)`: the operator discarded the answers.
pub fn run(p: &mut Prompt<'_>, ctx: &Context) -> Result<Option<Answers>, Aborted> {
    let first_boot = ctx.current.is_none();
    if first_boot {
        p.sayln("\nTandem first-boot setup");
        p.sayln("=======================");
        p.sayln(
            "Answer each question; the value in [brackets] is taken when you just press Enter.",
        );
        p.sayln("Nothing is written until you confirm the summary at the end.\n");
    }
    show_fingerprint(p, &ctx.own_fingerprint);
    let mut current = ctx.current.clone();
    let mut password: Option<String> = None;
    loop {
        let (appliance, pw) = ask_all(p, ctx, current.as_ref(), password.as_deref(), !first_boot)?;
        summary(p, &appliance, pw.is_some());
        let choice = p.ask(
            "Write these settings? (yes = write and apply, edit = answer again, abort = discard)",
            None,
            |s| match s.to_ascii_lowercase().as_str() {
                "yes" | "y" => Ok(0),
                "edit" | "e" => Ok(1),
                "abort" | "a" => Ok(2),
                _ => Err("answer yes, edit or abort".into()),
            },
        )?;
        match choice {
            0 => {
                return Ok(Some(Answers {
                    appliance,
                    password: pw,
                }));
            }
            1 => {
                current = Some(appliance);
                password = pw;
            }
            _ => {
                p.sayln("Discarded: nothing was written.");
                return Ok(None);
            }
        }
    }
}

pub fn show_fingerprint(p: &mut Prompt<'_>, hex: &str) {
    p.sayln("This box's sync certificate fingerprint (SHA-256), to compare with the other box's console:");
    for line in settings::format_fingerprint(hex).lines() {
        p.sayln(&format!("  {line}"));
    }
    p.sayln("");
}

fn ask_all(
    p: &mut Prompt<'_>,
    ctx: &Context,
    cur: Option<&Appliance>,
    pending_password: Option<&str>,
    has_password: bool,
) -> Result<(Appliance, Option<String>), Aborted> {
    let hostname = p.ask(
        "Hostname (letters, digits, -)",
        cur.map(|c| c.hostname.as_str()),
        settings::parse_hostname,
    )?;

    if !ctx.interfaces.is_empty() {
        p.sayln(&format!(
            "Network interfaces: {}",
            ctx.interfaces.join(", ")
        ));
    }
    let first = ctx.interfaces.first().map(String::as_str);
    let mgmt_if = p.ask(
        "Management interface (console, REST API)",
        cur.map(|c| c.management.interface.as_str()).or(first),
        |s| settings::parse_interface(s, &ctx.interfaces),
    )?;
    let cur_mgmt_addr = cur.map(|c| c.management.address.to_string());
    let mgmt_addr = p.ask(
        "Management address with prefix length, or dhcp (e.g. 192.0.2.10/24)",
        Some(cur_mgmt_addr.as_deref().unwrap_or("dhcp")),
        settings::parse_addressing,
    )?;

    let others: Vec<&String> = ctx.interfaces.iter().filter(|i| **i != mgmt_if).collect();
    let data_default = cur
        .map(|c| {
            c.data
                .as_ref()
                .map(|d| d.interface.as_str())
                .unwrap_or("none")
        })
        .or(others.first().map(|s| s.as_str()))
        .unwrap_or("none");
    let data_if = p.ask(
        "Data interface (VIPs, VRRP; `none` for none)",
        Some(data_default),
        |s| {
            if s.eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            let i = settings::parse_interface(s, &ctx.interfaces)?;
            if i == mgmt_if {
                return Err(format!(
                    "{i} is the management interface: the data plane needs its own (or `none`)"
                ));
            }
            Ok(Some(i))
        },
    )?;
    let data = match data_if {
        None => None,
        Some(interface) => {
            let d = cur
                .and_then(|c| c.data.as_ref())
                .map(|d| d.address.to_string());
            let address = p.ask(
                &format!("Address of {interface} with prefix length (e.g. 10.0.0.2/24)"),
                d.as_deref(),
                |s| {
                    let net = settings::parse_host_address(s)?;
                    if let Addressing::Static(m) = &mgmt_addr
                        && m.trunc() == net.trunc()
                    {
                        return Err(format!(
                            "{net} is on the management network {}: the data interface needs another network",
                            m.trunc()
                        ));
                    }
                    Ok(net)
                },
            )?;
            Some(DataNet { interface, address })
        }
    };
    let mut draft = Appliance {
        schema: settings::SCHEMA,
        hostname: hostname.clone(),
        management: ManagementNet {
            interface: mgmt_if.clone(),
            address: mgmt_addr.clone(),
            port: cur
                .map(|c| c.management.port)
                .unwrap_or(settings::DEFAULT_MANAGEMENT_PORT),
        },
        data,
        gateway: None,
        dns: Vec::new(),
        ntp: Vec::new(),
        ha: Ha {
            role: Role::Standalone,
            peer: None,
            peer_fingerprint: None,
        },
    };

    let networks = draft.networks();
    let own = draft.own_addresses();
    let gw_default = cur.and_then(|c| c.gateway).map(|g| g.to_string());
    let gw_hint = if mgmt_addr == Addressing::Dhcp {
        "Default gateway (empty: from DHCP)"
    } else {
        "Default gateway (empty: none)"
    };
    draft.gateway = p.ask(gw_hint, gw_default.as_deref(), |s| {
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let gw = settings::parse_ip(s)?;
        settings::check_gateway(gw, &networks, &own)?;
        Ok(Some(gw))
    })?;

    let dns_default = cur.map(|c| join(&c.dns));
    draft.dns = p.ask(
        "DNS servers, separated by commas (empty: none, or from DHCP)",
        dns_default.as_deref(),
        |s| settings::parse_ip_list(s, 3),
    )?;
    let ntp_default = cur.map(|c| c.ntp.join(", "));
    draft.ntp = p.ask(
        "NTP servers, separated by commas (empty: none)",
        ntp_default.as_deref(),
        |s| settings::parse_server_list(s, 4),
    )?;

    let password = ask_password(p, &hostname, pending_password, has_password)?;

    let role_default = cur.map(|c| c.ha.role.to_string());
    p.sayln(
        "HA role: standalone (one box), primary (the box meant to be active), secondary (its peer)",
    );
    let has_data = draft.data.is_some();
    draft.ha.role = p.ask(
        "HA role",
        Some(role_default.as_deref().unwrap_or("standalone")),
        |s| {
            let r = settings::parse_role(s)?;
            if r != Role::Standalone && !has_data {
                return Err(
                    "a pair needs a data interface for VRRP: answer standalone, or answer `edit` at the summary and give a data interface"
                        .into(),
                );
            }
            Ok(r)
        },
    )?;
    if draft.ha.role != Role::Standalone {
        let peer_default = cur.and_then(|c| c.ha.peer).map(|x| x.to_string());
        let check = draft.clone();
        draft.ha.peer = Some(p.ask(
            "Peer box's address on the data network",
            peer_default.as_deref(),
            |s| {
                let ip = settings::parse_ip(s)?;
                settings::check_peer(ip, &check)?;
                Ok(ip)
            },
        )?);
        show_fingerprint(p, &ctx.own_fingerprint);
        let fp_default = cur.and_then(|c| c.ha.peer_fingerprint.clone());
        let own_fp = ctx.own_fingerprint.clone();
        draft.ha.peer_fingerprint = p.ask(
            "Peer's sync certificate fingerprint, as its console shows it (empty: enter it later from the menu)",
            fp_default.as_deref(),
            |s| {
                if s.is_empty() {
                    return Ok(None);
                }
                let f = settings::parse_fingerprint(s)?;
                if f == own_fp {
                    return Err("that is this box's own fingerprint: enter the one the peer's console shows".into());
                }
                Ok(Some(f))
            },
        )?;
    }
    Ok((draft, password))
}

fn ask_password(
    p: &mut Prompt<'_>,
    hostname: &str,
    pending: Option<&str>,
    has_password: bool,
) -> Result<Option<String>, Aborted> {
    p.sayln(&format!(
        "Admin password: at least {} characters of two kinds or more (lower, upper, digits, symbols).",
        password::MIN_LENGTH
    ));
    let keep = pending.is_some() || has_password;
    loop {
        let first = p.secret(if keep {
            "Admin password (Enter keeps the current one)"
        } else {
            "Admin password"
        })?;
        if first.is_empty() && keep {
            return Ok(pending.map(str::to_owned));
        }
        if let Err(m) = password::check_policy(&first, hostname) {
            p.sayln(&format!("  ! {m}"));
            continue;
        }
        let again = p.secret("Admin password again")?;
        if again != first {
            p.sayln("  ! the two entries differ; once more");
            continue;
        }
        return Ok(Some(first));
    }
}

fn join(ips: &[std::net::IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn summary(p: &mut Prompt<'_>, a: &Appliance, new_password: bool) {
    let none = || "none".to_owned();
    p.sayln("\nSummary");
    p.sayln("-------");
    p.sayln(&format!("  hostname            {}", a.hostname));
    p.sayln(&format!(
        "  management          {} {} (HTTPS port {})",
        a.management.interface, a.management.address, a.management.port
    ));
    p.sayln(&format!(
        "  data                {}",
        a.data
            .as_ref()
            .map(|d| format!("{} {}", d.interface, d.address))
            .unwrap_or_else(none)
    ));
    p.sayln(&format!(
        "  gateway             {}",
        a.gateway.map(|g| g.to_string()).unwrap_or_else(none)
    ));
    p.sayln(&format!(
        "  DNS                 {}",
        if a.dns.is_empty() {
            none()
        } else {
            join(&a.dns)
        }
    ));
    p.sayln(&format!(
        "  NTP                 {}",
        if a.ntp.is_empty() {
            none()
        } else {
            a.ntp.join(", ")
        }
    ));
    p.sayln(&format!(
        "  admin password      {}",
        if new_password { "(new)" } else { "(unchanged)" }
    ));
    p.sayln(&format!("  HA role             {}", a.ha.role));
    if a.ha.role != Role::Standalone {
        p.sayln(&format!(
            "  peer                {}",
            a.ha.peer.map(|x| x.to_string()).unwrap_or_else(none)
        ));
        match &a.ha.peer_fingerprint {
            Some(f) => {
                p.sayln("  peer fingerprint");
                for line in settings::format_fingerprint(f).lines() {
                    p.sayln(&format!("    {line}"));
                }
            }
            None => p.sayln(
                "  peer fingerprint    (not yet: the sync link stays down until it is entered)",
            ),
        }
    }
    p.sayln("");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const OWN_FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ctx() -> Context {
        Context {
            interfaces: vec!["eth0".into(), "eth1".into(), "eth2".into()],
            own_fingerprint: OWN_FP.into(),
            current: None,
        }
    }

    /// Runs the wizard on scripted lines; returns the outcome and everything it printed.
    fn drive(ctx: &Context, lines: &[&str]) -> (Result<Option<Answers>, Aborted>, String) {
        let mut input = Cursor::new(lines.join("\n") + "\n");
        let mut out = Vec::new();
        let result = {
            let mut p = Prompt::new(&mut input, &mut out);
            run(&mut p, ctx)
        };
        (result, String::from_utf8(out).unwrap())
    }

    const PEER_FP: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    fn primary_answers() -> Vec<&'static str> {
        vec![
            "lb-a",          // hostname
            "",              // management interface: eth0 (default)
            "192.0.2.10/24", // management address
            "",              // data interface: eth1 (default)
            "10.0.0.2/24",   // data address
            "10.0.0.1",      // gateway
            "192.0.2.53",    // DNS
            "pool.ntp.org",  // NTP
            "Rack-42-Blue",  // password
            "Rack-42-Blue",  // again
            "primary",       // role
            "10.0.0.3",      // peer
            PEER_FP,         // peer fingerprint
            "yes",
        ]
    }

    #[test]
    fn a_primary_box_is_set_up_in_one_pass() {
        let (r, out) = drive(&ctx(), &primary_answers());
        let a = r.unwrap().unwrap();
        assert_eq!(a.password.as_deref(), Some("Rack-42-Blue"));
        let s = a.appliance;
        assert_eq!(s.hostname, "lb-a");
        assert_eq!(s.management.interface, "eth0");
        assert_eq!(s.data.as_ref().unwrap().interface, "eth1");
        assert_eq!(s.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(s.ha.role, Role::Primary);
        assert_eq!(
            s.ha.peer_fingerprint.as_deref(),
            Some("aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899")
        );
        s.validate().unwrap();
        // The own fingerprint is shown for comparison, formatted.
        assert!(out.contains("01:23:45:67:89:AB:CD:EF"), "{out}");
        assert!(out.contains("Summary"));
        assert!(
            !out.contains("Rack-42-Blue"),
            "the password is never echoed"
        );
    }

    #[test]
    fn every_bad_answer_is_explained_and_asked_again() {
        let answers = vec![
            "lb.example.com",
            "lb-a", // dots refused
            "eth9",
            "eth0", // no such interface
            "192.0.2.10",
            "192.0.2.10/24", // prefix missing
            "eth0",
            "eth1", // data = management refused
            "192.0.2.20/24",
            "10.0.0.2/24", // same network as management
            "172.16.0.1",
            "10.0.0.1", // gateway not on a network
            "dns.example",
            "192.0.2.53", // not an IP
            "",           // NTP none
            "short",
            "Rack-42-Blue",
            "Rack-42-Blux",
            "Rack-42-Blue",
            "Rack-42-Blue",
            "master",
            "secondary", // not a role
            "10.0.0.2",
            "192.0.2.99",
            "10.0.0.3", // own address; off the data link
            OWN_FP,
            "abc",
            "", // own fingerprint; too short; later
            "maybe",
            "yes",
        ];
        let (r, out) = drive(&ctx(), &answers);
        let a = r.unwrap().unwrap().appliance;
        for expected in [
            "no dots",
            "has no interface `eth9`; it has: eth0, eth1, eth2",
            "write it as `192.0.2.10/24`",
            "eth0 is the management interface",
            "is on the management network 192.0.2.0/24",
            "not on this box's networks",
            "is not an IP address",
            "too short",
            "the two entries differ",
            "is not a role",
            "this box's own address",
            "the peer must be on the same link",
            "that is this box's own fingerprint",
            "64 hex digits",
            "not yet: the sync link stays down",
            "answer yes, edit or abort",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert_eq!(a.ha.role, Role::Secondary);
        assert_eq!(a.ha.peer_fingerprint, None);
        assert!(a.ntp.is_empty());
    }

    #[test]
    fn abort_writes_nothing_and_end_of_input_aborts() {
        let mut answers = primary_answers();
        *answers.last_mut().unwrap() = "abort";
        let (r, out) = drive(&ctx(), &answers);
        assert_eq!(r, Ok(None));
        assert!(out.contains("nothing was written"));
        let (r, _) = drive(&ctx(), &["lb-a", "eth0"]);
        assert_eq!(r, Err(Aborted));
    }

    #[test]
    fn edit_asks_again_with_the_answers_as_defaults() {
        let mut answers = primary_answers();
        *answers.last_mut().unwrap() = "edit";
        // Second pass: Enter everywhere but the hostname; Enter keeps the password given.
        answers.extend(["lb-b", "", "", "", "", "", "", "", "", "", "", "", "yes"]);
        let (r, _) = drive(&ctx(), &answers);
        let a = r.unwrap().unwrap();
        assert_eq!(a.appliance.hostname, "lb-b");
        assert_eq!(a.appliance.ha.peer, Some("10.0.0.3".parse().unwrap()));
        assert_eq!(a.password.as_deref(), Some("Rack-42-Blue"));
    }

    #[test]
    fn a_standalone_dhcp_box_skips_the_peer_questions() {
        let answers = [
            "edge1",
            "eth0",
            "dhcp",
            "none",
            "",
            "",
            "",
            "Rack-42-Blue",
            "Rack-42-Blue",
            "",
            "yes",
        ];
        let (r, out) = drive(&ctx(), &answers);
        let a = r.unwrap().unwrap().appliance;
        assert_eq!(a.management.address, Addressing::Dhcp);
        assert_eq!(a.data, None);
        assert_eq!(a.ha.role, Role::Standalone);
        assert!(!out.contains("Peer box's address"));
        // Without a data interface a pair role is refused.
        let answers = [
            "edge1",
            "eth0",
            "dhcp",
            "none",
            "",
            "",
            "",
            "Rack-42-Blue",
            "Rack-42-Blue",
            "primary",
            "standalone",
            "yes",
        ];
        let (r, out) = drive(&ctx(), &answers);
        assert!(r.unwrap().is_some());
        assert!(out.contains("a pair needs a data interface"));
    }

    #[test]
    fn from_the_menu_enter_keeps_everything_including_the_password() {
        let (first, _) = drive(&ctx(), &primary_answers());
        let current = first.unwrap().unwrap().appliance;
        let ctx = Context {
            current: Some(current.clone()),
            ..ctx()
        };
        let (r, out) = drive(
            &ctx,
            &["", "", "", "", "", "", "", "", "", "", "", "", "yes"],
        );
        let a = r.unwrap().unwrap();
        assert_eq!(a.appliance, current);
        assert_eq!(a.password, None);
        assert!(out.contains("(unchanged)"));
        assert!(!out.contains("first-boot"));
    }
}
