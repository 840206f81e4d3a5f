use super::*;

fn parse_with(input: &[u8], limits: &Limits) -> Result<(RequestHead, usize), Error> {
    match RequestHead::parse(input, limits)? {
        Parsed::Complete { head, consumed } => Ok((head, consumed)),
        Parsed::Incomplete => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
    }
}

fn ok(input: &str) -> RequestHead {
    match parse_with(input.as_bytes(), &Limits::default()) {
        Ok((head, consumed)) => {
            assert_eq!(consumed, input.len(), "whole input is the head");
            head
        }
        Err(e) => panic!("{input:?} refused: {e}"),
    }
}

/// The violation and the status a refused request gets.
fn refused_with(input: &[u8], limits: &Limits) -> (Violation, u16) {
    match parse_with(input, limits) {
        Ok(_) => panic!("accepted: {:?}", String::from_utf8_lossy(input)),
        Err(e) => {
            assert_eq!(e.side(), Side::Request);
            (e.violation(), e.status().as_u16())
        }
    }
}

fn refused(input: &str) -> (Violation, u16) {
    refused_with(input.as_bytes(), &Limits::default())
}

const GET: &str = "GET / HTTP/1.1\r\nHost: a.example\r\n";

// ---- accepted --------------------------------------------------------------------------

#[test]
fn simple_get() {
    let h = ok("GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n");
    assert_eq!(h.method(), Method::GET);
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.target(), "/index.html?x=1&y=2");
    assert_eq!(h.path(), "/index.html");
    assert_eq!(h.query(), Some("x=1&y=2"));
    assert_eq!(h.host().as_deref(), Some("www.example.com"));
    assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
    assert_eq!(h.body(), BodyKind::None);
    assert!(h.keep_alive());
    assert!(!h.expects_continue());
    assert_eq!(h.target_form(), TargetForm::Origin);
}

#[test]
fn host_is_lowercased_without_port() {
    let h = ok("GET / HTTP/1.1\r\nHost: WWW.Example.COM:8080\r\n\r\n");
    assert_eq!(h.host().as_deref(), Some("www.example.com"));
    assert!(matches!(h.host(), Some(Cow::Owned(_))));
    assert_eq!(h.host_field(), Some(&b"WWW.Example.COM:8080"[..]));
    let h = ok("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n");
    assert_eq!(h.host().as_deref(), Some("[2001:db8::1]"));
    assert!(matches!(h.host(), Some(Cow::Borrowed(_))));
}

