//! The dataplane alone on a config file, for measuring the HTTP engine's CPU per request.
//!
//! ```text
//! http_proxy CONFIG.yaml     # `schema: 1` + `shared:` (services, pools, certificates)
//! ```
//!
//! Prints its PID; read its utime + stime from /proc/PID/stat before and after a `wrk` or
//! `h2load` run (see `docs/dataplane.md`, "Measuring the HTTP engine").

use std::sync::Arc;

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: http_proxy CONFIG.yaml");
    let text = std::fs::read_to_string(&path).expect("read the config");
    let shared = tandem_config::parse_shared_document(&text)
        .expect("a valid config")
        .shared;
    let dir = std::env::temp_dir().join("tandem-http-proxy");
    let opts = tandem_dataplane::DataplaneOptions::new(dir, "bench");
    let _dp = tandem_dataplane::Dataplane::start(Arc::new(shared), opts)
        .await
        .expect("the dataplane starts");
    println!("proxy pid {}", std::process::id());
    std::future::pending::<()>().await;
}
