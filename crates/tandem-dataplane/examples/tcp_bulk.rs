//! A quick TCP bulk-transfer figure: the proxy's CPU time per GiB moved.
//!
//! ```text
//! tcp_bulk proxy LISTEN BACKEND [copy]   # a dataplane with one tcp service (splice, or copy)
//! tcp_bulk sink LISTEN                    # reads and discards, answers the byte count at EOF
//! tcp_bulk send ADDR GIB                  # sends GiB gibibytes, prints seconds and Gbit/s
//! ```
//!
//! Read the proxy's utime + stime from /proc/PID/stat before and after a `send` (see
//! `docs/dataplane.md`, "Measuring").

use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("proxy") => proxy(&args[2], &args[3], args.get(4).is_some_and(|m| m == "copy")).await,
        Some("sink") => sink(&args[2]).await,
        Some("send") => send(&args[2], args[3].parse().unwrap()).await,
        _ => eprintln!("usage: tcp_bulk proxy LISTEN BACKEND [copy] | sink LISTEN | send ADDR GIB"),
    }
}

async fn proxy(listen: &str, backend: &str, copy: bool) {
    let yaml = format!(
        "schema: 1\nshared:\n  services:\n    - {{ name: bulk, listen: \"{listen}\", protocol: tcp, pool: p, access_log: false }}\n  pools:\n    - {{ name: p, servers: [{{ id: s, address: \"{backend}\" }}] }}\n"
    );
    let shared = tandem_config::parse_shared_document(&yaml).unwrap().shared;
    let dir = std::env::temp_dir().join("tandem-tcp-bulk");
    let mut opts = tandem_dataplane::DataplaneOptions::new(dir, "bench");
    opts.splice = !copy;
    let _dp = tandem_dataplane::Dataplane::start(Arc::new(shared), opts)
        .await
        .unwrap();
    println!("proxy pid {}", std::process::id());
    std::future::pending::<()>().await;
}

async fn sink(listen: &str) {
    let l = tokio::net::TcpListener::bind(listen).await.unwrap();
    loop {
        let (mut s, _) = l.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = s.write_all(total.to_string().as_bytes()).await;
        });
    }
}

async fn send(addr: &str, gib: u64) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let buf = vec![0x33u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..gib * 1024 {
        s.write_all(&buf).await.unwrap();
    }
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(answer, (gib << 30).to_string(), "the sink got every byte");
    println!(
        "{gib} GiB in {secs:.2} s = {:.2} Gbit/s",
        (gib << 33) as f64 / secs / 1e9
    );
}
