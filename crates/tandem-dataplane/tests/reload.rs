//! Config apply: running transfers are not cut, other services are not disturbed, a refused
//! apply changes nothing; listeners bind addresses the box does not hold (FREEBIND) and IPv6.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tandem_dataplane::DataplaneError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn services(list: &[(&str, u16, &str)], pools: &str) -> String {
    let mut s = String::from("services:\n");
    for (name, port, pool) in list {
        s.push_str(&format!(
            "  - {{ name: {name}, listen: \"127.0.0.1:{port}\", protocol: tcp, pool: {pool} }}\n"
        ));
    }
    s.push_str("pools:\n");
    s.push_str(pools);
    s
}

fn pool(name: &str, servers: &[(&str, SocketAddr)]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(id, a)| format!("{{ id: {id}, address: \"{a}\" }}"))
        .collect();
    format!("  - {{ name: {name}, servers: [{}] }}\n", list.join(", "))
}

const TOTAL: usize = 40 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transfer_is_not_cut_by_an_apply() {
    // A server that streams 40 MiB over about two seconds.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..(TOTAL >> 20) {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    let other = Backend::tcp("other").await;
    let (p1, p2) = (free_port(), free_port());
    let r = start(&services(&[("t", p1, "p")], &pool("p", &[("slow", slow)]))).await;

    let mut c = TcpStream::connect(addr(p1)).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < 4 << 20 {
        got += c.read(&mut buf).await.unwrap();
    }
    // Mid-transfer: the pool loses its server, and a service is added.
    let report =
        r.dp.apply(shared(&services(
            &[("t", p1, "p"), ("t2", p2, "p")],
            &pool("p", &[("other", other.addr)]),
        )))
        .await
        .unwrap();
    assert_eq!(report.added.len(), 1);
    assert_eq!(report.kept.len(), 1);
    assert_eq!(
        ask(addr(p1)).await.unwrap(),
        "other",
        "new connections use the new config"
    );
    assert_eq!(ask(addr(p2)).await.unwrap(), "other");
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(
        got, TOTAL,
        "the transfer finished on the config it started with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_service_does_not_disturb_another() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let (pa, pb) = (free_port(), free_port());
    let pools = [pool("pa", &[("a", a.addr)]), pool("pb", &[("b", b.addr)])].concat();
    let r = start(&services(&[("sa", pa, "pa"), ("sb", pb, "pb")], &pools)).await;

    let mut on_a = BufReader::new(TcpStream::connect(addr(pa)).await.unwrap());
    let mut on_b = BufReader::new(TcpStream::connect(addr(pb)).await.unwrap());
    let mut line = String::new();
    on_a.read_line(&mut line).await.unwrap();
    on_b.read_line(&mut line).await.unwrap();
    assert_eq!(line, "a\nb\n");

    let report =
        r.dp.apply(shared(&services(&[("sb", pb, "pb")], &pools)))
            .await
            .unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].service, "sa");
    assert!(report.added.is_empty());

    // The removed service accepts no more, but its running connection finishes.
    assert!(TcpStream::connect(addr(pa)).await.is_err());
    for (conn, name) in [(&mut on_a, "a"), (&mut on_b, "b")] {
        conn.get_mut()
            .write_all(format!("still {name}\n").as_bytes())
            .await
            .unwrap();
        let mut echo = String::new();
        conn.read_line(&mut echo).await.unwrap();
        assert_eq!(echo, format!("still {name}\n"));
    }
    assert_eq!(ask(addr(pb)).await.unwrap(), "b");
    assert_eq!(r.dp.stats().services.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_apply_changes_nothing() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let (pa, pnew) = (free_port(), free_port());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let r = start(&services(&[("sa", pa, "p")], &pool("p", &[("a", a.addr)]))).await;
    let mut events = r.dp.state().subscribe();

    let bad = services(
        &[("sa", pa, "p"), ("fresh", pnew, "p"), ("clash", busy, "p")],
        &pool("p", &[("b", b.addr)]),
    );
    let err = r.dp.apply(shared(&bad)).await.unwrap_err();
    match &err {
        DataplaneError::Bind {
            service, address, ..
        } => {
            assert_eq!(service, "clash");
            assert_eq!(address.port(), busy);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("clash")
            && message.contains(&busy.to_string())
            && message.contains("in use"),
        "{message}"
    );

    // Nothing changed: the old pool still serves, the other new listener was not left bound.
    assert_eq!(ask(addr(pa)).await.unwrap(), "a");
    assert!(TcpStream::connect(addr(pnew)).await.is_err());
    assert_eq!(r.dp.stats().services.len(), 1);
    assert_eq!(r.dp.stats().servers[0].id, "a");
    assert_eq!(events.try_recv().unwrap(), None, "nothing was published");
    assert_eq!(r.dp.liveness().listeners().len(), 1);
    drop(taken);

    // The same apply goes through once the port is free.
    r.dp.apply(shared(&bad)).await.unwrap();
    assert_eq!(ask(addr(busy)).await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_bind_addresses_not_held_yet_and_ipv6() {
    let a = Backend::tcp("a").await;
    let port = free_port();
    let v6_ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut list = format!(
        "services:\n  - {{ name: vip4, listen: \"192.0.2.10:{port}\", protocol: tcp, pool: p }}\n  - {{ name: vip6, listen: \"[2001:db8::10]:{port}\", protocol: tcp, pool: p }}\n  - {{ name: udp4, listen: \"192.0.2.10:{port}\", protocol: udp, pool: p }}\n"
    );
    if v6_ok {
        list.push_str(&format!(
            "  - {{ name: local6, listen: \"[::1]:{port}\", protocol: tcp, pool: p }}\n"
        ));
    }
    list.push_str(&format!("pools:\n{}", pool("p", &[("a", a.addr)])));
    // The VIPs are not on this machine: IP_FREEBIND / IPV6_FREEBIND let them bind anyway.
    let r = start(&list).await;
    assert_eq!(r.dp.liveness().listeners().len(), if v6_ok { 4 } else { 3 });
    if v6_ok {
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        assert_eq!(ask(v6).await.unwrap(), "a");
        assert!(
            r.dp.liveness()
                .probe(v6, Duration::from_secs(2))
                .await
                .is_ok()
        );
    }
}
