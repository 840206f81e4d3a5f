//! UDP services: flows stick to their server, replies come from the VIP, flows expire.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tokio::net::UdpSocket;

async fn exchange(client: &UdpSocket, vip: SocketAddr, msg: &str) -> (String, SocketAddr) {
    client.send_to(msg.as_bytes(), vip).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

fn udp_config(port: u16, a: SocketAddr, b: SocketAddr, idle: &str) -> String {
    format!(
        r#"
services:
  - name: dns
    listen: "127.0.0.1:{port}"
    protocol: udp
    pool: p
    udp: {{ idle_timeout: {idle} }}
pools:
  - name: p
    algorithm: round_robin
    servers:
      - {{ id: a, address: "{a}" }}
      - {{ id: b, address: "{b}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_stick_to_their_server_and_replies_come_from_the_vip() {
    let a = UdpBackend::start("a").await;
    let b = UdpBackend::start("b").await;
    let port = free_port();
    let vip = SocketAddr::from(([127, 0, 0, 1], port));
    let r = start(&udp_config(port, a.addr, b.addr, "30s")).await;
    let mut servers = Vec::new();
    for i in 0..4 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (first, from) = exchange(&client, vip, &format!("q{i}")).await;
        assert_eq!(from, vip, "the reply comes from the VIP");
        let server = first.split(':').next().unwrap().to_owned();
        assert_eq!(first, format!("{server}:q{i}"));
        for k in 0..5 {
            let (reply, _) = exchange(&client, vip, &format!("r{k}")).await;
            assert_eq!(reply, format!("{server}:r{k}"), "the flow sticks");
        }
        servers.push(server);
    }
    // New flows are balanced.
    assert!(
        servers.contains(&"a".to_owned()) && servers.contains(&"b".to_owned()),
        "{servers:?}"
    );
    assert_eq!(a.received.load(SeqCst) + b.received.load(SeqCst), 24);
    let s = &r.dp.stats().services[0];
    assert_eq!(s.traffic.total, 4);
    assert_eq!(s.traffic.active, 4);
    assert_eq!(s.traffic.requests, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_expire_after_their_idle_timeout() {
    let a = UdpBackend::start("a").await;
    let b = UdpBackend::start("b").await;
    let port = free_port();
    let vip = SocketAddr::from(([127, 0, 0, 1], port));
    let r = start(&udp_config(port, a.addr, b.addr, "300ms")).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (first, _) = exchange(&client, vip, "x").await;
    assert_eq!(r.dp.stats().services[0].traffic.active, 1);
    let gone = wait_for(Duration::from_secs(2), || {
        r.dp.stats().services[0].traffic.active == 0
    })
    .await;
    assert!(gone.expect("the flow expires") >= Duration::from_millis(200));
    // The same client now opens a new flow, which round robin sends to the other server.
    let (second, _) = exchange(&client, vip, "y").await;
    assert_ne!(first.split(':').next(), second.split(':').next());
    assert_eq!(r.dp.stats().services[0].traffic.total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_table_evicts_the_oldest_flow() {
    let a = UdpBackend::start("a").await;
    let b = UdpBackend::start("b").await;
    let port = free_port();
    let vip = SocketAddr::from(([127, 0, 0, 1], port));
    let r = start_with(&udp_config(port, a.addr, b.addr, "30s"), |o| {
        o.udp_max_flows = 2
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        exchange(&c, vip, &format!("{i}")).await;
        clients.push(c);
    }
    let ok = wait_for(Duration::from_secs(2), || {
        let s = &r.dp.stats().services[0];
        s.udp_flows_evicted == 1 && s.traffic.active == 2
    })
    .await;
    assert!(ok.is_some(), "{:?}", r.dp.stats().services[0]);
}
