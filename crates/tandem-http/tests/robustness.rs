//! Randomized robustness, on stable Rust with a seeded PRNG of our own (reproducible: the
//! failing seed and input are printed).
//!
//! Several hundred thousand random and mutated messages, each checked for:
//! - no panic;
//! - the incremental readers, fed in random pieces and byte by byte, give exactly the
//!   one-shot parser's result (the same head or the same violation);
//! - the chunked decoder gives the same data, length and verdict however its input is split;
//! - whatever this crate accepts, httparse (hyper's tokenizer) accepts as the same message;
//! - whatever this crate writes to a server or a client is accepted by its own strict
//!   parser with the same framing: the proxy never emits an ambiguous message.
//!
//! `ROBUSTNESS_ITERATIONS` overrides the number of rounds (default 100 000; each round
//! checks a request, a response and a chunked body).

use bytes::BytesMut;
use tandem_http::*;

/// SplitMix64: small, fast, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const REQUESTS: &[&str] = &[
    "GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nCookie: a=1; SRV=web2\r\nConnection: keep-alive\r\n\r\n",
    "POST /form HTTP/1.1\r\nHost: a.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nhello=world",
    "POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=v\r\nhello\r\n6\r\n world\r\n0\r\nChecksum: x\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET http://a.example:80/p HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
    "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "PUT /x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nExpect: 100-continue\r\nContent-Length: 3\r\nTE: trailers\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\nabc",
];

const RESPONSES: &[&str] = &[
    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n5\r\nhello\r\n0\r\nX: 1\r\n\r\n",
    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "HTTP/1.1 204\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
];

const CHUNKED: &[&str] = &[
    "5\r\nhello\r\n0\r\n\r\n",
    "1a;name=\"quoted \\\" value\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3 ; a = b\r\nxyz\r\n0\r\nA: 1\r\nB: 2\r\n\r\nNEXT",
    "0\r\n\r\n",
];

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"=",
    b"\"",
    b"\\",
    b"\0",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"\x0b",
    b"0",
    b"a",
    b"/",
    b"?",
    b"#",
    b"@",
    b"[",
    b"]",
    b"_",
    b"-",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Host: b\r\n",
    b"Connection: close\r\n",
    b"ffffffffffffffffff",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b" HTTP/1.1\r\n",
    b"\r\n\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 if at < v.len() => v[at] = *rng.pick(INTERESTING).first().unwrap(),
            2 | 3 => {
                let ins = *rng.pick(INTERESTING);
                v.splice(at..at, ins.iter().copied());
            }
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            5 if at < v.len() => {
                // Duplicate a stretch (a line, a field, a chunk).
                let end = (at + 1 + rng.below(40)).min(v.len());
                let dup = v[at..end].to_vec();
                v.splice(end..end, dup);
            }
            6 if at < v.len() => v[at] = v[at].to_ascii_uppercase() ^ (v[at] & 0x20),
            7 => v.truncate(at),
            _ => {}
        }
    }
    v
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"GETPOST /HTP1.0\r\n:;,=\"\t hostcnkdeglr-0123456789abcdefxyz";
    let len = rng.below(120);
    (0..len)
        .map(|_| {
            if rng.below(16) == 0 {
                rng.next() as u8
            } else {
                ALPHABET[rng.below(ALPHABET.len())]
            }
        })
        .collect()
}

/// Everything observable about a parse, for comparing two ways of getting it.
#[derive(Debug, PartialEq)]
enum Head {
    Incomplete,
    Refused(Violation),
    Request {
        bytes: Vec<u8>,
        target: String,
        host: Option<String>,
        body: BodyKind,
        keep_alive: bool,
        fields: Vec<(String, Vec<u8>)>,
    },
    Response {
        bytes: Vec<u8>,
        status: u16,
        body: BodyKind,
        fields: Vec<(String, Vec<u8>)>,
    },
}

fn request_summary(h: &RequestHead) -> Head {
    Head::Request {
        bytes: h.as_bytes().to_vec(),
        target: h.target().to_string(),
        host: h.host().map(|c| c.into_owned()),
        body: h.body(),
        keep_alive: h.keep_alive(),
        fields: h
            .fields()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect(),
    }
}

