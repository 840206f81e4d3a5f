//! Alerts out, against real receivers: a UDP syslog socket, a TCP syslog listener and an HTTP
//! webhook server that refuses the first delivery (so the retry shows).

use std::time::{Duration, Instant};
use tandem_admin::alerts::{Alert, AlertSender};
use tandem_config::{Alerts, SyslogTarget, SyslogTransport, Webhook};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[tokio::test]
async fn alerts_reach_syslog_over_udp_and_tcp_and_a_webhook_after_a_retry() {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = Alerts {
        syslog: vec![
            SyslogTarget {
                address: udp.local_addr().unwrap(),
                transport: SyslogTransport::Udp,
                facility: 16,
            },
            SyslogTarget {
                address: tcp.local_addr().unwrap(),
                transport: SyslogTransport::Tcp,
                facility: 23,
            },
        ],
        webhooks: vec![Webhook {
            name: "chat".into(),
            url: format!("http://{}/hooks/tandem", hook.local_addr().unwrap()),
            events: vec!["failover".into()],
        }],
        ..Alerts::default()
    };
    let sender = AlertSender::start(settings);
    // The webhook receiver: 503 the first time, 200 after.
    let hooked = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for attempt in 0..2 {
            let (mut c, _) = hook.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            loop {
                let n = c.read(&mut buf[got..]).await.unwrap();
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if body.len() >= len {
                        assert!(head.starts_with("POST /hooks/tandem HTTP/1.1"), "{head}");
                        bodies.push(body.to_owned());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer = if attempt == 0 {
                "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            c.write_all(answer.as_bytes()).await.unwrap();
        }
        bodies
    });

    sender.send(Alert::new(
        "server.down",
        "warning",
        "lb-a",
        "server web/web1 (10.0.1.11:8080) is down".into(),
    ));
    sender.send(Alert::new(
        "failover",
        "critical",
        "lb-a",
        "lb-a is passive now (was active)".into(),
    ));

    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(line.starts_with("<132>1 "), "local0.warning: {line}");
    assert!(
        line.contains(" lb-a tandemd ")
            && line.contains(" server.down [tandem@32473 event=\"server.down\""),
        "{line}"
    );
    assert!(
        line.ends_with("server web/web1 (10.0.1.11:8080) is down"),
        "{line}"
    );

    let (mut c, _) = tokio::time::timeout(Duration::from_secs(10), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("is passive now") && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // RFC 6587 octet counting: "LEN SP MSG", one after the other.
    let (len, rest) = text.split_once(' ').unwrap();
    let len: usize = len.parse().unwrap();
    assert!(rest[..len].starts_with("<188>1 "), "local7.warning: {rest}"); // 23*8+4
    assert!(
        rest[..len].ends_with("is down"),
        "one frame, one message: {rest}"
    );
    let (len2, second) = rest[len..].split_once(' ').unwrap();
    assert_eq!(second.len(), len2.parse::<usize>().unwrap());
    assert!(
        second.starts_with("<186>1 ") && second.contains(" failover "),
        "local7.critical: {second}"
    );

    // Only the failover goes to the webhook (its event filter), delivered on the second try.
    let bodies = tokio::time::timeout(Duration::from_secs(20), hooked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(v["event"], "failover");
    assert_eq!(v["node"], "lb-a");
    assert_eq!(v["severity"], "critical");
}

#[tokio::test]
async fn a_dead_receiver_never_holds_the_sender_up() {
    // A webhook that accepts connections and never answers.
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hook.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((c, _)) = hook.accept().await {
                held.push(c);
            }
        }
    });
    let sender = AlertSender::start(Alerts {
        webhooks: vec![Webhook {
            name: "dead".into(),
            url: format!("http://{addr}/"),
            events: vec![],
        }],
        ..Alerts::default()
    });
    let t = Instant::now();
    for i in 0..5000 {
        sender.send(Alert::new(
            "config.committed",
            "info",
            "lb-a",
            format!("version {i}"),
        ));
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "sending took {:?}",
        t.elapsed()
    );
    assert!(
        sender.dropped() > 0,
        "a full queue drops alerts instead of waiting"
    );
}
