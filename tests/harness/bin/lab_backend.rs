//! A small real server for the lab, `make run` and the benchmarks. Every answer names the
//! server, so a client can tell which one the balancer picked.
//!
//! HTTP paths:
//! - `/` and anything unknown: `200`, body `NAME\n`, header `X-Server: NAME`
//! - `/bytes/N`: `200` with N bytes of body
//! - `/slow/MS`: answers after MS milliseconds
//! - `/status/N`: answers status N
//! - `/headers`: the request head as the server received it
//! - `/stream/N/MS`: N chunks of 1 KiB, one every MS milliseconds (a long download)
//! - `/health`: `200 ok`, or `503` while the file given by `--fail-health-file` exists
//!
//! TCP (`--tcp`): writes `NAME\n`, then echoes. UDP (`--udp`): answers `NAME:` + datagram.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Parser, Debug)]
struct Args {
    /// The name every answer carries.
    #[arg(long)]
    name: String,
    #[arg(long)]
    http: Vec<SocketAddr>,
    #[arg(long)]
    tcp: Vec<SocketAddr>,
    #[arg(long)]
    udp: Vec<SocketAddr>,
    /// While this file exists, `/health` answers 503.
    #[arg(long)]
    fail_health_file: Option<PathBuf>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let mut tasks = Vec::new();
    for addr in &args.http {
        let listener = TcpListener::bind(addr).await?;
        tasks.push(tokio::spawn(http_server(listener, args.clone())));
    }
    for addr in &args.tcp {
        let listener = TcpListener::bind(addr).await?;
        tasks.push(tokio::spawn(tcp_echo(listener, args.name.clone())));
    }
    for addr in &args.udp {
        let socket = UdpSocket::bind(addr).await?;
        tasks.push(tokio::spawn(udp_echo(socket, args.name.clone())));
    }
    // Readiness for whoever started us: every socket is bound.
    println!("ready");
    for task in tasks {
        task.await?;
    }
    Ok(())
}

async fn http_server(listener: TcpListener, args: Arc<Args>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let args = args.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, args.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, args: Arc<Args>) -> Result<Response<Body>, Infallible> {
    let name = &args.name;
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let number = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok());
    let text = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("x-server", name.as_str())
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)).boxed())
            .expect("static response parts are valid")
    };
    let response = match parts.first().copied() {
        Some("bytes") => {
            let n = number(1).unwrap_or(0) as usize;
            Response::builder()
                .header("x-server", name.as_str())
                .body(Full::new(Bytes::from(vec![b'x'; n])).boxed())
                .expect("static response parts are valid")
        }
        Some("slow") => {
            tokio::time::sleep(Duration::from_millis(number(1).unwrap_or(1000))).await;
            text(200, format!("{name}\n"))
        }
        Some("status") => text(number(1).unwrap_or(200) as u16, format!("{name}\n")),
        Some("headers") => {
            let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                head.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
            }
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            head.push_str(&format!("body-bytes: {}\n", body.len()));
            text(200, head)
        }
        Some("stream") => {
            let chunks = number(1).unwrap_or(10);
            let every = Duration::from_millis(number(2).unwrap_or(100));
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for _ in 0..chunks {
                    if tx
                        .send(Ok(Frame::data(Bytes::from(vec![b's'; 1024]))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            });
            let mut rx = rx;
            let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Response::builder()
                .header("x-server", name.as_str())
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("static response parts are valid")
        }
        Some("health") => match &args.fail_health_file {
            Some(f) if f.exists() => text(503, "failing on purpose\n".into()),
            _ => text(200, "ok\n".into()),
        },
        _ => text(200, format!("{name}\n")),
    };
    Ok(response)
}

async fn tcp_echo(listener: TcpListener, name: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let greeting = format!("{name}\n");
        tokio::spawn(async move {
            if stream.write_all(greeting.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The client half-closed: say goodbye after its FIN, proving the other
            // direction still flows.
            let _ = stream.write_all(b"bye\n").await;
            let _ = stream.shutdown().await;
        });
    }
}

async fn udp_echo(socket: UdpSocket, name: String) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let mut reply = format!("{name}:").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&reply, from).await;
    }
}
