use super::*;
use crate::forwarded::Scheme;
use crate::limits::Limits;
use crate::request_head::Parsed;

fn request(s: &str) -> RequestHead {
    match RequestHead::parse(s.as_bytes(), &Limits::default()).unwrap() {
        Parsed::Complete { head, .. } => head,
        Parsed::Incomplete => panic!("incomplete"),
    }
}

fn client() -> Forwarding {
    Forwarding::new("192.0.2.7".parse().unwrap(), Scheme::Https, false)
}

fn forward_with(s: &str, f: &Forwarding, close: bool, pass_upgrade: bool) -> (String, Exchange) {
    let head = request(s);
    let mut out = Vec::new();
    let rw = RequestRewrite {
        forwarding: f,
        close,
        pass_upgrade,
        extra: &[],
        host_if_missing: None,
    };
    let ex = write_request(&head, &rw, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // Whatever is sent must pass this crate's own strict rules, with the same framing.
    let again = request(&text);
    assert_eq!(again.body(), head.body(), "{text}");
    assert_eq!(again.method(), head.method());
    assert_eq!(again.version(), Version::Http11);
    (text, ex)
}

fn forward(s: &str) -> String {
    forward_with(s, &client(), false, false).0
}

fn lines(s: &str) -> Vec<&str> {
    s.split("\r\n").collect()
}

#[test]
fn typical_request() {
    let out = forward(
        "GET /a?b HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nCookie: a=1\r\n\r\n",
    );
    assert_eq!(
        lines(&out),
        [
            "GET /a?b HTTP/1.1",
            "Host: www.example.com",
            "User-Agent: t",
            "Accept: */*",
            "Cookie: a=1",
            "X-Forwarded-For: 192.0.2.7",
            "X-Forwarded-Proto: https",
            "Forwarded: for=192.0.2.7;proto=https;host=www.example.com",
            "",
            ""
        ]
    );
}

#[test]
fn field_lines_are_copied_verbatim() {
    let out = forward("GET / HTTP/1.1\r\nhost:a\r\nX-Spaces:   v  \r\n\r\n");
    assert!(out.contains("\r\nhost:a\r\nX-Spaces:   v  \r\n"), "{out}");
}

#[test]
fn hop_by_hop_fields_are_dropped() {
    let out = forward(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret, Host\r\nX-Secret: 1\r\nX-Kept: 2\r\nProxy-Connection: keep-alive\r\nKeep-Alive: 300\r\nTE: gzip\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    for gone in [
        "Connection",
        "X-Secret",
        "Proxy-Connection",
        "Keep-Alive",
        "TE:",
        "Upgrade",
        "HTTP2-Settings",
    ] {
        assert!(!out.contains(gone), "{gone} in {out}");
    }
    assert!(
        out.contains("\r\nHost: a\r\n"),
        "Host is never dropped: {out}"
    );
    assert!(out.contains("\r\nX-Kept: 2\r\n"));
}

#[test]
fn close_towards_the_server() {
    let (out, _) = forward_with("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &client(), true, false);
    assert!(out.contains("\r\nConnection: close\r\n"));
}

#[test]
fn framing_fields_are_regenerated() {
    let out = forward("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  005\r\n\r\n");
    assert!(out.contains("\r\nContent-Length: 5\r\n"), "{out}");
    assert!(!out.contains("005"));
    let out = forward("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tChunked\r\n\r\n");
    assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"), "{out}");
    assert!(!out.contains("Chunked"));
    let out =
        forward("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
}

#[test]
fn untrusted_forwarding_fields_are_replaced() {
    let out = forward(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.6.6.6\r\nX-Forwarded-Proto: http\r\nForwarded: for=10.6.6.6\r\n\r\n",
    );
    assert!(!out.contains("10.6.6.6"), "{out}");
    assert!(out.contains("\r\nX-Forwarded-For: 192.0.2.7\r\n"));
    assert!(out.contains("\r\nX-Forwarded-Proto: https\r\n"));
    assert_eq!(out.matches("X-Forwarded-For").count(), 1);
}

#[test]
fn trusted_forwarding_fields_are_appended() {
    let lb = Forwarding::new("10.0.0.1".parse().unwrap(), Scheme::Http, true);
    let (out, _) = forward_with(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.1\r\nx-forwarded-for: 203.0.113.2\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.1\r\n\r\n",
        &lb,
        false,
        false,
    );
    assert!(
        out.contains("\r\nX-Forwarded-For: 203.0.113.1, 203.0.113.2, 10.0.0.1\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nX-Forwarded-Proto: https\r\n"), "{out}");
    assert!(
        out.contains("\r\nForwarded: for=203.0.113.1, for=10.0.0.1;proto=http;host=a\r\n"),
        "{out}"
    );
}

#[test]
fn ipv6_client() {
    let v6 = Forwarding::new("2001:db8::7".parse().unwrap(), Scheme::Http, false);
    let (out, _) = forward_with("GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n", &v6, false, false);
    assert!(out.contains("\r\nX-Forwarded-For: 2001:db8::7\r\n"));
    assert!(
        out.contains("\r\nForwarded: for=\"[2001:db8::7]\";proto=http;host=\"a:8080\"\r\n"),
        "{out}"
    );
}

#[test]
fn absolute_form_becomes_origin_form() {
    let out = forward("GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(
        out.starts_with("GET /x?y HTTP/1.1\r\nHost: a.example\r\n"),
        "{out}"
    );
    let out = forward("GET http://a.example HTTP/1.0\r\n\r\n");
    assert!(
        out.starts_with("GET / HTTP/1.1\r\nHost: a.example\r\n"),
        "{out}"
    );
}

#[test]
fn connect_keeps_its_authority() {
    let limits = Limits {
        allow_connect: true,
        ..Limits::default()
    };
    let head = match RequestHead::parse(
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        &limits,
    )
    .unwrap()
    {
        Parsed::Complete { head, .. } => head,
        Parsed::Incomplete => panic!(),
    };
    let f = client();
    let rw = RequestRewrite {
        forwarding: &f,
        close: false,
        pass_upgrade: false,
        extra: &[],
        host_if_missing: None,
    };
    let mut out = Vec::new();
    write_request(&head, &rw, &mut out).unwrap();
    assert!(out.starts_with(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n"));
}

#[test]
fn http10_request_is_sent_as_http11() {
    let out = forward("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    assert!(out.starts_with("GET / HTTP/1.1\r\n"));
    assert!(!out.contains("Connection"));
}

#[test]
fn http10_without_host_gets_one() {
    let out = forward("GET / HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("GET / HTTP/1.1\r\nHost: \r\n"), "{out}");
    let head = request("GET / HTTP/1.0\r\n\r\n");
    let f = client();
    let mut rw = RequestRewrite {
        forwarding: &f,
        close: false,
        pass_upgrade: false,
        extra: &[],
        host_if_missing: Some("10.1.1.1:8080"),
    };
    let mut out = Vec::new();
    write_request(&head, &rw, &mut out).unwrap();
    assert!(out.starts_with(b"GET / HTTP/1.1\r\nHost: 10.1.1.1:8080\r\n"));
    rw.host_if_missing = Some("bad host\r\n");
    assert!(write_request(&head, &rw, &mut Vec::new()).is_err());
}

#[test]
fn websocket_upgrade_passes_when_asked() {
    let ws = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (out, ex) = forward_with(ws, &client(), false, true);
    assert!(out.contains("\r\nUpgrade: websocket\r\n"), "{out}");
    assert!(out.contains("\r\nConnection: upgrade\r\n"), "{out}");
    assert!(out.contains("\r\nSec-WebSocket-Key: k\r\n"));
    assert!(ex.upgrade());
    let ws2 = ws.replace("Connection: Upgrade", "Connection: X-A, Upgrade");
    let (out, _) = forward_with(&ws2, &client(), false, true);
    assert!(out.contains("\r\nUpgrade: websocket\r\n"), "{out}");
    let (out, ex) = forward_with(ws, &client(), false, false);
    assert!(!out.contains("Upgrade"), "{out}");
    assert!(!ex.upgrade());
}

#[test]
fn te_trailers_is_kept() {
    let out = forward("GET / HTTP/1.1\r\nHost: a\r\nTE: gzip, trailers\r\n\r\n");
    assert!(out.contains("\r\nTE: trailers\r\n"), "{out}");
    assert!(!out.contains("gzip"));
}

#[test]
fn extra_fields_are_added_and_checked() {
    let head = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let f = client();
    let mut out = Vec::new();
    let extra: [(&str, &[u8]); 1] = [("X-Request-Id", b"42")];
    let rw = RequestRewrite {
        forwarding: &f,
        close: false,
        pass_upgrade: false,
        extra: &extra,
        host_if_missing: None,
    };
    write_request(&head, &rw, &mut out).unwrap();
    assert!(out.ends_with(b"X-Request-Id: 42\r\n\r\n"));
    for bad in [("X-A", &b"1\r\nX-B: 2"[..]), ("X A", b"1"), ("", b"1")] {
        let extra = [bad];
        let rw = RequestRewrite {
            extra: &extra,
            ..rw
        };
        let e = write_request(&head, &rw, &mut Vec::new()).unwrap_err();
        assert_eq!(e.violation(), Violation::InvalidExtraField);
        assert_eq!(e.status(), 500);
    }
}

// ---- responses -------------------------------------------------------------------------

fn respond(req: &str, resp: &str, keep_alive: bool) -> (String, ResponsePlan) {
    let ex = request(req).exchange(true);
    let head = match ResponseHead::parse(resp.as_bytes(), &ex, &Limits::default()).unwrap() {
        Parsed::Complete { head, .. } => head,
        Parsed::Incomplete => panic!("incomplete"),
    };
    let mut out = Vec::new();
    let extra: [(&str, &[u8]); 1] = [("Set-Cookie", b"SRV=s1; Path=/; HttpOnly")];
    let rw = ResponseRewrite {
        keep_alive,
        extra: if head.is_interim() { &[] } else { &extra },
    };
    let plan = write_response(&head, &ex, &rw, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    if plan.send && !head.is_interim() {
        assert!(
            text.ends_with("Set-Cookie: SRV=s1; Path=/; HttpOnly\r\n\r\n"),
            "{text}"
        );
    }
    (text, plan)
}

const GET11: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const GET10: &str = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";

#[test]
fn content_length_response_passes_through() {
    let (out, plan) = respond(
        GET11,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 10\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
        true,
    );
    assert_eq!(
        plan,
        ResponsePlan {
            send: true,
            body: BodyOut::Verbatim,
            close: false
        }
    );
    assert_eq!(
        lines(&out),
        [
            "HTTP/1.1 200 OK",
            "Content-Type: text/html",
            "Content-Length: 10",
            "Set-Cookie: SRV=s1; Path=/; HttpOnly",
            "",
            ""
        ]
    );
}

#[test]
fn closing_client_gets_connection_close() {
    let (out, plan) = respond(GET11, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert!(plan.close);
    assert!(out.contains("\r\nConnection: close\r\n"));
}

#[test]
fn chunked_to_http11_client_is_verbatim() {
    let (out, plan) = respond(
        GET11,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Checksum\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::Verbatim);
    assert!(!plan.close);
    assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"));
    assert!(out.contains("\r\nTrailer: Checksum\r\n"));
}

#[test]
fn chunked_to_http10_client_is_dechunked_and_closed() {
    let (out, plan) = respond(
        GET10,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Checksum\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::Dechunk);
    assert!(plan.close);
    assert!(!out.contains("Transfer-Encoding"), "{out}");
    assert!(!out.contains("Trailer"), "{out}");
    assert!(out.contains("\r\nConnection: close\r\n"));
}

#[test]
fn close_delimited_to_keep_alive_client_is_chunked() {
    let (out, plan) = respond(
        GET11,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::Chunk);
    assert!(!plan.close);
    assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"));
    let (out, plan) = respond(GET10, "HTTP/1.0 200 OK\r\n\r\n", true);
    assert_eq!(plan.body, BodyOut::Verbatim);
    assert!(plan.close);
    assert!(out.contains("\r\nConnection: close\r\n"));
    let (_, plan) = respond(GET11, "HTTP/1.1 200 OK\r\n\r\n", false);
    assert_eq!((plan.body, plan.close), (BodyOut::Verbatim, true));
}

#[test]
fn http10_client_kept_open_is_told_so() {
    let (out, plan) = respond(GET10, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true);
    assert!(!plan.close);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(out.contains("\r\nConnection: keep-alive\r\n"));
}

#[test]
fn interim_responses() {
    let (out, plan) = respond(
        GET11,
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        true,
    );
    assert_eq!(
        plan,
        ResponsePlan {
            send: true,
            body: BodyOut::None,
            close: false
        }
    );
    assert_eq!(
        out,
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    );
    let (out, plan) = respond(GET10, "HTTP/1.1 100 Continue\r\n\r\n", true);
    assert!(!plan.send);
    assert!(out.is_empty());
}

#[test]
fn switching_protocols_is_a_tunnel() {
    let ws = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (out, plan) = respond(
        ws,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::Tunnel);
    assert!(out.contains("\r\nUpgrade: websocket\r\n"));
    assert!(out.contains("\r\nConnection: upgrade\r\n"));
    assert!(out.contains("\r\nSec-WebSocket-Accept: x\r\n"));
    // Connection listing other fields too does not lose Upgrade.
    let (out, plan) = respond(
        ws,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: X-A, Upgrade\r\nX-A: 1\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::Tunnel);
    assert!(out.contains("\r\nUpgrade: websocket\r\n"), "{out}");
    assert!(!out.contains("X-A"), "{out}");
}

#[test]
fn no_body_responses_keep_metadata_length() {
    let head_req = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
    let (out, plan) = respond(
        head_req,
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        true,
    );
    assert_eq!(plan.body, BodyOut::None);
    assert!(out.contains("\r\nContent-Length: 1234\r\n"));
    let (out, _) = respond(
        GET11,
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
        true,
    );
    assert!(out.contains("\r\nContent-Length: 1234\r\n"));
    let (out, _) = respond(
        GET11,
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        true,
    );
    assert!(!out.contains("Content-Length"), "{out}");
    let (out, _) = respond(
        head_req,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        true,
    );
    assert!(!out.contains("Transfer-Encoding"), "{out}");
}

#[test]
fn empty_reason_gets_the_canonical_one() {
    let (out, _) = respond(GET11, "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", true);
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
    let (out, _) = respond(
        GET11,
        "HTTP/1.0 200 Fine\r\nContent-Length: 0\r\n\r\n",
        true,
    );
    assert!(out.starts_with("HTTP/1.1 200 Fine\r\n"));
}

#[test]
fn response_connection_listed_fields_are_dropped() {
    let (out, _) = respond(
        GET11,
        "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n",
        true,
    );
    assert!(!out.contains("X-Internal"), "{out}");
}
