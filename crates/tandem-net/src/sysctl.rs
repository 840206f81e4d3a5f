//! Per-interface IP sysctls (`/proc/sys/net/ipv{4,6}/conf/SCOPE/KEY`), written safely.
//!
//! Only the settings named by [`Ipv4Conf`] and [`Ipv6Conf`] can be touched, each with its
//! own range of valid values, and the interface part of the path is an [`InterfaceName`]
//! (no `/`, no `..`), so no caller input can reach another file. Files are opened without
//! `O_CREAT` and with `O_NOFOLLOW`.
//!
//! `/proc/sys/net` shows the network namespace of the *thread* that opens it: write from
//! the thread (or inside `netns::run_in_netns`) whose namespace is meant.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::info;

use crate::interface::InterfaceName;

/// Which `conf/` directory: every interface, the template for new ones, or one interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfScope {
    /// `conf/all`: for most boolean settings the kernel uses `all` OR the interface's, and
    /// for `rp_filter` and `arp_ignore`/`arp_announce` the maximum of both.
    All,
    /// `conf/default`: copied into interfaces created later.
    Default,
    Interface(InterfaceName),
}

impl ConfScope {
    fn component(&self) -> &str {
        match self {
            ConfScope::All => "all",
            ConfScope::Default => "default",
            ConfScope::Interface(name) => name.as_str(),
        }
    }
}

/// IPv4 settings this crate may change (Documentation/networking/ip-sysctl.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ipv4Conf {
    /// Which ARP requests to answer: 0 any local address, 1 only addresses configured on
    /// the receiving interface, 2 also on the sender's subnet, 3 not host-scope, 8 none.
    ArpIgnore,
    /// Which source address to put in ARP requests: 0 any, 1 same subnet, 2 best local.
    ArpAnnounce,
    /// Answer ARP only on the interface the kernel would route the reply through.
    ArpFilter,
    /// Reverse-path filter: 0 off, 1 strict, 2 loose (RFC 3704).
    RpFilter,
    /// Accept packets whose source is one of this host's addresses.
    AcceptLocal,
    /// When a primary address is removed, promote a secondary instead of removing all of
    /// the subnet's secondaries with it.
    PromoteSecondaries,
    Forwarding,
}

/// IPv6 settings this crate may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ipv6Conf {
    /// 0 no DAD, 1 DAD, 2 DAD and disable IPv6 on a duplicate link-local.
    AcceptDad,
    DisableIpv6,
    /// Also decides the NA Router flag (RFC 4861 §4.4).
    Forwarding,
    /// 0 ignore router advertisements, 1 accept unless forwarding, 2 accept always.
    AcceptRa,
}

impl Ipv4Conf {
    fn key(self) -> &'static str {
        match self {
            Ipv4Conf::ArpIgnore => "arp_ignore",
            Ipv4Conf::ArpAnnounce => "arp_announce",
            Ipv4Conf::ArpFilter => "arp_filter",
            Ipv4Conf::RpFilter => "rp_filter",
            Ipv4Conf::AcceptLocal => "accept_local",
            Ipv4Conf::PromoteSecondaries => "promote_secondaries",
            Ipv4Conf::Forwarding => "forwarding",
        }
    }

    fn allows(self, value: u32) -> bool {
        match self {
            Ipv4Conf::ArpIgnore => matches!(value, 0..=3 | 8),
            Ipv4Conf::ArpAnnounce | Ipv4Conf::RpFilter => value <= 2,
            Ipv4Conf::ArpFilter
            | Ipv4Conf::AcceptLocal
            | Ipv4Conf::PromoteSecondaries
            | Ipv4Conf::Forwarding => value <= 1,
        }
    }
}

impl Ipv6Conf {
    fn key(self) -> &'static str {
        match self {
            Ipv6Conf::AcceptDad => "accept_dad",
            Ipv6Conf::DisableIpv6 => "disable_ipv6",
            Ipv6Conf::Forwarding => "forwarding",
            Ipv6Conf::AcceptRa => "accept_ra",
        }
    }

    fn allows(self, value: u32) -> bool {
        match self {
            Ipv6Conf::AcceptDad | Ipv6Conf::AcceptRa => value <= 2,
            Ipv6Conf::DisableIpv6 | Ipv6Conf::Forwarding => value <= 1,
        }
    }
}

