//! Idle keep-alive clients for `bench/proxy.sh`: opens N connections to a proxy, does one
//! HTTP/1.1 keep-alive request on each (so every connection has been through a whole
//! request, as a browser's idle connection has), then holds them all open.
//!
//! Prints `ready open=… failed=… seconds=…` once every connection is idle, holds them for
//! `--hold`, then prints `still_open=…` (connections the proxy had not closed) and exits.
//! The script reads the proxy's RSS during the hold.

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_bench::read_response;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "Open N keep-alive connections, one request each, then hold them idle")]
struct Args {
    /// The proxy's HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value = "/small")]
    path: String,
    #[arg(long, default_value = "bench.local")]
    host: String,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long to hold the idle connections after `ready`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    hold: Duration,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let limit = tandem_bench::raise_nofile(args.connections as u64 * 2 + 1024);
    if (limit as usize) < args.connections + 64 {
        eprintln!("warning: RLIMIT_NOFILE is {limit}, fewer than the connections asked for");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let request = Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tandem-bench\r\n\r\n",
            args.path, args.host
        )
        .into_bytes(),
    );
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (gate, request, addr) = (gate.clone(), request.clone(), args.addr);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            open(addr, &request).await
        }));
    }
    let mut held = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok(stream) => held.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    println!(
        "ready open={} failed={failed} seconds={:.3}",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    tokio::time::sleep(args.hold).await;
    // Asked of the kernel (TCP_INFO), not of tokio's cached readiness: a connection the proxy
    // closed is in CLOSE_WAIT here.
    let still_open = held.iter().filter(|s| established(s.as_raw_fd())).count();
    println!("still_open={still_open}");
    Ok(())
}

fn established(fd: RawFd) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a tcp_info-sized buffer.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // SAFETY: zero-initialised, and filled by the kernel when rc == 0.
    rc == 0 && unsafe { info.assume_init() }.tcpi_state == 1 // TCP_ESTABLISHED
}

async fn open(addr: SocketAddr, request: &[u8]) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await.context("write request")?;
    let mut buf = Vec::with_capacity(1024);
    let status = read_response(&mut stream, &mut buf)
        .await
        .context("read response")?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(stream)
}