#[test]
fn empty_host_is_accepted_as_none() {
    let h = ok("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    assert_eq!(h.host(), None);
}

#[test]
fn http10_without_host() {
    let h = ok("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.version(), Version::Http10);
    assert_eq!(h.host(), None);
    assert!(!h.keep_alive());
    let h = ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(h.keep_alive());
}

#[test]
fn keep_alive_rules() {
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive());
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n").keep_alive());
    assert!(ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").keep_alive());
}

#[test]
fn leading_empty_lines_are_ignored() {
    let input = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = ok(input);
    assert_eq!(h.target(), "/");
    assert_eq!(h.as_bytes(), input.as_bytes());
}

#[test]
fn content_length_body() {
    let h = ok("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Length(42));
    let h = ok("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Length(0));
}

#[test]
fn chunked_body() {
    let h = ok("POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Chunked);
}

#[test]
fn identical_duplicate_content_length_is_merged() {
    let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Length(3));
}

#[test]
fn expect_continue() {
    let h = ok("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n");
    assert!(h.expects_continue());
    // RFC 9110 §10.1.1: ignored in HTTP/1.0.
    let h = ok("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    assert!(!h.expects_continue());
}

#[test]
fn cookies() {
    let h = ok("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; SRV=s2\r\nCookie: SRV=s3\r\n\r\n");
    assert_eq!(h.cookie("SRV"), Some(&b"s2"[..]));
    assert_eq!(h.cookie("a"), Some(&b"1"[..]));
    assert_eq!(h.cookie("b"), None);
}

#[test]
fn headers_iterates_all() {
    let h = ok("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    let all: Vec<&[u8]> = h.headers("X-A").collect();
    assert_eq!(all, [&b"1"[..], b"2"]);
    let names: Vec<&str> = h.fields().map(|(n, _)| n).collect();
    assert_eq!(names, ["Host", "X-A", "x-a"]);
}

#[test]
fn websocket_upgrade() {
    let h = ok(
        "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(h.is_websocket_upgrade());
    assert!(h.exchange(true).upgrade());
    assert!(!h.exchange(false).upgrade());
    // Not a WebSocket upgrade: h2c, no Connection: upgrade, POST.
    assert!(
        !ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            .is_websocket_upgrade()
    );
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").is_websocket_upgrade());
    assert!(!ok("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\n").is_websocket_upgrade());
}

#[test]
fn absolute_form() {
    let h = ok("GET http://A.example:80/p?q HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(h.target_form(), TargetForm::Absolute);
    assert_eq!(h.host().as_deref(), Some("a.example"));
    assert_eq!(h.path(), "/p");
    assert_eq!(h.query(), Some("q"));
    assert_eq!(h.forward_target(), "/p?q");
    let h = ok("GET https://a.example HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    assert_eq!(h.path(), "/");
    assert_eq!(h.forward_target(), "/");
    // HTTP/1.0 may omit Host; the target names the host.
    let h = ok("GET http://a.example/x HTTP/1.0\r\n\r\n");
    assert_eq!(h.host().as_deref(), Some("a.example"));
}

#[test]
fn asterisk_form_with_options() {
    let h = ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.target_form(), TargetForm::Asterisk);
    assert_eq!(h.path(), "*");
}

#[test]
fn connect_when_allowed() {
    let limits = Limits {
        allow_connect: true,
        ..Limits::default()
    };
    let (h, _) = parse_with(
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        &limits,
    )
    .unwrap();
    assert_eq!(h.target_form(), TargetForm::Authority);
    assert_eq!(h.forward_target(), "a.example:443");
    assert_eq!(h.path(), "");
    assert_eq!(h.host().as_deref(), Some("a.example"));
    assert_eq!(
        refused_with(
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n",
            &limits
        ),
        (Violation::HostMismatch, 400)
    );
}

#[test]
fn extension_methods_are_tokens() {
    let h = ok("PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.method().as_str(), "PROPFIND");
}

#[test]
fn obs_text_in_values_is_accepted() {
    let h = ok("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\u{e9}\tau lait\r\n\r\n");
    assert_eq!(h.header("x-name"), Some("caf\u{e9}\tau lait".as_bytes()));
}

#[test]
fn tab_is_ows_around_values() {
    let h = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Chunked);
}

#[test]
fn incomplete_until_the_blank_line() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for end in 0..input.len() {
        assert!(matches!(
            RequestHead::parse(&input[..end], &Limits::default()),
            Ok(Parsed::Incomplete)
        ));
    }
}

#[test]
fn pipelined_requests() {
    let input = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut buf = BytesMut::from(&input[..]);
    let mut reader = RequestReader::new(Limits::default());
    let one = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!(one.target(), "/1");
    let two = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!(two.target(), "/2");
    assert_eq!(two.body(), BodyKind::Length(3));
    let mut body = crate::BodyDecoder::new(two.body(), Side::Request, reader.limits());
    let step = body.decode(&buf).unwrap();
    assert!(step.done);
    assert_eq!(&buf[step.data.clone()], b"abc");
    let _ = buf.split_to(step.consumed);
    let three = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!(three.target(), "/3");
    assert!(buf.is_empty());
    assert!(reader.read(&mut buf).unwrap().is_none());
}

#[test]
fn reader_split_at_every_point_and_byte_by_byte() {
    let input: &[u8] = b"\r\nPOST /upload?x HTTP/1.1\r\nHost: Up.Example\r\nContent-Length: 5\r\nCookie: a=1; b=2\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nhello";
    let (whole, consumed) = parse_with(input, &Limits::default()).unwrap();
    let summary = |h: &RequestHead| {
        (
            h.as_bytes().to_vec(),
            h.target().to_string(),
            h.host().map(|c| c.into_owned()),
            h.body(),
            h.fields()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect::<Vec<_>>(),
        )
    };
    for split in 0..=input.len() {
        let mut reader = RequestReader::new(Limits::default());
        let mut buf = BytesMut::from(&input[..split]);
        let first = reader.read(&mut buf).unwrap();
        buf.extend_from_slice(&input[split..]);
        let head = match first {
            Some(h) => h,
            None => reader.read(&mut buf).unwrap().expect("complete"),
        };
        assert_eq!(summary(&head), summary(&whole), "split at {split}");
        assert_eq!(&buf[..], &input[consumed..]);
    }
    let mut reader = RequestReader::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut got = None;
    for &b in input {
        buf.extend_from_slice(&[b]);
        if let Some(h) = reader.read(&mut buf).unwrap() {
            got = Some(h);
            break;
        }
    }
    assert_eq!(summary(&got.unwrap()), summary(&whole));
}

// ---- refused: framing ------------------------------------------------------------------

#[test]
fn refuses_content_length_and_transfer_encoding() {
    assert_eq!(
        refused(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        (Violation::ContentLengthAndTransferEncoding, 400)
    );
}

#[test]
fn refuses_differing_content_length() {
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        (Violation::DifferentContentLengths, 400)
    );
}

#[test]
fn refuses_content_length_list_with_differing_values() {
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
        (Violation::DifferentContentLengths, 400)
    );
}

#[test]
fn refuses_malformed_content_length() {
    for v in ["+5", "-1", "0x5", "5a", "", "1 2", "99999999999999999999"] {
        assert_eq!(
            refused(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n"
            )),
            (Violation::InvalidContentLength, 400),
            "{v:?}"
        );
    }
}

#[test]
fn refuses_transfer_encoding_not_ending_in_chunked() {
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        (Violation::ChunkedNotFinal, 400)
    );
}

#[test]
fn refuses_chunked_twice() {
    assert_eq!(
        refused(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        (Violation::ChunkedTwice, 400)
    );
}

#[test]
fn refuses_unknown_transfer_coding_with_501() {
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        (Violation::UnsupportedTransferCoding, 501)
    );
}

#[test]
fn refuses_transfer_encoding_in_http10() {
    assert_eq!(
        refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (Violation::TransferEncodingInHttp10, 400)
    );
}

#[test]
fn refuses_body_over_the_limit_with_413() {
    let limits = Limits {
        max_body_bytes: Some(100),
        ..Limits::default()
    };
    assert!(
        parse_with(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
            &limits
        )
        .is_ok()
    );
    assert_eq!(
        refused_with(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
            &limits
        ),
        (Violation::BodyTooLarge, 413)
    );
}

// ---- refused: field lines --------------------------------------------------------------

#[test]
fn refuses_obs_fold() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n"),
        (Violation::ObsFold, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n"),
        (Violation::ObsFold, 400)
    );
}

#[test]
fn refuses_whitespace_after_request_line() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        (Violation::WhitespaceAfterStartLine, 400)
    );
}

#[test]
fn refuses_whitespace_before_colon() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        (Violation::WhitespaceBeforeColon, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        (Violation::WhitespaceBeforeColon, 400)
    );
}

