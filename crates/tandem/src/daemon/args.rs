//! tandemd's command line.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(name = "tandemd", version, about = "The Tandem load-balancer daemon")]
pub struct Args {
    /// The config file: this box's node part and, on first start or when the file changed,
    /// the shared part to commit.
    #[arg(long, short = 'c', env = "TANDEM_CONFIG")]
    pub config: PathBuf,

    /// Where committed config versions, generated certificates and keys are kept.
    #[arg(long, env = "TANDEM_STATE_DIR", default_value = "/config")]
    pub state_dir: PathBuf,

    /// The root-only control socket tandemctl talks to.
    #[arg(long, env = "TANDEM_SOCKET", default_value = crate::control::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,

    /// On SIGTERM, how long connections in flight may take to finish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: std::time::Duration,

    /// Threads of the dataplane's runtime (default: one per core).
    #[arg(long, env = "TANDEM_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log lines as JSON objects instead of text.
    #[arg(long)]
    pub log_json: bool,
}
