//! Feeds arbitrary bytes to the frame decoder, cut into pieces at points the
//! input itself chooses, with small limits so length checks are reached.
//!
//! Checks beyond "no panic": a frame that decodes re-encodes and decodes
//! again to the same message and payload (rkyv archives are not canonical, so
//! the bytes may differ, the meaning may not), and the decoder never holds
//! more than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratum_wire::frame::HEADER_LEN;
use stratum_wire::{FrameDecoder, FrameEncoder, FrameLimits};

const LIMITS: FrameLimits = FrameLimits {
    max_message_len: 4096,
    max_payload_len: 16384,
};

fuzz_target!(|data: &[u8]| {
    // First byte picks the piece size, so the fuzzer explores split points.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut decoder = FrameDecoder::new(LIMITS);
    let mut encoder = FrameEncoder::new(LIMITS);
    for chunk in stream.chunks(piece) {
        let mut input = chunk;
        while !input.is_empty() {
            let result = decoder.decode(&mut input);
            assert!(
                decoder.buffered_bytes()
                    <= HEADER_LEN + LIMITS.max_message_len as usize + LIMITS.max_payload_len as usize
            );
            match result {
                Ok(Some(frame)) => {
                    let message = frame.to_message().expect("a validated archive deserializes");
                    let mut again = Vec::new();
                    encoder
                        .encode(&mut again, frame.request_id(), &message, frame.payload())
                        .expect("a decoded frame re-encodes");
                    let mut second = FrameDecoder::new(LIMITS);
                    let mut bytes = &again[..];
                    let reread = second
                        .decode(&mut bytes)
                        .expect("our own encoding decodes")
                        .expect("a whole frame");
                    assert_eq!(reread.to_message().expect("deserializes"), message);
                    assert_eq!(reread.payload(), frame.payload());
                    assert_eq!(reread.request_id(), frame.request_id());
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