#[test]
fn refuses_empty_field_name() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"),
        (Violation::EmptyFieldName, 400)
    );
}

#[test]
fn refuses_invalid_bytes_in_field_names() {
    for name in ["X\"A", "X(A)", "X/A", "X@A", "X\u{e9}", "X\0A", "X{A}"] {
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n")),
            (Violation::InvalidFieldName, 400),
            "{name:?}"
        );
    }
}

#[test]
fn refuses_field_line_without_colon() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
        (Violation::MissingColon, 400)
    );
}

#[test]
fn refuses_invalid_bytes_in_field_values() {
    for c in [0u8, 1, 0x0b, 0x0c, 0x1f, 0x7f] {
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a".to_vec();
        input.push(c);
        input.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(
            refused_with(&input, &Limits::default()),
            (Violation::InvalidFieldValue, 400),
            "byte {c:#x}"
        );
    }
}

#[test]
fn refuses_bare_cr() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"),
        (Violation::BareCr, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\rHost: a\r\n\r\n"),
        (Violation::BareCr, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"),
        (Violation::BareCr, 400)
    );
    assert_eq!(
        refused("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::BareCr, 400)
    );
}

#[test]
fn refuses_bare_lf() {
    assert_eq!(
        refused("GET / HTTP/1.1\nHost: a\n\n"),
        (Violation::BareLf, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\n\r\n"),
        (Violation::BareLf, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\n\n"),
        (Violation::BareLf, 400)
    );
    assert_eq!(
        refused("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::BareLf, 400)
    );
}

#[test]
fn bare_lf_is_refused_before_the_head_is_complete() {
    // No need to wait for a blank line that a bare-LF client would never send.
    assert!(matches!(
        RequestHead::parse(b"GET / HTTP/1.1\nHost", &Limits::default()),
        Err(e) if e.violation() == Violation::BareLf
    ));
}

// ---- refused: Host ---------------------------------------------------------------------

#[test]
fn refuses_missing_host_in_http11() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\n\r\n"),
        (Violation::MissingHost, 400)
    );
}

#[test]
fn refuses_duplicate_host() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        (Violation::DuplicateHost, 400)
    );
    assert_eq!(
        refused("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        (Violation::DuplicateHost, 400)
    );
}

#[test]
fn refuses_malformed_host() {
    for h in [
        "a b",
        "a/b",
        "a:b",
        "[::1",
        "a@b",
        "a:99999",
        ":80",
        "a,b.example:1:2",
    ] {
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n")),
            (Violation::InvalidHost, 400),
            "{h:?}"
        );
    }
}

