//! TCP services with real backends and clients on 127.0.0.1: balancing, half-close, PROXY
//! protocol, limits, retries, liveness probes, and the interim HTTP answer.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn tcp_service(
    port: u16,
    algorithm: &str,
    servers: &[(&str, SocketAddr, u32)],
    extra: &str,
) -> String {
    let mut s = format!(
        "services:\n  - {{ name: t, listen: \"127.0.0.1:{port}\", protocol: tcp, pool: p {extra} }}\npools:\n  - name: p\n    algorithm: {algorithm}\n    servers:\n"
    );
    for (id, addr, w) in servers {
        s.push_str(&format!(
            "      - {{ id: {id}, address: \"{addr}\", weight: {w} }}\n"
        ));
    }
    s
}

async fn count(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_weights() {
    let (a, b) = (Backend::tcp("a").await, Backend::tcp("b").await);
    let port = free_port();
    let _r = start(&tcp_service(
        port,
        "round_robin",
        &[("a", a.addr, 3), ("b", b.addr, 1)],
        "",
    ))
    .await;
    let mut names = Vec::new();
    for _ in 0..40 {
        names.push(ask(vip(port)).await.unwrap());
    }
    let c = count(names.clone()).await;
    assert_eq!((c["a"], c["b"]), (30, 10), "{names:?}");
    // Smooth: `b` never waits more than three picks.
    assert!(
        !names.windows(4).any(|w| w.iter().all(|n| n == "a")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_weights_open_connections() {
    let (a, b) = (Backend::tcp("a").await, Backend::tcp("b").await);
    let port = free_port();
    let r = start(&tcp_service(
        port,
        "least_connections",
        &[("a", a.addr, 1), ("b", b.addr, 3)],
        "",
    ))
    .await;
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..8 {
        let s = TcpStream::connect(vip(port)).await.unwrap();
        let mut r = tokio::io::BufReader::new(s);
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut r, &mut line)
            .await
            .unwrap();
        names.push(line.trim().to_owned());
        held.push(r);
    }
    let c = count(names).await;
    assert_eq!((c["a"], c["b"]), (2, 6));
    let active: u64 = r.dp.stats().servers.iter().map(|s| s.traffic.active).sum();
    assert_eq!(active, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_hash_keeps_each_client_on_one_server() {
    let (a, b, c) = (
        Backend::tcp("a").await,
        Backend::tcp("b").await,
        Backend::tcp("c").await,
    );
    let port = free_port();
    let _r = start(&tcp_service(
        port,
        "source_hash",
        &[("a", a.addr, 1), ("b", b.addr, 1), ("c", c.addr, 1)],
        "",
    ))
    .await;
    let mut per_server = HashMap::new();
    for i in 1..=60u8 {
        let src = IpAddr::from([127, 0, 1, i]);
        let first = ask_from(src, vip(port)).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                ask_from(src, vip(port)).await.unwrap(),
                first,
                "client {src}"
            );
        }
        *per_server.entry(first).or_insert(0) += 1;
    }
    assert_eq!(per_server.len(), 3, "{per_server:?}");
    assert!(per_server.values().all(|n| *n >= 8), "{per_server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_spreads_open_connections() {
    let backends = [
        Backend::tcp("a").await,
        Backend::tcp("b").await,
        Backend::tcp("c").await,
    ];
    let port = free_port();
    let servers: Vec<_> = backends
        .iter()
        .map(|b| (b.name.as_str(), b.addr, 1))
        .collect();
    let _r = start(&tcp_service(port, "power_of_two", &servers, "")).await;
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..12 {
        let s = TcpStream::connect(vip(port)).await.unwrap();
        let mut r = tokio::io::BufReader::new(s);
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut r, &mut line)
            .await
            .unwrap();
        names.push(line.trim().to_owned());
        held.push(r);
    }
    let c = count(names).await;
    // Two random choices, the less loaded wins: never more than a few apart.
    for n in ["a", "b", "c"] {
        assert!((2..=6).contains(c.get(n).unwrap_or(&0)), "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_forwarded_and_the_other_direction_keeps_flowing() {
    // The server answers only after the client's end of stream, then closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..100 {
            s.write_all(&[b'x'; 10_000]).await.unwrap();
        }
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .await
            .unwrap();
    });
    let port = free_port();
    let _r = start(&tcp_service(port, "round_robin", &[("s", server, 1)], "")).await;
    let mut c = TcpStream::connect(vip(port)).await.unwrap();
    c.write_all(&[7u8; 123_456]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer))
        .await
        .expect("the server saw our FIN and closed")
        .unwrap();
    assert_eq!(answer.len(), 1_000_000 + "got 123456 bytes".len());
    assert!(answer.ends_with(b"got 123456 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_with_copy_fallback() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {}", got.len()).as_bytes())
            .await
            .unwrap();
    });
    let port = free_port();
    let _r = start_with(
        &tcp_service(port, "round_robin", &[("s", server, 1)], ""),
        |o| o.splice = false,
    )
    .await;
    let mut c = TcpStream::connect(vip(port)).await.unwrap();
    c.write_all(&[1u8; 50_000]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "got 50000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_reaches_the_server() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = [0u8; 16];
        s.read_exact(&mut head).await.unwrap();
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest).await.unwrap();
        let mut all = head.to_vec();
        all.extend_from_slice(&rest);
        let mut payload = [0u8; 5];
        s.read_exact(&mut payload).await.unwrap();
        let _ = tx.send((tandem_dataplane::proxy_protocol::decode_v2(&all), payload));
    });
    let port = free_port();
    let _r = start(&tcp_service(
        port,
        "round_robin",
        &[("s", server, 1)],
        ", proxy_protocol: v2",
    ))
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let mut c = sock.connect(vip(port)).await.unwrap();
    let client = c.local_addr().unwrap();
    c.write_all(b"hello").await.unwrap();
    let (decoded, payload) = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    let (src, dst, _) = decoded.expect("a valid PROXY v2 header");
    assert_eq!(src, client);
    assert_eq!(dst, vip(port));
    assert_eq!(&payload, b"hello", "client bytes follow the header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_beyond_max() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let r = start(&format!(
        "services:\n  - name: t\n    listen: \"127.0.0.1:{port}\"\n    protocol: tcp\n    pool: p\n    limits: {{ max_connections: 2 }}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{}\" }}] }}\n",
        a.addr
    ))
    .await;
    let h1 = TcpStream::connect(vip(port)).await.unwrap();
    let h2 = TcpStream::connect(vip(port)).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || r.dp.stats().services[0]
            .traffic
            .active
            == 2)
        .await
        .is_some()
    );
    assert!(
        ask(vip(port)).await.is_err(),
        "a third connection is refused"
    );
    assert_eq!(r.dp.stats().services[0].refused_max_connections, 1);
    drop(h1);
    assert!(
        wait_for(Duration::from_secs(2), || r.dp.stats().services[0]
            .traffic
            .active
            == 1)
        .await
        .is_some()
    );
    assert_eq!(ask(vip(port)).await.unwrap(), "a");
    drop(h2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_connection_rate_refuses_the_excess() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let r = start(&format!(
        "services:\n  - name: t\n    listen: \"127.0.0.1:{port}\"\n    protocol: tcp\n    pool: p\n    limits: {{ per_source: {{ connections_per_second: 3 }} }}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{}\" }}] }}\n",
        a.addr
    ))
    .await;
    let mut served = 0;
    for _ in 0..10 {
        if ask_from([127, 0, 0, 7].into(), vip(port)).await.is_ok() {
            served += 1;
        }
    }
    assert!((3..=5).contains(&served), "{served} of 10 served at 3/s");
    // Another source has its own budget.
    assert!(ask_from([127, 0, 0, 8].into(), vip(port)).await.is_ok());
    assert!(r.dp.stats().services[0].refused_connection_rate >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connect_tries_the_next_server() {
    let a = Backend::tcp("a").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let port = free_port();
    let r = start(&tcp_service(
        port,
        "round_robin",
        &[("dead", dead, 1), ("a", a.addr, 1)],
        "",
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(ask(vip(port)).await.unwrap(), "a");
    }
    let dead_stats =
        r.dp.stats()
            .servers
            .into_iter()
            .find(|s| s.id == "dead")
            .unwrap();
    assert!(dead_stats.connect_failures >= 3, "{dead_stats:?}");
    assert_eq!(dead_stats.traffic.active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_counted_per_service_and_server() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let r = start(&tcp_service(port, "round_robin", &[("a", a.addr, 1)], "")).await;
    let mut c = TcpStream::connect(vip(port)).await.unwrap();
    c.write_all(&[0u8; 100_000]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), 2 + 100_000); // "a\n" + the echo
    let ok = wait_for(Duration::from_secs(2), || {
        let s = r.dp.stats();
        s.services[0].traffic.bytes_in == 100_000
            && s.services[0].traffic.bytes_out == 100_002
            && s.servers[0].traffic.bytes_out == 100_002
            && s.services[0].traffic.active == 0
    })
    .await;
    assert!(ok.is_some(), "{:?}", r.dp.stats());
    let mut text = String::new();
    tandem_dataplane::render_prometheus(&r.dp.stats(), &mut text);
    assert!(
        text.contains("tandem_server_bytes_in_total{pool=\"p\",server=\"a\"} 100000\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let _r = start(&format!(
        "services:\n  - name: t\n    listen: \"127.0.0.1:{port}\"\n    protocol: tcp\n    pool: p\n    limits: {{ idle_timeout: 300ms }}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{}\" }}] }}\n",
        a.addr
    ))
    .await;
    let mut c = TcpStream::connect(vip(port)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"a\n");
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed by the proxy");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_probe_reaches_the_accept_loop_but_not_the_servers() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let r = start(&tcp_service(port, "round_robin", &[("a", a.addr, 1)], "")).await;
    let live = r.dp.liveness();
    assert_eq!(live.listeners().len(), 1);
    let took = live.probe(vip(port), Duration::from_secs(2)).await.unwrap();
    assert!(took < Duration::from_secs(2));
    let all = live.probe_all(Duration::from_secs(2), |_| true).await;
    assert!(all.iter().all(|(_, r)| r.is_ok()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.accepted.load(SeqCst), 0, "probes are not proxied");
    assert_eq!(
        r.dp.stats().services[0].traffic.total,
        0,
        "probes are not counted"
    );
    r.dp.shutdown(Duration::from_millis(100)).await;
    assert!(
        live.probe(vip(port), Duration::from_millis(300))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_service_in_front_of_a_non_http_server_answers_502() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let r = start(&format!(
        "services:\n  - {{ name: h, listen: \"127.0.0.1:{port}\", protocol: http, pool: p }}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{}\" }}] }}\n",
        a.addr
    ))
    .await;
    let mut c = TcpStream::connect(vip(port)).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    // The echo server's greeting is no status line: 502, never its bytes.
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp}");
    assert!(resp.ends_with("502 Bad Gateway\n"), "{resp}");
    assert_eq!(r.dp.stats().services[0].traffic.responses[4], 1);
}
