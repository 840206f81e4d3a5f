use clap::Parser;
use std::process::ExitCode;
use tandem::daemon::args::Args;

// mimalloc rather than glibc's malloc: it hands memory that idle connections gave back to the
// kernel (glibc keeps it; 10,000 idle clients held 14.6 KiB each against 9.9), and the HTTP/2
// path's many small allocations cost less (docs/performance.md, "Beside HAProxy and nginx").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    tandem::logging::init(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
