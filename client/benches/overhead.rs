//! What the client costs: gets per second through `stratum-client` beside
//! the same load from a minimal raw-socket loop, against one real node, in
//! one run (rounds alternate, so drift on a shared machine hits both).
//!
//! ```text
//! cargo build --release -p stratum-node
//! cargo bench -p stratum-client --bench overhead [-- --seconds 3 --rounds 3 --in-flight 32 --size 1024 --layout both --io-threads N]
//! ```
//!
//! Both sides keep the same number of gets in flight: the raw loop as one
//! thread per shard pipelining frames on one socket (no routing, no
//! verification), the client as tokio tasks on one runtime thread.
//!
//! Two layouts (`--layout split|shared|both`):
//! - `split`: the node runs one shard pinned to the last CPU and the load
//!   generator (raw loop or client) is pinned to the others, the way a
//!   frontend host and a storage host are separate machines. This is the
//!   figure the client is judged by: can it drive a node core as hard as a
//!   raw socket can?
//! - `shared`: the node runs one shard per CPU and the load generator
//!   competes with it for the same CPUs, so every cycle the client spends
//!   is a cycle the node loses.
//!
//! Each round also reports the load generator's own CPU time per get
//! (getrusage of this process; the node is another process), the cost a
//! frontend pays whatever the layout, and how busy the node was (its CPU
//! seconds per second, from /proc): a node below 1.0 in `split` was
//! waiting for requests.
use std::time::{Duration, Instant};

use stratum_client::{Client, ClientConfig, ObjectId};
use stratum_node::server::allowed_cpus;
use stratum_testkit::{median, object, pin_to as pin, process_cpu_seconds, rusage, TestNode};
use stratum_wire::message::Get;
use stratum_wire::placement::shard_of;
use stratum_wire::{Message, MessageKind};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Split,
    Shared,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Split => "split (node 1 shard on its own CPU, load on the others)",
            Layout::Shared => "shared (node 1 shard per CPU, load on the same CPUs)",
        }
    }
}

struct Options {
    seconds: f64,
    rounds: usize,
    in_flight: usize,
    size: usize,
    objects: u64,
    layouts: Vec<Layout>,
    /// The client's I/O threads (default: its own default).
    io_threads: Option<usize>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 3.0,
        rounds: 3,
        in_flight: 32,
        size: 1024,
        objects: 10_000,
        layouts: vec![Layout::Split, Layout::Shared],
        io_threads: None,
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
            "--io-threads" => options.io_threads = Some(value.parse().expect("--io-threads")),
            "--layout" => {
                options.layouts = match value.as_str() {
                    "split" => vec![Layout::Split],
                    "shared" => vec![Layout::Shared],
                    "both" => vec![Layout::Split, Layout::Shared],
                    other => panic!("--layout {other}: expected split, shared or both"),
                }
            }
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// One measurement: gets per second, this process's CPU time and context
/// switches per get, and how busy the node was (its CPU seconds per second:
/// 1.0 is one core saturated). A node short of saturation while the load
/// is short of it too means the gap is latency (work waiting on a handover),
/// not cost.
#[derive(Clone, Copy)]
struct Figure {
    per_sec: f64,
    cpu_us_per_get: f64,
    switches_per_get: f64,
    node_busy: f64,
}

fn measured(node: &TestNode, seconds: f64, run: impl FnOnce() -> u64) -> Figure {
    let node_pid = node.pid() as u32;
    let ((cpu, switches), started) = (rusage(libc::RUSAGE_SELF), Instant::now());
    let node_cpu = process_cpu_seconds(node_pid);
    let gets = run().max(1);
    let elapsed = started.elapsed().as_secs_f64().max(seconds);
    let node_cpu = process_cpu_seconds(node_pid) - node_cpu;
    let (cpu_after, switches_after) = rusage(libc::RUSAGE_SELF);
    Figure {
        per_sec: gets as f64 / elapsed,
        cpu_us_per_get: (cpu_after - cpu) * 1e6 / gets as f64,
        switches_per_get: (switches_after - switches) as f64 / gets as f64,
        node_busy: node_cpu / elapsed,
    }
}

/// Raw loop: per shard, one thread and one socket with `depth` gets
/// pipelined; answers are only checked for their kind.
fn raw(node: &TestNode, ids: &[ObjectId], depth: usize, seconds: f64) -> u64 {
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
                let mut get = |client: &mut stratum_testkit::TestClient| {
                    client.send(
                        &Message::Get(Get {
                            id: mine[next % mine.len()],
                        }),
                        &[],
                    );
                    next += 1;
                };
                for _ in 0..depth {
                    get(&mut client);
                }
                while Instant::now() < deadline {
                    let frame = client.recv().expect("answer");
                    assert_eq!(frame.kind(), MessageKind::GetOk);
                    done += 1;
                    get(&mut client);
                }
                for _ in 0..depth {
                    let _ = client.recv();
                }
                done
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("raw thread"))
        .sum()
}

