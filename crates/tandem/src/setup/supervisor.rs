//! The supervisor: runs tandemd, restarts it with backoff when it exits, probes its health,
//! pets the hardware watchdog, keeps the firewall in step with the committed config, and
//! confirms a firmware on trial once tandemd has stayed healthy long enough.
//!
//! Health is tandemd answering `status` on its control socket within two seconds.
//!
//! The watchdog (`/dev/watchdog`, QEMU's `i6300esb`) is petted every second from this loop
//! while the box is sound: a hung kernel or a hung supervisor stops the petting and the
//! watchdog resets the box. The supervisor stops petting on purpose when a wedged tandemd
//! cannot be killed, and when a firmware on trial does not become healthy in time (then it
//! also reboots at once): both bring the box back — on trial, to the old slot. A tandemd that
//! merely keeps exiting on a confirmed firmware is restarted with backoff without a reboot:
//! a reboot cannot fix a config problem and would take the console away from the operator.

use super::logring::{LogRing, RingWriter};
use crate::control::protocol::{Request, Response};
use crate::firmware::{self, BootState, Disk};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub struct Options {
    pub tandemd: PathBuf,
    pub config_file: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub watchdog: Option<PathBuf>,
    pub ring: LogRing,
    pub pid_file: PathBuf,
    /// Called when the committed config or the settings may have changed (reloads the
    /// firewall); returns a problem to log, if any.
    pub refresh_firewall: Box<dyn FnMut() -> Option<String>>,
    /// Called with the firewall's refresh: rewrites tandemd's node part when the committed
    /// config's VRRP routers call for another one; `Ok(true)` restarts tandemd.
    pub refresh_node: Box<dyn FnMut() -> Result<bool, String>>,
    /// A key that changes when the firewall's inputs change.
    pub firewall_inputs: Box<dyn Fn() -> Vec<u8>>,
    /// The NTP servers of the settings (read each time: the console may change them).
    pub ntp_servers: Box<dyn Fn() -> Vec<String>>,
}

/// Exponential backoff between restarts: 1 s doubling to 60 s; reset after a healthy minute.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A firmware on trial: when to confirm it, and when to give up on it.
#[derive(Debug, Clone)]
pub struct Trial {
    pub disk: Disk,
    pub boot: BootState,
    pub confirm_after: Duration,
    pub deadline: Instant,
}

impl Trial {
    /// The trial this boot is on, if any: GRUB said `tandem.trial=1` and the grubenv does
    /// not name the booted slot confirmed yet.
    pub fn detect(ring: &mut RingWriter) -> Option<Trial> {
        let boot = BootState::current();
        if !boot.trial {
            return None;
        }
        let disk = match Disk::discover() {
            Ok(d) => d,
            Err(e) => {
                let _ = ring.note(
                    "supervisor",
                    &format!("on trial, but the disk is not found: {e:#}"),
                );
                return None;
            }
        };
        let status = match firmware::status(&disk, boot) {
            Ok(s) => s,
            Err(e) => {
                let _ = ring.note(
                    "supervisor",
                    &format!("on trial, but the boot partition cannot be read: {e:#}"),
                );
                return None;
            }
        };
        if !status.on_trial() {
            return None;
        }
        let confirm_after = Duration::from_secs(
            status
                .confirm_after_seconds
                .unwrap_or(firmware::DEFAULT_CONFIRM_AFTER.as_secs()),
        );
        let timeout = Duration::from_secs(
            status
                .trial_timeout_seconds
                .unwrap_or(firmware::DEFAULT_TRIAL_TIMEOUT.as_secs()),
        );
        Some(Trial {
            disk,
            boot,
            confirm_after,
            deadline: Instant::now() + timeout,
        })
    }
}

/// Asks tandemd for its status; healthy when it answers in time.
pub async fn probe(socket: &std::path::Path, timeout: Duration) -> bool {
    let attempt = async {
        let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(&Request::Status).ok()?;
        line.push(b'\n');
        write.write_all(&line).await.ok()?;
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await.ok()?;
        match serde_json::from_str::<Response>(&answer).ok()? {
            Response::Status(_) => Some(()),
            _ => None,
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(())))
}

struct Watchdog {
    file: Option<std::fs::File>,
    stopped: bool,
}

impl Watchdog {
    fn open(path: Option<&PathBuf>, ring: &mut RingWriter) -> Watchdog {
        let file = path.and_then(|p| match std::fs::OpenOptions::new().write(true).open(p) {
            Ok(f) => {
                let _ = ring.note(
                    "supervisor",
                    &format!("hardware watchdog {} armed", p.display()),
                );
                Some(f)
            }
            Err(e) => {
                let _ = ring.note(
                    "supervisor",
                    &format!("no hardware watchdog ({}: {e})", p.display()),
                );
                None
            }
        });
        Watchdog {
            file,
            stopped: false,
        }
    }