/// One sysctl: where it lives and what it may hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    Ipv4(ConfScope, Ipv4Conf),
    Ipv6(ConfScope, Ipv6Conf),
}

impl Setting {
    /// The path below `/proc/sys`.
    pub fn relative_path(&self) -> PathBuf {
        let (family, scope, key) = match self {
            Setting::Ipv4(scope, key) => ("ipv4", scope, key.key()),
            Setting::Ipv6(scope, key) => ("ipv6", scope, key.key()),
        };
        ["net", family, "conf", scope.component(), key]
            .iter()
            .collect()
    }

    pub fn allows(&self, value: u32) -> bool {
        match self {
            Setting::Ipv4(_, key) => key.allows(value),
            Setting::Ipv6(_, key) => key.allows(value),
        }
    }
}

impl fmt::Display for Setting {
    /// The `sysctl(8)` name, e.g. `net.ipv4.conf.eth0.arp_ignore`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, scope, key) = match self {
            Setting::Ipv4(scope, key) => ("ipv4", scope, key.key()),
            Setting::Ipv6(scope, key) => ("ipv6", scope, key.key()),
        };
        write!(f, "net.{family}.conf.{}.{key}", scope.component())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("{value} is not a valid value for {setting}")]
    OutOfRange { setting: String, value: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: expected one integer, found {content:?}", path.display())]
    Unparsable { path: PathBuf, content: String },
}

/// Reads and writes settings below a root (`/proc/sys`; another root in unit tests).
#[derive(Clone, Debug)]
pub struct Sysctl {
    root: PathBuf,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl::new()
    }
}

impl Sysctl {
    pub fn new() -> Self {
        Sysctl {
            root: PathBuf::from("/proc/sys"),
        }
    }

    /// Use `root` instead of `/proc/sys` (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Sysctl { root: root.into() }
    }

    fn path(&self, setting: &Setting) -> PathBuf {
        self.root.join(setting.relative_path())
    }

    pub fn get(&self, setting: &Setting) -> Result<u32, SysctlError> {
        let path = self.path(setting);
        read_value(&path)
    }

    /// Set `setting` to `value` and return the value it had, so that the caller can put it
    /// back. Writes nothing when the value is already right.
    pub fn set(&self, setting: &Setting, value: u32) -> Result<u32, SysctlError> {
        if !setting.allows(value) {
            return Err(SysctlError::OutOfRange {
                setting: setting.to_string(),
                value,
            });
        }
        let path = self.path(setting);
        let previous = read_value(&path)?;
        if previous != value {
            write_value(&path, value)?;
            info!(%setting, previous, value, "sysctl set");
        }
        Ok(previous)
    }
}

fn open(path: &Path, write: bool) -> Result<File, SysctlError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        // /proc/sys files always exist; never create one, and never follow a link.
        .create(false)
        .truncate(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| SysctlError::Io {
            path: path.to_owned(),
            source,
        })
}

fn read_value(path: &Path) -> Result<u32, SysctlError> {
    let mut content = String::new();
    open(path, false)?
        .read_to_string(&mut content)
        .map_err(|source| SysctlError::Io {
            path: path.to_owned(),
            source,
        })?;
    content.trim().parse().map_err(|_| SysctlError::Unparsable {
        path: path.to_owned(),
        content,
    })
}

