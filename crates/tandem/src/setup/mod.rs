//! `tandem-setup`: the appliance around tandemd — the boot steps (hostname, interfaces,
//! firewall), the first-boot wizard and the menu on the consoles, and the supervisor that
//! runs tandemd. See `docs/image.md`.
//!
//! Files under the config partition (`/config`):
//! - `appliance.yaml`: the settings the wizard asks ([`settings::Appliance`]); its presence
//!   means the box is set up;
//! - `tandem.yaml`: tandemd's config file, its node part made from the settings
//!   ([`node_config`]) and its shared part the initial one (empty);
//! - `admin-password.argon2`: the admin password's hash (until issue 5's `users`);
//! - `sync/`: the box's sync key and certificate ([`identity`]);
//! - `config/`, `management/`: tandemd's own (the config store, the console certificate).

pub mod identity;
pub mod logring;
pub mod menu;
pub mod network;
pub mod ntp;
pub mod password;
pub mod prompt;
pub mod settings;
pub mod supervisor;
pub mod wizard;

use crate::firewall::{self, IfName, Policy};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use settings::{Addressing, Appliance};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tandem_config::store::write_atomic;
use tandem_config::{Config, Management, MetricsAccess, NodeConfig, SharedConfig};

/// Where the appliance keeps its files.
#[derive(Clone, Debug)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Paths {
    pub fn appliance(&self) -> PathBuf {
        self.config_dir.join("appliance.yaml")
    }
    pub fn tandem_config(&self) -> PathBuf {
        self.config_dir.join("tandem.yaml")
    }
    pub fn password(&self) -> PathBuf {
        self.config_dir.join("admin-password.argon2")
    }
    pub fn sync_dir(&self) -> PathBuf {
        self.config_dir.join("sync")
    }
    pub fn ring(&self) -> logring::LogRing {
        logring::LogRing::new(&self.run_dir.join("log"))
    }
    pub fn supervisor_pid(&self) -> PathBuf {
        self.run_dir.join("supervisor.pid")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("tandemd.sock")
    }
    pub fn console_lock(&self) -> PathBuf {
        self.run_dir.join("console.lock")
    }
}

pub fn load_appliance(paths: &Paths) -> anyhow::Result<Option<Appliance>> {
    let path = paths.appliance();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let a: Appliance =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    a.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(a))
}

/// VRRP priorities the wizard's HA role gives every router: the primary is meant to be active.
pub const PRIMARY_PRIORITY: u8 = 200;
pub const SECONDARY_PRIORITY: u8 = 100;

