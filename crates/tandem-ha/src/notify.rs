//! Notify commands: run on a role change, by argv (never a shell), with a timeout, on a
//! thread of their own at normal priority, so that a slow script never delays an advert.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// One command to run.
#[derive(Debug)]
pub(crate) struct Job {
    pub argv: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

/// Runs jobs one after the other, in the order of the role changes.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    jobs: mpsc::Sender<Job>,
}

impl Notifier {
    pub(crate) fn spawn() -> std::io::Result<Notifier> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tandem-ha-notify".into())
            .spawn(move || {
                for job in rx {
                    run(&job);
                }
            })?;
        Ok(Notifier { jobs })
    }

    /// Queues a job; never blocks.
    pub(crate) fn submit(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}

/// Runs one job to completion or its timeout, then kills it. Returns its exit code, or
/// `None` when it could not start or was killed.
pub(crate) fn run(job: &Job) -> Option<i32> {
    let (program, args) = job.argv.split_first()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (key, value) in &job.env {
        command.env(key, value);
    }
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            warn!(?job.argv, %error, "notify command could not start");
            return None;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    info!(?job.argv, elapsed = ?started.elapsed(), "notify command done");
                } else {
                    warn!(?job.argv, %status, "notify command failed");
                }
                return status.code();
            }
            Ok(None) if started.elapsed() >= job.timeout => {
                warn!(?job.argv, timeout = ?job.timeout, "notify command timed out; killed");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                warn!(?job.argv, %error, "waiting for a notify command");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(argv: &[&str], timeout_ms: u64) -> Job {
        Job {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("TANDEM_ROLE", "active".into())],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn runs_by_argv_with_the_environment_and_no_shell() {
        // A shell would expand `$TANDEM_ROLE`; argv passes it as one literal argument,
        // while the variable itself is in the environment.
        let code = run(&job(
            &[
                "/bin/sh",
                "-c",
                "test \"$TANDEM_ROLE\" = active && test \"$0\" = '$HOME'",
                "$HOME",
            ],
            5000,
        ));
        assert_eq!(code, Some(0));
        assert_eq!(run(&job(&["/bin/false"], 5000)), Some(1));
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let started = Instant::now();
        assert_eq!(run(&job(&["/bin/sleep", "10"], 100)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_reported_not_fatal() {
        assert_eq!(run(&job(&["/nonexistent/notify"], 100)), None);
        assert_eq!(run(&job(&[], 100)), None);
    }
}
