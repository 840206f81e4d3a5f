//! Request smuggling and desync vectors from the public literature (Linhart et al. 2005,
//! Kettle's "HTTP Desync Attacks" 2019 and "Browser-Powered Desync Attacks" 2022, the
//! HAProxy/Node/Netty CVEs), as one table: what a client sends, and what the proxy must do
//! with it. "Accepted" rows are checked end to end: the head is forwarded as this crate
//! writes it, and the server-side reading of those bytes (by this crate's own strict
//! parser) must find the same body and the same next request as the proxy did.

use bytes::BytesMut;
use tandem_http::*;

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Refused before anything is forwarded.
    Refused(u16, Violation),
    /// Forwarded: the body the proxy read, then how many more complete requests followed.
    Accepted { body: Vec<u8>, then: usize },
}
use Outcome::*;

/// Drives the request side as the engine would: heads, bodies, pipelined requests, until
/// the input is used up or something is refused.
fn proxy(input: &[u8]) -> Outcome {
    let limits = Limits::default();
    let mut reader = RequestReader::new(limits.clone());
    let mut buf = BytesMut::from(input);
    let mut first_body = None;
    let mut then = 0;
    let who = Forwarding::new("192.0.2.1".parse().unwrap(), Scheme::Http, false);
    loop {
        let head = match reader.read(&mut buf) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => return Refused(e.status().as_u16(), e.violation()),
        };
        // What the server would receive must frame the same body.
        let mut forwarded = Vec::new();
        let rw = RequestRewrite {
            forwarding: &who,
            close: false,
            pass_upgrade: false,
            extra: &[],
            host_if_missing: None,
        };
        write_request(&head, &rw, &mut forwarded).unwrap();
        let server_view = match RequestHead::parse(&forwarded, &limits).unwrap() {
            Parsed::Complete { head, consumed } => {
                assert_eq!(consumed, forwarded.len());
                head
            }
            Parsed::Incomplete => panic!("forwarded head incomplete"),
        };
        assert_eq!(server_view.body(), head.body());

        let mut body = BodyDecoder::new(head.body(), Side::Request, &limits);
        let mut data = Vec::new();
        loop {
            let step = match body.decode(&buf) {
                Ok(step) => step,
                Err(e) => return Refused(e.status().as_u16(), e.violation()),
            };
            data.extend_from_slice(&buf[step.data.clone()]);
            let _ = buf.split_to(step.consumed);
            if step.done {
                break;
            }
            if step.needs_input() {
                // Input exhausted inside a body: what was read is all there is.
                if first_body.is_none() {
                    first_body = Some(data);
                }
                return Accepted {
                    body: first_body.unwrap(),
                    then,
                };
            }
        }
        if first_body.is_none() {
            first_body = Some(data);
        } else {
            then += 1;
        }
    }
    Accepted {
        body: first_body.unwrap_or_default(),
        then,
    }
}

fn accepted(body: &str, then: usize) -> Outcome {
    Accepted {
        body: body.as_bytes().to_vec(),
        then,
    }
}