/// tandemd's node part, made from the settings and the shared part it will run with. A DHCP
/// box listens on every address of the port; the firewall admits it on the management
/// interface only.
///
/// A box whose HA role is primary or secondary places every router of `shared.vrrp` on its
/// (first) data interface, with priority [`PRIMARY_PRIORITY`] or [`SECONDARY_PRIORITY`], and
/// the peer's address in `peers` where it is of the router's family (an IPv6 router needs the
/// peer's link-local address, which the wizard does not ask: any source is heard there). The
/// shared routers (VRID, VIPs, interval, preemption) come with the shared config; when its
/// routers change, the supervisor rewrites this part and restarts tandemd
/// ([`refresh_node_part`]). A standalone box places none.
pub fn node_config(a: &Appliance, shared: &SharedConfig) -> NodeConfig {
    let ip = match &a.management.address {
        Addressing::Static(n) => n.addr(),
        Addressing::Dhcp => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let priority = match a.ha.role {
        settings::Role::Standalone => None,
        settings::Role::Primary => Some(PRIMARY_PRIORITY),
        settings::Role::Secondary => Some(SECONDARY_PRIORITY),
    };
    let mut vrrp = tandem_config::VrrpNode::default();
    if let (Some(priority), Some(data)) = (priority, a.data.as_ref()) {
        for r in &shared.vrrp.routers {
            let v6 = r.vips.first().is_some_and(|v| v.addr().is_ipv6());
            let peers =
                a.ha.peer
                    .filter(|p| !v6 && p.is_ipv4())
                    .into_iter()
                    .collect();
            vrrp.routers.push(tandem_config::RouterPlacement {
                router: r.name.clone(),
                interface: data.interface.clone(),
                priority,
                peers,
                unicast: false,
            });
        }
    }
    NodeConfig {
        name: a.hostname.clone(),
        management: Management {
            listen: std::net::SocketAddr::new(ip, a.management.port),
            cert_file: None,
            key_file: None,
            metrics: MetricsAccess::default(),
        },
        vrrp: Box::new(vrrp),
        sync: None,
    }
}

/// The shared part an existing `tandem.yaml` holds (empty when there is none).
fn file_shared(existing: Option<&str>) -> SharedConfig {
    match existing {
        Some(text) => match tandem_config::parse(text, None) {
            Ok(c) => c.shared,
            Err(_) => tandem_config::parse_shared_document(text)
                .map(|d| d.shared)
                .unwrap_or_default(),
        },
        None => SharedConfig::default(),
    }
}

/// The text of `tandem.yaml`: the node part from the settings, the shared part kept from the
/// existing file (or empty). Checked with tandem-config's own parser before it is returned.
pub fn render_tandem_config(a: &Appliance, existing: Option<&str>) -> anyhow::Result<String> {
    render_with_shared(a, file_shared(existing))
}

fn render_with_shared(a: &Appliance, shared: SharedConfig) -> anyhow::Result<String> {
    let config = Config {
        schema: tandem_config::SCHEMA_VERSION,
        node: node_config(a, &shared),
        shared,
    };
    let body = serde_saphyr::to_string(&config).context("cannot write the config as YAML")?;
    let text = format!(
        "# tandemd's config, written by tandem-setup from /config/appliance.yaml.\n\
         # The node part is rewritten when the settings change on the console, and when the\n\
         # committed config's VRRP routers change (an HA box places each on its data interface);\n\
         # the shared part (services, pools, …) is committed to the store by `tandemctl apply`\n\
         # and the console.\n{body}"
    );
    if let Err(d) = tandem_config::parse(&text, None) {
        anyhow::bail!("the settings make an invalid tandemd config:\n{d}");
    }
    Ok(text)
}

/// Keeps `tandem.yaml`'s node part in step with the committed shared config: when the node
/// part the settings make for the store's current version differs from the file's (on an HA
/// box: the shared VRRP routers were added, renamed or removed), rewrites the file with that
/// node part and the current version as its shared part, and returns `true`: tandemd must
/// restart, as node settings take effect at start. The file's shared part then equals the
/// store's current version, so tandemd's import of it at start commits nothing new.
pub fn refresh_node_part(paths: &Paths) -> anyhow::Result<bool> {
    let Some(a) = load_appliance(paths)? else {
        return Ok(false);
    };
    let Ok(store) = tandem_config::store::Store::open(&paths.config_dir) else {
        return Ok(false);
    };
    let Ok(Some(current)) = store.current() else {
        return Ok(false);
    };
    let path = paths.tandem_config();
    let file_node = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| tandem_config::parse(&t, None).ok())
        .map(|c| c.node);
    if file_node.as_ref() == Some(&node_config(&a, &current.shared)) {
        return Ok(false);
    }
    let text = render_with_shared(&a, current.shared)?;
    write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

/// Writes confirmed answers, each file atomically: the password, tandemd's config, then the
/// settings (whose presence marks the box as set up).
pub fn commit(paths: &Paths, answers: &wizard::Answers) -> anyhow::Result<()> {
    std::fs::create_dir_all(&paths.config_dir)?;
    let existing = std::fs::read_to_string(paths.tandem_config()).ok();
    let tandem = render_tandem_config(&answers.appliance, existing.as_deref())?;
    let settings_text = serde_saphyr::to_string(&answers.appliance)?;
    if let Some(pw) = &answers.password {
        set_password(paths, pw)?;
    }
    write_atomic(&paths.tandem_config(), tandem.as_bytes())?;
    write_atomic(&paths.appliance(), settings_text.as_bytes())?;
    Ok(())
}

pub fn set_password(paths: &Paths, pw: &str) -> anyhow::Result<()> {
    let hash = password::hash(pw)?;
    let path = paths.password();
    write_atomic(&path, format!("{hash}\n").as_bytes())?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// The firewall for these settings and services.
pub fn firewall_policy(a: Option<&Appliance>, shared: &SharedConfig) -> Policy {
    let Some(a) = a else {
        return Policy::default();
    };
    let iface = |s: &str| IfName::new(s).ok();
    let management = iface(&a.management.interface).map(|interface| firewall::Management {
        interface,
        port: a.management.port,
        address: a.management.address.static_net().map(|n| n.addr()),
        dhcp: a.management.address == Addressing::Dhcp,
    });
    let data_interfaces: Vec<IfName> = a.data.iter().filter_map(|d| iface(&d.interface)).collect();
    let peer = a.ha.peer.map(|address| firewall::Peer {
        address,
        interface: data_interfaces.first().cloned(),
        sync_port: None,
    });
    let services = shared
        .services
        .iter()
        .map(|s| firewall::ServicePort {
            transport: firewall::transport(s.protocol),
            listen: s.listen,
        })
        .collect();
    Policy {
        management,
        data_interfaces,
        peer,
        services,
    }
}

/// The shared config that runs: the store's current version, else the config file's.
fn running_shared(paths: &Paths) -> SharedConfig {
    if let Ok(store) = tandem_config::store::Store::open(&paths.config_dir)
        && let Ok(Some(v)) = store.current()
    {
        return v.shared;
    }
    std::fs::read_to_string(paths.tandem_config())
        .ok()
        .and_then(|t| tandem_config::parse(&t, None).ok())
        .map(|c| c.shared)
        .unwrap_or_default()
}

pub fn load_firewall(paths: &Paths) -> anyhow::Result<()> {
    let a = load_appliance(paths).unwrap_or(None);
    firewall::load(&firewall_policy(a.as_ref(), &running_shared(paths)))
}

/// What changes when the firewall must be reloaded: the settings and the current version.
fn firewall_inputs(paths: &Paths) -> Vec<u8> {
    let mut key = std::fs::read(paths.appliance()).unwrap_or_default();
    key.extend(std::fs::read(paths.config_dir.join("config/current")).unwrap_or_default());
    key
}

// ---------------------------------------------------------------------------------------
// The command line.

#[derive(Parser, Debug)]
#[command(
    name = "tandem-setup",
    version,
    about = "The Tandem appliance: boot steps, console and supervisor"
)]
pub struct Cli {
    /// The config partition.
    #[arg(long, default_value = "/config", global = true)]
    config_dir: PathBuf,
    /// Runtime files: the control socket, the log ring, pid files.
    #[arg(long, default_value = "/run/tandem", global = true)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// At boot: the sync identity, hostname, interfaces and firewall from the settings.
    Boot,
    /// On a console (inittab): the first-boot wizard, or the menu once set up.
    Console,
    /// The first-boot wizard, now (writes nothing until confirmed).
    Wizard,
    /// Regenerate and load the firewall (or print it).
    Firewall {
        #[arg(long)]
        print: bool,
    },
    /// Run tandemd under supervision (inittab).
    Supervise {
        #[arg(long, default_value = "/usr/sbin/tandemd")]
        tandemd: PathBuf,
        #[arg(long, default_value = "/dev/watchdog")]
        watchdog: PathBuf,
    },
    /// Print the newest lines of the log ring.
    Log {
        #[arg(short = 'n', default_value_t = 100)]
        lines: usize,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let paths = Paths {
        config_dir: cli.config_dir,
        run_dir: cli.run_dir,
    };
    let result = match cli.command {
        Command::Boot => boot(&paths),
        Command::Console => console(&paths),
        Command::Wizard => first_boot(&paths).map(|_| ()),
        Command::Firewall { print } => {
            if print {
                let a = load_appliance(&paths).unwrap_or(None);
                print!(
                    "{}",
                    firewall_policy(a.as_ref(), &running_shared(&paths)).render()
                );
                Ok(())
            } else {
                load_firewall(&paths)
            }
        }
        Command::Supervise { tandemd, watchdog } => supervise(&paths, tandemd, watchdog),
        Command::Log { lines } => {
            for l in paths.ring().tail(lines) {
                println!("{l}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-setup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn boot(paths: &Paths) -> anyhow::Result<()> {
    let ring = paths.ring();
    std::fs::create_dir_all(&paths.run_dir)?;
    match identity::Identity::ensure(&paths.sync_dir()) {
        Ok(id) => ring.note("boot", &format!("sync identity {}", id.fingerprint)),
        Err(e) => ring.note("boot", &format!("cannot make the sync identity: {e:#}")),
    }
    let settings = match load_appliance(paths) {
        Ok(s) => s,
        Err(e) => {
            // Shown on the console; the menu lets the operator fix the settings.
            eprintln!("tandem-setup: {e:#}");
            ring.note("boot", &format!("{e:#}"));
            None
        }
    };
    if let Some(a) = &settings {
        let mut report = |m: String| {
            eprintln!("tandem-setup: {m}");
            ring.note("boot", &m);
        };
        network::apply(&network::plan(a, false), &mut report);
    }
    if let Err(e) = load_firewall(paths) {
        eprintln!("tandem-setup: firewall: {e:#}");
        ring.note("boot", &format!("firewall: {e:#}"));
    }
    Ok(())
}

fn supervise(paths: &Paths, tandemd: PathBuf, watchdog: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let p1 = paths.clone();
    let p2 = paths.clone();
    let p3 = paths.clone();
    let p4 = paths.clone();
    let opts = supervisor::Options {
        tandemd,
        config_file: paths.tandem_config(),
        state_dir: paths.config_dir.clone(),
        socket: paths.control_socket(),
        watchdog: Some(watchdog),
        ring: paths.ring(),
        pid_file: paths.supervisor_pid(),
        refresh_firewall: Box::new(move || load_firewall(&p1).err().map(|e| format!("{e:#}"))),
        refresh_node: Box::new(move || refresh_node_part(&p4).map_err(|e| format!("{e:#}"))),
        firewall_inputs: Box::new(move || firewall_inputs(&p2)),
        ntp_servers: Box::new(move || {
            load_appliance(&p3)
                .ok()
                .flatten()
                .map(|a| a.ntp)
                .unwrap_or_default()
        }),
    };
    runtime.block_on(supervisor::run(opts))
}

/// Turns terminal echo on or off on stdin, when it is a terminal.
fn set_echo(on: bool) {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    if let Ok(mut t) = tcgetattr(&stdin) {
        t.local_flags.set(LocalFlags::ECHO, on);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
    }
}

fn console(paths: &Paths) -> anyhow::Result<()> {
    loop {
        if paths.appliance().exists() {
            let mut sys = RealSystem {
                paths: paths.clone(),
            };
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut out = std::io::stdout();
            out.write_all(b"\r\nPress Enter to log in to the Tandem console.\r\n")?;
            out.flush()?;
            if input.read_line(&mut String::new())? == 0 {
                return Ok(());
            }
            let mut p = prompt::Prompt::new(&mut input, &mut out).with_echo_control(set_echo);
            if menu::run(&mut p, &mut sys).is_err() {
                return Ok(());
            }
        } else if !first_boot(paths)? {
            return Ok(());
        }
    }
}

/// The first-boot wizard on this console; false when the console closed.
fn first_boot(paths: &Paths) -> anyhow::Result<bool> {
    let id = identity::Identity::ensure(&paths.sync_dir())?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let version = std::fs::read_to_string(crate::firmware::RELEASE_FILE).unwrap_or_default();
    {
        let mut p = prompt::Prompt::new(&mut input, &mut out);
        p.sayln(&format!(
            "\nTandem {} — this box is not set up yet.",
            version.trim()
        ));
        wizard::show_fingerprint(&mut p, &id.fingerprint);
        p.say("Press Enter to start the first-boot setup.");
        if p.line().is_err() {
            return Ok(false);
        }
    }
    // One wizard at a time (the serial console and the screen both offer it).
    std::fs::create_dir_all(&paths.run_dir)?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.console_lock())?;
    let _lock =
        match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err(_) => {
                out.write_all(b"\r\nThe setup is running on another console.\r\n")?;
                std::thread::sleep(std::time::Duration::from_secs(3));
                return Ok(true);
            }
        };
    if paths.appliance().exists() {
        return Ok(true);
    }
    let ctx = wizard::Context {
        interfaces: network::interfaces(),
        own_fingerprint: id.fingerprint.clone(),
        current: None,
    };
    let answers = {
        let mut p = prompt::Prompt::new(&mut input, &mut out).with_echo_control(set_echo);
        match wizard::run(&mut p, &ctx) {
            Ok(a) => a,
            Err(prompt::Aborted) => return Ok(false),
        }
    };
    let Some(answers) = answers else {
        return Ok(true);
    };
    let mut sys = RealSystem {
        paths: paths.clone(),
    };
    let problems = menu::System::commit(&mut sys, &answers);
    for m in &problems {
        writeln!(out, "  ! {m}\r")?;
    }
    writeln!(
        out,
        "\r\nSetup complete. tandemd starts now; the console is at https://{}:{}/\r",
        answers
            .appliance
            .management
            .address
            .static_net()
            .map(|n| n.addr().to_string())
            .unwrap_or_else(|| "<address from DHCP>".into()),
        answers.appliance.management.port
    )?;
    Ok(true)
}

/// The menu's actions on the real box.
struct RealSystem {
    paths: Paths,
}

impl RealSystem {
    fn signal_supervisor(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.paths.supervisor_pid())
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            );
        }
    }
}

