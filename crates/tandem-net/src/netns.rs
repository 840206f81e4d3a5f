//! Test support (feature `netns`): run code inside a named network namespace, and create
//! scratch namespaces that clean themselves up.
//!
//! A socket, a netlink connection or a `/proc/sys/net` file belongs to the network
//! namespace of the *thread* that creates or opens it, for its whole life. So
//! [`run_in_netns`] runs a closure on a fresh thread that has joined the namespace
//! (`setns(CLONE_NEWNET)` on that thread only; the thread ends with the closure, so the
//! namespace never leaks into a thread pool). If the caller is inside a tokio runtime, the
//! thread enters it: a `VrrpSocket`, `Netlink` or `LinkWatch` opened in the closure is
//! registered with (and its tasks spawned on) the caller's runtime, and can be returned
//! and used there.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

/// Where `ip netns add NAME` bind-mounts a namespace.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setns({name}): {errno}")]
    Setns { name: String, errno: Errno },
    #[error("`{argv}` failed ({status}): {stderr}")]
    Command {
        argv: String,
        status: String,
        stderr: String,
    },
}

fn namespace_path(name: &str) -> Result<PathBuf, NetnsError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if !valid {
        return Err(NetnsError::InvalidName(name.to_owned()));
    }
    Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

/// Run `f` on a new thread inside network namespace `name` (as created by `ip netns add`)
/// and return its result. A panic in `f` is resumed on the caller's thread.
///
/// `f` must not block on the caller's runtime (the caller waits for the thread): open
/// things in it, use them outside.
pub fn run_in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = namespace_path(name)?;
    let namespace = File::open(&path).map_err(|source| NetnsError::Open { path, source })?;
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Setns {
                name: name.to_owned(),
                errno,
            })?;
            let _entered = runtime.as_ref().map(|r| r.enter());
            Ok(f())
        });
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Run `ip` with `args` (an argv, never a shell string) and return its stdout, or an
/// error carrying its stderr.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Command {
            argv: format!("ip {}", args.join(" ")),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            argv: format!("ip {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A scratch network namespace named `PREFIX-PID-N` (unique per process and per call, so
/// tests can run in parallel, in threads or in processes), with `lo` up. Dropping it
/// deletes the namespace and with it every interface inside, also when a test panics.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    pub fn create(prefix: &str) -> Result<Self, NetnsError> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        namespace_path(&name)?;
        ip(&["netns", "add", &name])?;
        let guard = NetnsGuard { name };
        guard.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`run_in_netns`] in this namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in_netns(&self.name, f)
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut argv = vec!["-n", self.name.as_str()];
        argv.extend_from_slice(args);
        ip(&argv)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "delete", &self.name]) {
            eprintln!("cleaning up network namespace {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_run_directory() {
        for bad in ["", ".", "..", "../x", "a/b", "a\0b"] {
            assert!(
                matches!(namespace_path(bad), Err(NetnsError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            namespace_path("tn-1-2").unwrap(),
            PathBuf::from("/var/run/netns/tn-1-2")
        );
    }
}
