//! Frames encoded and decoded per second.
//! `cargo bench -p stratum-wire --bench codec`
//!
//! - `put_1k`: a Put request with a 1 KiB object (the common small write).
//! - `get_ok_64k`: a GetOk response carrying a 64 KiB object. Encoding uses
//!   `encode_head` (header + message; the payload is sent by a vectored
//!   write), so its cost is the CRC over the payload plus the archive.
//! - `get`: a bare Get request (the smallest frame a client sends often).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stratum_wire::message::{Get, GetOk, Put};
use stratum_wire::{FrameDecoder, FrameEncoder, Message, ObjectId, ObjectKind};

fn cases() -> Vec<(&'static str, Message, Vec<u8>)> {
    let small: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    let large: Vec<u8> = (0..65536u32).map(|i| (i * 31) as u8).collect();
    vec![
        (
            "put_1k",
            Message::Put(Put {
                id: ObjectId::compute(ObjectKind::Blob, &small),
                kind: ObjectKind::Blob,
            }),
            small,
        ),
        (
            "get_ok_64k",
            Message::GetOk(GetOk {
                id: ObjectId::compute(ObjectKind::Blob, &large),
                kind: ObjectKind::Blob,
            }),
            large,
        ),
        (
            "get",
            Message::Get(Get {
                id: ObjectId::from_bytes([9; 32]),
            }),
            Vec::new(),
        ),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (name, message, payload) in cases() {
        let mut encoder = FrameEncoder::default();
        let mut out = Vec::with_capacity(1 << 17);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encoder
                    .encode_head(
                        &mut out,
                        black_box(7),
                        black_box(&message),
                        black_box(&payload),
                    )
                    .expect("encode");
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, message, payload) in cases() {
        let mut bytes = Vec::new();
        FrameEncoder::default()
            .encode(&mut bytes, 7, &message, &payload)
            .expect("encode");
        let mut decoder = FrameDecoder::default();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut input = black_box(&bytes[..]);
                let frame = decoder.decode(&mut input).expect("valid").expect("whole");
                black_box(frame.payload().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