fn response_summary(h: &ResponseHead) -> Head {
    Head::Response {
        bytes: h.as_bytes().to_vec(),
        status: h.status().as_u16(),
        body: h.body(),
        fields: h
            .fields()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect(),
    }
}

fn limits(rng: &mut Rng) -> Limits {
    // Small limits now and then, so that the limit paths are exercised too.
    if rng.below(4) == 0 {
        Limits {
            max_head_bytes: 20 + rng.below(200),
            max_fields: rng.below(6),
            max_body_bytes: Some(rng.below(40) as u64),
            max_chunk_ext_bytes: rng.below(16),
            max_trailer_bytes: rng.below(40),
            allow_connect: rng.below(2) == 0,
        }
    } else {
        Limits::default()
    }
}

/// Feeds `input` to `read` in random pieces (or one byte at a time); returns the first
/// non-incomplete result.
fn incremental<T>(
    rng: &mut Rng,
    input: &[u8],
    byte_by_byte: bool,
    mut read: impl FnMut(&mut BytesMut) -> Result<Option<T>, Error>,
    summary: impl Fn(&T) -> Head,
) -> Head {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        match read(&mut buf) {
            Err(e) => return Head::Refused(e.violation()),
            Ok(Some(h)) => return summary(&h),
            Ok(None) if fed == input.len() => return Head::Incomplete,
            Ok(None) => {
                let n = if byte_by_byte {
                    1
                } else {
                    1 + rng.below(input.len() - fed)
                };
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
}

fn check_request(rng: &mut Rng, input: &[u8]) {
    let limits = limits(rng);
    let one_shot = match RequestHead::parse(input, &limits) {
        Ok(Parsed::Complete { head, consumed }) => {
            assert_eq!(head.as_bytes(), &input[..consumed]);
            check_accepted_request(rng, &head, &input[consumed..], &limits);
            request_summary(&head)
        }
        Ok(Parsed::Incomplete) => Head::Incomplete,
        Err(e) => Head::Refused(e.violation()),
    };
    let mut reader = RequestReader::new(limits.clone());
    let pieces = incremental(rng, input, false, |b| reader.read(b), request_summary);
    assert_eq!(pieces, one_shot, "random pieces");
    if rng.below(8) == 0 {
        let mut reader = RequestReader::new(limits.clone());
        let bytes = incremental(rng, input, true, |b| reader.read(b), request_summary);
        assert_eq!(bytes, one_shot, "byte by byte");
    }
}

fn check_accepted_request(rng: &mut Rng, head: &RequestHead, rest: &[u8], limits: &Limits) {
    // httparse accepts what we accept, and reads the same message.
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut theirs = httparse::Request::new(&mut headers);
    match theirs.parse(head.as_bytes()) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, head.as_bytes().len()),
        other => panic!("httparse: {other:?}"),
    }
    assert_eq!(theirs.method, Some(head.method().as_str()));
    assert_eq!(theirs.path, Some(head.target()));
    let ours: Vec<(&str, &[u8])> = head.fields().collect();
    assert_eq!(theirs.headers.len(), ours.len());
    for (t, (name, value)) in theirs.headers.iter().zip(&ours) {
        assert_eq!(t.name, *name);
        assert_eq!(trim(t.value), *value);
    }

    // What goes to the server is accepted by our own rules, with the same framing.
    let who = Forwarding::new(
        "192.0.2.1".parse().unwrap(),
        Scheme::Http,
        rng.below(2) == 0,
    );
    let rw = RequestRewrite {
        forwarding: &who,
        close: rng.below(2) == 0,
        pass_upgrade: rng.below(2) == 0,
        extra: &[],
        host_if_missing: None,
    };
    let mut out = Vec::new();
    let exchange = write_request(head, &rw, &mut out).unwrap();
    // The server's limits, not ours: the forwarded head has a few more fields and bytes.
    let policy = Limits {
        allow_connect: limits.allow_connect,
        max_head_bytes: MAX_HEAD_BYTES_CAP,
        max_fields: 1000,
        ..Limits::default()
    };
    match RequestHead::parse(&out, &policy) {
        Ok(Parsed::Complete {
            head: again,
            consumed,
        }) => {
            assert_eq!(consumed, out.len());
            assert_eq!(again.body(), head.body());
            assert_eq!(again.method(), head.method());
            assert_eq!(again.path(), head.path());
            assert_eq!(again.host(), head.host());
            assert_eq!(again.is_websocket_upgrade(), exchange.upgrade());
        }
        other => panic!(
            "forwarded head refused: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }

    check_body(rng, head.body(), rest, limits);
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// Decodes a body in one piece and in random pieces: same data, length and verdict.
fn check_body(rng: &mut Rng, kind: BodyKind, input: &[u8], limits: &Limits) -> Option<usize> {
    let whole = decode_body(rng, kind, Side::Request, input, limits, false);
    let pieces = decode_body(rng, kind, Side::Request, input, limits, true);
    assert_eq!(whole, pieces, "body split");
    whole
        .ok()
        .and_then(|(_, consumed, done)| done.then_some(consumed))
}

type BodyResult = Result<(Vec<u8>, usize, bool), Violation>;

fn decode_body(
    rng: &mut Rng,
    kind: BodyKind,
    side: Side,
    input: &[u8],
    limits: &Limits,
    split: bool,
) -> BodyResult {
    let mut d = BodyDecoder::new(kind, side, limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut data = Vec::new();
    loop {
        let step = d.decode(&buf).map_err(|e| e.violation())?;
        assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
        assert!(step.consumed <= buf.len());
        data.extend_from_slice(&buf[step.data.clone()]);
        buf.drain(..step.consumed);
        consumed += step.consumed;
        if step.done {
            return Ok((data, consumed, true));
        }
        if step.consumed == 0 {
            if fed == input.len() {
                return Ok((data, consumed, false));
            }
            let n = if split {
                1 + rng.below(input.len() - fed)
            } else {
                input.len() - fed
            };
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
}

fn check_response(rng: &mut Rng, input: &[u8]) {
    let limits = limits(rng);
    let requests = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ];
    let request = match RequestHead::parse(rng.pick(&requests).as_bytes(), &Limits::default()) {
        Ok(Parsed::Complete { head, .. }) => head,
        other => panic!("{other:?}"),
    };
    let exchange = request.exchange(rng.below(2) == 0);
    let one_shot = match ResponseHead::parse(input, &exchange, &limits) {
        Ok(Parsed::Complete { head, consumed }) => {
            check_accepted_response(rng, &head, &exchange, &input[consumed..], &limits);
            response_summary(&head)
        }
        Ok(Parsed::Incomplete) => Head::Incomplete,
        Err(e) => {
            assert_eq!(e.status(), 502);
            Head::Refused(e.violation())
        }
    };
    let mut reader = ResponseReader::new(limits.clone());
    let byte_by_byte = rng.below(8) == 0;
    let pieces = incremental(
        rng,
        input,
        byte_by_byte,
        |b| reader.read(b, &exchange),
        response_summary,
    );
    assert_eq!(pieces, one_shot);
}

fn check_accepted_response(
    rng: &mut Rng,
    head: &ResponseHead,
    exchange: &Exchange,
    rest: &[u8],
    limits: &Limits,
) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut theirs = httparse::Response::new(&mut headers);
    match theirs.parse(head.as_bytes()) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, head.as_bytes().len()),
        other => panic!("httparse: {other:?}"),
    }
    assert_eq!(theirs.code, Some(head.status().as_u16()));
    assert_eq!(theirs.headers.len(), head.fields().count());

    let rw = ResponseRewrite {
        keep_alive: rng.below(2) == 0,
        extra: &[],
    };
    let mut out = Vec::new();
    let plan = write_response(head, exchange, &rw, &mut out).unwrap();
    if plan.send {
        // The client reads what we send with the framing the plan says we will use.
        let again = match ResponseHead::parse(&out, exchange, &Limits::default()) {
            Ok(Parsed::Complete { head, consumed }) => {
                assert_eq!(consumed, out.len());
                head
            }
            other => panic!(
                "rewritten response refused: {other:?}\n{}",
                String::from_utf8_lossy(&out)
            ),
        };
        let expected = match (plan.body, head.body()) {
            (BodyOut::None, _) => BodyKind::None,
            (BodyOut::Verbatim, kind) => kind,
            (BodyOut::Dechunk, _) => BodyKind::UntilClose,
            (BodyOut::Chunk, _) => BodyKind::Chunked,
            (BodyOut::Tunnel, _) => BodyKind::Tunnel,
        };
        assert_eq!(again.body(), expected, "{}", String::from_utf8_lossy(&out));
        assert_eq!(
            again.keep_alive() || again.body() == BodyKind::Tunnel,
            !plan.close || again.body() == BodyKind::Tunnel
        );
    } else {
        assert!(out.is_empty());
    }
    let whole = decode_body(rng, head.body(), Side::Response, rest, limits, false);
    let pieces = decode_body(rng, head.body(), Side::Response, rest, limits, true);
    assert_eq!(whole, pieces);
}

fn check_chunked(rng: &mut Rng, input: &[u8]) {
    let limits = limits(rng);
    check_body(rng, BodyKind::Chunked, input, &limits);
    // Re-encoding the decoded data gives a body that decodes to the same data.
    if let Ok((data, _, true)) =
        decode_body(rng, BodyKind::Chunked, Side::Request, input, &limits, false)
    {
        let mut out = Vec::new();
        for piece in data.chunks(1 + rng.below(7)) {
            encode_chunk(piece, &mut out);
        }
        out.extend_from_slice(LAST_CHUNK);
        let again = decode_body(
            rng,
            BodyKind::Chunked,
            Side::Request,
            &out,
            &Limits::default(),
            true,
        );
        assert_eq!(again, Ok((data, out.len(), true)));
    }
}

#[test]
fn random_and_mutated_messages() {
    let rounds: u64 = std::env::var("ROBUSTNESS_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut accepted = [0u32; 3];
    for round in 0..rounds {
        let mut rng = Rng(round.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x7a6e_6465_6d00);
        let random = rng.below(10) == 0;
        let inputs = if random {
            [
                random_bytes(&mut rng),
                random_bytes(&mut rng),
                random_bytes(&mut rng),
            ]
        } else {
            let r = *rng.pick(REQUESTS);
            let s = *rng.pick(RESPONSES);
            let c = *rng.pick(CHUNKED);
            [
                mutate(&mut rng, r.as_bytes()),
                mutate(&mut rng, s.as_bytes()),
                mutate(&mut rng, c.as_bytes()),
            ]
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut rng = Rng(rng.next());
            check_request(&mut rng, &inputs[0]);
            check_response(&mut rng, &inputs[1]);
            check_chunked(&mut rng, &inputs[2]);
        }));
        if let Err(panic) = result {
            for (what, input) in ["request", "response", "chunked"].iter().zip(&inputs) {
                eprintln!("round {round} {what}: {:?}", String::from_utf8_lossy(input));
            }
            std::panic::resume_unwind(panic);
        }
        for (i, input) in inputs.iter().enumerate() {
            let limits = Limits::default();
            let ok = match i {
                0 => matches!(
                    RequestHead::parse(input, &limits),
                    Ok(Parsed::Complete { .. })
                ),
                1 => {
                    let ex = match RequestHead::parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &limits)
                    {
                        Ok(Parsed::Complete { head, .. }) => head.exchange(false),
                        _ => unreachable!(),
                    };
                    matches!(
                        ResponseHead::parse(input, &ex, &limits),
                        Ok(Parsed::Complete { .. })
                    )
                }
                _ => {
                    let mut d = ChunkedDecoder::new(Side::Request, &limits);
                    d.decode(input).is_ok()
                }
            };
            accepted[i] += u32::from(ok);
        }
    }
    // The mutations must leave a fair share valid, or the accepting paths go untested.
    eprintln!(
        "accepted out of {rounds}: requests {}, responses {}, chunked {}",
        accepted[0], accepted[1], accepted[2]
    );
    for a in accepted {
        assert!(
            u64::from(a) > rounds / 20,
            "too few accepted inputs: {accepted:?}"
        );
    }
}