#[test]
fn refuses_host_disagreeing_with_absolute_form() {
    assert_eq!(
        refused("GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"),
        (Violation::HostMismatch, 400)
    );
    assert_eq!(
        refused("GET http://a.example/ HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
        (Violation::HostMismatch, 400)
    );
    assert_eq!(
        refused("GET https://a.example/ HTTP/1.1\r\nHost: a.example:80\r\n\r\n"),
        (Violation::HostMismatch, 400)
    );
}

#[test]
fn refuses_absolute_form_without_host_in_http11() {
    assert_eq!(
        refused("GET http://a.example/ HTTP/1.1\r\n\r\n"),
        (Violation::MissingHost, 400)
    );
}

// ---- refused: request line -------------------------------------------------------------

#[test]
fn refuses_method_that_is_not_a_token() {
    assert_eq!(
        refused("G(ET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::InvalidMethod, 400)
    );
    assert_eq!(
        refused("GE\0T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::InvalidMethod, 400)
    );
}

#[test]
fn refuses_malformed_request_lines() {
    for line in [
        "GET  / HTTP/1.1",
        "GET /  HTTP/1.1",
        " GET / HTTP/1.1",
        "GET /",
        "GET / ",
        "GET",
        "GET\t/ HTTP/1.1",
    ] {
        let (v, status) = refused(&format!("{line}\r\nHost: a\r\n\r\n"));
        assert_eq!(status, 400, "{line:?}");
        assert!(
            matches!(
                v,
                Violation::MalformedRequestLine
                    | Violation::InvalidMethod
                    | Violation::MalformedVersion
            ),
            "{line:?}: {v:?}"
        );
    }
}

#[test]
fn refuses_invalid_target_bytes() {
    assert_eq!(
        refused("GET /a\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::InvalidTarget, 400)
    );
    assert_eq!(
        refused("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::InvalidTarget, 400)
    );
    assert_eq!(
        refused("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::FragmentInTarget, 400)
    );
    assert_eq!(
        refused("GET a HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::InvalidTarget, 400)
    );
}

#[test]
fn refuses_asterisk_form_without_options() {
    assert_eq!(
        refused("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        (Violation::AsteriskNotOptions, 400)
    );
}

#[test]
fn refuses_authority_form_without_connect() {
    assert_eq!(
        refused("GET a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        (Violation::AuthorityNotConnect, 400)
    );
}

#[test]
fn refuses_connect_by_default_with_501() {
    assert_eq!(
        refused("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
        (Violation::ConnectNotAllowed, 501)
    );
}

#[test]
fn refuses_other_schemes_and_userinfo() {
    assert_eq!(
        refused("GET ftp://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        (Violation::UnsupportedScheme, 400)
    );
    assert_eq!(
        refused("GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        (Violation::UserinfoInTarget, 400)
    );
}

#[test]
fn refuses_unsupported_versions_with_505() {
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        assert_eq!(
            refused(&format!("GET / {v}\r\nHost: a\r\n\r\n")),
            (Violation::UnsupportedVersion, 505),
            "{v}"
        );
    }
}

#[test]
fn refuses_malformed_versions_with_400() {
    for v in [
        "http/1.1",
        "HTTP/1.10",
        "HTTP/11",
        "HTTP/1.1 ",
        "HTTPS/1.1",
        "HTTP/a.b",
        "HTTP/1",
    ] {
        assert_eq!(
            refused(&format!("GET / {v}\r\nHost: a\r\n\r\n")),
            (Violation::MalformedVersion, 400),
            "{v:?}"
        );
    }
}

// ---- refused: limits -------------------------------------------------------------------

#[test]
fn refuses_head_over_the_limit_with_431() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let fits = "GET / HTTP/1.1\r\nHost: a\r\nX: 01234567890123456789012345678901\r\n\r\n";
    assert_eq!(fits.len(), 64);
    assert!(parse_with(fits.as_bytes(), &limits).is_ok());
    let over = "GET / HTTP/1.1\r\nHost: a\r\nX: 012345678901234567890123456789012\r\n\r\n";
    assert_eq!(
        refused_with(over.as_bytes(), &limits),
        (Violation::HeadTooLarge, 431)
    );
    // Also when the rest has not arrived: 65 bytes with no end in sight.
    assert_eq!(
        refused_with(&over.as_bytes()[..65], &limits),
        (Violation::HeadTooLarge, 431)
    );
}

#[test]
fn refuses_request_line_over_the_limit_with_414() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    assert_eq!(
        refused_with(long.as_bytes(), &limits),
        (Violation::RequestLineTooLong, 414)
    );
}

#[test]
fn refuses_too_many_fields_with_431() {
    let limits = Limits {
        max_fields: 3,
        ..Limits::default()
    };
    assert!(
        parse_with(
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
            &limits
        )
        .is_ok()
    );
    assert_eq!(
        refused_with(
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            &limits
        ),
        (Violation::TooManyFields, 431)
    );
}

#[test]
fn refuses_malformed_connection() {
    assert_eq!(
        refused(&format!("{GET}Connection: keep alive\r\n\r\n")),
        (Violation::InvalidConnection, 400)
    );
}