/// Client: `depth` tokio tasks on one runtime thread, each getting in a
/// loop (every object verified against its id, as always).
fn through_client(client: &Client, ids: &[ObjectId], depth: usize, seconds: f64) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
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
        total
    })
}

fn run_layout(layout: Layout, options: &Options) {
    let cpus = allowed_cpus();
    let (node_cpus, load_cpus, shards) = match (layout, cpus.split_last()) {
        (Layout::Split, Some((last, rest))) if !rest.is_empty() => (vec![*last], rest.to_vec(), 1),
        (Layout::Split, _) => {
            println!("layout split needs 2 CPUs; skipped");
            return;
        }
        (Layout::Shared, _) => (cpus.clone(), cpus.clone(), cpus.len().clamp(1, 64) as u16),
    };
    // The node inherits the affinity of the thread that starts it; the load
    // threads inherit the one set after.
    pin(&node_cpus);
    let node = TestNode::start(shards, &[]);
    pin(&load_cpus);
    let mut config = ClientConfig::seeds([node.addr(0).to_string()]);
    if let Some(threads) = options.io_threads {
        config.io_threads = threads;
    }
    let client = futures_lite::future::block_on(Client::connect(config)).expect("client connects");
    let mut ids = Vec::new();
    for seed in 0..options.objects {
        let (id, kind, content) = object(seed, options.size);
        futures_lite::future::block_on(client.put(kind, content)).expect("put");
        ids.push(id);
    }
    let raw_depth = (options.in_flight / shards as usize).max(1);
    // Warm the node's cache and both paths.
    raw(&node, &ids, raw_depth, 0.5);
    through_client(&client, &ids, options.in_flight, 0.5);

    println!("layout {}", layout.name());
    let (mut raws, mut clients, mut raw_cpu, mut client_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let r = measured(&node, options.seconds, || {
            raw(&node, &ids, raw_depth, options.seconds)
        });
        let c = measured(&node, options.seconds, || {
            through_client(&client, &ids, options.in_flight, options.seconds)
        });
        println!(
            "  round {round}: raw {:.0} gets/s ({:.2} us CPU, {:.2} switches per get; node busy {:.2}), \
             client {:.0} gets/s ({:.2} us CPU, {:.2} switches per get; node busy {:.2})",
            r.per_sec,
            r.cpu_us_per_get,
            r.switches_per_get,
            r.node_busy,
            c.per_sec,
            c.cpu_us_per_get,
            c.switches_per_get,
            c.node_busy
        );
        raws.push(r.per_sec);
        clients.push(c.per_sec);
        raw_cpu.push(r.cpu_us_per_get);
        client_cpu.push(c.cpu_us_per_get);
    }
    let (r, c) = (median(&raws), median(&clients));
    let (rc, cc) = (median(&raw_cpu), median(&client_cpu));
    println!(
        "  gets of {} B objects, {} in flight, {shards} shard(s): raw loop {r:.0}/s, client {c:.0}/s; \
         client/raw = {:.2} (cost {:.0}% of throughput; target < 15%); \
         CPU per get: raw {rc:.2} us, client {cc:.2} us",
        options.size,
        options.in_flight,
        c / r,
        (1.0 - c / r) * 100.0
    );
    drop(client);
    drop(node);
    pin(&cpus);
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks; nothing to list.
    }
    let options = options();
    for layout in &options.layouts {
        run_layout(*layout, &options);
    }
}
