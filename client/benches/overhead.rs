//! What the client costs: gets per second through `stratum-client` beside
//! the same load from a minimal raw-socket loop, against one real node, in
//! one run (rounds alternate, so drift on a shared machine hits both).
//!
//! ```text
//! cargo build --release -p stratum-node
//! cargo bench -p stratum-client --bench overhead [-- --seconds 3 --rounds 3 --in-flight 32 --size 1024]
//! ```
//!
//! Both sides keep the same number of gets in flight: the raw loop as one
//! thread per shard pipelining frames on one socket (no routing, no
//! verification), the client as tokio tasks on one runtime thread.

use std::time::{Duration, Instant};

use stratum_client::{Client, ClientConfig, ObjectId};
use stratum_testkit::{object, TestClient, TestNode};
use stratum_wire::message::Get;
use stratum_wire::placement::shard_of;
use stratum_wire::{Message, MessageKind};

struct Options {
    seconds: f64,
    rounds: usize,
    in_flight: usize,
    size: usize,
    objects: u64,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 3.0,
        rounds: 3,
        in_flight: 32,
        size: 1024,
        objects: 10_000,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--seconds" => options.seconds = value.parse().expect("--seconds"),
            "--rounds" => options.rounds = value.parse().expect("--rounds"),
            "--in-flight" => options.in_flight = value.parse().expect("--in-flight"),
            "--size" => options.size = value.parse().expect("--size"),
            "--objects" => options.objects = value.parse().expect("--objects"),
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// Raw loop: per shard, one socket with `depth` gets pipelined.
fn raw(node: &TestNode, ids: &[ObjectId], depth: usize, seconds: f64) -> f64 {
    let shards = node.shards;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..shards)
        .map(|shard| {
            let mine: Vec<ObjectId> = ids
                .iter()
                .copied()
                .filter(|id| shard_of(id, shards) == shard)
                .collect();
            let mut client = node.client(shard);
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut next = 0usize;
                for _ in 0..depth {
                    client.send(
                        &Message::Get(Get {
                            id: mine[next % mine.len()],
                        }),
                        &[],
                    );
                    next += 1;
                }
                while Instant::now() < deadline {
                    let frame = client.recv().expect("answer");
                    assert_eq!(frame.kind(), MessageKind::GetOk);
                    done += 1;
                    client.send(
                        &Message::Get(Get {
                            id: mine[next % mine.len()],
                        }),
                        &[],
                    );
                    next += 1;
                }
                for _ in 0..depth {
                    let _ = client.recv();
                }
                done
            })
        })
        .collect();
    let started = Instant::now();
    let total: u64 = threads
        .into_iter()
        .map(|thread| thread.join().expect("raw thread"))
        .sum();
    total as f64 / started.elapsed().as_secs_f64().max(seconds)
}

/// Client: `depth` tokio tasks on one runtime thread, each getting in a loop.
fn through_client(client: &Client, ids: &[ObjectId], depth: usize, seconds: f64) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..depth)
            .map(|task| {
                let client = client.clone();
                let ids = ids.to_vec();
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let mut next = task * 7919;
                    while Instant::now() < deadline {
                        client.get(ids[next % ids.len()]).await.expect("get");
                        next += 1;
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("task");
        }
        total as f64 / started.elapsed().as_secs_f64()
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks; nothing to list.
    }
    let options = options();
    let node = TestNode::start(2, &[]);
    let loader = node.client(0);
    drop(loader);
    let client = futures_lite::future::block_on(Client::connect(ClientConfig::seeds([node
        .addr(0)
        .to_string()])))
    .expect("client connects");
    let mut ids = Vec::new();
    for seed in 0..options.objects {
        let (id, kind, content) = object(seed, options.size);
        futures_lite::future::block_on(client.put(kind, content)).expect("put");
        ids.push(id);
    }
    // Warm the node's cache and both paths.
    raw(&node, &ids, options.in_flight / 2, 0.5);
    through_client(&client, &ids, options.in_flight, 0.5);

    let (mut raws, mut clients) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let r = raw(
            &node,
            &ids,
            (options.in_flight / node.shards as usize).max(1),
            options.seconds,
        );
        let c = through_client(&client, &ids, options.in_flight, options.seconds);
        println!("round {round}: raw {r:.0} gets/s, client {c:.0} gets/s");
        raws.push(r);
        clients.push(c);
    }
    let (r, c) = (median(&mut raws), median(&mut clients));
    println!(
        "gets of {} B objects, {} in flight, 2 shards: raw loop {r:.0}/s, client {c:.0}/s; client/raw = {:.2} (cost {:.0}% of throughput; target < 15%)",
        options.size,
        options.in_flight,
        c / r,
        (1.0 - c / r) * 100.0
    );
    let _ = TestClient::connect;
}
