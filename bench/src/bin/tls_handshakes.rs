//! TLS handshake load for `bench/proxy.sh`: N concurrent connections, each in a loop doing
//! connect → TLS 1.3 handshake → one small HTTP/1.1 request → close.
//!
//! `--mode full`: every handshake is a full one (the client keeps no session, offers no
//! ticket). `--mode resume`: each connection slot keeps the newest ticket the server sent it and
//! resumes with it on its next connection (the first connection of each slot is full; the
//! summary counts both kinds, as the server settled them).
//!
//! wrk and h2load cannot be told to resume or not. The client does not verify the server's
//! certificate chain nor its handshake signature: it is a load generator on the client core,
//! and the work that matters is the proxy's. One output line:
//! `handshakes=… full=… resumed=… errors=… seconds=… rate=… p50_ms=… p99_ms=…`.

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_bench::{percentile, read_response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Full,
    Resume,
}

#[derive(Parser, Debug)]
#[command(about = "TLS 1.3 handshakes per second, full or resumed, one small request each")]
struct Args {
    /// The proxy's HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// SNI and Host header.
    #[arg(long, default_value = "bench.local")]
    sni: String,
    /// The path requested on each connection.
    #[arg(long, default_value = "/small")]
    path: String,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// How long to run.
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    mode: Mode,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    full: u64,
    resumed: u64,
    errors: u64,
    non_200: u64,
    first_error: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tandem_bench::raise_nofile(65_536);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let base = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(
            provider.signature_verification_algorithms,
        )))
        .with_no_client_auth();
    let server_name = ServerName::try_from(args.sni.clone()).context("--sni")?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tandem-bench\r\nConnection: close\r\n\r\n",
        args.path, args.sni
    );
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut config = base.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = match args.mode {
            Mode::Full => Resumption::disabled(),
            // One store per slot: the ticket each slot holds is the one its own previous
            // connection received, so every connection after a slot's first resumes.
            Mode::Resume => Resumption::store(Arc::new(ClientSessionMemoryCache::new(4))),
        };
        let connector = TlsConnector::from(Arc::new(config));
        let (addr, name, request) = (args.addr, server_name.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            slot(connector, addr, name, request.into_bytes(), deadline).await
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await?;
        all.latencies_us.extend(t.latencies_us);
        all.full += t.full;
        all.resumed += t.resumed;
        all.errors += t.errors;
        all.non_200 += t.non_200;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let done = all.latencies_us.len() as u64;
    println!(
        "handshakes={done} full={} resumed={} errors={} non_200={} seconds={seconds:.3} rate={:.1} p50_ms={:.3} p99_ms={:.3}",
        all.full,
        all.resumed,
        all.errors,
        all.non_200,
        done as f64 / seconds,
        percentile(&all.latencies_us, 50.0) as f64 / 1000.0,
        percentile(&all.latencies_us, 99.0) as f64 / 1000.0,
    );
    if let Some(e) = all.first_error {
        eprintln!("first error: {e}");
    }
    if done == 0 {
        bail!("no handshake completed");
    }
    Ok(())
}

async fn slot(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Vec<u8>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let t0 = Instant::now();
        match one(&connector, addr, &name, &request, &mut buf).await {
            Ok((kind, status)) => {
                tally.latencies_us.push(t0.elapsed().as_micros() as u64);
                match kind {
                    Some(HandshakeKind::Resumed) => tally.resumed += 1,
                    _ => tally.full += 1,
                }
                if status != 200 {
                    tally.non_200 += 1;
                }
            }
            Err(e) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{e:#}"));
                }
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    tally
}

async fn one(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(Option<HandshakeKind>, u16)> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .context("handshake")?;
    let kind = tls.get_ref().1.handshake_kind();
    tls.write_all(request).await.context("write request")?;
    let status = read_response(&mut tls, buf)
        .await
        .context("read response")?;
    // Dropped without close_notify: the proxy sees the FIN, as after any HTTP client that
    // asked for `Connection: close` and got its whole response.
    Ok((kind, status))
}

/// Accepts any certificate and signature: see the module comment.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