fn write_value(path: &Path, value: u32) -> Result<(), SysctlError> {
    // One write(2): procfs parses each write on its own.
    open(path, true)?
        .write_all(format!("{value}\n").as_bytes())
        .map_err(|source| SysctlError::Io {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str) -> ConfScope {
        ConfScope::Interface(InterfaceName::new(name).unwrap())
    }

    #[test]
    fn paths_and_names() {
        let s = Setting::Ipv4(interface("eth0.100"), Ipv4Conf::ArpIgnore);
        assert_eq!(
            s.relative_path(),
            PathBuf::from("net/ipv4/conf/eth0.100/arp_ignore")
        );
        assert_eq!(s.to_string(), "net.ipv4.conf.eth0.100.arp_ignore");
        let s = Setting::Ipv6(ConfScope::All, Ipv6Conf::Forwarding);
        assert_eq!(
            s.relative_path(),
            PathBuf::from("net/ipv6/conf/all/forwarding")
        );
    }

    #[test]
    fn value_ranges() {
        let ignore = Setting::Ipv4(ConfScope::All, Ipv4Conf::ArpIgnore);
        for ok in [0, 1, 2, 3, 8] {
            assert!(ignore.allows(ok));
        }
        for bad in [4, 7, 9, 100] {
            assert!(!ignore.allows(bad));
        }
        assert!(Setting::Ipv4(ConfScope::All, Ipv4Conf::RpFilter).allows(2));
        assert!(!Setting::Ipv4(ConfScope::All, Ipv4Conf::RpFilter).allows(3));
        assert!(!Setting::Ipv4(ConfScope::All, Ipv4Conf::AcceptLocal).allows(2));
        assert!(Setting::Ipv6(ConfScope::Default, Ipv6Conf::AcceptDad).allows(2));
        assert!(!Setting::Ipv6(ConfScope::Default, Ipv6Conf::DisableIpv6).allows(2));
    }

    fn scratch_root() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("tandem-net-sysctl-{}-{n}", std::process::id()));
        std::fs::create_dir_all(root.join("net/ipv4/conf/eth0")).unwrap();
        std::fs::write(root.join("net/ipv4/conf/eth0/arp_ignore"), "0\n").unwrap();
        root
    }

    #[test]
    fn set_returns_the_previous_value_and_validates() {
        let root = scratch_root();
        let sysctl = Sysctl::with_root(&root);
        let setting = Setting::Ipv4(interface("eth0"), Ipv4Conf::ArpIgnore);
        assert_eq!(sysctl.set(&setting, 1).unwrap(), 0);
        assert_eq!(sysctl.get(&setting).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(root.join("net/ipv4/conf/eth0/arp_ignore")).unwrap(),
            "1\n"
        );
        assert_eq!(sysctl.set(&setting, 1).unwrap(), 1);
        assert!(matches!(
            sysctl.set(&setting, 5),
            Err(SysctlError::OutOfRange { value: 5, .. })
        ));
        assert_eq!(sysctl.get(&setting).unwrap(), 1);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn never_creates_files() {
        let root = scratch_root();
        let sysctl = Sysctl::with_root(&root);
        let missing = Setting::Ipv4(interface("eth1"), Ipv4Conf::ArpIgnore);
        assert!(matches!(
            sysctl.set(&missing, 1),
            Err(SysctlError::Io { .. })
        ));
        assert!(!root.join("net/ipv4/conf/eth1").exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn does_not_follow_symlinks() {
        let root = scratch_root();
        let target = root.join("elsewhere");
        std::fs::write(&target, "0\n").unwrap();
        std::fs::create_dir_all(root.join("net/ipv4/conf/eth2")).unwrap();
        std::os::unix::fs::symlink(&target, root.join("net/ipv4/conf/eth2/arp_ignore")).unwrap();
        let sysctl = Sysctl::with_root(&root);
        assert!(
            sysctl
                .set(&Setting::Ipv4(interface("eth2"), Ipv4Conf::ArpIgnore), 1)
                .is_err()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "0\n");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unparsable_content_is_an_error() {
        let root = scratch_root();
        std::fs::write(root.join("net/ipv4/conf/eth0/arp_ignore"), "one\n").unwrap();
        let sysctl = Sysctl::with_root(&root);
        assert!(matches!(
            sysctl.get(&Setting::Ipv4(interface("eth0"), Ipv4Conf::ArpIgnore)),
            Err(SysctlError::Unparsable { .. })
        ));
        std::fs::remove_dir_all(root).unwrap();
    }
}
