//! The sync link between two real tandemd boxes (issue 4): lb-a and lb-b in network namespaces
//! (`tandem_lab::pair`), each pinning the other's certificate, with a client and two backends.
//! Each test builds its own lab with its own namespaces.
//!
//! Deadlines are generous (these tests share two cores with the rest of CI): where the
//! requirement is one second the deadline is five, and the measured figure is printed.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tandem_lab::pair::{BOX_ADDR, BOX_NAME, HTTP_PORT, SYNC_PORT, SyncPins, TCP_PORT, VIP, WEB};
use tandem_lab::{Netns, PairLab, PairOptions, Tandemd, wait_for};

const A: usize = 0;
const B: usize = 1;
/// A TCP echo service on the VIP with source-address persistence (pool `tcp`).
const STICKY_PORT: u16 = 7002;
/// Client addresses for the source-persistence clients (besides the client's own).
const CLIENTS: [&str; 8] = [
    "10.0.0.21",
    "10.0.0.22",
    "10.0.0.23",
    "10.0.0.24",
    "10.0.0.25",
    "10.0.0.26",
    "10.0.0.27",
    "10.0.0.28",
];

/// The crash deadline: lb-b's Master_Down_Interval at 100 ms is ~0.36 s; allow for polling
/// through tandemctl on a loaded machine.
const TAKEOVER: Duration = Duration::from_secs(5);
/// Connecting the link: a dial with backoff from 100 ms, TLS, hellos, a snapshot.
const CONNECT: Duration = Duration::from_secs(20);

/// The shared part every test runs: `web` (HTTP on the VIP, cookie persistence), `sticky`
/// (TCP, source persistence), `secure` (HTTPS, for session tickets), over pool `web` (the
/// backends' HTTP) and the harness's `tcp`, and `checked` (the same HTTP servers with a
/// health check on `/health`).
struct Shared {
    /// `state:` of web/web1.
    web1_state: &'static str,
    /// Extra services (to make versions differ), each a TCP service on the VIP.
    extra_ports: Vec<u16>,
    /// `shared.users`: (name, argon2id hash), each an admin; none by default.
    admins: Vec<(String, String)>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            web1_state: "enabled",
            extra_ports: Vec::new(),
            admins: Vec::new(),
        }
    }

    fn with_ports(ports: &[u16]) -> Shared {
        Shared {
            extra_ports: ports.to_vec(),
            ..Shared::new()
        }
    }

    fn options(&self, pins: &SyncPins, tls: &Path) -> PairOptions {
        let mut services = format!(
            "    - name: web
      listen: '{VIP}:80'
      protocol: http
      pool: web
      persistence: {{ cookie: {{ name: SRV, timeout: 10m }} }}
    - name: sticky
      listen: '{VIP}:{STICKY_PORT}'
      protocol: tcp
      pool: tcp
      persistence: {{ source: {{ mask_v4: 32, timeout: 10m }} }}
    - name: secure
      listen: '{VIP}:443'
      protocol: https
      pool: web
      tls: {{ certificates: [lab], min_version: '1.3', http2: false }}
"
        );
        for p in &self.extra_ports {
            services += &format!(
                "    - {{ name: extra{p}, listen: '{VIP}:{p}', protocol: tcp, pool: tcp }}\n"
            );
        }
        let pools = format!(
            "    - name: web
      servers:
        - {{ id: web1, address: '{w1}:{HTTP_PORT}', state: {s1} }}
        - {{ id: web2, address: '{w2}:{HTTP_PORT}' }}
    - name: checked
      health_check: {{ interval: 200ms, timeout: 150ms, rise: 2, fall: 2, http: {{ path: /health }} }}
      servers:
        - {{ id: web1, address: '{w1}:{HTTP_PORT}' }}
        - {{ id: web2, address: '{w2}:{HTTP_PORT}' }}
",
            w1 = WEB[0],
            w2 = WEB[1],
            s1 = self.web1_state,
        );
        let mut certificates = format!(
            "  certificates:\n    - {{ name: lab, cert_file: {d}/lab.crt, key_file: {d}/lab.key }}\n",
            d = tls.display()
        );
        if !self.admins.is_empty() {
            certificates += "  users:\n";
            for (name, hash) in &self.admins {
                certificates +=
                    &format!("    - {{ name: {name}, role: admin, password_hash: '{hash}' }}\n");
            }
        }
        PairOptions {
            sync: Some(pins.clone()),
            http_backends: true,
            services_extra: services,
            pools_extra: pools,
            shared_extra: certificates,
            metrics_allow: Some("127.0.0.1/32".into()),
            ..Default::default()
        }
    }
}

/// What a test holds: the lab, the pins, the TLS certificate's directory and a directory for
/// config files to apply.
struct SyncLab {
    lab: PairLab,
    pins: SyncPins,
    tls: tempfile::TempDir,
    files: tempfile::TempDir,
}

