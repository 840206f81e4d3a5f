//! Health checks, drain and disable, and source persistence against real servers.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tandem_dataplane::{Health, StateChange};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(
    port: u16,
    a: SocketAddr,
    b: SocketAddr,
    states: [&str; 2],
    extra: &str,
    pool_extra: &str,
) -> String {
    format!(
        r#"
services:
  - name: t
    listen: "127.0.0.1:{port}"
    protocol: tcp
    pool: p
{extra}
pools:
  - name: p
    algorithm: round_robin
{pool_extra}
    servers:
      - {{ id: a, address: "{a}", state: {} }}
      - {{ id: b, address: "{b}", state: {} }}
"#,
        states[0], states[1]
    )
}

const TCP_CHECK: &str =
    "    health_check: { interval: 200ms, timeout: 100ms, rise: 2, fall: 2, tcp: {} }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_rotation_in_time_and_returns_after_rise() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let port = free_port();
    let r = start(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "enabled"],
        "",
        TCP_CHECK,
    ))
    .await;
    let mut events = r.dp.state().subscribe();
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "p", "b")
            == Health::Up)
        .await
        .is_some()
    );

    b.kill();
    let b_addr = b.addr;
    drop(b);
    // interval × fall + timeout = 500 ms; allow three times that.
    let took = wait_for(Duration::from_millis(1500), || {
        health_of(&r.dp, "p", "b") == Health::Down
    })
    .await
    .expect("b is marked down");
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    for _ in 0..6 {
        assert_eq!(ask(vip(port)).await.unwrap(), "a");
    }
    let stats = r.dp.stats();
    let b_stats = stats.servers.iter().find(|s| s.id == "b").unwrap();
    assert!(b_stats.health_transitions >= 2); // unchecked → up → down
    assert!(b_stats.checks_failed >= 2);

    // Back on the same address: up again after `rise` good checks (2 × 200 ms).
    let b = Backend::tcp_at("b", b_addr).await;
    let took = wait_for(Duration::from_millis(1500), || {
        health_of(&r.dp, "p", "b") == Health::Up
    })
    .await
    .expect("b comes back");
    assert!(
        took >= Duration::from_millis(150),
        "rise needs two checks, took {took:?}"
    );
    let mut seen_b = false;
    for _ in 0..4 {
        seen_b |= ask(vip(port)).await.unwrap() == "b";
    }
    assert!(seen_b);
    drop(b);

    // The transitions went out on the state stream.
    let mut downs = 0;
    while let Ok(Some(ev)) = events.try_recv() {
        if let StateChange::ServerHealth {
            server,
            health: Health::Down,
            ..
        } = ev.change
        {
            assert_eq!(&*server, "b");
            downs += 1;
        }
    }
    assert_eq!(downs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_judges_status_and_body() {
    let web = HttpBackend::start().await;
    let other = Backend::tcp("other").await;
    let port = free_port();
    let check = "    health_check: { interval: 150ms, timeout: 100ms, rise: 1, fall: 1, http: { path: /health, expect_status: [200, 299], body_contains: ok } }";
    let r = start(&config(
        port,
        web.addr,
        other.addr,
        ["enabled", "disabled"],
        "",
        check,
    ))
    .await;
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "p", "a")
            == Health::Up)
        .await
        .is_some()
    );
    web.status.store(503, SeqCst);
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "p", "a")
            == Health::Down)
        .await
        .is_some()
    );
    web.status.store(204, SeqCst);
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "p", "a")
            == Health::Up)
        .await
        .is_some()
    );

    // The body must contain the text.
    let r2 = start(&config(
        free_port(),
        web.addr,
        other.addr,
        ["enabled", "disabled"],
        "",
        "    health_check: { interval: 150ms, timeout: 100ms, rise: 1, fall: 1, http: { body_contains: healthy } }",
    ))
    .await;
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r2.dp, "p", "a")
            == Health::Down)
        .await
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_never_gets_traffic_after_start() {
    let a = Backend::tcp("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let port = free_port();
    let r = start(&config(
        port,
        a.addr,
        dead,
        ["enabled", "enabled"],
        "",
        TCP_CHECK,
    ))
    .await;
    // From the first moment: `a` is picked (the dead one is unchecked, then down).
    for _ in 0..10 {
        assert_eq!(ask(vip(port)).await.unwrap(), "a");
    }
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "p", "b")
            == Health::Down)
        .await
        .is_some()
    );
    // At most the very first pick, before `a` had answered its first check, tried the dead one.
    let dead_stats =
        r.dp.stats()
            .servers
            .into_iter()
            .find(|s| s.id == "b")
            .unwrap();
    assert!(dead_stats.connect_failures <= 1, "{dead_stats:?}");
}

