//! The lab harness: real tandemd processes, real servers and real clients, each test in network
//! namespaces of its own so tests can run in parallel with fixed, readable addresses.
//!
//! Nothing here touches the host's interfaces or routes: every address lives inside a
//! namespace a test created, and every namespace and process is removed when its guard drops.
//! A lab that cannot be built (not root, no `ip`) fails the test loudly; it never skips.

pub mod addr_watch;
pub mod bins;
pub mod freezer;
pub mod netns;
pub mod pair;
pub mod placement;
pub mod probe;
pub mod process;
pub mod tandemd;

pub use addr_watch::{AddressWatch, Overlaps};
pub use freezer::Frozen;
pub use netns::{Netns, Switch};
pub use pair::{PairLab, PairOptions};
pub use placement::TwoMachines;
pub use probe::{ProbeReport, UdpProbe};
pub use process::Proc;
pub use tandemd::Tandemd;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A short name unique to this test process, for namespaces, links and bridges (interface
/// names are at most 15 bytes, so keep prefixes short).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}
