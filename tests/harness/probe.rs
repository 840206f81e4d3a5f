//! A client that keeps asking: a UDP datagram with a sequence number every `period` from a
//! namespace to an echo service, and a record of every answer. What a failover costs a client
//! is then read off the record: the probes never answered, and the longest silence.

use crate::Netns;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long answers are still awaited after the last probe.
const LINGER: Duration = Duration::from_millis(500);

pub struct UdpProbe {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<Vec<Instant>>>,
    receiver: Option<JoinHandle<Vec<Answer>>>,
}

/// One answer: the probe it answers, when it came, and the server named in it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub seq: u64,
    pub at: Instant,
    pub server: String,
}

#[derive(Debug)]
pub struct ProbeReport {
    /// When each probe was sent, by sequence number.
    pub sent: Vec<Instant>,
    pub answers: Vec<Answer>,
    /// Probes never answered.
    pub lost: Vec<u64>,
    /// The longest time between two answers in a row.
    pub longest_silence: Duration,
}

impl UdpProbe {
    /// Starts probing `target` from `ns` every `period`.
    pub fn start(ns: &Netns, target: SocketAddr, period: Duration) -> UdpProbe {
        let socket = ns
            .enter(|| UdpSocket::bind("0.0.0.0:0"))
            .expect("bind the probe socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let tx = socket.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let sender = std::thread::spawn(move || {
            let mut sent = Vec::new();
            let start = Instant::now();
            let mut seq = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let at = Instant::now();
                // A send may fail for a moment (no route while a link is down): still a probe.
                let _ = tx.send_to(seq.to_string().as_bytes(), target);
                sent.push(at);
                seq += 1;
                let next = start + period * (seq as u32);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        });
        let done = stop.clone();
        let receiver = std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut buf = [0u8; 512];
            let mut stopped_at: Option<Instant> = None;
            loop {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Some((server, seq)) = text.split_once(':')
                        && let Ok(seq) = seq.parse()
                    {
                        answers.push(Answer {
                            seq,
                            at,
                            server: server.to_owned(),
                        });
                    }
                }
                if done.load(Ordering::Relaxed) {
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > LINGER {
                        return answers;
                    }
                }
            }
        });
        UdpProbe {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
        }
    }

    /// Stops sending, waits for late answers, and reports.
    pub fn stop(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.take().unwrap().join().expect("probe sender");
        let answers = self
            .receiver
            .take()
            .unwrap()
            .join()
            .expect("probe receiver");
        let answered: BTreeMap<u64, ()> = answers.iter().map(|a| (a.seq, ())).collect();
        let lost = (0..sent.len() as u64)
            .filter(|s| !answered.contains_key(s))
            .collect();
        let longest_silence = answers
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].at))
            .max()
            .unwrap_or_default();
        ProbeReport {
            sent,
            answers,
            lost,
            longest_silence,
        }
    }
}

impl Drop for UdpProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ProbeReport {
    /// A one-line summary for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "{} probes, {} answers, lost {:?}, longest silence {:?}",
            self.sent.len(),
            self.answers.len(),
            self.lost,
            self.longest_silence
        )
    }
}
