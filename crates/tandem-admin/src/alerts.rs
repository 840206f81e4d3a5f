//! Alerts out: remote syslog (RFC 5424 over UDP per RFC 5426, or TCP with octet counting per
//! RFC 6587) and webhooks (a JSON POST, retried with a growing backoff). Whoever raises an
//! alert only puts it on a bounded queue ([`AlertSender::send`] never waits); a worker task
//! delivers it. When the queue is full the alert is dropped and counted, so a dead receiver can
//! never hold anything up.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tandem_config::{Alerts, SyslogTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};

/// Alerts waiting for the worker.
pub const QUEUE: usize = 1024;
/// Attempts per webhook delivery; the waits between them double from one second.
pub const WEBHOOK_ATTEMPTS: u32 = 5;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 5612's enterprise number for documentation, as the structured data's id.
const SD_ID: &str = "tandem@32473";

/// One alert.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// One of `tandem_config::ALERT_EVENTS`.
    pub event: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub node: String,
    pub at_unix_ms: u64,
    pub message: String,
}

impl Alert {
    pub fn new(event: &str, severity: &str, node: &str, message: String) -> Alert {
        Alert {
            event: event.to_owned(),
            severity: severity.to_owned(),
            node: node.to_owned(),
            at_unix_ms: crate::ops::now_unix_ms(),
            message,
        }
    }

    /// RFC 5424 severity: 2 critical, 4 warning, 6 informational.
    fn syslog_severity(&self) -> u8 {
        match self.severity.as_str() {
            "critical" => 2,
            "warning" => 4,
            _ => 6,
        }
    }

    /// The RFC 5424 message (no framing).
    pub fn to_syslog(&self, facility: u8) -> String {
        let pri = u16::from(facility) * 8 + u16::from(self.syslog_severity());
        let ts = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(self.at_unix_ms),
        );
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(']', "\\]")
        };
        let host = printable(&self.node, 255);
        let msgid = printable(&self.event, 32);
        format!(
            "<{pri}>1 {ts} {host} tandemd {pid} {msgid} [{SD_ID} event=\"{}\" severity=\"{}\"] {}",
            esc(&self.event),
            esc(&self.severity),
            self.message.replace(['\r', '\n'], " "),
            pid = std::process::id(),
        )
    }
}

/// RFC 5424 header fields are printable US-ASCII without spaces; `-` when empty.
fn printable(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// Puts alerts on the queue; cheap to clone.
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<Alert>,
    settings: Arc<watch::Sender<Alerts>>,
    dropped: Arc<AtomicU64>,
}

impl AlertSender {
    /// Starts the worker with `settings`.
    pub fn start(settings: Alerts) -> AlertSender {
        let (tx, rx) = mpsc::channel(QUEUE);
        let settings = Arc::new(watch::Sender::new(settings));
        tokio::spawn(worker(rx, settings.subscribe()));
        AlertSender {
            tx,
            settings,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an alert; never waits. A full queue drops it (counted).
    pub fn send(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// New settings (after a config commit).
    pub fn configure(&self, settings: &Alerts) {
        self.settings.send_if_modified(|s| {
            if s != settings {
                *s = settings.clone();
                true
            } else {
                false
            }
        });
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn worker(mut rx: mpsc::Receiver<Alert>, settings: watch::Receiver<Alerts>) {
    let udp = UdpSocket::bind("0.0.0.0:0").await.ok();
    let udp6 = UdpSocket::bind("[::]:0").await.ok();
    let mut tcp: std::collections::HashMap<std::net::SocketAddr, TcpStream> = Default::default();
    let deliveries = Arc::new(Semaphore::new(16));
    while let Some(alert) = rx.recv().await {
        let s = settings.borrow().clone();
        for target in &s.syslog {
            let line = alert.to_syslog(target.facility);
            match target.transport {
                SyslogTransport::Udp => {
                    let sock = if target.address.is_ipv4() {
                        &udp
                    } else {
                        &udp6
                    };
                    if let Some(sock) = sock
                        && let Err(e) = sock.send_to(line.as_bytes(), target.address).await
                    {
                        tracing::debug!(to = %target.address, error = %e, "syslog datagram not sent");
                    }
                }
                SyslogTransport::Tcp => {
                    let framed = format!("{} {line}", line.len());
                    // One kept connection per receiver; dialled again once after an error.
                    for _ in 0..2 {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            tcp.entry(target.address)
                        {
                            match tokio::time::timeout(
                                Duration::from_secs(3),
                                TcpStream::connect(target.address),
                            )
                            .await
                            {
                                Ok(Ok(c)) => {
                                    slot.insert(c);
                                }
                                _ => break,
                            }
                        }
                        let Some(c) = tcp.get_mut(&target.address) else {
                            break;
                        };
                        match tokio::time::timeout(
                            Duration::from_secs(3),
                            c.write_all(framed.as_bytes()),
                        )
                        .await
                        {
                            Ok(Ok(())) => break,
                            _ => {
                                tcp.remove(&target.address);
                            }
                        }
                    }
                }
            }
        }
        for hook in &s.webhooks {
            if !hook.events.is_empty() && !hook.events.contains(&alert.event) {
                continue;
            }
            let Ok(url) = tandem_config::parse_http_url(&hook.url) else {
                continue;
            };
            let body = serde_json::to_vec(&alert).unwrap_or_default();
            let Ok(permit) = deliveries.clone().try_acquire_owned() else {
                tracing::warn!(webhook = %hook.name, "too many webhook deliveries in flight; alert dropped");
                continue;
            };
            let name = hook.name.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut wait = Duration::from_secs(1);
                for attempt in 1..=WEBHOOK_ATTEMPTS {
                    match post(&url, &body).await {
                        Ok(status) if (200..300).contains(&status) => return,
                        Ok(status) => {
                            tracing::debug!(webhook = %name, status, attempt, "webhook refused the alert")
                        }
                        Err(e) => {
                            tracing::debug!(webhook = %name, error = %e, attempt, "webhook unreachable")
                        }
                    }
                    if attempt < WEBHOOK_ATTEMPTS {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
                tracing::warn!(webhook = %name, "alert not delivered after {WEBHOOK_ATTEMPTS} attempts");
            });
        }
    }
}

/// One HTTP/1.1 POST; returns the status code.
async fn post(url: &tandem_config::HttpUrl, body: &[u8]) -> std::io::Result<u16> {
    let run = async {
        let mut c = TcpStream::connect((url.host.as_str(), url.port)).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tandemd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority,
            body.len()
        );
        c.write_all(head.as_bytes()).await?;
        c.write_all(body).await?;
        let mut buf = vec![0u8; 1024];
        let mut got = 0;
        while got < 12 {
            let n = c.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = String::from_utf8_lossy(&buf[..got]);
        line.split(' ')
            .nth(1)
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))
    };
    tokio::time::timeout(WEBHOOK_TIMEOUT, run)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let a = Alert {
            event: "server.down".into(),
            severity: "warning".into(),
            node: "lb a".into(),
            at_unix_ms: 1_700_000_000_123,
            message: "server web/web1 is down\nsecond line".into(),
        };
        assert_eq!(
            a.to_syslog(16),
            format!(
                "<132>1 2023-11-14T22:13:20.123Z lba tandemd {} server.down [tandem@32473 event=\"server.down\" severity=\"warning\"] server web/web1 is down second line",
                std::process::id()
            )
        );
    }
}
