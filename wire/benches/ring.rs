//! Ring lookups per second.
//! `cargo bench -p stratum-wire --bench ring`
//!
//! `replicas/N`: the replica set (node ids) of an object on an N-node ring.
//! `placement/N`: replica set plus the owning shard on each replica node,
//! what a client computes per request.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stratum_wire::placement::{NodeSpec, Placement, Topology};
use stratum_wire::{ObjectId, ObjectKind};

fn topology(nodes: u32) -> Topology {
    Topology::new(
        1,
        3,
        2,
        (1..=nodes)
            .map(|id| NodeSpec {
                id,
                address: format!("10.0.{}.{}:7400", id / 200, id % 200 + 1),
                shards: 16,
            })
            .collect(),
    )
    .expect("valid topology")
}

fn lookups(c: &mut Criterion) {
    let ids: Vec<ObjectId> = (0..4096u32)
        .map(|i| ObjectId::compute(ObjectKind::Blob, &i.to_le_bytes()))
        .collect();
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(1));
    for nodes in [3u32, 100] {
        let placement = Placement::new(topology(nodes));
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::new("replicas", nodes),
            &placement,
            |b, placement| {
                b.iter(|| {
                    next = (next + 1) & 4095;
                    black_box(placement.replica_node_ids(black_box(&ids[next])).len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("placement", nodes),
            &placement,
            |b, placement| {
                b.iter(|| {
                    next = (next + 1) & 4095;
                    let id = &ids[next];
                    let mut shards = 0u32;
                    for replica in placement.replicas(black_box(id)) {
                        shards += u32::from(replica.shard);
                    }
                    black_box(shards)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