async fn hold(port: u16) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(vip(port)).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    (line.trim().to_owned(), r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_running_sessions_and_disable_takes_no_new_ones() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let port = free_port();
    let r = start(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "enabled"],
        "",
        "",
    ))
    .await;
    // Open sessions on both.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(hold(port).await);
    }
    let (_, on_b) = held.iter_mut().find(|(n, _)| n == "b").unwrap();

    r.dp.apply(shared(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "drain"],
        "",
        "",
    )))
    .await
    .unwrap();
    for _ in 0..6 {
        assert_eq!(
            ask(vip(port)).await.unwrap(),
            "a",
            "no new session on a draining server"
        );
    }
    // The running session on b still works.
    on_b.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    on_b.read_line(&mut echo).await.unwrap();
    assert_eq!(echo, "ping\n");
    let b_stats =
        r.dp.stats()
            .servers
            .into_iter()
            .find(|s| s.id == "b")
            .unwrap();
    assert_eq!(b_stats.traffic.active, 1);
    assert_eq!(b_stats.admin, tandem_config::AdminState::Drain);

    r.dp.apply(shared(&config(
        port,
        a.addr,
        b.addr,
        ["disabled", "enabled"],
        "",
        "",
    )))
    .await
    .unwrap();
    for _ in 0..4 {
        assert_eq!(ask(vip(port)).await.unwrap(), "b");
    }
    r.dp.apply(shared(&config(
        port,
        a.addr,
        b.addr,
        ["disabled", "disabled"],
        "",
        "",
    )))
    .await
    .unwrap();
    assert!(
        ask(vip(port)).await.is_err(),
        "no server: the connection is refused"
    );
    assert!(r.dp.stats().services[0].no_server >= 1);
}

