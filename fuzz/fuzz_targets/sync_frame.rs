//! Arbitrary bytes from the sync peer: the frame reader, the hello and frame decoders, and the
//! protocol core fed the bytes after a valid hello must never panic; every frame that decodes
//! must re-encode to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use tandem_sync::wire::{self, FrameReader, Hello, Speaks, WireRole};
use tandem_sync::{Engine, EngineConfig, MemoryStore, Role};

fn hello() -> Vec<u8> {
    let mut out = Vec::new();
    let hello = Hello {
        node: "peer".into(),
        management: "192.0.2.2:443".into(),
        role: WireRole::Active,
        instance: 1,
        running: None,
        versions: vec![],
        max_epoch: 0,
        audit: vec![],
        extensions: vec![],
    };
    wire::encode_hello(Speaks::at(wire::SCHEMA), &hello, &mut out).unwrap();
    out
}

fuzz_target!(|data: &[u8]| {
    let mut reader = FrameReader::new();
    reader.push(data);
    while let Ok(Some(body)) = reader.next_body() {
        let _ = wire::decode_hello(body);
        if let Ok(frame) = wire::decode_frame(body) {
            let mut again = Vec::new();
            wire::encode_frame(&frame, &mut again).unwrap();
            let back = wire::decode_frame(&again[wire::HEADER_LEN..]).unwrap();
            assert_eq!(back, frame);
        }
    }

    // The core, as the passive box, after the active's hello: any later bytes at all.
    let now = Instant::now();
    let mut engine = Engine::new(
        EngineConfig::new("me", "192.0.2.1:443"),
        MemoryStore::new("me"),
        Role::Passive,
    );
    engine.connected(now);
    let _ = engine.handle_input(&hello(), now);
    for chunk in data.chunks(97) {
        if engine.handle_input(chunk, now).is_err() {
            break;
        }
        while engine.poll_action().is_some() {}
        while engine.poll_transmit(now).is_some() {}
    }
});
