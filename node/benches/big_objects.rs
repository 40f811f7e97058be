//! What a large put costs the small requests beside it: the latency of
//! 1 KiB gets on a shard while 64 MiB puts arrive on the same shard, beside
//! the same gets alone.
//!
//! ```text
//! cargo bench -p stratum-node --bench big_objects [-- --seconds 5 --rounds 3]
//! ```
//!
//! One node, one shard, pinned to the first CPU; the loaders on the second.
//! A big put's content is hashed where it enters the node (64 MiB of
//! SHA-256 is about 55 ms here); it is hashed in 1 MiB steps with the core
//! given away between them, so the gets should wait for a step, not for
//! the whole object. Four big objects are made before measuring and put in
//! turn: the first put of each writes it, later ones are hashed, then
//! found present (the hashing is what is measured; making 64 MiB of
//! content on the loaders' CPU would disturb the gets' loader).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stratum_testkit::{median, object, pin_to, BenchArgs, TestClient, TestNode};
use stratum_wire::message::{Get, Put};
use stratum_wire::{Message, MessageKind, ObjectId, ObjectKind};

struct Args {
    seconds: f64,
    rounds: usize,
}

fn parse_args() -> Args {
    let args = BenchArgs::parse(&["--seconds", "--rounds"]);
    Args {
        seconds: args.get("--seconds", 5.0),
        rounds: args.get("--rounds", 3),
    }
}

/// Gets in flight on the small loader's connection.
const WINDOW: usize = 8;
const BIG: usize = 64 << 20;

/// Gets of `ids` for `seconds`, `WINDOW` in flight: their latencies (µs).
fn gets(client: &mut TestClient, ids: &[ObjectId], seconds: f64) -> Histogram<u64> {
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut next = 0usize;
    while Instant::now() < end || !sent_at.is_empty() {
        while Instant::now() < end && sent_at.len() < WINDOW {
            let id = ids[next % ids.len()];
            next += 1;
            let request = client.send(&Message::Get(Get { id }), &[]);
            sent_at.insert(request, Instant::now());
        }
        let frame = client.recv().expect("answer");
        assert_eq!(frame.kind(), MessageKind::GetOk);
        if let Some(sent) = sent_at.remove(&frame.request_id()) {
            let _ = latencies.record(sent.elapsed().as_micros() as u64);
        }
    }
    latencies
}

fn main() {
    let args = parse_args();
    let cpus = stratum_node::server::allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "needs two CPUs: one for the node, one for the load"
    );
    pin_to(&cpus[..1]);
    let node = TestNode::start(1, &[]);
    pin_to(&cpus[1..2]);
    let mut client = node.client(0);
    let ids: Vec<ObjectId> = (0..1000u64)
        .map(|seed| {
            let (id, kind, content) = object(seed, 1024);
            let reply = client
                .call(&Message::Put(Put { id, kind }), &content)
                .expect("put");
            assert_eq!(reply.kind(), MessageKind::PutAck);
            id
        })
        .collect();
    let bigs: Arc<Vec<(ObjectId, ObjectKind, Vec<u8>)>> = Arc::new(
        (0..4u64)
            .map(|seed| object(1_000_000 + seed, BIG))
            .collect(),
    );
    let turn = Arc::new(AtomicU64::new(0));
    let (mut p99_alone, mut p99_beside) = (Vec::new(), Vec::new());
    println!(
        "1 KiB gets ({WINDOW} in flight, cached) on a one-shard node, alone and while 64 MiB puts arrive on the same shard; {:.0} s each, µs",
        args.seconds
    );
    for round in 1..=args.rounds {
        let alone = gets(&mut client, &ids, args.seconds);
        let stop = Arc::new(AtomicBool::new(false));
        let putter = {
            let (stop, turn, bigs) = (Arc::clone(&stop), Arc::clone(&turn), Arc::clone(&bigs));
            let node_addr = node.addr(0);
            std::thread::spawn(move || {
                let client = TestClient::connect(node_addr, None).expect("connect");
                big_puts(client, &stop, &turn, &bigs)
            })
        };
        // Let the first big put arrive before measuring.
        std::thread::sleep(Duration::from_millis(300));
        let beside = gets(&mut client, &ids, args.seconds);
        stop.store(true, Ordering::Relaxed);
        let puts = putter.join().expect("putter");
        println!(
            "round {round}: alone p50 {} p99 {} max {} | beside {puts} big puts p50 {} p99 {} max {} | p99 ratio {:.2}",
            alone.value_at_quantile(0.5),
            alone.value_at_quantile(0.99),
            alone.max(),
            beside.value_at_quantile(0.5),
            beside.value_at_quantile(0.99),
            beside.max(),
            beside.value_at_quantile(0.99) as f64 / alone.value_at_quantile(0.99) as f64
        );
        p99_alone.push(alone.value_at_quantile(0.99) as f64);
        p99_beside.push(beside.value_at_quantile(0.99) as f64);
    }
    println!(
        "median p99: alone {:.0} µs, beside 64 MiB puts {:.0} µs",
        median(&p99_alone),
        median(&p99_beside)
    );
}

/// Puts `bigs` on `client` in turn, one after another, until `stop`; how
/// many.
fn big_puts(
    mut client: TestClient,
    stop: &AtomicBool,
    turn: &AtomicU64,
    bigs: &[(ObjectId, ObjectKind, Vec<u8>)],
) -> u64 {
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let next = turn.fetch_add(1, Ordering::Relaxed) as usize % bigs.len();
        let (id, kind, content) = &bigs[next];
        let reply = client
            .call(
                &Message::Put(Put {
                    id: *id,
                    kind: *kind,
                }),
                content,
            )
            .expect("big put");
        assert_eq!(reply.kind(), MessageKind::PutAck);
        done += 1;
    }
    done
}
