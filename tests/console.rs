//! The console against a real tandemd pair in namespaces (issue 5's "Show"):
//!
//! ```text
//!   client 10.0.0.1, .5, .6 (curl, Chromium, schemathesis) ────┐
//!   lb-a   10.0.0.2  tandemd, management https://10.0.0.2:9443 ├─ switch
//!   lb-b   10.0.0.3  tandemd, management https://10.0.0.3:9443 │   VIP 10.0.0.100:80 (HTTP)
//!   web    10.0.0.11 web1, 10.0.0.12 web2 (HTTP :8080) ────────┘
//! ```
//!
//! One lab, in order: the security checks over HTTPS with curl (every route of the router's
//! own table without a session, CSRF, roles, logout, login backoff per source, no state change
//! on GET); the browser tests (web-ui/tests, headless Chromium: log in, add a service, drain a
//! server and see its traffic fall to zero in the graph, fail over and see the dashboards
//! follow, roll back); the failover drill through the API; then schemathesis against the
//! OpenAPI document, which must find no 5xx.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tandem_admin::routes::{Access, table};
use tandem_lab::{Netns, Proc, Switch, Tandemd, bins, wait_for};

const PASSWORD: &str = "Console-Test-2024";
const VIP: &str = "10.0.0.100";
const BOX: [&str; 2] = ["10.0.0.2", "10.0.0.3"];
/// The client's address that guesses passwords in the login backoff check.
const GUESSER: &str = "10.0.0.6";
/// The version of schemathesis the test installs under build/ when it is missing.
const SCHEMATHESIS: &str = "4.32.5";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn hash_password() -> String {
    let mut child = Command::new(bins::tandemctl())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A certificate that expires in ten days (the certificates page must warn).
fn expiring_cert() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["soon.example.org".into()]).unwrap();
    let now = std::time::SystemTime::now();
    p.not_before = (now - Duration::from_secs(86_400)).into();
    p.not_after = (now + Duration::from_secs(10 * 86_400)).into();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("        {l}\n")).collect()
}

fn config(i: usize, hash: &str, token_sha256: &str, cert: &(String, String)) -> String {
    format!(
        "\
schema: 1
node:
  name: {name}
  management:
    listen: {addr}:9443
  vrrp:
    routers:
      - {{ router: front, interface: eth0, priority: {prio} }}
shared:
  services:
    - {{ name: web, listen: '{VIP}:80', protocol: http, pool: web }}
  pools:
    - name: web
      health_check: {{ interval: 500ms, timeout: 400ms, rise: 1, fall: 2, http: {{ path: / }} }}
      servers:
        - {{ id: web1, address: '10.0.0.11:8080' }}
        - {{ id: web2, address: '10.0.0.12:8080' }}
  certificates:
    - name: soon
      cert_pem: |
{cert}      key_pem: |
{key}  vrrp:
    routers:
      - {{ name: front, vrid: 51, vips: [{VIP}/24], advert_interval: 100ms }}
  users:
    - {{ name: admin, role: admin, password_hash: '{hash}' }}
    - {{ name: vic, role: viewer, password_hash: '{hash}' }}
  api_tokens:
    - {{ name: lab, user: admin, token_sha256: {token_sha256}, created: 0 }}
  console:
    login_backoff: 10s
",
        name = ["lb-a", "lb-b"][i],
        addr = BOX[i],
        prio = [200, 100][i],
        cert = indent(&cert.0),
        key = indent(&cert.1),
    )
}

