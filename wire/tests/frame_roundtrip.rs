//! Every message survives encode -> bytes in arbitrary pieces -> decode.

mod common;

use proptest::prelude::*;
use stratum_wire::frame::HEADER_LEN;
use stratum_wire::{FrameDecoder, FrameEncoder, FrameLimits, Message, MessageKind};

fn decode_all(bytes: &[u8], cuts: &[usize]) -> Vec<(u64, Message, Vec<u8>)> {
    let mut decoder = FrameDecoder::new(FrameLimits::default());
    let mut frames = Vec::new();
    let mut start = 0;
    let mut boundaries: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    boundaries.push(bytes.len());
    boundaries.sort_unstable();
    for end in boundaries {
        let mut piece = &bytes[start..end];
        start = end;
        while !piece.is_empty() {
            if let Some(frame) = decoder.decode(&mut piece).expect("valid stream") {
                let message = frame.to_message().expect("deserialize");
                assert_eq!(frame.kind(), message.kind());
                assert_eq!(frame.message().kind(), message.kind());
                frames.push((frame.request_id(), message, frame.payload().to_vec()));
            }
        }
    }
    decoder.finish().expect("stream ends on a frame boundary");
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_frame_round_trips((message, payload) in common::message_with_payload(), request_id: u64) {
        let mut encoder = FrameEncoder::default();
        let mut bytes = Vec::new();
        let header = encoder.encode(&mut bytes, request_id, &message, &payload).expect("encode");
        prop_assert_eq!(bytes.len() as u64, header.frame_len());
        prop_assert_eq!(header.kind, message.kind());
        let frames = decode_all(&bytes, &[]);
        prop_assert_eq!(frames, vec![(request_id, message, payload)]);
    }

    #[test]
    fn a_stream_split_anywhere_decodes_to_the_same_frames(
        items in prop::collection::vec((common::message_with_payload(), any::<u64>()), 1..12),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut encoder = FrameEncoder::default();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for ((message, payload), request_id) in items {
            encoder.encode(&mut bytes, request_id, &message, &payload).expect("encode");
            expected.push((request_id, message, payload));
        }
        prop_assert_eq!(decode_all(&bytes, &cuts), expected);
    }

    #[test]
    fn head_plus_separate_payload_equals_whole_frame((message, payload) in common::message_with_payload()) {
        let mut encoder = FrameEncoder::default();
        let mut whole = Vec::new();
        encoder.encode(&mut whole, 9, &message, &payload).expect("encode");
        let mut head = Vec::new();
        encoder.encode_head(&mut head, 9, &message, &payload).expect("encode head");
        head.extend_from_slice(&payload);
        prop_assert_eq!(head, whole);
    }
}

#[test]
fn the_strategy_reaches_every_message_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = common::message();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5_000 {
        seen.insert(
            strategy
                .new_tree(&mut runner)
                .expect("tree")
                .current()
                .kind(),
        );
    }
    let all: std::collections::BTreeSet<MessageKind> = MessageKind::ALL.iter().copied().collect();
    assert_eq!(seen, all);
}

#[test]
fn message_starts_sixteen_byte_aligned_in_the_frame() {
    // rkyv archives need 16-byte alignment; a frame read whole into an
    // aligned buffer can be accessed in place because the header is 32 bytes.
    assert_eq!(HEADER_LEN % 16, 0);
}

#[test]
fn a_large_payload_arrives_intact_in_small_pieces() {
    let payload: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    let id = stratum_wire::ObjectId::compute(stratum_wire::ObjectKind::Blob, &payload);
    let message = Message::GetOk(stratum_wire::message::GetOk {
        id,
        kind: stratum_wire::ObjectKind::Blob,
    });
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode(&mut bytes, 1, &message, &payload)
        .expect("encode");
    let cuts: Vec<usize> = (1..bytes.len() / 1500).map(|i| i * 1500).collect();
    let frames = decode_all(&bytes, &cuts);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2, payload);
}
