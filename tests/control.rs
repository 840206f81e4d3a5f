//! The operator's side of one box: `tandemctl check/apply/versions/status`, SIGHUP, the
//! store across restarts, and who may use the control socket and `/metrics`.

use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use tandem_lab::{Netns, Proc, Tandemd, bins, wait_for};

const CONFIG: &str = "\
schema: 1
node:
  name: lab
  management:
    listen: 127.0.0.1:9443
    metrics:
      allow: [127.0.0.0/8]
      token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
shared:
  services:
    - name: echo
      listen: 127.0.0.1:7000
      protocol: tcp
      pool: echo
  pools:
    - name: echo
      servers:
        - { id: e1, address: 127.0.0.1:17001 }
";

fn backend(ns: &Netns, dir: &std::path::Path) -> Proc {
    let mut cmd = ns.command(bins::lab_backend());
    cmd.args([
        "--name",
        "e1",
        "--tcp",
        "127.0.0.1:17001",
        "--tcp",
        "127.0.0.1:17002",
    ]);
    let p = Proc::spawn("backend", cmd, &dir.join("backend.log"));
    wait_for("the backend", Duration::from_secs(10), || {
        p.log().contains("ready").then_some(())
    });
    p
}

/// Connects to `addr` inside `ns` and reads the backend's greeting line.
fn greeting(ns: &Netns, addr: &str) -> Option<String> {
    let addr = addr.to_owned();
    let stream = ns.enter(move || TcpStream::connect(addr)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    (!line.is_empty()).then(|| line.trim().to_owned())
}

fn version_n(d: &Tandemd) -> u64 {
    d.status()["config"]["version"]["n"].as_u64().unwrap()
}

#[test]
fn a_refused_config_names_its_position_and_the_running_one_keeps_serving() {
    let ns = Netns::new("ctl");
    let d = Tandemd::start(&ns, CONFIG);
    let _b = backend(&ns, d.dir());
    assert_eq!(greeting(&ns, "127.0.0.1:7000").as_deref(), Some("e1"));

    let bad = d.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        CONFIG.replace("pool: echo\n  pools", "pool: nope\n  pools"),
    )
    .unwrap();
    let out = d.ctl(&["apply", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = format!(
        "{}:14:13: `shared.services[0].pool`: no pool named `nope`",
        bad.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("unchanged"), "{stderr}");

    assert_eq!(version_n(&d), 1);
    assert_eq!(greeting(&ns, "127.0.0.1:7000").as_deref(), Some("e1"));
}

#[test]
fn apply_commits_a_version_and_adds_a_listener_without_disturbing_the_others() {
    let ns = Netns::new("ctl");
    let d = Tandemd::start(&ns, CONFIG);
    let _b = backend(&ns, d.dir());
    // A connection opened before the apply stays usable after it.
    let before = ns.enter(|| TcpStream::connect("127.0.0.1:7000")).unwrap();
    before
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let more = CONFIG.to_owned()
        + "    - name: echo2\n      servers:\n        - { id: e2, address: 127.0.0.1:17002 }\n";
    let more = more.replace(
        "      pool: echo\n  pools",
        "      pool: echo\n    - name: second\n      listen: 127.0.0.1:7001\n      protocol: tcp\n      pool: echo2\n  pools",
    );
    let file = d.dir().join("more.yaml");
    std::fs::write(&file, &more).unwrap();
    let out = d.ctl(&["apply", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("committed version 1.2"), "{stdout}");
    assert!(
        stdout.contains("now listening on tcp 127.0.0.1:7001 (second)"),
        "{stdout}"
    );

    assert_eq!(greeting(&ns, "127.0.0.1:7001").as_deref(), Some("e1"));
    let mut reader = BufReader::new(&before);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "e1\n");
    (&before).write_all(b"still here\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "still here\n");

    let versions = String::from_utf8_lossy(&d.ctl(&["versions"]).stdout).into_owned();
    assert!(
        versions.contains("1.1-") && versions.contains("1.2-"),
        "{versions}"
    );
    // The same content again is no new version.
    let again = d.ctl(&["apply", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no change"));
    assert_eq!(version_n(&d), 2);
}

#[test]
fn sighup_reloads_the_config_file_and_refuses_a_broken_one() {
    let ns = Netns::new("ctl");
    let mut d = Tandemd::start(&ns, CONFIG);
    let _b = backend(&ns, d.dir());

    std::fs::write(
        d.config_path(),
        CONFIG.replace("127.0.0.1:7000", "127.0.0.1:7005"),
    )
    .unwrap();
    d.proc().signal(Signal::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        (version_n(&d) == 2).then_some(())
    });
    assert_eq!(greeting(&ns, "127.0.0.1:7005").as_deref(), Some("e1"));
    assert_eq!(greeting(&ns, "127.0.0.1:7000"), None);

    std::fs::write(d.config_path(), "schema: 1\nnode: [\n").unwrap();
    d.proc().signal(Signal::SIGHUP);
    wait_for("the refusal to be logged", Duration::from_secs(10), || {
        d.log().contains("SIGHUP: config refused").then_some(())
    });
    assert_eq!(version_n(&d), 2);
    assert_eq!(greeting(&ns, "127.0.0.1:7005").as_deref(), Some("e1"));
}

#[test]
fn applied_versions_survive_a_restart_until_the_file_itself_changes() {
    let ns = Netns::new("ctl");
    let d = Tandemd::start(&ns, CONFIG);
    let applied = d.dir().join("applied.yaml");
    std::fs::write(&applied, CONFIG.replace("127.0.0.1:7000", "127.0.0.1:7007")).unwrap();
    assert!(
        d.ctl(&["apply", applied.to_str().unwrap()])
            .status
            .success()
    );

    // A crash and restart on the same state runs the applied version, not the file.
    let dir = d.crash();
    let d = Tandemd::start_in(&ns, dir);
    let _b = backend(&ns, d.dir());
    assert_eq!(version_n(&d), 2);
    assert_eq!(greeting(&ns, "127.0.0.1:7007").as_deref(), Some("e1"));

    // Editing the file and restarting imports the file.
    std::fs::write(
        d.config_path(),
        CONFIG.replace("127.0.0.1:7000", "127.0.0.1:7008"),
    )
    .unwrap();
    let dir = d.crash();
    let d = Tandemd::start_in(&ns, dir);
    assert_eq!(version_n(&d), 3);
    assert_eq!(greeting(&ns, "127.0.0.1:7008").as_deref(), Some("e1"));
}

#[test]
fn a_config_that_does_not_validate_prevents_the_start_with_its_errors() {
    let ns = Netns::new("ctl");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tandem.yaml");
    std::fs::write(&config, CONFIG.replace("protocol: tcp", "protocol: tcpp")).unwrap();
    let out = ns
        .command(bins::tandemd())
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--control-socket")
        .arg(dir.path().join("sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:13:17:", config.display()))
            && stderr.contains("unknown variant `tcpp`"),
        "{stderr}"
    );
}

#[test]
fn metrics_need_an_allowed_source_or_the_scrape_token() {
    let ns = Netns::new("ctl");
    let _d = Tandemd::start(&ns, CONFIG);
    // From loopback (allowed) the counters come back.
    let out = ns.run("curl", &["-sk", "https://127.0.0.1:9443/metrics"]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("tandem_service_connections_total{service=\"echo\"}"),
        "{body}"
    );

    // From another address of the box, outside the allowed networks: token needed.
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    ns.ip(&["link", "set", "d0", "up"]);
    ns.ip(&["link", "set", "d1", "up"]);
    let code = |extra: &[&str]| {
        let mut args = vec![
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "192.0.2.1",
        ];
        args.extend_from_slice(extra);
        args.push("https://127.0.0.1:9443/metrics");
        String::from_utf8_lossy(&ns.run("curl", &args).stdout).into_owned()
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(code(&["-H", "Authorization: Bearer wrong"]), "403");
    // sha256("test") is the configured token hash.
    assert_eq!(code(&["-H", "Authorization: Bearer test"]), "200");
}

#[test]
fn the_control_socket_refuses_users_other_than_root() {
    let ns = Netns::new("ctl");
    let d = Tandemd::start(&ns, CONFIG);
    // Even with the socket file opened up, a non-root peer is refused by its credentials.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bins::tandemctl())
        .arg("--socket")
        .arg(d.socket())
        .args(["status", "--json"])
        .output()
        .expect("setpriv (util-linux) runs tandemctl as nobody");
    assert!(
        !out.status.success(),
        "nobody got an answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("the refusal to be logged", Duration::from_secs(5), || {
        d.log()
            .contains("refused a connection from a non-root user")
            .then_some(())
    });
}

#[test]
fn tandemd_raises_a_low_open_files_limit_it_inherits() {
    // A box's init passes the kernel's default on (1,024): that would cap it at a few hundred
    // clients.
    let ns = Netns::new("nofile");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tandem.yaml"), CONFIG).unwrap();
    let mut d = Tandemd::start_wrapped(&ns, dir, &["prlimit", "--nofile=1024:4096", "--"]);
    let pid = d.proc().pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let field = |n: usize| -> u64 {
        line.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no limit in {line:?}"))
    };
    let (soft, hard) = (field(3), field(4));
    // As root with CAP_SYS_RESOURCE (the appliance) both go up to 1,048,576; without it (a
    // container, this lab on some machines) the soft limit goes up to the hard one.
    assert!(
        soft >= 4096 && soft == hard,
        "tandemd kept a low limit: {line}\n{}",
        d.log()
    );
    assert!(d.log().contains("open files limit raised"), "{}", d.log());
}
