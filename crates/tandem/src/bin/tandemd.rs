use clap::Parser;
use std::cell::Cell;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tandem::daemon::args::Args;

// mimalloc rather than glibc's malloc: it hands memory that idle connections gave back to the
// kernel (glibc keeps it; 10,000 idle clients held 14.6 KiB each against 9.9), and the HTTP/2
// path's many small allocations cost less (docs/performance.md, "Beside HAProxy and nginx").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    tandem::logging::init(args.log_json);
    // No transparent huge pages for this process: mimalloc asks for them on its arenas, and
    // the kernel then fills a 2 MiB page around every few KiB still in use, so the memory
    // of a burst of clients, given back once they idle, comes back as untouched huge-page
    // filler (10,000 idle clients: 1.7 KiB each without, 4.5 KiB and growing with).
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off for tandemd");
    }
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandemd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tandem::daemon::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}

/// How often at most a worker gives its free memory back (a forced collect walks the thread's
/// pages: tens of microseconds with 10,000 clients).
const COLLECT_EVERY: Duration = Duration::from_millis(250);

/// Called by each worker thread as it goes idle. mimalloc hands the pages that freed memory
/// leaves empty back to the kernel after a short delay, but it looks at that delay only inside
/// later allocator calls of the same thread: a worker that falls idle after a burst (10,000
/// clients served, then parked between requests in a few hundred bytes each) would keep the
/// burst's pages for good — 13 KiB per idle client instead of under 2. So a worker that parks
/// collects, at most four times a second; a saturated worker seldom parks and pays nothing.
fn collect_when_idle() {
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_some_and(|t| now.duration_since(t) < COLLECT_EVERY)
        {
            return;
        }
        last.set(Some(now));
        // SAFETY: mi_collect takes no pointers; it frees this thread's empty pages and purges
        // what is due, as allocations and frees do.
        unsafe { libmimalloc_sys::mi_collect(true) };
    });
}

/// Open files wanted: every client and every server connection is one.
const OPEN_FILES: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE. The kernel's default (1,024 soft), which a box's init passes on,
/// would cap the box at a few hundred clients and answer the rest with failed accepts. As
/// root the hard limit goes up too, to `OPEN_FILES` or the kernel's `fs.nr_open` if lower;
/// otherwise the soft limit goes up to the hard one.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let want = OPEN_FILES.min(nr_open).max(hard);
    let raised = setrlimit(Resource::RLIMIT_NOFILE, want, want)
        .map(|()| want)
        .or_else(|_| setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map(|()| hard));
    match raised {
        Ok(n) if n != soft => tracing::info!(from = soft, to = n, "open files limit raised"),
        Ok(_) => {}
        Err(e) => tracing::warn!(limit = soft, error = %e, "cannot raise the open files limit"),
    }
}
