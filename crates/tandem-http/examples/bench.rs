//! Micro-benchmark: nanoseconds per parse + rewrite of a typical browser request and its
//! response, the per-request work this crate adds to the proxy.
//!
//! ```text
//! cargo run --release -p tandem-http --example bench [-- ITERATIONS [CASE]]
//! ```
//!
//! Prints the median of seven runs of each case (or of CASE only: `parse`, `accessors`,
//! `rewrite`, `request`, `response`; handy under `valgrind --tool=callgrind`, whose
//! instruction counts do not depend on the machine's load). The proxy's whole budget is ~13 µs of CPU per small
//! request (HAProxy's figure, issue 2); this part should stay within 1–2 µs.

// A benchmark needs a clock; the library does not (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use tandem_http::*;

const REQUEST: &[u8] = b"GET /products/shoes/running?size=42&color=blue HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://shop.example.com/products/shoes\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; SRV=web2\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Priority: u=0, i\r\n\
\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Sun, 01 Nov 2026 10:00:00 GMT\r\n\
Server: nginx\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 1234\r\n\
Cache-Control: private, max-age=0\r\n\
Connection: keep-alive\r\n\
\r\n";

fn time(iterations: u32, name: &str, only: Option<&str>, mut f: impl FnMut()) -> f64 {
    if only.is_some_and(|o| o != name) {
        return f64::NAN;
    }
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let only = std::env::args().nth(2);
    let only = only.as_deref();
    let limits = Limits::default();
    let who = Forwarding::new("203.0.113.7".parse().unwrap(), Scheme::Https, false);
    let mut reader = RequestReader::new(limits.clone());
    let mut responses = ResponseReader::new(limits.clone());
    let mut client_buf = BytesMut::with_capacity(4096);
    let mut server_buf = BytesMut::with_capacity(4096);
    let mut to_server = BytesMut::with_capacity(4096);
    let mut to_client = BytesMut::with_capacity(4096);
    let cookie: [(&str, &[u8]); 1] = [("Set-Cookie", b"SRV=web2; Path=/; HttpOnly")];

    let parse = time(iterations, "parse", only, || {
        client_buf.extend_from_slice(REQUEST);
        let head = reader.read(&mut client_buf).unwrap().unwrap();
        black_box(&head);
    });

    let request = time(iterations, "request", only, || {
        client_buf.extend_from_slice(REQUEST);
        let head = reader.read(&mut client_buf).unwrap().unwrap();
        // What routing and persistence look at.
        black_box((
            head.host(),
            head.path(),
            head.cookie("SRV"),
            head.keep_alive(),
        ));
        to_server.clear();
        let rw = RequestRewrite {
            forwarding: &who,
            close: false,
            pass_upgrade: false,
            extra: &[],
            host_if_missing: None,
        };
        black_box(write_request(&head, &rw, &mut to_server).unwrap());
    });

    let parsed = {
        client_buf.extend_from_slice(REQUEST);
        reader.read(&mut client_buf).unwrap().unwrap()
    };
    let rewrite_only = time(iterations, "rewrite", only, || {
        to_server.clear();
        let rw = RequestRewrite {
            forwarding: &who,
            close: false,
            pass_upgrade: false,
            extra: &[],
            host_if_missing: None,
        };
        black_box(write_request(black_box(&parsed), &rw, &mut to_server).unwrap());
    });
    let accessors = time(iterations, "accessors", only, || {
        let head = black_box(&parsed);
        black_box((
            head.host(),
            head.path(),
            head.cookie("SRV"),
            head.keep_alive(),
        ));
    });

    let exchange = {
        client_buf.extend_from_slice(REQUEST);
        reader
            .read(&mut client_buf)
            .unwrap()
            .unwrap()
            .exchange(false)
    };
    let response = time(iterations, "response", only, || {
        server_buf.extend_from_slice(RESPONSE);
        let head = responses.read(&mut server_buf, &exchange).unwrap().unwrap();
        to_client.clear();
        let rw = ResponseRewrite {
            keep_alive: true,
            extra: &cookie,
        };
        black_box(write_response(&head, &exchange, &rw, &mut to_client).unwrap());
    });

    println!(
        "request head: {} bytes, {} fields",
        REQUEST.len(),
        parsed.fields().count()
    );
    println!("parse request head:                   {parse:7.0} ns");
    println!("accessors (host, path, cookie):       {accessors:7.0} ns");
    println!("rewrite request (parsed head):        {rewrite_only:7.0} ns");
    println!("parse + accessors + rewrite request:  {request:7.0} ns");
    println!("parse + rewrite response head:        {response:7.0} ns");
    println!(
        "exchange total (request + response):  {:7.0} ns",
        request + response
    );
}