const SMUGGLED: &str = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn smuggling_vectors() {
    let post = "POST / HTTP/1.1\r\nHost: a\r\n";
    let chunked_smuggle = format!("0\r\n\r\n{SMUGGLED}");
    let table: Vec<(&str, String, Outcome)> = vec![
        // CL.TE and TE.CL: both framings present, in either order.
        (
            "CL.TE",
            format!(
                "{post}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"
            ),
            Refused(400, Violation::ContentLengthAndTransferEncoding),
        ),
        (
            "TE.CL",
            format!(
                "{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"
            ),
            Refused(400, Violation::ContentLengthAndTransferEncoding),
        ),
        (
            "CL.TE with TE.TE obfuscation",
            format!(
                "{post}Content-Length: 6\r\nTransfer-Encoding: xchunked\r\n\r\n{chunked_smuggle}"
            ),
            Refused(400, Violation::ContentLengthAndTransferEncoding),
        ),
        // TE.TE: obfuscated Transfer-Encoding that one side may not recognise.
        (
            "TE xchunked",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::ChunkedNotFinal),
        ),
        (
            "TE space before colon",
            format!("{post}Transfer-Encoding : chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::WhitespaceBeforeColon),
        ),
        (
            "TE tab before value (OWS: accepted, forwarded canonical)",
            format!("{post}Transfer-Encoding:\tchunked\r\n\r\n{chunked_smuggle}"),
            accepted("", 1),
        ),
        (
            "TE value with trailing tab",
            format!("{post}Transfer-Encoding: chunked\t\r\n\r\n{chunked_smuggle}"),
            accepted("", 1),
        ),
        (
            "TE vertical tab",
            format!("{post}Transfer-Encoding:\x0bchunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::InvalidFieldValue),
        ),
        (
            "TE form feed",
            format!("{post}Transfer-Encoding: chunked\x0c\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::InvalidFieldValue),
        ),
        (
            "TE chunked, identity",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::ChunkedNotFinal),
        ),
        (
            "TE identity, chunked",
            format!("{post}Transfer-Encoding: identity, chunked\r\n\r\n{chunked_smuggle}"),
            Refused(501, Violation::UnsupportedTransferCoding),
        ),
        (
            "TE duplicated, second bogus",
            format!(
                "{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n{chunked_smuggle}"
            ),
            Refused(400, Violation::ChunkedNotFinal),
        ),
        (
            "TE duplicated chunked",
            format!(
                "{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"
            ),
            Refused(400, Violation::ChunkedTwice),
        ),
        (
            "TE quoted",
            format!("{post}Transfer-Encoding: \"chunked\"\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::InvalidTransferEncoding),
        ),
        (
            "TE upper case (case-insensitive coding)",
            format!("{post}Transfer-Encoding: CHUNKED\r\n\r\n{chunked_smuggle}"),
            accepted("", 1),
        ),
        (
            "TE with underscore",
            format!("{post}Transfer_Encoding: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::FramingLookalike),
        ),
        (
            "TE line folded",
            format!("{post}Transfer-Encoding:\r\n chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::ObsFold),
        ),
        (
            "TE after a folded line",
            format!("{post}X: y\r\n Transfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::ObsFold),
        ),
        (
            "TE name then LF",
            format!("{post}Transfer-Encoding\n: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::BareLf),
        ),
        (
            "TE hidden behind bare LF",
            format!("{post}X: y\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::BareLf),
        ),
        (
            "TE hidden behind bare CR",
            format!("{post}X: y\rTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::BareCr),
        ),
        (
            "TE in HTTP/1.0",
            format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::TransferEncodingInHttp10),
        ),
        (
            "TE with NUL",
            format!("{post}Transfer-Encoding: chunked\0\r\n\r\n{chunked_smuggle}"),
            Refused(400, Violation::InvalidFieldValue),
        ),
        // Content-Length variants.
        (
            "CL +5",
            format!("{post}Content-Length: +5\r\n\r\nhello"),
            Refused(400, Violation::InvalidContentLength),
        ),
        (
            "CL -1",
            format!("{post}Content-Length: -1\r\n\r\n"),
            Refused(400, Violation::InvalidContentLength),
        ),
        (
            "CL 0x5",
            format!("{post}Content-Length: 0x5\r\n\r\nhello"),
            Refused(400, Violation::InvalidContentLength),
        ),
        (
            "CL with leading space (OWS: accepted, forwarded canonical)",
            format!("{post}Content-Length:  5\r\n\r\nhello{SMUGGLED}"),
            accepted("hello", 1),
        ),
        (
            "CL 5 5",
            format!("{post}Content-Length: 5 5\r\n\r\nhello"),
            Refused(400, Violation::InvalidContentLength),
        ),
        (
            "CL leading zeros (decimal, forwarded canonical)",
            format!("{post}Content-Length: 0005\r\n\r\nhello{SMUGGLED}"),
            accepted("hello", 1),
        ),
        (
            "CL differing duplicates",
            format!("{post}Content-Length: 5\r\nContent-Length: 44\r\n\r\nhello"),
            Refused(400, Violation::DifferentContentLengths),
        ),
        (
            "CL differing list",
            format!("{post}Content-Length: 5, 44\r\n\r\nhello"),
            Refused(400, Violation::DifferentContentLengths),
        ),
        (
            "CL identical duplicates (merged)",
            format!("{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}"),
            accepted("hello", 1),
        ),
        (
            "CL overflow",
            format!("{post}Content-Length: 18446744073709551621\r\n\r\nhello"),
            Refused(400, Violation::InvalidContentLength),
        ),
        (
            "CL with underscore",
            format!("{post}Content_Length: 5\r\n\r\nhello"),
            Refused(400, Violation::FramingLookalike),
        ),
        (
            "CL space before colon",
            format!("{post}Content-Length : 5\r\n\r\nhello"),
            Refused(400, Violation::WhitespaceBeforeColon),
        ),
        (
            "CL empty",
            format!("{post}Content-Length:\r\n\r\n"),
            Refused(400, Violation::InvalidContentLength),
        ),
        // Line endings.
        (
            "bare LF request",
            "GET / HTTP/1.1\nHost: a\n\n".to_string(),
            Refused(400, Violation::BareLf),
        ),
        (
            "bare LF after the last field",
            "GET / HTTP/1.1\r\nHost: a\r\n\n".to_string(),
            Refused(400, Violation::BareLf),
        ),
        // Chunked body vectors.
        (
            "chunk size too long",
            format!(
                "{post}Transfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n"
            ),
            Refused(400, Violation::ChunkSizeTooLong),
        ),
        (
            "chunk size huge",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff0\r\n"),
            Refused(400, Violation::ChunkSizeTooLong),
        ),
        (
            "chunk size 0x prefix",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
            Refused(400, Violation::InvalidChunkSize),
        ),
        (
            "chunk size with leading space",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n"),
            Refused(400, Violation::InvalidChunkSize),
        ),
        (
            "chunk size with trailing space",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"),
            Refused(400, Violation::InvalidChunkExtension),
        ),
        (
            "chunk size then bare LF",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
            Refused(400, Violation::BareLf),
        ),
        (
            "chunk extension with bare LF (TERM.EXT)",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n2;\nxx\r\n45\r\n0\r\n\r\n"),
            Refused(400, Violation::InvalidChunkExtension),
        ),
        (
            "chunk extension with bare LF after a name",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n2;a\nxx\r\n0\r\n\r\n"),
            Refused(400, Violation::BareLf),
        ),
        (
            "chunk data longer than its size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
            Refused(400, Violation::ChunkDataNotTerminated),
        ),
        (
            "chunk data followed by LF only",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n"),
            Refused(400, Violation::ChunkDataNotTerminated),
        ),
        (
            "Content-Length in trailers",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 50\r\n\r\n"),
            Refused(400, Violation::ForbiddenTrailer),
        ),
        (
            "well-formed chunked with extensions and trailers",
            format!(
                "{post}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n{SMUGGLED}"
            ),
            accepted("hello", 1),
        ),
        // Host and request line.
        (
            "two Host fields",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string(),
            Refused(400, Violation::DuplicateHost),
        ),
        (
            "absolute-form against another Host",
            "GET http://internal/ HTTP/1.1\r\nHost: public\r\n\r\n".to_string(),
            Refused(400, Violation::HostMismatch),
        ),
        (
            "Host with userinfo-like @",
            "GET / HTTP/1.1\r\nHost: public@internal\r\n\r\n".to_string(),
            Refused(400, Violation::InvalidHost),
        ),
        (
            "fragment in the target (HAProxy CVE-2023-45539)",
            "GET /index.html#/../admin HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
            Refused(400, Violation::FragmentInTarget),
        ),
        (
            "HTTP/0.9 request line",
            "GET /\r\n\r\n".to_string(),
            Refused(400, Violation::MalformedRequestLine),
        ),
        (
            "HTTP/2 preface over HTTP/1",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
            Refused(505, Violation::UnsupportedVersion),
        ),
        (
            "GET with a body (CL.0 desync: the proxy reads the body)",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            accepted(SMUGGLED, 0),
        ),
        (
            "pipelined requests",
            format!("GET / HTTP/1.1\r\nHost: a\r\n\r\n{SMUGGLED}{SMUGGLED}"),
            accepted("", 2),
        ),
    ];
    let mut failures = Vec::new();
    for (name, input, expected) in &table {
        let got = proxy(input.as_bytes());
        if &got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A server's response with ambiguous framing must never reach the client: 502.
#[test]
fn response_desync_vectors() {
    let limits = Limits::default();
    let ex = match RequestHead::parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &limits).unwrap() {
        Parsed::Complete { head, .. } => head.exchange(false),
        Parsed::Incomplete => unreachable!(),
    };
    let table: [(&str, &str, Violation); 9] = [
        (
            "CL+TE",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Violation::ContentLengthAndTransferEncoding,
        ),
        (
            "differing CL",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Violation::DifferentContentLengths,
        ),
        (
            "CL +5",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            Violation::InvalidContentLength,
        ),
        (
            "TE not chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Violation::ChunkedNotFinal,
        ),
        (
            "TE in 1.0",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Violation::TransferEncodingInHttp10,
        ),
        (
            "obs-fold",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            Violation::ObsFold,
        ),
        (
            "space before colon",
            "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
            Violation::WhitespaceBeforeColon,
        ),
        (
            "bare LF",
            "HTTP/1.1 200 OK\nContent-Length: 5\n\n",
            Violation::BareLf,
        ),
        (
            "unrequested 101",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            Violation::UnexpectedSwitchingProtocols,
        ),
    ];
    for (name, input, violation) in table {
        let e = ResponseHead::parse(input.as_bytes(), &ex, &limits).expect_err(name);
        assert_eq!(
            (e.status().as_u16(), e.violation()),
            (502, violation),
            "{name}"
        );
    }
    // A malformed chunk size in a response body: 502 too.
    let mut d = BodyDecoder::new(BodyKind::Chunked, Side::Response, &limits);
    let e = d.decode(b"5 \r\nhello\r\n").unwrap_err();
    assert_eq!(e.status().as_u16(), 502);
}