impl SyncLab {
    /// Both boxes running with `shared` (lb-a active) and the link up with the same config
    /// on both.
    fn running(shared: &Shared, tweak: impl FnOnce(&mut PairOptions)) -> SyncLab {
        let pins = SyncPins::generate();
        let tls = tempfile::tempdir().expect("temp dir for the service certificate");
        service_certificate(tls.path());
        let mut options = shared.options(&pins, tls.path());
        tweak(&mut options);
        let lab = PairLab::running(options);
        let s = SyncLab {
            lab,
            pins,
            tls,
            files: tempfile::tempdir().expect("temp dir for config files"),
        };
        let took = s.wait_synced("at start");
        eprintln!(
            "link up and config the same on both boxes {took:?} after lb-a was active (listener: {})",
            BOX_NAME[s.pins.listener()]
        );
        s
    }

    fn sync(&self, i: usize) -> Value {
        let status = self.lab.daemon(i).status();
        assert!(
            status["sync"].is_object(),
            "{} runs no sync link: {status:#}",
            BOX_NAME[i]
        );
        status["sync"].clone()
    }

    fn version(&self, i: usize) -> Value {
        self.lab.daemon(i).status()["config"]["version"].clone()
    }

    /// Waits until both boxes are connected, one writing and the other reading, and run the
    /// same version; returns how long.
    fn wait_synced(&self, what: &str) -> Duration {
        let start = Instant::now();
        wait_for(
            &format!("the link up and the same config ({what})"),
            CONNECT,
            || {
                let (a, b) = (self.sync(A), self.sync(B));
                let same = a["connected"] == true
                    && b["connected"] == true
                    && a["config"]["same"] == true
                    && b["config"]["same"] == true
                    && self.version(A) == self.version(B);
                // One box writes, the other reads: state flows.
                let flowing = (a["direction"] == "writer" && b["direction"] == "reader")
                    || (a["direction"] == "reader" && b["direction"] == "writer");
                (same && flowing).then_some(())
            },
        );
        start.elapsed()
    }

    /// `tandemctl apply` of `shared` on box `i`.
    fn apply(&self, i: usize, shared: &Shared) -> Output {
        let options = shared.options(&self.pins, self.tls.path());
        let file = self
            .files
            .path()
            .join(format!("{}-{}.yaml", BOX_NAME[i], unique_stamp()));
        std::fs::write(&file, options.config(i)).expect("write the config to apply");
        self.lab
            .daemon(i)
            .ctl(&["apply", file.to_str().expect("utf-8 path")])
    }

