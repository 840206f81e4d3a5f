//! Arbitrary bytes as a chunked body: the decoder must never panic, must give the same
//! data, length and verdict whether the bytes come at once or in pieces (sizes taken from
//! the first bytes), and the data it yields, re-encoded, must decode to the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_http::{ChunkedDecoder, LAST_CHUNK, Limits, Side, Violation, encode_chunk};

type Outcome = Result<(Vec<u8>, usize, bool), Violation>;

fn decode(input: &[u8], pieces: &[u8], limits: &Limits) -> Outcome {
    let mut d = ChunkedDecoder::new(Side::Response, limits);
    let mut buf = Vec::new();
    let (mut fed, mut consumed, mut data) = (0, 0, Vec::new());
    let mut piece = pieces.iter().cycle();
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
            let n = if pieces.is_empty() {
                input.len() - fed
            } else {
                usize::from(*piece.next().unwrap()).max(1).min(input.len() - fed)
            };
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (pieces, input) = data.split_at(data.len().min(4));
    let pieces: Vec<u8> = pieces.iter().map(|b| b % 17).collect();
    let limits = Limits {
        max_chunk_ext_bytes: 32,
        max_trailer_bytes: 128,
        max_fields: 8,
        ..Limits::default()
    };
    let whole = decode(input, &[], &limits);
    let split = decode(input, &pieces, &limits);
    assert_eq!(whole, split);
    if let Ok((data, _, true)) = whole {
        let mut out = Vec::new();
        for piece in data.chunks(7) {
            encode_chunk(piece, &mut out);
        }
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode(&out, &[3], &Limits::default()), Ok((data, out.len(), true)));
    }
});
