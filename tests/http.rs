//! The HTTP engine in the lab: a real tandemd in a namespace in front of two real
//! `lab-backend` servers, real clients (curl, h2load, openssl s_client) and raw TCP from the
//! test for what no well-behaved client sends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use tandem_lab::{Netns, Proc, Tandemd, bins, wait_for};

const NODE: &str = "\
schema: 1
node:
  name: lab
  management:
    listen: 127.0.0.1:9443
    metrics:
      allow: [127.0.0.0/8]
";

/// The shared part: `web` (HTTP on :80) and `secure` (HTTPS on :443) over pool `web` of
/// b1 (127.0.0.1:8001) and b2 (127.0.0.1:8002), health-checked on `/health`.
struct Shared<'a> {
    algorithm: &'a str,
    weights: (u32, u32),
    states: (&'a str, &'a str),
    service_extra: &'a str,
}

impl Default for Shared<'_> {
    fn default() -> Self {
        Shared {
            algorithm: "round_robin",
            weights: (1, 1),
            states: ("enabled", "enabled"),
            service_extra: "",
        }
    }
}

impl Shared<'_> {
    fn yaml(&self, certs_dir: &Path) -> String {
        let d = certs_dir.display();
        format!(
            "{NODE}shared:
  services:
    - name: web
      listen: 127.0.0.1:80
      protocol: http
      pool: web
{extra}    - name: secure
      listen: 127.0.0.1:443
      protocol: https
      pool: web
      tls: {{ certificates: [one, two] }}
{extra}  pools:
    - name: web
      algorithm: {algo}
      health_check: {{ interval: 200ms, timeout: 150ms, rise: 2, fall: 2, http: {{ path: /health }} }}
      servers:
        - {{ id: b1, address: 127.0.0.1:8001, weight: {w1}, state: {s1} }}
        - {{ id: b2, address: 127.0.0.1:8002, weight: {w2}, state: {s2} }}
  certificates:
    - {{ name: one, cert_file: {d}/one.crt, key_file: {d}/one.key }}
    - {{ name: two, cert_file: {d}/two.crt, key_file: {d}/two.key }}
",
            extra = self.service_extra,
            algo = self.algorithm,
            w1 = self.weights.0,
            w2 = self.weights.1,
            s1 = self.states.0,
            s2 = self.states.1,
        )
    }
}

struct Lab {
    ns: Netns,
    d: Tandemd,
    b1: Option<Proc>,
    _b2: Proc,
    certs: tempfile::TempDir,
}

fn certificates(dir: &Path) {
    for name in ["one", "two"] {
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={name}.example"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{name}.example"))
            .arg("-keyout")
            .arg(dir.join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.join(format!("{name}.crt")))
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn backend(ns: &Netns, name: &str, addr: &str, dir: &Path) -> Proc {
    let mut cmd = ns.command(bins::lab_backend());
    cmd.args(["--name", name, "--http", addr]);
    let p = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    wait_for("a backend", Duration::from_secs(10), || {
        p.log().contains("ready").then_some(())
    });
    p
}

impl Lab {
    fn start(shared: Shared<'_>) -> Lab {
        let ns = Netns::new("http");
        let certs = tempfile::tempdir().unwrap();
        certificates(certs.path());
        let b1 = backend(&ns, "b1", "127.0.0.1:8001", certs.path());
        let b2 = backend(&ns, "b2", "127.0.0.1:8002", certs.path());
        let d = Tandemd::start(&ns, &shared.yaml(certs.path()));
        let lab = Lab {
            ns,
            d,
            b1: Some(b1),
            _b2: b2,
            certs,
        };
        lab.wait_health("b1", "up");
        lab.wait_health("b2", "up");
        lab
    }

    fn curl(&self, args: &[&str]) -> Output {
        let mut all = vec!["-s", "--max-time", "10"];
        all.extend_from_slice(args);
        self.ns.run("curl", &all)
    }