const SOURCE_PERSISTENCE: &str = "    persistence: { source: { timeout: 2s, mask_v4: 32 } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_persistence_pins_clients_and_follows_admin_state() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let port = free_port();
    let r = start(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "enabled"],
        SOURCE_PERSISTENCE,
        "",
    ))
    .await;
    let mut events = r.dp.state().subscribe();
    let clients: Vec<IpAddr> = (1..=6u8).map(|i| IpAddr::from([127, 0, 2, i])).collect();
    let mut pinned = Vec::new();
    for c in &clients {
        let first = ask_from(*c, vip(port)).await.unwrap();
        // Round robin would alternate; persistence keeps the server.
        for _ in 0..3 {
            assert_eq!(ask_from(*c, vip(port)).await.unwrap(), first);
        }
        pinned.push(first);
    }
    assert!(pinned.contains(&"a".to_owned()) && pinned.contains(&"b".to_owned()));
    assert_eq!(r.dp.state().persistence_len(), 6);
    let inserts = std::iter::from_fn(|| events.try_recv().ok().flatten())
        .filter(|e| matches!(e.change, StateChange::PersistenceInsert(_)))
        .count();
    assert_eq!(inserts, 6);

    // Drain b: clients pinned to b keep it; a new client goes to a.
    r.dp.apply(shared(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "drain"],
        SOURCE_PERSISTENCE,
        "",
    )))
    .await
    .unwrap();
    for (c, p) in clients.iter().zip(&pinned) {
        assert_eq!(&ask_from(*c, vip(port)).await.unwrap(), p);
    }
    assert_eq!(
        ask_from([127, 0, 2, 99].into(), vip(port)).await.unwrap(),
        "a"
    );

    // Disable b: its clients move to a.
    r.dp.apply(shared(&config(
        port,
        a.addr,
        b.addr,
        ["enabled", "disabled"],
        SOURCE_PERSISTENCE,
        "",
    )))
    .await
    .unwrap();
    for c in &clients {
        assert_eq!(ask_from(*c, vip(port)).await.unwrap(), "a");
    }

    // Entries expire after the idle timeout.
    let expired = wait_for(Duration::from_secs(5), || {
        r.dp.state().persistence_len() == 0
    })
    .await;
    assert!(expired.is_some());
    let expiries = std::iter::from_fn(|| events.try_recv().ok().flatten())
        .filter(|e| matches!(e.change, StateChange::PersistenceExpire(_)))
        .count();
    assert_eq!(expiries, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_https_checks_and_address_change_resets_health() {
    // A TLS server to check: an HTTPS service of another dataplane, whose server is not an
    // HTTP server (so it answers 502).
    let web = Backend::tcp("web").await;
    let tls_port = free_port();
    let _tls_server = start(&format!(
        "services:\n  - {{ name: s, listen: \"127.0.0.1:{tls_port}\", protocol: https, pool: w }}\npools:\n  - {{ name: w, servers: [{{ id: web, address: \"{}\" }}] }}\n",
        web.addr
    ))
    .await;
    let tls_addr = vip(tls_port);
    let plain = Backend::tcp("plain").await;
    let port = free_port();
    let yaml = |tls_check: &str, http_check: &str, b: SocketAddr| {
        format!(
            r#"
services:
  - {{ name: t, listen: "127.0.0.1:{port}", protocol: tcp, pool: tls }}
pools:
  - name: tls
    health_check: {{ interval: 150ms, timeout: 100ms, rise: 1, fall: 1, {tls_check} }}
    servers:
      - {{ id: a, address: "{tls_addr}" }}
      - {{ id: b, address: "{b}" }}
  - name: https
    health_check: {{ interval: 150ms, timeout: 100ms, rise: 1, fall: 1, {http_check} }}
    servers:
      - {{ id: a, address: "{tls_addr}" }}
"#
        )
    };
    let r = start(&yaml(
        "tls: { sni: localhost }",
        "http: { tls: true, host: localhost, expect_status: [502, 502], body_contains: Bad Gateway }",
        plain.addr,
    ))
    .await;
    let settled = wait_for(Duration::from_secs(2), || {
        health_of(&r.dp, "tls", "a") == Health::Up
            && health_of(&r.dp, "tls", "b") == Health::Down
            && health_of(&r.dp, "https", "a") == Health::Up
    })
    .await;
    assert!(settled.is_some(), "{:?}", r.dp.stats().servers);

    // Server b moves to the TLS address: its health starts over, then it is up.
    let report =
        r.dp.apply(shared(&yaml(
            "tls: { sni: localhost }",
            "http: { tls: true, expect_status: [200, 299] }",
            tls_addr,
        )))
        .await
        .unwrap();
    assert_eq!(report.health_reset, [("tls".to_owned(), "b".to_owned())]);
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "tls", "b")
            == Health::Up)
        .await
        .is_some()
    );
    // The HTTPS check now wants a 2xx: the 502 takes the server down.
    assert!(
        wait_for(Duration::from_secs(2), || health_of(&r.dp, "https", "a")
            == Health::Down)
        .await
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_persistence_follows_drain_and_disable() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let port = free_port();
    let yaml = |sa: &str, sb: &str| {
        format!(
            "services:\n  - {{ name: h, listen: \"127.0.0.1:{port}\", protocol: http, pool: p, persistence: {{ cookie: {{ timeout: 30m }} }} }}\npools:\n  - name: p\n    servers:\n      - {{ id: a, address: \"{}\", state: {sa} }}\n      - {{ id: b, address: \"{}\", state: {sb} }}\n",
            a.addr, b.addr
        )
    };
    let r = start(&yaml("enabled", "enabled")).await;
    let client: IpAddr = [192, 0, 2, 1].into();
    let pick = |cookie: Option<&str>| {
        let svc = r.dp.service("h").unwrap();
        let pool = svc.default_pool().unwrap().clone();
        let p = svc
            .choose_server_by_cookie(&pool, cookie, client, &[])
            .unwrap();
        (p.lease.id.to_string(), p.set_cookie)
    };
    assert_eq!(pick(Some("b")), ("b".into(), true));
    assert_eq!(pick(Some("a")), ("a".into(), true));
    let (fresh, set) = pick(Some("nonsense"));
    assert!(set && (fresh == "a" || fresh == "b"));

    r.dp.apply(shared(&yaml("enabled", "drain"))).await.unwrap();
    assert_eq!(
        pick(Some("b")),
        ("b".into(), false),
        "pinned clients keep a draining server; the cookie is not refreshed"
    );
    assert_eq!(
        pick(None),
        ("a".into(), true),
        "new clients do not go to a draining server"
    );

    r.dp.apply(shared(&yaml("enabled", "disabled")))
        .await
        .unwrap();
    assert_eq!(
        pick(Some("b")),
        ("a".into(), true),
        "a disabled server's cookie is ignored"
    );
}