struct Curl<'a> {
    ns: &'a Netns,
    dir: &'a Path,
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Curl<'_> {
    /// `curl` from `source` with `args`; the management certificate is self-signed (-k).
    fn run(&self, source: &str, args: &[&str]) -> Reply {
        let head = self.dir.join("head");
        let body = self.dir.join("body");
        let out = self
            .ns
            .command("curl")
            .args(["-sk", "--max-time", "20", "--interface", source, "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&head)
            .args(["-w", "%{http_code}"])
            .args(args)
            .output()
            .expect("run curl");
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        Reply {
            status,
            headers: std::fs::read_to_string(&head).unwrap_or_default(),
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        }
    }
}

fn csrf_of(html: &str) -> String {
    for marker in ["name=\"csrf\" value=\"", "name=\"csrf-token\" content=\""] {
        if let Some(i) = html.find(marker) {
            let rest = &html[i + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no CSRF token in:\n{html}")
}

/// Logs in with a cookie jar; returns the session's CSRF token, or the login's status.
fn login(
    c: &Curl<'_>,
    base: &str,
    jar: &Path,
    source: &str,
    user: &str,
    password: &str,
) -> Result<String, u16> {
    let _ = std::fs::remove_file(jar);
    let jar_s = jar.to_str().unwrap();
    let page = c.run(source, &["-c", jar_s, &format!("{base}/login")]);
    let csrf = csrf_of(&page.body);
    let r = c.run(
        source,
        &[
            "-b",
            jar_s,
            "-c",
            jar_s,
            "--data-urlencode",
            &format!("username={user}"),
            "--data-urlencode",
            &format!("password={password}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            "next=/",
            &format!("{base}/login"),
        ],
    );
    if r.status != 303 {
        return Err(r.status);
    }
    let dash = c.run(source, &["-b", jar_s, &format!("{base}/")]);
    assert_eq!(dash.status, 200);
    Ok(csrf_of(&dash.body))
}

fn concrete(path: &str) -> String {
    path.replace("{*file}", "console.css")
        .replace("{name}/servers/{id}", "web/servers/web1")
        .replace("{name}", "web")
        .replace("{id}", "web1")
        .replace("{epoch}", "1")
        .replace("{n}", "1")
}

fn security_checks(c: &Curl<'_>, base: &str, token: &str, dir: &Path) {
    let bearer = format!("Authorization: Bearer {token}");
    let versions = || {
        let r = c.run(
            "10.0.0.1",
            &["-H", &bearer, &format!("{base}/api/v1/versions")],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["versions"].as_array().unwrap().len()
    };
    let audit = || {
        let r = c.run(
            "10.0.0.1",
            &["-H", &bearer, &format!("{base}/api/v1/audit?limit=10000")],
        );
        serde_json::from_str::<serde_json::Value>(&r.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let v0 = versions();

    // Every route of the router's table, without a session (and with hop-by-hop tricks).
    for r in table() {
        let url = format!("{base}{}", concrete(r.path));
        let method = r.method.as_str();
        for trick in [
            None,
            Some("Connection: close, Authorization, Cookie, X-Csrf-Token"),
        ] {
            let mut args = vec!["-X", method, "--max-time", "5"];
            if let Some(t) = trick {
                args.extend(["-H", t]);
            }
            args.push(&url);
            let reply = c.run("10.0.0.1", &args);
            match r.access {
                Access::Public => assert!(
                    reply.status != 404 && reply.status != 0,
                    "{method} {url}: {}",
                    reply.status
                ),
                Access::Min(_) if r.path.starts_with("/api/") => {
                    assert_eq!(reply.status, 401, "{method} {url} without a session")
                }
                Access::Min(_) => {
                    assert_eq!(reply.status, 303, "{method} {url} without a session");
                    assert!(
                        reply.headers.to_lowercase().contains("location: /login"),
                        "{method} {url}"
                    );
                }
            }
        }
    }

    // CSRF: a form post with a valid session but no token is refused.
    let jar = dir.join("admin.jar");
    let jar_s = jar.to_str().unwrap();
    let csrf = login(c, base, &jar, "10.0.0.1", "admin", PASSWORD).unwrap();
    let drain = format!("{base}/pools/web/servers/web2/state");
    let r = c.run("10.0.0.1", &["-b", jar_s, "--data", "state=drain", &drain]);
    assert_eq!(r.status, 403, "a form post without the CSRF token");
    assert_eq!(versions(), v0);

    // A viewer cannot drain, even with its CSRF token.
    let vjar = dir.join("vic.jar");
    let vcsrf = login(c, base, &vjar, "10.0.0.1", "vic", PASSWORD).unwrap();
    let r = c.run(
        "10.0.0.1",
        &[
            "-b",
            vjar.to_str().unwrap(),
            "--data-urlencode",
            "state=drain",
            "--data-urlencode",
            &format!("csrf={vcsrf}"),
            &drain,
        ],
    );
    assert_eq!(r.status, 403, "a viewer drains");
    assert_eq!(versions(), v0);

    // No GET changes state: every GET route as the admin.
    let a0 = audit();
    for r in table()
        .iter()
        .filter(|r| r.method == axum::http::Method::GET)
    {
        if r.path == "/api/v1/stats/stream" {
            continue;
        }
        let url = format!("{base}{}", concrete(r.path));
        let reply = c.run("10.0.0.1", &["-b", jar_s, &url]);
        assert!(reply.status < 500, "GET {url}: {}", reply.status);
    }
    assert_eq!((versions(), audit()), (v0, a0), "a GET changed something");

    // A session is dead after logout.
    let r = c.run(
        "10.0.0.1",
        &[
            "-b",
            jar_s,
            "--data-urlencode",
            &format!("csrf={csrf}"),
            &format!("{base}/logout"),
        ],
    );
    assert_eq!(r.status, 303);
    let r = c.run("10.0.0.1", &["-b", jar_s, &format!("{base}/api/v1/status")]);
    assert_eq!(r.status, 401, "the session outlived its logout");

    // Ten failed logins from one source slow that source down; the right password from
    // another source still works. The guessing source is an address of its own, so that its
    // wait (10 s after the fourth failure: `console.login_backoff` in the config) holds for
    // the whole check however slowly a loaded machine runs it, and delays nothing after it.
    let mut statuses = Vec::new();
    let bad = dir.join("bad.jar");
    for _ in 0..10 {
        statuses.push(login(c, base, &bad, GUESSER, "admin", "wrong-Password-1").unwrap_err());
    }
    assert!(
        statuses.contains(&429),
        "the guessing source was never slowed: {statuses:?}"
    );
    assert_eq!(
        login(c, base, &bad, GUESSER, "admin", PASSWORD).unwrap_err(),
        429,
        "the right password waits too, from there"
    );
    let elsewhere = dir.join("good.jar");
    login(c, base, &elsewhere, "10.0.0.5", "admin", PASSWORD)
        .expect("the admin logs in from another address");
}

#[test]
fn the_console_on_a_real_pair() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let client = Netns::new("cc");
    let boxes = [Netns::new("ca"), Netns::new("cb")];
    let web = Netns::new("cw");
    switch.attach(&client, "eth0", "10.0.0.1/24");
    client.ip(&["addr", "add", "10.0.0.5/24", "dev", "eth0"]);
    client.ip(&["addr", "add", &format!("{GUESSER}/24"), "dev", "eth0"]);
    for (i, b) in boxes.iter().enumerate() {
        switch.attach(b, "eth0", &format!("{}/24", BOX[i]));
    }
    switch.attach(&web, "eth0", "10.0.0.11/24");
    web.ip(&["addr", "add", "10.0.0.12/24", "dev", "eth0"]);
    let _backends: Vec<Proc> = [("web1", "10.0.0.11"), ("web2", "10.0.0.12")]
        .iter()
        .map(|(name, addr)| {
            let mut cmd = web.command(bins::lab_backend());
            cmd.args(["--name", name, "--http", &format!("{addr}:8080")]);
            let p = Proc::spawn(name, cmd, &dir.path().join(format!("{name}.log")));
            wait_for(name, Duration::from_secs(10), || {
                p.log().contains("ready").then_some(())
            });
            p
        })
        .collect();

    let hash = hash_password();
    let token = format!("tdm_{}", hex::encode(rand_bytes()));
    let token_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let cert = expiring_cert();
    let a = Tandemd::start(&boxes[0], &config(0, &hash, &token_sha256, &cert));
    let b = Tandemd::start(&boxes[1], &config(1, &hash, &token_sha256, &cert));
    wait_for("lb-a to be active", Duration::from_secs(15), || {
        (a.status()["role"] == "active" && b.status()["role"] == "passive").then_some(())
    });
    let base = format!("https://{}:9443", BOX[0]);
    let curl = Curl {
        ns: &client,
        dir: dir.path(),
    };
    let t = Instant::now();
    security_checks(&curl, &base, &token, dir.path());
    eprintln!("security checks: {:.1} s", t.elapsed().as_secs_f64());

    // The browser tests.
    let t = Instant::now();
    let tests_dir = repo().join("web-ui/tests");
    if !tests_dir.join("node_modules/playwright-core").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&tests_dir)
            .status()
            .expect("npm");
        assert!(ok.success(), "npm ci in web-ui/tests failed");
    }
    let shots = std::env::var("TANDEM_SCREENSHOTS")
        .unwrap_or_else(|_| dir.path().join("shots").display().to_string());
    let out = client
        .command("node")
        .args(["--test", "--test-concurrency=1", "console.test.mjs"])
        .current_dir(&tests_dir)
        .env("TANDEM_A", &base)
        .env("TANDEM_B", format!("https://{}:9443", BOX[1]))
        .env("TANDEM_VIP", format!("http://{VIP}/"))
        .env("TANDEM_PASSWORD", PASSWORD)
        .env("TANDEM_SCREENSHOTS", &shots)
        .output()
        .expect("run node");
    let report = format!(
        "{}{}\n--- lb-a ---\n{}\n--- lb-b ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&a.log()),
        tail(&b.log())
    );
    assert!(out.status.success(), "the browser tests failed:\n{report}");
    eprintln!("browser tests: {:.1} s", t.elapsed().as_secs_f64());

    // The failover drill, on lb-b (active since the browser's failover): it hands over to
    // lb-a while probing the VIP, and reports the gap a client saw.
    let drill = curl.run(
        "10.0.0.1",
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("https://{}:9443/api/v1/ha/drill", BOX[1]),
        ],
    );
    assert_eq!(drill.status, 200, "{}", drill.body);
    let report: serde_json::Value = serde_json::from_str(&drill.body).unwrap();
    let step = &report["steps"][0];
    eprintln!("drill: {}", report["message"]);
    assert_eq!(report["ok"], true, "{report}");
    assert!(step["probes"].as_u64().unwrap() > 20, "{report}");
    assert!(step["gap_ms"].as_u64().unwrap() < 1000, "{report}");
    wait_for(
        "lb-a to be active after the drill",
        Duration::from_secs(10),
        || (a.status()["role"] == "active").then_some(()),
    );

    // tandemctl over the REST API, from the client: a pinned fingerprint that does not match
    // is refused; status and a server command work.
    let api = format!("https://{}:9443", BOX[0]);
    let remote = |args: &[&str]| {
        let out = client
            .command(bins::tandemctl())
            .args(["--api", &api, "--token", &token])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = remote(&[
        "--api-fingerprint",
        &format!("sha256:{}", "00".repeat(32)),
        "status",
    ]);
    assert!(!ok && text.contains("does not match"), "{text}");
    let (ok, text) = remote(&["--insecure", "status"]);
    assert!(ok && text.contains("lb-a is active"), "{text}");
    let (ok, text) = remote(&["--insecure", "server", "disable", "web/web2"]);
    assert!(ok && text.contains("committed version"), "{text}");
    let (ok, text) = remote(&["--insecure", "status"]);
    assert!(
        ok && text.contains("server web/web2 10.0.0.12:8080 admin=disabled"),
        "{text}"
    );

    // schemathesis against the active box (lb-a after the drill): no 5xx.
    let t = Instant::now();
    let st = schemathesis();
    let out = client
        .command(&st)
        .args([
            "run",
            &format!("https://{}:9443/api/v1/openapi.json", BOX[0]),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--tls-verify=false",
            "-c",
            "not_a_server_error",
            "-n",
            "10",
            // One worker: with two threads, CPython 3.11's `ast.parse` (which hypothesis
            // calls to describe its filters) can fail with "AST constructor recursion depth
            // mismatch", a crash of the tool that says nothing about the API.
            "-w",
            "1",
            "--request-timeout",
            "10",
            "--exclude-path",
            "/api/v1/stats/stream",
            "--exclude-path",
            "/api/v1/ha/drill",
            "--exclude-path",
            "/api/v1/ha/failover",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let from = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= text.len().saturating_sub(6000))
        .unwrap_or(0);
    let short = &text[from..];
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{short}\n--- lb-a ---\n{}",
        tail(&a.log())
    );
    eprintln!("schemathesis: {:.1} s", t.elapsed().as_secs_f64());
    eprintln!(
        "the console lab took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b
}

/// schemathesis from `$SCHEMATHESIS`, else from the venv under build/ (created with the pinned
/// version when missing).
fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("SCHEMATHESIS") {
        return p.into();
    }
    let venv = repo().join("build/venv-schemathesis");
    let bin = venv.join("bin/schemathesis");
    if !bin.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", &format!("schemathesis=={SCHEMATHESIS}")])
                .status()
                .unwrap()
                .success();
        assert!(
            ok,
            "cannot install schemathesis {SCHEMATHESIS} under build/"
        );
    }
    bin
}