fn command_output(argv: &[&str]) -> String {
    match std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
    {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        }
        Err(e) => format!("({}: {e})\n", argv[0]),
    }
}

impl menu::System for RealSystem {
    fn password_hash(&self) -> Option<String> {
        std::fs::read_to_string(self.paths.password())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn status(&self) -> String {
        let mut s = String::new();
        let boot = crate::firmware::BootState::current();
        match crate::firmware::Disk::discover().and_then(|d| crate::firmware::status(&d, boot)) {
            Ok(f) => s.push_str(&format!(
                "firmware {} — booted slot {}{}, confirmed slot {}\n",
                f.running_version.as_deref().unwrap_or("?"),
                f.booted.map(|x| x.to_string()).unwrap_or("?".into()),
                if f.on_trial() { " (on trial)" } else { "" },
                f.confirmed.map(|x| x.to_string()).unwrap_or("?".into()),
            )),
            Err(e) => s.push_str(&format!("firmware: {e:#}\n")),
        }
        s.push_str(&command_output(&["uptime"]));
        s.push_str(&command_output(&["ip", "-br", "addr"]));
        s.push_str(&command_output(&[
            "tandemctl",
            "--socket",
            &self.paths.control_socket().display().to_string(),
            "status",
        ]));
        s
    }

    fn log_tail(&self, lines: usize) -> Vec<String> {
        self.paths.ring().tail(lines)
    }

    fn wizard_context(&self) -> wizard::Context {
        let id = identity::Identity::ensure(&self.paths.sync_dir());
        wizard::Context {
            interfaces: network::interfaces(),
            own_fingerprint: id.map(|i| i.fingerprint).unwrap_or_default(),
            current: load_appliance(&self.paths).unwrap_or(None),
        }
    }

    fn commit(&mut self, answers: &wizard::Answers) -> Vec<String> {
        let mut problems = Vec::new();
        let reconfigure = self.paths.appliance().exists();
        if let Err(e) = commit(&self.paths, answers) {
            problems.push(format!("nothing applied: {e:#}"));
            return problems;
        }
        self.paths.ring().note("console", "settings written");
        let mut report = |m: String| problems.push(m);
        network::apply(&network::plan(&answers.appliance, reconfigure), &mut report);
        if let Err(e) = load_firewall(&self.paths) {
            problems.push(format!("firewall: {e:#}"));
        }
        self.signal_supervisor();
        problems
    }

    fn set_password(&mut self, password: &str) -> Result<(), String> {
        set_password(&self.paths, password).map_err(|e| format!("{e:#}"))?;
        self.paths.ring().note("console", "admin password changed");
        Ok(())
    }

    fn shell(&mut self) {
        set_echo(true);
        let _ = std::process::Command::new("/bin/sh").arg("-l").status();
    }

    fn reboot(&mut self) {
        let _ = std::process::Command::new("reboot").status();
        std::thread::sleep(std::time::Duration::from_secs(30));
    }

    fn factory_reset(&mut self) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.paths.config_dir).map_err(|e| e.to_string())?;
        for e in entries.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "lost+found") {
                continue;
            }
            let r = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(|e| format!("{}: {e}", path.display()))?;
        }
        nix::unistd::sync();
        Ok(())
    }

    fn note(&mut self, message: &str) {
        self.paths.ring().note("console", message);
    }

    fn pause_after_failed_login(&mut self) {
        std::thread::sleep(std::time::Duration::from_secs(3));
    }

    fn settings(&self) -> Option<Appliance> {
        load_appliance(&self.paths).unwrap_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::tests::sample;
    use std::path::Path;

    #[test]
    fn the_node_config_comes_from_the_settings_and_parses() {
        let a = sample();
        let text = render_tandem_config(&a, None).unwrap();
        let c = tandem_config::parse(&text, None).unwrap();
        assert_eq!(c.node.name, "lb-a");
        assert_eq!(c.node.management.listen, "192.0.2.10:9443".parse().unwrap());
        assert!(c.shared.services.is_empty());
        let mut dhcp = a.clone();
        dhcp.management.address = Addressing::Dhcp;
        let c = tandem_config::parse(&render_tandem_config(&dhcp, None).unwrap(), None).unwrap();
        assert_eq!(c.node.management.listen, "0.0.0.0:9443".parse().unwrap());
    }

    #[test]
    fn rewriting_the_node_part_keeps_the_shared_part() {
        let existing = "schema: 1\nnode:\n  name: old\n  management:\n    listen: 192.0.2.9:9443\nshared:\n  services:\n    - name: web\n      listen: 10.0.0.100:80\n      protocol: tcp\n      pool: p\n  pools:\n    - name: p\n      servers:\n        - { id: s1, address: 10.0.1.1:80 }\n";
        let text = render_tandem_config(&sample(), Some(existing)).unwrap();
        let c = tandem_config::parse(&text, None).unwrap();
        assert_eq!(c.node.name, "lb-a");
        assert_eq!(c.shared.services[0].name, "web");
    }

    const WITH_ROUTER: &str = "schema: 1\nshared:\n  vrrp:\n    routers:\n      - { name: front, vrid: 10, vips: [10.0.0.100/24] }\n      - { name: front6, vrid: 10, vips: ['fe80::1/64', '2001:db8::100/64'] }\n";

    #[test]
    fn an_ha_box_places_every_shared_router_on_its_data_interface() {
        let shared = tandem_config::parse_shared_document(WITH_ROUTER)
            .unwrap()
            .shared;
        let mut a = sample();
        let node = node_config(&a, &shared);
        assert_eq!(node.vrrp.routers.len(), 2);
        let front = &node.vrrp.routers[0];
        assert_eq!(
            (
                front.router.as_str(),
                front.interface.as_str(),
                front.priority
            ),
            ("front", "eth1", PRIMARY_PRIORITY)
        );
        assert_eq!(
            front.peers,
            vec!["10.0.0.3".parse::<std::net::IpAddr>().unwrap()]
        );
        // IPv6 adverts come from link-local addresses, which the wizard does not ask.
        assert!(node.vrrp.routers[1].peers.is_empty());
        a.ha.role = settings::Role::Secondary;
        assert_eq!(
            node_config(&a, &shared).vrrp.routers[0].priority,
            SECONDARY_PRIORITY
        );
        a.ha.role = settings::Role::Standalone;
        assert!(node_config(&a, &shared).vrrp.routers.is_empty());
        // Without shared routers an HA box places none (and the file stays valid).
        a.ha.role = settings::Role::Primary;
        assert!(node_config(&a, &SharedConfig::default()).vrrp.is_empty());
    }

    /// The wizard's answers for `sample()` (password "Rack-42-Blue") committed under `dir`.
    fn committed_sample(dir: &Path) -> Paths {
        let paths = Paths {
            config_dir: dir.join("config"),
            run_dir: dir.join("run"),
        };
        let answers = wizard::Answers {
            appliance: sample(),
            password: Some("Rack-42-Blue".into()),
        };
        commit(&paths, &answers).unwrap();
        paths
    }

    #[test]
    fn the_node_part_follows_the_committed_routers() {
        let dir = tempfile::tempdir().unwrap();
        let paths = committed_sample(dir.path());
        // Nothing committed yet: nothing to do.
        assert!(!refresh_node_part(&paths).unwrap());
        let store = tandem_config::store::Store::open(&paths.config_dir).unwrap();
        let info = || tandem_config::store::CommitInfo {
            author: "t".into(),
            reason: "t".into(),
            node: "lb-a".into(),
        };
        store.commit(&SharedConfig::default(), info()).unwrap();
        assert!(!refresh_node_part(&paths).unwrap(), "no router: unchanged");
        let shared = tandem_config::parse_shared_document(WITH_ROUTER)
            .unwrap()
            .shared;
        store.commit(&shared, info()).unwrap();
        assert!(
            refresh_node_part(&paths).unwrap(),
            "a router came: rewritten"
        );
        let c = tandem_config::load_file(&paths.tandem_config()).unwrap();
        assert_eq!(c.node.vrrp.routers.len(), 2);
        assert_eq!(c.shared, shared);
        assert!(!refresh_node_part(&paths).unwrap(), "in step: unchanged");
        store.commit(&SharedConfig::default(), info()).unwrap();
        assert!(
            refresh_node_part(&paths).unwrap(),
            "routers gone: rewritten"
        );
        let c = tandem_config::load_file(&paths.tandem_config()).unwrap();
        assert!(c.node.vrrp.routers.is_empty());
    }

    #[test]
    fn commit_writes_every_file_and_the_hash_not_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let paths = committed_sample(dir.path());
        assert_eq!(load_appliance(&paths).unwrap().unwrap(), sample());
        let hash = std::fs::read_to_string(paths.password()).unwrap();
        assert!(password::verify("Rack-42-Blue", &hash));
        assert!(!hash.contains("Rack-42-Blue"));
        tandem_config::load_file(&paths.tandem_config()).unwrap();
    }

    #[test]
    fn the_firewall_follows_the_settings_and_the_services() {
        let existing = "schema: 1\nnode:\n  name: x\n  management:\n    listen: 192.0.2.9:9443\nshared:\n  services:\n    - name: web\n      listen: 10.0.0.100:80\n      protocol: http\n      pool: p\n  pools:\n    - name: p\n      servers:\n        - { id: s1, address: 10.0.1.1:80 }\n";
        let shared = tandem_config::parse(existing, None).unwrap().shared;
        let r = firewall_policy(Some(&sample()), &shared).render();
        assert!(
            r.contains("iifname \"eth0\" ip daddr 192.0.2.10 tcp dport 9443 accept"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"eth1\" ip daddr 10.0.0.100 tcp dport 80 accept"),
            "{r}"
        );
        assert!(
            r.contains("ip saddr 10.0.0.3 ip protocol 112 accept"),
            "{r}"
        );
        assert!(!firewall_policy(None, &shared).render().contains("dport"));
    }
}
