use super::*;

/// Runs a decoder over `input` delivered in pieces of the given sizes (cycled), the way
/// an engine does: keep the unconsumed tail, append what arrives. Returns the data, the
/// total consumed, and whether the body ended.
fn run(input: &[u8], pieces: &[usize], limits: &Limits) -> Result<(Vec<u8>, usize, bool), Error> {
    let mut d = ChunkedDecoder::new(Side::Request, limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut consumed_total = 0;
    let mut data = Vec::new();
    let mut piece = pieces.iter().cycle();
    loop {
        let step = d.decode(&buf)?;
        assert!(step.data.end <= step.consumed && step.data.start <= step.data.end);
        data.extend_from_slice(&buf[step.data.clone()]);
        buf.drain(..step.consumed);
        consumed_total += step.consumed;
        if step.done {
            assert!(d.is_done());
            return Ok((data, consumed_total, true));
        }
        if step.needs_input() {
            if fed == input.len() {
                return Ok((data, consumed_total, false));
            }
            let n = (*piece.next().unwrap()).max(1).min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, usize, bool), Error> {
    run(input, &[usize::MAX], &Limits::default())
}

fn refused(input: &[u8]) -> Violation {
    match decode(input) {
        Err(e) => {
            assert_eq!(e.status(), 400);
            e.violation()
        }
        Ok(r) => panic!("accepted {:?}: {r:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn simple_body() {
    let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
    let (data, consumed, done) = decode(input).unwrap();
    assert_eq!(data, b"hello world");
    assert!(done);
    assert_eq!(consumed, input.len() - 4);
}

#[test]
fn one_call_reports_one_data_range() {
    let mut d = ChunkedDecoder::new(Side::Response, &Limits::default());
    let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let s = d.decode(input).unwrap();
    assert_eq!(
        s,
        Decoded {
            consumed: 6,
            data: 3..6,
            done: false
        }
    );
    let s = d.decode(&input[6..]).unwrap();
    assert_eq!(
        s,
        Decoded {
            consumed: 7,
            data: 5..7,
            done: false
        }
    );
    let s = d.decode(&input[13..]).unwrap();
    assert_eq!(
        s,
        Decoded {
            consumed: 7,
            data: 7..7,
            done: true
        }
    );
    assert_eq!(d.total(), 5);
}

#[test]
fn hex_sizes_any_case() {
    let body = vec![b'x'; 0xab];
    let mut input = b"aB\r\n".to_vec();
    input.extend_from_slice(&body);
    input.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(decode(&input).unwrap().0, body);
    let (data, ..) = decode(b"000a\r\n0123456789\r\n00\r\n\r\n").unwrap();
    assert_eq!(data, b"0123456789");
}

#[test]
fn extensions_and_trailers() {
    let input = b"5;name=value;flag\r\nhello\r\n6 ; q = \"a \\\"b\\\" c\" ;x\r\n world\r\n0;last\r\nChecksum: abc\r\nExpires: never\r\n\r\n";
    let (data, consumed, done) = decode(input).unwrap();
    assert_eq!(data, b"hello world");
    assert!(done);
    assert_eq!(consumed, input.len());
}

#[test]
fn split_at_every_byte_boundary() {
    let input: &[u8] =
        b"5;a=\"x;y\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\nNEXT";
    let whole = decode(input).unwrap();
    assert_eq!(whole.0, b"helloabcdefghijklmnopqrstuvwxyz");
    for size in 1..input.len() {
        assert_eq!(
            run(input, &[size], &Limits::default()).unwrap(),
            whole,
            "pieces of {size}"
        );
    }
    for split in 1..input.len() {
        assert_eq!(
            run(input, &[split, usize::MAX], &Limits::default()).unwrap(),
            whole,
            "split at {split}"
        );
    }
}

#[test]
fn incomplete_body_is_not_done() {
    let input = b"5\r\nhello\r\n0\r\n";
    let (data, _, done) = decode(input).unwrap();
    assert_eq!(data, b"hello");
    assert!(!done);
}

#[test]
fn refuses_malformed_chunk_size() {
    for input in [
        &b"x\r\n"[..],
        b"5x\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"5 5\r\n",
        b"5,a\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            refused(input),
            Violation::InvalidChunkSize,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn refuses_trailing_whitespace_after_chunk_size() {
    assert_eq!(
        refused(b"5 \r\nhello\r\n0\r\n\r\n"),
        Violation::InvalidChunkExtension
    );
    assert_eq!(
        refused(b"5\t\r\nhello\r\n0\r\n\r\n"),
        Violation::InvalidChunkExtension
    );
    assert_eq!(
        refused(b"5;a \r\nhello\r\n0\r\n\r\n"),
        Violation::InvalidChunkExtension
    );
}

#[test]
fn refuses_too_long_chunk_size() {
    assert_eq!(
        refused(b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
        Violation::ChunkSizeTooLong
    );
    assert_eq!(
        refused(b"10000000000000000\r\n"),
        Violation::ChunkSizeTooLong
    );
    // Refused as soon as the 17th digit arrives, without waiting for the line end.
    assert_eq!(
        ChunkedDecoder::new(Side::Request, &Limits::default())
            .decode(b"fffffffffffffffff")
            .unwrap_err()
            .violation(),
        Violation::ChunkSizeTooLong
    );
}

#[test]
fn refuses_malformed_chunk_extensions() {
    for input in [
        &b"5;\r\nhello\r\n0\r\n\r\n"[..],
        b"5;=v\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
        b"5;a=b c\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
        b"5;a(b)\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            refused(input),
            Violation::InvalidChunkExtension,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn refuses_chunk_extension_over_the_limit() {
    let limits = Limits {
        max_chunk_ext_bytes: 8,
        ..Limits::default()
    };
    assert!(run(b"5;abcdefg\r\nhello\r\n0\r\n\r\n", &[usize::MAX], &limits).is_ok());
    let e = run(b"5;abcdefgh\r\nhello\r\n0\r\n\r\n", &[usize::MAX], &limits).unwrap_err();
    assert_eq!(e.violation(), Violation::ChunkExtensionTooLong);
    // Without a line end: refused once the line cannot end within the limit (the
    // extension and its CRLF).
    let mut d = ChunkedDecoder::new(Side::Request, &limits);
    assert_eq!(
        d.decode(b"5;abcdefghij").unwrap_err().violation(),
        Violation::ChunkExtensionTooLong
    );
    let mut d = ChunkedDecoder::new(Side::Request, &limits);
    assert!(d.decode(b"5;abcdefgh\r").unwrap().needs_input());
    let mut d = ChunkedDecoder::new(Side::Request, &limits);
    assert!(d.decode(b"5;abcdefg").unwrap().needs_input());
}

#[test]
fn refuses_missing_crlf_after_data() {
    assert_eq!(
        refused(b"5\r\nhelloX\r\n0\r\n\r\n"),
        Violation::ChunkDataNotTerminated
    );
    assert_eq!(
        refused(b"5\r\nhello\n0\r\n\r\n"),
        Violation::ChunkDataNotTerminated
    );
    assert_eq!(
        refused(b"5\r\nhello\r0\r\n\r\n"),
        Violation::ChunkDataNotTerminated
    );
    assert_eq!(
        refused(b"3\r\nhello\r\n0\r\n\r\n"),
        Violation::ChunkDataNotTerminated
    );
}

#[test]
fn refuses_bare_lf_in_size_line() {
    assert_eq!(refused(b"5\nhello\r\n0\r\n\r\n"), Violation::BareLf);
    assert_eq!(refused(b"5;a\nhello\r\n0\r\n\r\n"), Violation::BareLf);
    assert_eq!(refused(b"5\r\nhello\r\n0\n\n"), Violation::BareLf);
    assert_eq!(refused(b"\n"), Violation::BareLf);
}

#[test]
fn refuses_bare_cr_in_size_line() {
    assert_eq!(refused(b"5\rhello\r\n0\r\n\r\n"), Violation::BareCr);
}

#[test]
fn refuses_malformed_trailers() {
    assert_eq!(
        refused(b"0\r\nA : b\r\n\r\n"),
        Violation::WhitespaceBeforeColon
    );
    assert_eq!(refused(b"0\r\nA: b\r\n c\r\n\r\n"), Violation::ObsFold);
    assert_eq!(refused(b"0\r\n: b\r\n\r\n"), Violation::EmptyFieldName);
    assert_eq!(
        refused(b"0\r\nA: b\0\r\n\r\n"),
        Violation::InvalidFieldValue
    );
    assert_eq!(refused(b"0\r\nA: b\n\r\n"), Violation::BareLf);
}

#[test]
fn refuses_framing_fields_in_trailers() {
    for name in ["Content-Length", "transfer-encoding", "Host"] {
        let input = format!("0\r\n{name}: 5\r\n\r\n");
        assert_eq!(
            refused(input.as_bytes()),
            Violation::ForbiddenTrailer,
            "{name}"
        );
    }
}

#[test]
fn refuses_trailers_over_the_limit() {
    let limits = Limits {
        max_trailer_bytes: 17,
        ..Limits::default()
    };
    assert!(run(b"0\r\nA: 0123456789\r\n\r\n", &[usize::MAX], &limits).is_ok());
    let e = run(b"0\r\nA: 01234567890\r\n\r\n", &[usize::MAX], &limits).unwrap_err();
    assert_eq!(e.violation(), Violation::TrailersTooLarge);
    assert_eq!(e.status(), 431);
    let limits = Limits {
        max_fields: 1,
        ..Limits::default()
    };
    let e = run(b"0\r\nA: 1\r\nB: 2\r\n\r\n", &[usize::MAX], &limits).unwrap_err();
    assert_eq!(e.violation(), Violation::TooManyFields);
}

#[test]
fn body_limit_gives_413_for_requests_and_502_for_responses() {
    let limits = Limits {
        max_body_bytes: Some(10),
        ..Limits::default()
    };
    assert!(
        run(
            b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
            &[usize::MAX],
            &limits
        )
        .is_ok()
    );
    let e = run(
        b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
        &[usize::MAX],
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        (e.violation(), e.status().as_u16()),
        (Violation::BodyTooLarge, 413)
    );
    let mut d = ChunkedDecoder::new(Side::Response, &limits);
    let e = d.decode(b"b\r\n").unwrap_err();
    assert_eq!(e.status(), 502);
    // The sum of sizes cannot wrap around.
    let mut d = ChunkedDecoder::new(Side::Request, &Limits::default());
    let s = d.decode(b"ffffffffffffffff\r\n").unwrap();
    assert_eq!(s.consumed, 18);
    let mut d2 = ChunkedDecoder::new(Side::Request, &Limits::default());
    d2.total = u64::MAX;
    assert_eq!(
        d2.decode(b"1\r\n").unwrap_err().violation(),
        Violation::BodyTooLarge
    );
}

#[test]
fn chunk_headers() {
    assert_eq!(ChunkHeader::new(1).as_bytes(), b"1\r\n");
    assert_eq!(ChunkHeader::new(0xabc).as_bytes(), b"abc\r\n");
    assert_eq!(
        ChunkHeader::new(u64::MAX).as_bytes(),
        b"ffffffffffffffff\r\n"
    );
}

#[test]
fn encoder_output_decodes_to_the_same_data() {
    let mut out = Vec::new();
    let pieces: [&[u8]; 4] = [b"hello", b"", b" ", &[7u8; 300]];
    for p in pieces {
        encode_chunk(p, &mut out);
    }
    out.extend_from_slice(LAST_CHUNK);
    let (data, consumed, done) = decode(&out).unwrap();
    assert_eq!(data, pieces.concat());
    assert!(done);
    assert_eq!(consumed, out.len());
    assert!(out.starts_with(b"5\r\nhello\r\n1\r\n \r\n12c\r\n"));
}
