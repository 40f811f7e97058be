//! Every way a received frame can be wrong gives its own error, never a
//! panic, and never an allocation of a size the peer merely claims.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use stratum_wire::frame::header::CRC_COVERED_HEADER_LEN;
use stratum_wire::frame::HEADER_LEN;
use stratum_wire::message::{Get, Ping, Put};
use stratum_wire::{
    FrameDecoder, FrameEncoder, FrameError, FrameLimits, Message, MessageKind, ObjectId, ObjectKind,
};

/// Counts the bytes this thread allocates, so a test can bound what decoding
/// a hostile header costs.
struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|count| count.set(count.get() + layout.size()));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|count| count.set(count.get() + new_size));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocated_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = work();
    (result, ALLOCATED.with(Cell::get) - before)
}

fn put_frame(payload: &[u8]) -> Vec<u8> {
    let message = Message::Put(Put {
        id: ObjectId::compute(ObjectKind::Blob, payload),
        kind: ObjectKind::Blob,
    });
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode(&mut bytes, 42, &message, payload)
        .expect("encode");
    bytes
}

/// Recomputes the checksum after a test tampered with a frame, so the check
/// under test is the one that fires.
fn reseal(frame: &mut [u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&frame[..CRC_COVERED_HEADER_LEN]);
    crc.update(&frame[HEADER_LEN..]);
    let crc = crc.finalize();
    frame[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn decode_one(bytes: &[u8]) -> Result<Option<stratum_wire::Frame>, FrameError> {
    decode_with(FrameLimits::default(), bytes)
}

fn decode_with(
    limits: FrameLimits,
    mut bytes: &[u8],
) -> Result<Option<stratum_wire::Frame>, FrameError> {
    let mut decoder = FrameDecoder::new(limits);
    decoder.decode(&mut bytes)
}

#[test]
fn every_truncation_waits_for_more_and_finish_reports_it() {
    let frame = put_frame(b"hello world");
    for cut in 0..frame.len() {
        let mut decoder = FrameDecoder::default();
        let mut prefix = &frame[..cut];
        assert!(decoder.decode(&mut prefix).expect("no error yet").is_none());
        assert!(prefix.is_empty(), "decoder took every byte offered");
        match decoder.finish() {
            Ok(()) => assert_eq!(cut, 0),
            Err(FrameError::Truncated { needed, have }) => {
                assert_eq!(have, cut as u64);
                let expected = if cut < HEADER_LEN {
                    HEADER_LEN
                } else {
                    frame.len()
                };
                assert_eq!(needed, expected as u64);
            }
            Err(other) => panic!("cut {cut}: {other}"),
        }
    }
}

#[test]
fn bad_magic() {
    let mut frame = put_frame(b"x");
    frame[0..4].copy_from_slice(b"HTTP");
    assert!(matches!(
        decode_one(&frame),
        Err(FrameError::BadMagic { found }) if &found == b"HTTP"
    ));
}

#[test]
fn unknown_version() {
    let mut frame = put_frame(b"x");
    frame[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert!(matches!(
        decode_one(&frame),
        Err(FrameError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
}

#[test]
fn unknown_kind_flags_and_reserved() {
    let mut frame = put_frame(b"x");
    frame[6] = 0xEE;
    assert!(matches!(
        decode_one(&frame),
        Err(FrameError::UnknownKind(0xEE))
    ));

    let mut frame = put_frame(b"x");
    frame[7] = 0x80;
    assert!(matches!(
        decode_one(&frame),
        Err(FrameError::UnknownFlags(0x80))
    ));

    let mut frame = put_frame(b"x");
    frame[28] = 1;
    assert!(matches!(
        decode_one(&frame),
        Err(FrameError::ReservedNotZero(1))
    ));
}

#[test]
fn empty_message() {
    let mut frame = put_frame(b"");
    frame[16..20].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(decode_one(&frame), Err(FrameError::EmptyMessage)));
}

#[test]
fn oversize_lengths_are_refused_from_the_header_alone_without_allocating() {
    let frame = put_frame(b"x");
    let mut header = frame[..HEADER_LEN].to_vec();
    header[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, allocated) = allocated_during(|| decode_one(&header));
    assert!(matches!(
        result,
        Err(FrameError::MessageTooLarge { len: u32::MAX, max }) if max == FrameLimits::DEFAULT_MAX_MESSAGE_LEN
    ));
    assert!(
        allocated < 4096,
        "allocated {allocated} bytes for a refused header"
    );

    let mut header = frame[..HEADER_LEN].to_vec();
    header[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, allocated) = allocated_during(|| decode_one(&header));
    assert!(matches!(
        result,
        Err(FrameError::PayloadTooLarge { len: u32::MAX, .. })
    ));
    assert!(
        allocated < 4096,
        "allocated {allocated} bytes for a refused header"
    );
}

#[test]
fn a_claimed_but_unsent_body_costs_only_what_arrived() {
    // 60 MiB announced (within limits), 100 bytes sent.
    let frame = put_frame(b"x");
    let message_len = u32::from_le_bytes(frame[16..20].try_into().expect("4 bytes")) as usize;
    let mut partial = frame[..HEADER_LEN + message_len].to_vec();
    partial[20..24].copy_from_slice(&(60u32 << 20).to_le_bytes());
    partial.extend_from_slice(&[0u8; 100]);
    let mut decoder = FrameDecoder::default();
    let (result, allocated) = allocated_during(|| {
        let mut input = &partial[..];
        decoder.decode(&mut input)
    });
    assert!(matches!(result, Ok(None)));
    assert!(
        allocated < 64 * 1024,
        "allocated {allocated} bytes for 100 received"
    );
    assert_eq!(decoder.buffered_bytes(), partial.len());
}

#[test]
fn payload_on_a_kind_that_has_none() {
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode_head(&mut bytes, 1, &Message::Ping(Ping { nonce: 1 }), &[])
        .expect("encode");
    bytes[20..24].copy_from_slice(&5u32.to_le_bytes());
    bytes.extend_from_slice(b"extra");
    reseal(&mut bytes);
    assert!(matches!(
        decode_one(&bytes),
        Err(FrameError::UnexpectedPayload {
            kind: MessageKind::Ping,
            len: 5
        })
    ));
}

#[test]
fn bad_crc_in_header_message_or_payload() {
    let frame = put_frame(b"some object bytes");
    // Header field covered by the CRC (request id), message, payload, and the
    // CRC field itself.
    for position in [9, HEADER_LEN + 3, frame.len() - 1, 25] {
        let mut tampered = frame.clone();
        tampered[position] ^= 0x10;
        assert!(
            matches!(
                decode_one(&tampered),
                Err(FrameError::ChecksumMismatch { .. })
            ),
            "flip at {position} not caught by the checksum"
        );
    }
}

#[test]
fn corrupt_archive_with_a_valid_checksum() {
    let frame = put_frame(b"x");
    let message_len = u32::from_le_bytes(frame[16..20].try_into().expect("4 bytes")) as usize;
    let mut tampered = frame.clone();
    // An invalid ObjectKind discriminant inside a Put archive: every byte of
    // the archive is set to 0xFF.
    for byte in &mut tampered[HEADER_LEN..HEADER_LEN + message_len] {
        *byte = 0xFF;
    }
    reseal(&mut tampered);
    assert!(matches!(
        decode_one(&tampered),
        Err(FrameError::CorruptArchive(_))
    ));
}

#[test]
fn a_kind_relabelled_to_another_layout_fails_validation() {
    // The header kind is the archive's only discriminant (it is covered by
    // the checksum); an archive read as a type of another size is refused.
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode(
            &mut bytes,
            1,
            &Message::Get(Get {
                id: ObjectId::from_bytes([7; 32]),
            }),
            &[],
        )
        .expect("encode");
    bytes[6] = MessageKind::StatsReply.as_u8();
    reseal(&mut bytes);
    assert!(matches!(
        decode_one(&bytes),
        Err(FrameError::CorruptArchive(_))
    ));
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut decoder = FrameDecoder::default();
    let mut garbage: &[u8] = &[0u8; 64];
    assert!(matches!(
        decoder.decode(&mut garbage),
        Err(FrameError::BadMagic { .. })
    ));
    let good = put_frame(b"x");
    let mut input = &good[..];
    assert!(matches!(
        decoder.decode(&mut input),
        Err(FrameError::Poisoned)
    ));
    assert!(matches!(decoder.finish(), Err(FrameError::Poisoned)));
}

#[test]
fn custom_limits_apply() {
    let frame = put_frame(&[1u8; 100]);
    let tight = FrameLimits {
        max_message_len: 1 << 20,
        max_payload_len: 99,
    };
    assert!(matches!(
        decode_with(tight, &frame),
        Err(FrameError::PayloadTooLarge { len: 100, max: 99 })
    ));
    let mut encoder = FrameEncoder::new(tight);
    let message = Message::Put(Put {
        id: ObjectId::from_bytes([0; 32]),
        kind: ObjectKind::Blob,
    });
    assert!(encoder
        .encode(&mut Vec::new(), 1, &message, &[0u8; 100])
        .is_err());
    assert!(encoder
        .encode(&mut Vec::new(), 1, &Message::Ping(Ping { nonce: 0 }), b"no")
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Arbitrary bytes never panic the decoder; they either wait for more,
    /// decode (only if they happen to be a valid frame), or fail with a
    /// typed error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = FrameDecoder::default();
        let mut input = &bytes[..];
        while !input.is_empty() {
            match decoder.decode(&mut input) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    /// Valid frames with one random byte flipped are always rejected (the
    /// checksum or an earlier check catches it) and never panic.
    #[test]
    fn any_single_bit_flip_is_rejected(
        (message, payload) in common::message_with_payload(),
        position: prop::sample::Index,
        bit in 0u8..8,
    ) {
        let mut bytes = Vec::new();
        FrameEncoder::default().encode(&mut bytes, 3, &message, &payload).expect("encode");
        let position = position.index(bytes.len());
        bytes[position] ^= 1 << bit;
        let mut decoder = FrameDecoder::default();
        let mut input = &bytes[..];
        let result = decoder.decode(&mut input);
        let rejected = match result {
            Err(_) => true,
            // A flipped length can make the decoder wait for bytes that
            // never come: then the stream is truncated.
            Ok(None) => decoder.finish().is_err(),
            Ok(Some(_)) => false,
        };
        prop_assert!(rejected, "flip of bit {} at byte {} was accepted", bit, position);
    }
}

#[test]
fn an_oversize_payload_is_skipped_without_storing_it_and_the_stream_goes_on() {
    let limits = FrameLimits {
        max_message_len: 4096,
        max_payload_len: 1000,
    };
    let mut decoder = FrameDecoder::new(limits);
    decoder.skip_oversize_payloads(1 << 20);
    let mut stream = put_frame(&vec![3u8; 200_000]);
    stream.extend(put_frame(b"small"));
    let before = ALLOCATED.with(Cell::get);
    let mut input = &stream[..];
    // In pieces, as a socket delivers it.
    let mut skipped = None;
    while skipped.is_none() {
        let (mut piece, rest) = input.split_at(input.len().min(4096));
        match decoder.decode(&mut piece) {
            Ok(None) => {}
            Err(FrameError::PayloadSkipped {
                request_id,
                len,
                max,
                ..
            }) => skipped = Some((request_id, len, max)),
            other => panic!("{other:?}"),
        }
        let used = input.len().min(4096) - piece.len();
        input = &input[used..];
        let _ = rest;
    }
    assert!(
        ALLOCATED.with(Cell::get) - before < 16 << 10,
        "the skipped payload was stored"
    );
    assert_eq!(skipped, Some((42, 200_000, 1000)));
    let frame = decoder.decode(&mut input).unwrap().expect("the next frame");
    assert_eq!(frame.request_id(), 42);
    assert_eq!(frame.payload(), b"small");
}

#[test]
fn a_skipped_payload_with_a_bad_checksum_fails_the_stream() {
    let mut decoder = FrameDecoder::new(FrameLimits {
        max_message_len: 4096,
        max_payload_len: 10,
    });
    decoder.skip_oversize_payloads(1 << 20);
    let mut stream = put_frame(&[9u8; 5000]);
    let last = stream.len() - 1;
    stream[last] ^= 1;
    let mut input = &stream[..];
    assert!(matches!(
        decoder.decode(&mut input),
        Err(FrameError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        decoder.decode(&mut &b"x"[..]),
        Err(FrameError::Poisoned)
    ));
    // Beyond the skip bound, the header alone still fails the stream.
    let mut strict = FrameDecoder::new(FrameLimits {
        max_message_len: 4096,
        max_payload_len: 10,
    });
    strict.skip_oversize_payloads(100);
    let big = put_frame(&[1u8; 5000]);
    assert!(matches!(
        strict.decode(&mut &big[..HEADER_LEN]),
        Err(FrameError::PayloadTooLarge { .. })
    ));
}