    fn apply_ok(&self, i: usize, shared: &Shared) {
        let out = self.apply(i, shared);
        assert!(
            out.status.success(),
            "apply on {} failed: {}{}",
            BOX_NAME[i],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `tandemctl apply` of `shared` on lb-a, then waits up to `within` for lb-b to run the
    /// new version; prints how long each took (under `tag`) and returns the version.
    fn apply_on_a_and_wait_for_b(&self, tag: &str, shared: &Shared, within: Duration) -> Value {
        let before = self.version(B);
        let start = Instant::now();
        self.apply_ok(A, shared);
        let applied = start.elapsed();
        let want = self.version(A);
        assert_ne!(want, before, "the apply made no new version");
        let took = wait_for("lb-b to run lb-a's new version", within, || {
            (self.version(B) == want).then(|| start.elapsed())
        });
        eprintln!(
            "{tag} apply on lb-a returned after {applied:?}; lb-b ran version {} {took:?} after the apply began ({:?} after it returned)",
            version_text(&want),
            took.saturating_sub(applied)
        );
        want
    }

    /// `tandemctl versions` of box `i`.
    fn versions(&self, i: usize) -> String {
        let out = self.lab.daemon(i).ctl(&["versions"]);
        assert!(out.status.success(), "tandemctl versions failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn unique_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `epoch.n-hash8` as `tandemctl versions` prints a version.
fn version_text(v: &Value) -> String {
    let hash = v["hash"].as_str().unwrap_or("");
    format!("{}.{}-{}", v["epoch"], v["n"], &hash[..hash.len().min(8)])
}

/// A certificate for the HTTPS service (both boxes serve it: it is in the shared config).
fn service_certificate(dir: &Path) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(vec!["lab.example".to_owned()]).expect("certificate params");
    let cert = params.self_signed(&key).expect("a certificate");
    std::fs::write(dir.join("lab.crt"), cert.pem()).expect("write certificate");
    std::fs::write(dir.join("lab.key"), key.serialize_pem()).expect("write key");
}

/// The servers in box `i`'s status, as `pool/id` → the server's JSON.
fn server(lab: &PairLab, i: usize, pool: &str, id: &str) -> Value {
    let status = lab.daemon(i).status();
    status["dataplane"]["servers"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["pool"] == pool && s["id"] == id)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no server {pool}/{id} on {}: {status:#}", BOX_NAME[i]))
}

fn has_service(lab: &PairLab, i: usize, name: &str) -> bool {
    lab.daemon(i).status()["dataplane"]["services"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["name"] == name))
}

/// An HTTP GET through the VIP from the client with cookie jar `jar`: the server's name.
fn http_get(client: &Netns, jar: &Path) -> Option<String> {
    let jar = jar.to_str().expect("utf-8 path");
    let out = client.run(
        "curl",
        &[
            "-s",
            "--max-time",
            "3",
            "-b",
            jar,
            "-c",
            jar,
            &format!("http://{VIP}/"),
        ],
    );
    let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !body.is_empty()).then_some(body)
}

/// Connects to the sticky TCP service from source address `from`: the server's greeting.
fn sticky_server(client: &Netns, from: &str) -> Option<String> {
    let from: std::net::IpAddr = from.parse().ok()?;
    client.enter(move || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
        let to: SocketAddr = format!("{VIP}:{STICKY_PORT}").parse().ok()?;
        socket
            .connect_timeout(&to.into(), Duration::from_secs(2))
            .ok()?;
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).ok()?;
        let _ = stream.write_all(b"bye\n");
        let line = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
        (!line.is_empty()).then_some(line)
    })
}

/// A TLS 1.3 connection to the HTTPS service with `openssl s_client`, saving the session to
/// `sess_out` and resuming `sess_in` if given. Returns whether the session was resumed.
fn tls_session(client: &Netns, sess_out: &Path, sess_in: Option<&Path>) -> bool {
    let mut cmd = client.command("openssl");
    cmd.args(["s_client", "-connect", &format!("{VIP}:443")])
        .args(["-servername", "lab.example", "-tls1_3", "-ign_eof"])
        .arg("-sess_out")
        .arg(sess_out);
    if let Some(sess_in) = sess_in {
        cmd.arg("-sess_in").arg(sess_in);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    // A request whose answer ends the connection: the session ticket (sent after the
    // handshake in TLS 1.3) has arrived by then.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET / HTTP/1.1\r\nHost: lab.example\r\nConnection: close\r\n\r\n")
        .expect("write the request");
    let out = child.wait_with_output().expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HTTP/1.1 200"),
        "no answer over TLS: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("Reused, TLSv1.3") {
        true
    } else {
        assert!(text.contains("New, TLSv1.3"), "{text}");
        false
    }
}

// (a) ---------------------------------------------------------------------------------------

#[test]
fn a_config_applied_on_the_active_runs_on_the_passive_and_the_passive_refuses_edits() {
    let s = SyncLab::running(&Shared::new(), |_| {});
    let lab = &s.lab;

    // Each box shows its own fingerprint (what the other pins) and the peer.
    for i in [A, B] {
        let sync = s.sync(i);
        assert_eq!(sync["fingerprint"], s.pins.fingerprints[i], "{sync:#}");
        assert_eq!(
            sync["peer_fingerprint"],
            s.pins.fingerprints[1 - i],
            "{sync:#}"
        );
        assert_eq!(sync["peer"]["node"], BOX_NAME[1 - i], "{sync:#}");
        assert_eq!(
            sync["peer_address"],
            format!("{}:{SYNC_PORT}", BOX_ADDR[1 - i])
        );
    }
    assert_eq!(s.sync(A)["direction"], "writer");
    assert_eq!(s.sync(B)["direction"], "reader");

    // A commit on the active runs on the passive, in its dataplane too.
    let want =
        s.apply_on_a_and_wait_for_b("(a)", &Shared::with_ports(&[7100]), Duration::from_secs(5));
    assert!(
        has_service(lab, B, "extra7100"),
        "lb-b's dataplane does not run the new service"
    );
    assert!(
        s.versions(B).contains(&version_text(&want)),
        "lb-b's store lacks the version"
    );

    // An apply on the passive is refused, naming the active box; nothing changes there.
    let out = s.apply(B, &Shared::with_ports(&[7100, 7101]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the passive accepted an edit: {err}");
    assert!(
        err.contains("lb-b is the passive box") && err.contains("active box lb-a"),
        "the refusal does not name the active box: {err}"
    );
    eprintln!("(a) refusal on lb-b: {}", err.trim());
    assert_eq!(s.version(B), want);
    assert!(!has_service(lab, B, "extra7101"));

    // The table and /metrics show the link.
    let table = String::from_utf8_lossy(&lab.daemon(B).ctl(&["status"]).stdout).into_owned();
    assert!(
        table.contains(&format!("fingerprint {}", s.pins.fingerprints[B])),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "sync  peer lb-a {}:{SYNC_PORT}  connected",
            BOX_ADDR[A]
        )),
        "{table}"
    );
    assert!(table.contains("  same"), "{table}");
    // /metrics serves the link's status of at most 200 ms ago: poll a little.
    let scrape = || {
        String::from_utf8_lossy(
            &lab.boxes[B]
                .run(
                    "curl",
                    &["-sk", "--max-time", "5", "https://127.0.0.1:9443/metrics"],
                )
                .stdout,
        )
        .into_owned()
    };
    let expected = [
        "tandem_sync_config_same 1".to_owned(),
        format!(
            "tandem_sync_info{{fingerprint=\"{}\",peer_fingerprint=\"{}\",peer=\"{}:{SYNC_PORT}\"}} 1",
            s.pins.fingerprints[B], s.pins.fingerprints[A], BOX_ADDR[A]
        ),
        format!(
            "tandem_sync_config_version{{box=\"peer\",epoch=\"{}\",hash=\"{}\"}} {}",
            want["epoch"],
            &want["hash"].as_str().unwrap_or("")[..8],
            want["n"]
        ),
    ];
    // Poll until every expected line is there: `config_same 1` alone also held before the
    // apply (both boxes on the first version), so it cannot tell a fresh scrape from an old one.
    let has = |m: &str, line: &str| m.lines().any(|l| l == line);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = scrape();
    while !expected.iter().all(|line| has(&metrics, line)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        metrics = scrape();
    }
    assert!(
        metrics.lines().any(|l| l == "tandem_sync_peer_connected 1"),
        "/metrics lacks the link: {}",
        &metrics[..metrics.len().min(2000)]
    );
    for line in &expected {
        assert!(
            has(&metrics, line),
            "/metrics lacks {line:?}:\n{}\nlb-b's link now: {:#}",
            metrics
                .lines()
                .filter(|l| l.starts_with("tandem_sync"))
                .collect::<Vec<_>>()
                .join("\n"),
            s.sync(B)
        );
    }
    assert!(
        metrics.contains("tandem_sync_table_entries{table=\"persistence\"}"),
        "{metrics}"
    );
}

// (b) ---------------------------------------------------------------------------------------

#[test]
fn pinned_clients_keep_their_server_across_a_kill_9_failover_and_the_failback() {
    // preempt_delay: lb-a, back after the crash, takes the VIP over only once the link has
    // brought it lb-b's persistence (as an operator sets it; docs/sync.md).
    let mut s = SyncLab::running(&Shared::new(), |o| o.preempt_delay = Some("4s".into()));
    for c in CLIENTS {
        s.lab
            .client
            .ip(&["addr", "add", &format!("{c}/24"), "dev", "eth0"]);
    }
    let jars: Vec<PathBuf> = (0..4)
        .map(|k| s.files.path().join(format!("jar{k}")))
        .collect();

    // Pin: cookies for four HTTP clients, source entries for eight TCP clients.
    let cookie_servers: Vec<String> = jars
        .iter()
        .map(|j| http_get(&s.lab.client, j).expect("an HTTP answer through lb-a"))
        .collect();
    let sticky: Vec<String> = CLIENTS
        .iter()
        .map(|c| sticky_server(&s.lab.client, c).expect("a TCP answer through lb-a"))
        .collect();
    eprintln!("(b) pinned: cookies {cookie_servers:?}, sources {sticky:?}");
    assert!(
        sticky.iter().any(|x| x == "web1") && sticky.iter().any(|x| x == "web2"),
        "the clients should be spread over both servers: {sticky:?}"
    );
    // The same again through lb-a: persistence works at all.
    for (j, want) in jars.iter().zip(&cookie_servers) {
        assert_eq!(&http_get(&s.lab.client, j).unwrap(), want);
    }

    // The passive holds the source entries before the crash.
    let start = Instant::now();
    wait_for(
        "lb-b to hold the persistence entries",
        Duration::from_secs(5),
        || (s.sync(B)["tables"]["persistence"].as_u64()? >= CLIENTS.len() as u64).then_some(()),
    );
    eprintln!("(b) persistence on lb-b within {:?}", start.elapsed());

    let check = |lab: &PairLab, order: &[usize], when: &str| {
        for (j, want) in jars.iter().zip(&cookie_servers) {
            assert_eq!(
                http_get(&lab.client, j).as_ref(),
                Some(want),
                "{when}: a cookie client moved"
            );
        }
        for &k in order {
            assert_eq!(
                sticky_server(&lab.client, CLIENTS[k]).as_ref(),
                Some(&sticky[k]),
                "{when}: source client {} moved",
                CLIENTS[k]
            );
        }
    };

    // kill -9 of the active (and its link down: a SIGKILL leaves the VIP on its interface).
    let dir = s.lab.crash(A);
    let took = s.lab.wait_active(B, TAKEOVER, "lb-b after lb-a was killed");
    eprintln!("(b) lb-b active {took:?} after the kill");
    // Another order than the pinning's, so that a fresh round robin could not give the
    // same answers by chance.
    let rotated: Vec<usize> = (0..CLIENTS.len())
        .map(|k| (k + 1) % CLIENTS.len())
        .collect();
    check(&s.lab, &rotated, "after the failover");

    // lb-a comes back: the link brings it lb-b's entries, then it preempts.
    s.lab.set_link(A, true);
    s.lab.restart(A, dir);
    let start = Instant::now();
    wait_for(
        "lb-a to receive the persistence entries from lb-b",
        Duration::from_secs(10),
        || (s.sync(A)["tables"]["persistence"].as_u64()? >= CLIENTS.len() as u64).then_some(()),
    );
    eprintln!(
        "(b) lb-a holds the entries {:?} after its restart",
        start.elapsed()
    );
    let took = s
        .lab
        .wait_active(A, Duration::from_secs(15), "lb-a preempts after its delay");
    eprintln!("(b) lb-a active again {took:?} after its restart");
    let reversed: Vec<usize> = (0..CLIENTS.len()).rev().collect();
    check(&s.lab, &reversed, "after the failback");
}

// (c) ---------------------------------------------------------------------------------------

#[test]
fn a_drained_and_a_down_server_stay_so_on_the_new_active() {
    let mut s = SyncLab::running(&Shared::new(), |_| {});
    // web1 drained by a config commit on the active; web2's health check fails.
    s.apply_ok(
        A,
        &Shared {
            web1_state: "drain",
            ..Shared::new()
        },
    );
    std::fs::write(s.lab.fail_health_file("web2"), "").expect("fail web2's health");
    for i in [A, B] {
        wait_for(
            &format!("web/web1 drained and checked/web2 down on {}", BOX_NAME[i]),
            Duration::from_secs(10),
            || {
                (server(&s.lab, i, "web", "web1")["admin"] == "drain"
                    && server(&s.lab, i, "checked", "web2")["health"] == "down")
                    .then_some(())
            },
        );
    }
    s.wait_synced("after the drain");

    let dir = s.lab.crash(A);
    let took = s.lab.wait_active(B, TAKEOVER, "lb-b after lb-a was killed");
    // Read at once after the takeover.
    let web1 = server(&s.lab, B, "web", "web1");
    let web2 = server(&s.lab, B, "checked", "web2");
    eprintln!(
        "(c) lb-b active {took:?} after the kill: web/web1 {} {}, checked/web2 {} {}",
        web1["admin"], web1["health"], web2["admin"], web2["health"]
    );
    assert_eq!(web1["admin"], "drain", "{web1:#}");
    assert_eq!(web2["health"], "down", "{web2:#}");
    // New clients (no cookie) go to web2 only.
    for k in 0..6 {
        let jar = s.files.path().join(format!("fresh{k}"));
        assert_eq!(
            http_get(&s.lab.client, &jar).as_deref(),
            Some("web2"),
            "a new client reached the drained server"
        );
    }
    drop(dir);
}

// (d) ---------------------------------------------------------------------------------------

#[test]
fn a_tls_session_from_the_old_active_resumes_on_the_new_active() {
    let mut s = SyncLab::running(&Shared::new(), |_| {});
    wait_for(
        "lb-b to have received a snapshot (with the ticket keys)",
        Duration::from_secs(10),
        || s.sync(B)["last_snapshot"].is_object().then_some(()),
    );
    let first = s.files.path().join("first.sess");
    let again = s.files.path().join("again.sess");
    let after = s.files.path().join("after.sess");
    assert!(
        !tls_session(&s.lab.client, &first, None),
        "a fresh session was resumed"
    );
    // Resumption works through lb-a itself.
    assert!(
        tls_session(&s.lab.client, &again, Some(&first)),
        "lb-a does not resume its own session"
    );

    let _dir = s.lab.crash(A);
    let took = s.lab.wait_active(B, TAKEOVER, "lb-b after lb-a was killed");
    let resumed = tls_session(&s.lab.client, &after, Some(&first));
    eprintln!("(d) lb-b active {took:?} after the kill; lb-a's session resumed on lb-b: {resumed}");
    assert!(resumed, "lb-a's session ticket was not accepted by lb-b");
}

// (e) ---------------------------------------------------------------------------------------

#[test]
fn the_passive_offline_during_three_commits_catches_up_on_reconnect() {
    let mut s = SyncLab::running(&Shared::new(), |_| {});
    let dir = s.lab.crash(B);
    wait_for("lb-a to see the link down", Duration::from_secs(15), || {
        (s.sync(A)["connected"] == false).then_some(())
    });
    let mut made = Vec::new();
    for ports in [&[7100][..], &[7100, 7101], &[7100, 7101, 7102]] {
        s.apply_ok(A, &Shared::with_ports(ports));
        made.push(version_text(&s.version(A)));
    }
    eprintln!("(e) committed on lb-a while lb-b was off: {made:?}");

    s.lab.set_link(B, true);
    let start = Instant::now();
    s.lab.restart(B, dir);
    let took = s.wait_synced("lb-b back");
    eprintln!(
        "(e) lb-b runs lb-a's head {:?} after its restart began ({took:?} after it answered)",
        start.elapsed()
    );
    let versions = s.versions(B);
    for v in &made {
        assert!(versions.contains(v.as_str()), "lb-b lacks {v}:\n{versions}");
    }
    assert!(has_service(&s.lab, B, "extra7102"));
    assert_eq!(s.lab.role(B), "passive");
}

// (f) ---------------------------------------------------------------------------------------

#[test]
fn a_third_box_with_a_valid_but_unpinned_certificate_is_refused_and_counted() {
    let s = SyncLab::running(&Shared::new(), |_| {});
    let listener = s.pins.listener();
    // The third box must dial, so its fingerprint must be the smaller one.
    let (cert, key, fp) = (0..64)
        .map(|k| s.pins.other(&format!("lb-c{k}")))
        .find(|(_, _, fp)| *fp < s.pins.fingerprints[listener])
        .expect("a certificate with a smaller fingerprint");
    let ns = Netns::new("pc");
    s.lab.switch.attach(&ns, "eth0", "10.0.0.4/24");
    let config = format!(
        "\
schema: 1
node:
  name: lb-c
  management:
    listen: 127.0.0.1:9443
  sync:
    listen: 10.0.0.4
    peer: {peer}
    port: {SYNC_PORT}
    peer_fingerprint: {pinned}
    cert_file: {cert}
    key_file: {key}
shared:
  services:
    - {{ name: tcp, listen: '10.0.0.4:{TCP_PORT}', protocol: tcp, pool: tcp }}
  pools:
    - name: tcp
      servers:
        - {{ id: web1, address: '{w1}:{TCP_PORT}' }}
",
        peer = BOX_ADDR[listener],
        pinned = s.pins.fingerprints[listener],
        cert = cert.display(),
        key = key.display(),
        w1 = WEB[0],
    );
    let before = s.sync(listener)["refused_peers"].as_u64().unwrap_or(0);
    let third = Tandemd::start(&ns, &config);
    assert_eq!(third.status()["sync"]["fingerprint"], fp);
    let start = Instant::now();
    let refused = wait_for(
        "the listener to count the third box's refusal",
        Duration::from_secs(15),
        || {
            let n = s.sync(listener)["refused_peers"].as_u64()?;
            (n > before).then_some(n)
        },
    );
    eprintln!(
        "(f) {} refused lb-c ({}) within {:?}; refused_peers {before} -> {refused}",
        BOX_NAME[listener],
        fp,
        start.elapsed()
    );
    assert_eq!(third.status()["sync"]["connected"], false);
    assert!(
        s.lab
            .daemon(listener)
            .log()
            .contains("refused a connection"),
        "the refusal is not logged"
    );
    // The pair's own link is unaffected.
    s.wait_synced("with the third box knocking");
    drop(third);
}

// (g) ---------------------------------------------------------------------------------------

#[test]
fn after_a_partition_the_actives_history_wins_and_the_other_branch_is_kept() {
    let s = SyncLab::running(&Shared::new(), |_| {});
    // The switch drops everything between the two boxes: lb-b hears no adverts and becomes
    // active too; both still serve clients.
    s.lab.partition(true);
    // Its sync link follows the heartbeat's role: only then may it commit.
    wait_for("lb-b to become active in the partition", TAKEOVER, || {
        (s.lab.role(B) == "active" && s.sync(B)["role"] == "active").then_some(())
    });
    // Both commit.
    s.apply_ok(B, &Shared::with_ports(&[7200]));
    let lost = version_text(&s.version(B));
    s.apply_ok(A, &Shared::with_ports(&[7100]));
    let won = version_text(&s.version(A));
    eprintln!("(g) in the partition lb-a committed {won}, lb-b committed {lost}");

    s.lab.partition(false);
    let start = Instant::now();
    s.lab
        .wait_active(A, Duration::from_secs(10), "lb-a after the partition");
    let took = s.wait_synced("after the partition");
    eprintln!(
        "(g) healed: same config on both {took:?} after lb-a was the only active ({:?} after the cable)",
        start.elapsed()
    );
    assert_eq!(version_text(&s.version(B)), won);
    assert!(has_service(&s.lab, B, "extra7100"));
    assert!(!has_service(&s.lab, B, "extra7200"));
    for i in [A, B] {
        let versions = s.versions(i);
        let kept = versions
            .split_once("kept branch")
            .map(|(_, k)| k.to_owned())
            .unwrap_or_default();
        assert!(
            kept.contains(lost.as_str()),
            "{} does not list lb-b's branch with {lost}:\n{versions}",
            BOX_NAME[i]
        );
        // Out of the history: listed only under the kept branch.
        let history = versions.split("kept branch").next().unwrap_or("");
        assert!(!history.contains(lost.as_str()), "{versions}");
        assert!(
            s.sync(i)["config"]["branches_kept"].as_u64() >= Some(1),
            "{:#}",
            s.sync(i)
        );
    }
    eprintln!("(g) lb-b's versions after healing:\n{}", s.versions(B));
}

// SIGTERM ------------------------------------------------------------------------------------

#[test]
fn a_graceful_stop_hands_the_vip_over_then_says_goodbye_on_the_link() {
    let mut s = SyncLab::running(&Shared::new(), |_| {});
    let mut a = s.lab.take(A);
    let start = Instant::now();
    let code = a.proc().stop(Duration::from_secs(30));
    let stopped = start.elapsed();
    assert_eq!(code, Some(0), "tandemd did not exit cleanly:\n{}", a.log());
    s.lab
        .wait_active(B, TAKEOVER, "lb-b after lb-a's graceful stop");
    // The link ended with lb-a's goodbye, not lb-b's dead-peer timeout.
    let sync = s.sync(B);
    eprintln!(
        "(SIGTERM) lb-a stopped in {stopped:?}; lb-b's link: connected {}, last error {}",
        sync["connected"], sync["last_error"]
    );
    assert_eq!(sync["connected"], false, "{sync:#}");
    assert!(
        sync["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("shutting down")),
        "{sync:#}"
    );
    let log = a.log();
    let handover = log
        .find("handing the VIPs over")
        .expect("the handover is logged");
    let stopping = log
        .find("stopping: listeners closed")
        .expect("the stop is logged");
    assert!(
        handover < stopping,
        "the VIPs went after the dataplane:\n{log}"
    );
}

// Users ---------------------------------------------------------------------------------------

/// An argon2id hash of `password` from `tandemctl hash-password` (which reads it on stdin).
fn hash_password(password: &str) -> String {
    let mut child = std::process::Command::new(tandem_lab::bins::tandemctl())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandemctl hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write the password");
    let out = child.wait_with_output().expect("tandemctl hash-password");
    assert!(
        out.status.success(),
        "tandemctl hash-password failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        hash.starts_with("$argon2id$"),
        "not an argon2id hash: {hash}"
    );
    hash
}

/// A reply of box `i`'s console to curl from the client.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// `curl ARGS` from the client against box `i`'s console (`https://BOX:9443PATH`, self-signed:
/// -k), with cookie jar `jar` read and written.
fn console(client: &Netns, dir: &Path, jar: &Path, i: usize, path: &str, args: &[&str]) -> Reply {
    let head = dir.join("head");
    let body = dir.join("body");
    let _ = std::fs::remove_file(&head);
    let _ = std::fs::remove_file(&body);
    let out = client
        .command("curl")
        .args(["-sk", "--max-time", "20", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .arg("-b")
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(format!("https://{}:9443{path}", BOX_ADDR[i]))
        .output()
        .expect("run curl");
    Reply {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

/// The login form's CSRF token in the page.
fn login_csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF token in the login page:\n{html}"))
        + marker.len();
    html[at..at + html[at..].find('"').expect("end of the token")].to_owned()
}

/// GET /login (for the login cookie and its token), then POST /login with a fresh jar on box
/// `i`'s console: the POST's reply.
fn console_login(client: &Netns, dir: &Path, jar: &Path, i: usize, user: &str, pw: &str) -> Reply {
    let _ = std::fs::remove_file(jar);
    let page = console(client, dir, jar, i, "/login", &[]);
    assert_eq!(
        page.status, 200,
        "GET /login on {}: {}",
        BOX_NAME[i], page.body
    );
    let csrf = login_csrf(&page.body);
    console(
        client,
        dir,
        jar,
        i,
        "/login",
        &[
            "--data-urlencode",
            &format!("username={user}"),
            "--data-urlencode",
            &format!("password={pw}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            "next=/",
        ],
    )
}

/// The value of the session cookie a reply sets, if any (and not a clearing one).
fn session_cookie(headers: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let v = value.trim().strip_prefix("__Host-tandem_session=")?;
        let v = v.split(';').next().unwrap_or("").trim();
        (!v.is_empty()).then(|| v.to_owned())
    })
}

#[test]
fn an_admin_created_on_the_active_logs_in_on_the_passive_after_a_kill_9_failover() {
    const USER: &str = "newadmin";
    const PASSWORD: &str = "Sync-Failover-Admin-77";
    let mut s = SyncLab::running(&Shared::new(), |o| o.management_on_box = true);
    let client_dir = s.files.path().join("curl");
    std::fs::create_dir_all(&client_dir).expect("a dir for curl's files");
    let jar = client_dir.join("jar");

    // Before: lb-b's console answers, and the user does not exist there.
    let before = console_login(&s.lab.client, &client_dir, &jar, B, USER, PASSWORD);
    assert_eq!(
        before.status, 401,
        "{USER} could log in on lb-b before it was created: {}{}",
        before.headers, before.body
    );
    assert!(session_cookie(&before.headers).is_none());

    // Create the admin on the active box: a shared config version with the user.
    let hash = hash_password(PASSWORD);
    let with_user = Shared {
        admins: vec![(USER.to_owned(), hash)],
        ..Shared::new()
    };
    let want = s.apply_on_a_and_wait_for_b("(users)", &with_user, Duration::from_secs(10));

    // kill -9 of the active; lb-b takes over.
    let _dir = s.lab.crash(A);
    let took = s.lab.wait_active(B, TAKEOVER, "lb-b after lb-a was killed");
    eprintln!("(users) lb-b active {took:?} after the kill");
    assert_eq!(s.version(B), want, "lb-b lost the version with the user");

    // The new admin logs in on lb-b's console.
    let login = console_login(&s.lab.client, &client_dir, &jar, B, USER, PASSWORD);
    assert_eq!(
        login.status, 303,
        "{USER}'s login on lb-b failed: {}{}",
        login.headers, login.body
    );
    let location = login
        .headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    assert_eq!(location, "/", "{}", login.headers);
    let cookie = session_cookie(&login.headers)
        .unwrap_or_else(|| panic!("no session cookie: {}", login.headers));
    assert!(cookie.len() >= 16, "a short session cookie: {cookie}");
    let status = console(&s.lab.client, &client_dir, &jar, B, "/api/v1/status", &[]);
    assert_eq!(status.status, 200, "{}", status.body);
    let status: Value = serde_json::from_str(&status.body).expect("status is JSON");
    assert_eq!(status["node"], "lb-b", "{status:#}");
    eprintln!(
        "(users) {USER} logged in on lb-b ({} now) and read /api/v1/status",
        s.lab.role(B)
    );

    // A wrong password for that user fails: no session.
    let wrong = console_login(
        &s.lab.client,
        &client_dir,
        &jar,
        B,
        USER,
        "not-the-password",
    );
    assert_eq!(
        wrong.status, 401,
        "a wrong password was accepted: {}{}",
        wrong.headers, wrong.body
    );
    assert!(
        session_cookie(&wrong.headers).is_none(),
        "{}",
        wrong.headers
    );
    let status = console(&s.lab.client, &client_dir, &jar, B, "/api/v1/status", &[]);
    assert_eq!(
        status.status, 401,
        "the failed login's jar reads the API: {}",
        status.body
    );
}

#[test]
fn the_console_drill_hands_over_and_back_asking_the_peer_over_the_link() {
    const PASSWORD: &str = "Sync-Drill-Admin-31";
    let admin = Shared {
        admins: vec![("admin".to_owned(), hash_password(PASSWORD))],
        ..Shared::new()
    };
    let s = SyncLab::running(&admin, |o| o.management_on_box = true);
    let dir = s.files.path().join("curl");
    std::fs::create_dir_all(&dir).expect("a dir for curl's files");
    let jar = dir.join("jar");
    let login = console_login(&s.lab.client, &dir, &jar, A, "admin", PASSWORD);
    assert_eq!(login.status, 303, "{}{}", login.headers, login.body);
    let page = console(&s.lab.client, &dir, &jar, A, "/ha", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = login_csrf(&page.body);

    let start = Instant::now();
    let drill = console(
        &s.lab.client,
        &dir,
        &jar,
        A,
        "/api/v1/ha/drill",
        &["-X", "POST", "-H", &format!("X-CSRF-Token: {csrf}")],
    );
    assert_eq!(drill.status, 200, "{}", drill.body);
    let report: Value = serde_json::from_str(&drill.body).expect("the report is JSON");
    eprintln!(
        "(drill) {:?}: {}",
        start.elapsed(),
        report["message"].as_str().unwrap_or_default()
    );
    assert_eq!(report["ok"], true, "{report:#}");
    let steps = report["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "over and back: {report:#}");
    for (step, (from, to)) in steps.iter().zip([("lb-a", "lb-b"), ("lb-b", "lb-a")]) {
        assert_eq!(
            (step["from"].as_str(), step["to"].as_str()),
            (Some(from), Some(to))
        );
        assert!(step["probes"].as_u64().unwrap() > 20, "{report:#}");
        assert!(step["gap_ms"].as_u64().unwrap() < 1000, "{report:#}");
    }
    // lb-a holds the VIP again, lb-b is passive, and lb-b's audit log says who asked.
    assert_eq!(s.lab.role(A), "active");
    assert_eq!(s.lab.role(B), "passive");
    let log = s.lab.daemon(B).log();
    assert!(
        log.contains("the peer asks this box to hand over")
            && log.contains("failover drill started on lb-a"),
        "lb-b's log:\n{log}"
    );
}
