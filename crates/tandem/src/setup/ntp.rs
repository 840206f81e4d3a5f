//! A small SNTP client (RFC 4330, NTPv4 packet format of RFC 5905 §7.3): busybox-static has no
//! `ntpd`. The supervisor asks the configured servers at start and every 17 minutes and steps
//! the clock when it is off by more than 128 ms. A reply counts only if it is a server reply
//! (mode 4), not a kiss-o'-death (stratum 0), and echoes our transmit time as its originate
//! time (so an off-path sender cannot set the clock without seeing our request).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1900 (NTP's era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
pub const STEP_THRESHOLD: f64 = 0.128;
pub const INTERVAL: Duration = Duration::from_secs(1024);

/// An NTP timestamp: 32.32 fixed point seconds since 1900.
pub fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

pub fn ntp_seconds(ts: u64) -> f64 {
    (ts >> 32) as f64 - NTP_UNIX_OFFSET as f64 + (ts & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// A client request (LI 0, version 4, mode 3) carrying `t1` as its transmit timestamp.
pub fn request(t1: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&t1.to_be_bytes());
    p
}

/// The clock offset (seconds to add to ours) from a reply to a request sent at `t1` and
/// received at `t4`.
pub fn offset(reply: &[u8], t1: u64, t4: u64) -> Result<f64, String> {
    if reply.len() < 48 {
        return Err(format!("reply of {} bytes", reply.len()));
    }
    let mode = reply[0] & 0x07;
    if mode != 4 {
        return Err(format!("mode {mode}, not a server reply"));
    }
    if reply[1] == 0 {
        return Err("kiss-o'-death (stratum 0)".into());
    }
    let ts = |at: usize| u64::from_be_bytes(reply[at..at + 8].try_into().expect("8 bytes"));
    let (originate, receive, transmit) = (ts(24), ts(32), ts(40));
    if originate != t1 {
        return Err("the reply does not answer our request".into());
    }
    if transmit == 0 {
        return Err("no transmit time".into());
    }
    let (t1, t2, t3, t4) = (
        ntp_seconds(t1),
        ntp_seconds(receive),
        ntp_seconds(transmit),
        ntp_seconds(t4),
    );
    Ok(((t2 - t1) + (t3 - t4)) / 2.0)
}

/// Asks `server` (port 123); returns the offset.
pub async fn query(server: SocketAddr, timeout: Duration) -> Result<f64, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    let t1 = to_ntp(SystemTime::now());
    sock.send(&request(t1)).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 128];
    let n = tokio::time::timeout(timeout, sock.recv(&mut buf))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    offset(&buf[..n], t1, to_ntp(SystemTime::now()))
}

/// Asks the servers in turn; steps the clock by the first answer's offset when it is larger
/// than [`STEP_THRESHOLD`]. Returns what happened, for the log.
pub async fn sync(servers: &[String]) -> String {
    let mut problems = Vec::new();
    for name in servers {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((name.as_str(), 123)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match query(addr, Duration::from_secs(2)).await {
                Ok(off) if off.abs() > STEP_THRESHOLD => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64()
                        + off;
                    let ts = nix::sys::time::TimeSpec::new(
                        now.trunc() as i64,
                        (now.fract() * 1e9) as i64,
                    );
                    return match nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts) {
                        Ok(()) => format!("clock stepped by {off:+.3}s from {name} ({addr})"),
                        Err(e) => format!("cannot set the clock ({off:+.3}s from {name}): {e}"),
                    };
                }
                Ok(off) => return format!("clock within {off:+.3}s of {name} ({addr})"),
                Err(e) => problems.push(format!("{name} ({addr}): {e}")),
            }
        }
    }
    format!("no NTP server answered: {}", problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(originate: u64, receive: u64, transmit: u64) -> [u8; 48] {
        let mut p = [0u8; 48];
        p[0] = 0x24; // version 4, mode 4
        p[1] = 2;
        p[24..32].copy_from_slice(&originate.to_be_bytes());
        p[32..40].copy_from_slice(&receive.to_be_bytes());
        p[40..48].copy_from_slice(&transmit.to_be_bytes());
        p
    }

    fn at(secs: f64) -> u64 {
        to_ntp(UNIX_EPOCH + Duration::from_secs_f64(secs))
    }

    #[test]
    fn the_offset_is_the_mean_of_both_legs() {
        // Our clock is 10 s behind; 100 ms each way.
        let (t1, t2, t3, t4) = (at(1000.0), at(1010.1), at(1010.1), at(1000.2));
        let off = offset(&reply(t1, t2, t3), t1, t4).unwrap();
        assert!((off - 10.0).abs() < 1e-3, "{off}");
        assert_eq!(request(t1)[0], 0x23);
        assert_eq!(&request(t1)[40..48], &t1.to_be_bytes());
    }

    #[test]
    fn spoofed_kiss_and_client_packets_are_refused() {
        let t1 = at(1000.0);
        assert!(
            offset(&reply(at(999.0), t1, t1), t1, t1)
                .unwrap_err()
                .contains("does not answer")
        );
        let mut kod = reply(t1, t1, t1);
        kod[1] = 0;
        assert!(offset(&kod, t1, t1).unwrap_err().contains("kiss"));
        assert!(offset(&request(t1), t1, t1).unwrap_err().contains("mode 3"));
        assert!(offset(&[0u8; 10], t1, t1).is_err());
    }
}
