//! Bringing the box's interfaces up from its settings. [`plan`] turns the settings into the
//! exact commands (argv, never a shell line) and files, so it can be tested; [`apply`] runs
//! them with busybox's `ip` and `udhcpc`.

use super::settings::{Addressing, Appliance};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Run(Vec<String>),
    Write(PathBuf, String),
}

fn run(args: &[&str]) -> Step {
    Step::Run(args.iter().map(|s| (*s).to_owned()).collect())
}

/// The steps that make the running system match `a`. `reconfigure` first removes the
/// addresses the interfaces have (for a change made from the console).
pub fn plan(a: &Appliance, reconfigure: bool) -> Vec<Step> {
    let mut steps = vec![
        Step::Write("/proc/sys/kernel/hostname".into(), a.hostname.clone()),
        Step::Write("/etc/hostname".into(), format!("{}\n", a.hostname)),
        run(&["ip", "link", "set", "dev", "lo", "up"]),
    ];
    let m = &a.management;
    if reconfigure {
        steps.push(run(&["ip", "addr", "flush", "dev", &m.interface]));
    }
    steps.push(run(&["ip", "link", "set", "dev", &m.interface, "up"]));
    match &m.address {
        Addressing::Static(net) => steps.push(run(&[
            "ip",
            "addr",
            "replace",
            &net.to_string(),
            "dev",
            &m.interface,
        ])),
        Addressing::Dhcp => {
            let pidfile = format!("/run/udhcpc.{}.pid", m.interface);
            let host = format!("hostname:{}", a.hostname);
            steps.push(run(&[
                "udhcpc",
                "-i",
                &m.interface,
                "-b",
                "-p",
                &pidfile,
                "-s",
                "/etc/udhcpc.script",
                "-x",
                &host,
            ]));
        }
    }
    if let Some(d) = &a.data {
        if reconfigure {
            steps.push(run(&["ip", "addr", "flush", "dev", &d.interface]));
        }
        steps.push(run(&["ip", "link", "set", "dev", &d.interface, "up"]));
        steps.push(run(&[
            "ip",
            "addr",
            "replace",
            &d.address.to_string(),
            "dev",
            &d.interface,
        ]));
    }
    if let Some(gw) = a.gateway {
        let fam = if gw.is_ipv4() { "-4" } else { "-6" };
        steps.push(run(&[
            "ip",
            fam,
            "route",
            "replace",
            "default",
            "via",
            &gw.to_string(),
        ]));
    }
    if !a.dns.is_empty() {
        let mut conf = String::from("# static: from /config/appliance.yaml (tandem-setup)\n");
        for ns in &a.dns {
            conf.push_str(&format!("nameserver {ns}\n"));
        }
        steps.push(Step::Write("/etc/resolv.conf".into(), conf));
    }
    steps
}

/// Runs the steps; a failing step is reported and the others still run (a box with one bad
/// interface should still bring up the rest and its console).
pub fn apply(steps: &[Step], report: &mut dyn FnMut(String)) -> bool {
    let mut ok = true;
    for step in steps {
        match step {
            Step::Run(argv) => {
                match std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .output()
                {
                    Ok(out) if out.status.success() => {}
                    Ok(out) => {
                        ok = false;
                        report(format!(
                            "`{}` failed: {}",
                            argv.join(" "),
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                    Err(e) => {
                        ok = false;
                        report(format!("cannot run `{}`: {e}", argv[0]));
                    }
                }
            }
            Step::Write(path, content) => {
                if let Err(e) = std::fs::write(path, content) {
                    ok = false;
                    report(format!("cannot write {}: {e}", path.display()));
                }
            }
        }
    }
    ok
}

/// The network interfaces of this box, but loopback, sorted.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::settings::tests::sample;

    fn commands(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Run(a) => Some(a.join(" ")),
                Step::Write(..) => None,
            })
            .collect()
    }

    #[test]
    fn a_static_box_gets_its_addresses_route_and_resolver() {
        let steps = plan(&sample(), false);
        let cmds = commands(&steps);
        assert!(
            cmds.contains(&"ip addr replace 192.0.2.10/24 dev eth0".to_owned()),
            "{cmds:?}"
        );
        assert!(cmds.contains(&"ip addr replace 10.0.0.2/24 dev eth1".to_owned()));
        assert!(cmds.contains(&"ip -4 route replace default via 10.0.0.1".to_owned()));
        assert!(!cmds.iter().any(|c| c.contains("flush")));
        assert!(steps.contains(&Step::Write(
            "/etc/resolv.conf".into(),
            "# static: from /config/appliance.yaml (tandem-setup)\nnameserver 192.0.2.53\n".into()
        )));
        assert!(steps.contains(&Step::Write(
            "/proc/sys/kernel/hostname".into(),
            "lb-a".into()
        )));
    }

    #[test]
    fn dhcp_runs_udhcpc_in_the_background_and_reconfigure_flushes_first() {
        let mut a = sample();
        a.management.address = Addressing::Dhcp;
        let cmds = commands(&plan(&a, true));
        assert!(
            cmds.iter().any(|c| c.starts_with("udhcpc -i eth0 -b")),
            "{cmds:?}"
        );
        let flush = cmds
            .iter()
            .position(|c| c == "ip addr flush dev eth0")
            .unwrap();
        let up = cmds
            .iter()
            .position(|c| c == "ip link set dev eth0 up")
            .unwrap();
        assert!(flush < up);
    }
}