    fn pet(&mut self) {
        if self.stopped {
            return;
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(b"1");
        }
    }

    /// Stops petting: the watchdog resets the box when its timeout runs out.
    fn stop(&mut self) {
        self.stopped = true;
    }

    /// Disarms it (the "magic close") for an orderly shutdown.
    fn disarm(&mut self) {
        if let Some(mut f) = self.file.take() {
            let _ = f.write_all(b"V");
        }
    }
}

enum Event {
    Line(String),
}

pub async fn run(mut opts: Options) -> anyhow::Result<()> {
    let mut ring = opts.ring.writer()?;
    let _ = std::fs::create_dir_all(opts.pid_file.parent().unwrap_or(std::path::Path::new("/")));
    std::fs::write(&opts.pid_file, format!("{}\n", std::process::id()))?;
    let mut watchdog = Watchdog::open(opts.watchdog.as_ref(), &mut ring);
    let mut trial = Trial::detect(&mut ring);
    if let Some(t) = &trial {
        let _ = ring.note(
            "supervisor",
            &format!(
                "firmware on trial in slot {}: confirming it after {}s of health",
                t.boot.slot.map(|s| s.to_string()).unwrap_or_default(),
                t.confirm_after.as_secs()
            ),
        );
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut firewall_key: Option<Vec<u8>> = None;
    let mut child: Option<Child> = None;
    let mut started = Instant::now();
    let mut healthy_since: Option<Instant> = None;
    let mut last_healthy: Option<Instant> = None;
    let mut restart_at: Option<Instant> = Some(Instant::now());
    let mut killed_at: Option<Instant> = None;
    let mut waiting_logged = false;
    let mut ntp_due = Instant::now() + Duration::from_secs(2);
    let (ntp_tx, mut ntp_rx) = mpsc::unbounded_channel::<String>();

    loop {
        tokio::select! {
            Some(report) = ntp_rx.recv() => {
                let _ = ring.note("ntp", &report);
            }
            Some(Event::Line(line)) = rx.recv() => {
                // The console gets tandemd's lines but the access log; the ring gets all.
                if !line.contains(" access:") {
                    println!("{line}");
                }
                let _ = ring.line(&line);
            }
            _ = hup.recv() => {
                let _ = ring.note("supervisor", "settings changed: restarting tandemd");
                println!("supervisor: settings changed: restarting tandemd");
                firewall_key = None;
                if let Some(c) = child.as_mut() {
                    stop(c, Duration::from_secs(15)).await;
                }
                child = None;
                backoff.reset();
                restart_at = Some(Instant::now());
            }
            _ = term.recv() => {
                let _ = ring.note("supervisor", "stopping tandemd (shutdown)");
                if let Some(c) = child.as_mut() {
                    stop(c, Duration::from_secs(15)).await;
                }
                watchdog.disarm();
                let _ = std::fs::remove_file(&opts.pid_file);
                return Ok(());
            }
            _ = tick.tick() => {
                // tandemd exited?
                if let Some(c) = child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    let ran = started.elapsed();
                    if ran > Duration::from_secs(60) && healthy_since.is_some() {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    let msg = format!("tandemd exited ({status}) after {}s; restarting in {}s", ran.as_secs(), delay.as_secs());
                    println!("supervisor: {msg}");
                    let _ = ring.note("supervisor", &msg);
                    child = None;
                    healthy_since = None;
                    killed_at = None;
                    restart_at = Some(Instant::now() + delay);
                }
                // Start (or restart) it when due and configured.
                if child.is_none() && restart_at.is_some_and(|t| Instant::now() >= t) {
                    if opts.config_file.exists() {
                        match spawn(&opts, tx.clone()) {
                            Ok(c) => {
                                let _ = ring.note("supervisor", "tandemd started");
                                child = Some(c);
                                started = Instant::now();
                                healthy_since = None;
                                last_healthy = None;
                                restart_at = None;
                                waiting_logged = false;
                            }
                            Err(e) => {
                                let delay = backoff.next_delay();
                                let _ = ring.note("supervisor", &format!("cannot start tandemd: {e}; again in {}s", delay.as_secs()));
                                restart_at = Some(Instant::now() + delay);
                            }
                        }
                    } else if !waiting_logged {
                        let _ = ring.note("supervisor", "waiting for the first-boot setup to write the config");
                        waiting_logged = true;
                    }
                }
                // Health.
                if child.is_some() {
                    if probe(&opts.socket, Duration::from_secs(2)).await {
                        if healthy_since.is_none() {
                            let _ = ring.note("supervisor", "tandemd is healthy");
                            println!("supervisor: tandemd is healthy");
                        }
                        healthy_since.get_or_insert_with(Instant::now);
                        last_healthy = Some(Instant::now());
                    } else {
                        healthy_since = None;
                        let wedged = match last_healthy {
                            Some(t) => t.elapsed() > Duration::from_secs(30),
                            None => started.elapsed() > Duration::from_secs(120),
                        };
                        if wedged && killed_at.is_none() {
                            let _ = ring.note("supervisor", "tandemd does not answer: killing it");
                            if let Some(c) = child.as_mut() {
                                let _ = c.start_kill();
                            }
                            killed_at = Some(Instant::now());
                        }
                        if killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
                            let _ = ring.note("supervisor", "tandemd cannot be killed: letting the watchdog reset the box");
                            watchdog.stop();
                        }
                    }
                }
                // Firewall in step with the committed config and the settings.
                let key = (opts.firewall_inputs)();
                if firewall_key.as_ref() != Some(&key) {
                    // The node part first: an HA box places the committed VRRP routers.
                    match (opts.refresh_node)() {
                        Ok(true) => {
                            let msg = "the committed VRRP routers changed: node part rewritten, restarting tandemd";
                            println!("supervisor: {msg}");
                            let _ = ring.note("supervisor", msg);
                            if let Some(c) = child.as_mut() {
                                stop(c, Duration::from_secs(15)).await;
                            }
                            child = None;
                            healthy_since = None;
                            killed_at = None;
                            backoff.reset();
                            restart_at = Some(Instant::now());
                        }
                        Ok(false) => {}
                        Err(problem) => {
                            let _ = ring.note("supervisor", &format!("node part: {problem}"));
                        }
                    }
                    if let Some(problem) = (opts.refresh_firewall)() {
                        let _ = ring.note("supervisor", &format!("firewall: {problem}"));
                    }
                    firewall_key = Some(key);
                }
                // Firmware trial.
                if let Some(t) = &trial {
                    if healthy_since.is_some_and(|h| h.elapsed() >= t.confirm_after) {
                        match firmware::confirm(&t.disk, t.boot) {
                            Ok(slot) => {
                                let msg = format!("firmware in slot {slot} confirmed: tandemd healthy for {}s", t.confirm_after.as_secs());
                                println!("supervisor: {msg}");
                                let _ = ring.note("supervisor", &msg);
                            }
                            Err(e) => {
                                let _ = ring.note("supervisor", &format!("cannot confirm the firmware: {e:#}"));
                            }
                        }
                        trial = None;
                    } else if Instant::now() >= t.deadline {
                        let msg = "firmware on trial did not become healthy in time: rebooting into the previous slot";
                        println!("supervisor: {msg}");
                        let _ = ring.note("supervisor", msg);
                        watchdog.stop();
                        let _ = std::process::Command::new("reboot").status();
                        trial = None;
                    }
                }
                if Instant::now() >= ntp_due {
                    ntp_due = Instant::now() + super::ntp::INTERVAL;
                    let servers = (opts.ntp_servers)();
                    if !servers.is_empty() {
                        let tx = ntp_tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(super::ntp::sync(&servers).await);
                        });
                    }
                }
                watchdog.pet();
            }
        }
    }
}

fn spawn(opts: &Options, tx: mpsc::UnboundedSender<Event>) -> std::io::Result<Child> {
    let mut child = Command::new(&opts.tandemd)
        .arg("--config")
        .arg(&opts.config_file)
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("--control-socket")
        .arg(&opts.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        forward(BufReader::new(out), tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(BufReader::new(err), tx);
    }
    Ok(child)
}

fn forward<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
    tx: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(Event::Line(line)).is_err() {
                break;
            }
        }
    });
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let got: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }

    #[tokio::test]
    async fn a_silent_or_absent_socket_is_unhealthy_and_an_answer_is_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        assert!(!probe(&sock, Duration::from_millis(200)).await);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        // Accepts but never answers.
        let silent = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
            listener
        });
        assert!(!probe(&sock, Duration::from_millis(300)).await);
        silent.abort();
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut line = String::new();
            BufReader::new(r).read_line(&mut line).await.unwrap();
            let answer =
                serde_json::to_string(&Response::Status(Box::new(serde_json::json!({})))).unwrap();
            w.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
        });
        assert!(probe(&sock, Duration::from_secs(2)).await);
    }
}
