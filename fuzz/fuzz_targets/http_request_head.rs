//! Arbitrary bytes as what a client sends: the request-head parser must never panic; fed
//! in two pieces (split where the first byte says) it must give the one-shot result; and
//! a head it accepts must be forwarded as a head that its own strict rules accept with the
//! same framing, method, path and host (the proxy never emits an ambiguous request).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tandem_http::{
    BodyDecoder, Forwarding, Limits, MAX_HEAD_BYTES_CAP, Parsed, RequestHead, RequestReader, RequestRewrite,
    Scheme, Side, write_request,
};

fn summary(head: &RequestHead) -> (Vec<u8>, String, Option<String>, tandem_http::BodyKind) {
    (
        head.as_bytes().to_vec(),
        head.target().to_string(),
        head.host().map(|h| h.into_owned()),
        head.body(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = if control & 0x80 != 0 {
        Limits {
            max_head_bytes: 64 + usize::from(control & 0x3f) * 4,
            max_fields: usize::from(control & 0x7),
            allow_connect: control & 0x40 != 0,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };

    let one_shot = RequestHead::parse(input, &limits);

    // The same bytes in two pieces through the incremental reader.
    let split = if input.is_empty() { 0 } else { usize::from(control) % (input.len() + 1) };
    let mut reader = RequestReader::new(limits.clone());
    let mut buf = BytesMut::from(&input[..split]);
    let mut incremental = reader.read(&mut buf);
    if let Ok(None) = incremental {
        buf.extend_from_slice(&input[split..]);
        incremental = reader.read(&mut buf);
    }
    match (&one_shot, &incremental) {
        (Ok(Parsed::Complete { head, .. }), Ok(Some(h))) => assert_eq!(summary(head), summary(h)),
        (Ok(Parsed::Incomplete), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("one-shot {a:?} but incremental {b:?}"),
    }

    let Ok(Parsed::Complete { head, consumed }) = one_shot else {
        return;
    };
    let who = Forwarding::new("2001:db8::1".parse().unwrap(), Scheme::Https, control & 1 == 0);
    let rw = RequestRewrite {
        forwarding: &who,
        close: control & 2 == 0,
        pass_upgrade: control & 4 == 0,
        extra: &[],
        host_if_missing: None,
    };
    let mut out = Vec::new();
    write_request(&head, &rw, &mut out).expect("rewrite");
    // The server's limits, not ours: the forwarded head has a few more fields and bytes.
    let policy = Limits {
        allow_connect: limits.allow_connect,
        max_head_bytes: MAX_HEAD_BYTES_CAP,
        max_fields: 1000,
        ..Limits::default()
    };
    match RequestHead::parse(&out, &policy) {
        Ok(Parsed::Complete { head: again, consumed: n }) => {
            assert_eq!(n, out.len());
            assert_eq!(again.body(), head.body());
            assert_eq!(again.method(), head.method());
            assert_eq!(again.path(), head.path());
            assert_eq!(again.host(), head.host());
        }
        other => panic!("forwarded head refused: {other:?}"),
    }

    // And whatever follows as its body must decode without panicking.
    let mut body = BodyDecoder::new(head.body(), Side::Request, &limits);
    let mut rest = &input[consumed..];
    while let Ok(step) = body.decode(rest) {
        assert!(step.data.end <= step.consumed && step.consumed <= rest.len());
        rest = &rest[step.consumed..];
        if step.done || step.consumed == 0 {
            break;
        }
    }
});