    /// The server that answered a GET of `url` (its `X-Server` header).
    fn server_of(&self, url: &str, extra: &[&str]) -> String {
        let mut args = vec!["-o", "/dev/null", "-D", "-"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = self.curl(&args);
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("x-server")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no X-Server in {head:?}"))
    }

    fn status_code(&self, args: &[&str]) -> u16 {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        let out = self.curl(&all);
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    }

    fn health(&self, server: &str) -> String {
        let st = self.d.status();
        st["dataplane"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == server)
            .map(|s| s["health"].as_str().unwrap().to_owned())
            .unwrap()
    }

    fn wait_health(&self, server: &str, want: &str) -> Duration {
        let start = Instant::now();
        wait_for(&format!("{server} {want}"), Duration::from_secs(15), || {
            (self.health(server) == want).then_some(())
        });
        start.elapsed()
    }

    fn apply(&self, shared: Shared<'_>) {
        let file = self.d.dir().join("next.yaml");
        std::fs::write(&file, shared.yaml(self.certs.path())).unwrap();
        let out = self.d.ctl(&["apply", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends raw bytes to 127.0.0.1:80 and reads until the proxy closes (or 10 s).
    fn raw(&self, request: &[u8]) -> (String, bool) {
        let request = request.to_vec();
        self.ns.enter(move || {
            let mut s = TcpStream::connect("127.0.0.1:80").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&request).unwrap();
            let mut got = Vec::new();
            let closed = s.read_to_end(&mut got).is_ok();
            (String::from_utf8_lossy(&got).into_owned(), closed)
        })
    }
}

fn count(servers: &[String], name: &str) -> usize {
    servers.iter().filter(|s| *s == name).count()
}

#[test]
fn distribution_follows_algorithm_and_weight() {
    let lab = Lab::start(Shared {
        weights: (3, 1),
        ..Default::default()
    });
    let picks: Vec<String> = (0..40)
        .map(|_| lab.server_of("http://127.0.0.1/", &[]))
        .collect();
    assert_eq!(count(&picks, "b1"), 30, "{picks:?}");
    assert_eq!(count(&picks, "b2"), 10, "{picks:?}");

    // Least connections and power of two: both servers take requests one at a time.
    for algorithm in ["least_connections", "power_of_two"] {
        lab.apply(Shared {
            algorithm,
            ..Default::default()
        });
        let picks: Vec<String> = (0..30)
            .map(|_| lab.server_of("http://127.0.0.1/", &[]))
            .collect();
        assert!(
            count(&picks, "b1") > 0 && count(&picks, "b2") > 0,
            "{algorithm}: {picks:?}"
        );
    }

    // Source hash: one client, one server, every time.
    lab.apply(Shared {
        algorithm: "source_hash",
        ..Default::default()
    });
    let picks: Vec<String> = (0..10)
        .map(|_| lab.server_of("http://127.0.0.1/", &[]))
        .collect();
    assert!(picks.iter().all(|p| *p == picks[0]), "{picks:?}");
}

#[test]
fn a_killed_backend_leaves_rotation_and_comes_back_after_rise() {
    let mut lab = Lab::start(Shared::default());
    lab.b1.take().unwrap().kill();
    // interval × fall + timeout = 550 ms; three times that as the margin.
    let gone = lab.wait_health("b1", "down");
    assert!(gone < Duration::from_millis(1650), "{gone:?}");
    for _ in 0..10 {
        assert_eq!(lab.server_of("http://127.0.0.1/", &[]), "b2");
    }
    lab.b1 = Some(backend(&lab.ns, "b1", "127.0.0.1:8001", lab.certs.path()));
    // rise × interval = 400 ms (plus the wait for the next check).
    let back = lab.wait_health("b1", "up");
    assert!(back < Duration::from_millis(1800), "{back:?}");
    let picks: Vec<String> = (0..10)
        .map(|_| lab.server_of("http://127.0.0.1/", &[]))
        .collect();
    assert_eq!(count(&picks, "b1"), 5, "{picks:?}");
}

#[test]
fn drain_keeps_pinned_cookies_and_disable_ends_them() {
    let cookie = "      persistence: { cookie: { name: SRV, timeout: 10m } }\n";
    let lab = Lab::start(Shared {
        service_extra: cookie,
        ..Default::default()
    });
    let jar = lab.d.dir().join("jar.txt");
    let jar = jar.to_str().unwrap();
    let first = lab.server_of("http://127.0.0.1/", &["-c", jar]);
    for _ in 0..5 {
        assert_eq!(
            lab.server_of("http://127.0.0.1/", &["-b", jar, "-c", jar]),
            first
        );
    }
    let other = if first == "b1" { "b2" } else { "b1" };
    let states = |s: &'static str| {
        if first == "b1" {
            (s, "enabled")
        } else {
            ("enabled", s)
        }
    };

    lab.apply(Shared {
        service_extra: cookie,
        states: states("drain"),
        ..Default::default()
    });
    // The pinned client stays; new clients go to the other server.
    assert_eq!(lab.server_of("http://127.0.0.1/", &["-b", jar]), first);
    for _ in 0..4 {
        assert_eq!(lab.server_of("http://127.0.0.1/", &[]), other);
    }

    lab.apply(Shared {
        service_extra: cookie,
        states: states("disabled"),
        ..Default::default()
    });
    assert_eq!(lab.server_of("http://127.0.0.1/", &["-b", jar]), other);
}

#[test]
fn sni_picks_the_certificate() {
    let lab = Lab::start(Shared::default());
    for (name, want) in [
        ("one.example", "one.example"),
        ("two.example", "two.example"),
        ("none.example", "one.example"),
    ] {
        let out = lab.ns.run(
            "sh",
            &[
                "-c",
                &format!(
                    "openssl s_client -connect 127.0.0.1:443 -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -subject"
                ),
            ],
        );
        let subject = String::from_utf8_lossy(&out.stdout);
        assert!(
            subject.contains(&format!("CN = {want}")),
            "{name}: {subject}"
        );
    }
    // And curl, verifying against the certificate it should get.
    let ca = lab.certs.path().join("two.crt");
    let code = lab.status_code(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        "two.example:443:127.0.0.1",
        "https://two.example/",
    ]);
    assert_eq!(code, 200);
}

#[test]
fn http2_through_the_proxy_with_curl_and_h2load() {
    let lab = Lab::start(Shared::default());
    let out = lab.curl(&[
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "https://127.0.0.1/",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    let out = lab.ns.run(
        "h2load",
        &[
            "-n",
            "2000",
            "-c",
            "4",
            "-m",
            "10",
            "https://127.0.0.1/bytes/2000",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(
        text.contains("2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
}

#[test]
fn limits_give_429_and_503() {
    let lab = Lab::start(Shared {
        service_extra: "      limits: { max_connections: 2, per_source: { requests_per_second: 5 } }\n",
        ..Default::default()
    });
    // Ten requests from one curl (one process, one keep-alive connection): well within a
    // second, however slow process start-up is.
    let mut args = vec!["-w", "%{http_code}\\n"];
    for _ in 0..10 {
        args.extend(["-o", "/dev/null", "http://127.0.0.1/"]);
    }
    let out = lab.curl(&args);
    let codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    assert!(codes.iter().take(5).all(|c| *c == 200), "{codes:?}");

    // Two connections held open fill the service; the third is refused with 503.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, _) = lab.ns.enter(|| {
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect("127.0.0.1:80").unwrap();
            s.write_all(b"GET /slow/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut s = TcpStream::connect("127.0.0.1:80").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got).into_owned();
        (text.get(9..12).unwrap_or("").to_owned(), held)
    });
    assert_eq!(code, "503");
}

#[test]
fn framing_violations_get_400_and_close_and_reach_no_server() {
    let lab = Lab::start(Shared::default());
    let before: u64 = server_requests(&lab);
    for request in [
        &b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello",
        b"POST /headers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        b"GET /headers HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET /headers HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
        b"GET /headers HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
        b"POST /headers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n",
    ] {
        let (response, closed) = lab.raw(request);
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
        assert!(response.contains("Connection: close"), "{response}");
        assert!(closed, "left open: {response}");
    }
    // The counters of the servers saw none of them.
    assert_eq!(server_requests(&lab), before);
    let st = lab.d.status();
    let web = st["dataplane"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["http_malformed"], 8);
}

fn server_requests(lab: &Lab) -> u64 {
    lab.d.status()["dataplane"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["traffic"]["requests"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_long_download_is_not_cut_by_a_reload() {
    let lab = Lab::start(Shared::default());
    let ns_name = lab.d.netns_name().to_owned();
    // 30 chunks of 1 KiB, one every 100 ms: about three seconds.
    let download = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns_name, "curl", "-s", "--max-time", "20"])
            .args(["-o", "/dev/null", "-w", "%{http_code} %{size_download}"])
            .arg("http://127.0.0.1/stream/30/100")
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(800));
    lab.apply(Shared {
        weights: (2, 1),
        ..Default::default()
    });
    assert_eq!(lab.status_code(&["http://127.0.0.1/"]), 200);
    let out = download.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 30720");
}
