//! `failover-probe`: the client of `bench/failover.sh`. Sends a UDP datagram carrying a
//! sequence number to a VIP every `--interval`, for `--duration`, and records every answer.
//! The echo behind each box answers `NAME:SEQ`, with a name per box, so the record shows which
//! box answered when.
//!
//! At the end it prints one line:
//!
//! ```text
//! sent=2000 answered=1931 lost=69 outage_ms=351.2 from=a to=b
//! ```
//!
//! `outage_ms` is the time between the last answer from the box that answered first (`from`)
//! and the first answer from another box (`to`), both as received by this client — the outage
//! a client sees. `-` when no other box answered. `lost` counts probes never answered (answers
//! are awaited 500 ms after the last probe).

use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "UDP probes to a VIP; prints the outage of a failover and the lost probes")]
struct Args {
    /// The VIP's UDP echo, e.g. 10.0.0.100:7000.
    #[arg(long)]
    target: SocketAddr,
    /// Time between probes.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to probe.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Also write `seq,sent_us,answered_us,server` per probe here (`-` when unanswered;
    /// microseconds since the first probe).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

struct Answer {
    seq: u64,
    at: Instant,
    server: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(10)))?;
    let receiver_socket = socket.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut answers = Vec::new();
        let mut buf = [0u8; 512];
        let mut since: Option<Instant> = None;
        loop {
            if let Ok((n, _)) = receiver_socket.recv_from(&mut buf) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some((server, seq)) = text.split_once(':')
                    && let Ok(seq) = seq.trim().parse()
                {
                    answers.push(Answer {
                        seq,
                        at,
                        server: server.to_owned(),
                    });
                }
            }
            if stopped.load(Ordering::Relaxed)
                && since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(500)
            {
                return answers;
            }
        }
    });

    let start = Instant::now();
    let mut sent = Vec::new();
    let mut seq = 0u64;
    while start.elapsed() < args.duration {
        sent.push(Instant::now());
        // A failed send (no route for a moment) is still a probe that got no answer.
        let _ = socket.send_to(seq.to_string().as_bytes(), args.target);
        seq += 1;
        let next = start + args.interval * seq as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let answers = receiver.join().expect("the receiver thread");

    let mut answered_at: Vec<Option<(Instant, &str)>> = vec![None; sent.len()];
    for a in &answers {
        if let Some(slot) = answered_at.get_mut(a.seq as usize) {
            slot.get_or_insert((a.at, a.server.as_str()));
        }
    }
    let lost = answered_at.iter().filter(|a| a.is_none()).count();
    let (outage, from, to) = outage(&answers);
    println!(
        "sent={} answered={} lost={lost} outage_ms={} from={} to={}",
        sent.len(),
        sent.len() - lost,
        outage.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0)),
        from.unwrap_or("-"),
        to.unwrap_or("-"),
    );
    if let Some(path) = args.record {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(f, "seq,sent_us,answered_us,server")?;
        for (i, (s, a)) in sent.iter().zip(&answered_at).enumerate() {
            let us = |t: &Instant| t.duration_since(start).as_micros();
            match a {
                Some((at, server)) => writeln!(f, "{i},{},{},{server}", us(s), us(at))?,
                None => writeln!(f, "{i},{},-,-", us(s))?,
            }
        }
    }
    Ok(())
}

/// The time between the last answer from the first box and the first answer from another,
/// with both boxes' names.
fn outage(answers: &[Answer]) -> (Option<Duration>, Option<&str>, Option<&str>) {
    let Some(first) = answers.first() else {
        return (None, None, None);
    };
    let from = first.server.as_str();
    let Some(switch) = answers.iter().position(|a| a.server != from) else {
        return (None, Some(from), None);
    };
    let new = &answers[switch];
    let last_old = answers[..switch]
        .iter()
        .rev()
        .find(|a| a.server == from)
        .map(|a| a.at)
        .unwrap_or(first.at);
    (
        Some(new.at.saturating_duration_since(last_old)),
        Some(from),
        Some(new.server.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outage_runs_from_the_last_old_answer_to_the_first_new_one() {
        let t0 = Instant::now();
        let a = |seq, ms, server: &str| Answer {
            seq,
            at: t0 + Duration::from_millis(ms),
            server: server.into(),
        };
        let answers = [a(0, 0, "a"), a(1, 5, "a"), a(9, 45, "b"), a(10, 50, "b")];
        let (d, from, to) = outage(&answers);
        assert_eq!(d, Some(Duration::from_millis(40)));
        assert_eq!((from, to), (Some("a"), Some("b")));
        assert_eq!(outage(&answers[..2]).0, None);
    }
}
