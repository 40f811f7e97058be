//! What compression costs the node: one real `stratum-node` (one shard,
//! pinned to the first CPU) with its load on the second, objects drawn from
//! the Git size distribution with source-like content, and the same load
//! sent raw and compressed, alternating, round after round.
//!
//! ```text
//! cargo bench -p stratum-bench --bench compression [-- --objects 20000 --rounds 3]
//! ```
//!
//! Each round, for raw, zstd (level 3) and zstd-with-a-dictionary payloads
//! (trained on the first 2,000 objects), each on a fresh node:
//! 1. durable puts, 64 in flight, of `--objects` objects;
//! 2. gets of random ones of them, all cached (the cache holds them all);
//! 3. the node restarted with no cache: the same gets, from disk.
//!
//! Per phase: requests per second and the node's CPU per request; the
//! compressed figure over the raw one, per round, and their median. The
//! loader compresses before it starts timing (clients pay for compression,
//! not nodes), so the figures are the node's own.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use stratum_bench::workload::{object, Content, SizeDist};
use stratum_testkit::{
    median, pin_to as pin, process_cpu_seconds, BenchArgs, TestClient, TestNode,
};
use stratum_wire::codec::Dictionary;
use stratum_wire::codec::{self, DEFAULT_LEVEL};
use stratum_wire::message::{Get, InstallDictionary, Put};
use stratum_wire::{Codec, Message, MessageKind, ObjectId, ObjectKind};

struct Args {
    objects: usize,
    rounds: usize,
}

fn parse_args() -> Args {
    let args = BenchArgs::parse(&["--objects", "--rounds"]);
    Args {
        objects: args.get("--objects", 20_000),
        rounds: args.get("--rounds", 3),
    }
}

/// In flight on the loader's connection.
const WINDOW: usize = 64;

/// One object as the loader sends it.
struct Prepared {
    id: ObjectId,
    logical: usize,
    raw: Vec<u8>,
    zstd: Option<Vec<u8>>,
    /// Compressed with the dictionary.
    dict: Option<Vec<u8>>,
}

/// How a round sends its objects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Raw,
    Zstd,
    Dictionary,
}

/// The objects, the dictionary, and what compressing them and inflating
/// them back cost the loader's thread (what a frontend pays), in µs per
/// object.
fn prepare(count: usize) -> (Vec<Prepared>, Dictionary, f64, f64) {
    let sizes = SizeDist::parse("git").expect("git sizes");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut compressing = Duration::ZERO;
    let objects: Vec<Prepared> = (0..count as u64)
        .map(|seed| {
            let (id, _, content) = object(seed, sizes.sample(&mut rng), Content::Text);
            let started = Instant::now();
            let zstd = codec::compress(&content, DEFAULT_LEVEL, None).expect("compress");
            compressing += started.elapsed();
            Prepared {
                id,
                logical: content.len(),
                raw: content,
                zstd,
                dict: None,
            }
        })
        .collect();
    let samples: Vec<&[u8]> = objects
        .iter()
        .take(2000)
        .map(|o| o.raw.as_slice())
        .filter(|raw| raw.len() <= 128 << 10)
        .collect();
    let dictionary = codec::train(&samples, 112_640)
        .and_then(|d| d.for_compressing(DEFAULT_LEVEL))
        .expect("a dictionary");
    let mut objects = objects;
    for object in &mut objects {
        object.dict =
            codec::compress(&object.raw, DEFAULT_LEVEL, Some(&dictionary)).expect("compress");
    }
    let started = Instant::now();
    for object in &objects {
        if let Some(zstd) = &object.zstd {
            let content =
                codec::decode(Codec::Zstd, zstd, 1 << 30, &Default::default()).expect("inflate");
            std::hint::black_box(content);
        }
    }
    let inflating = started.elapsed();
    let per = |spent: Duration| spent.as_secs_f64() * 1e6 / count as f64;
    (objects, dictionary, per(compressing), per(inflating))
}

/// Sends `count` requests made by `request`, `WINDOW` in flight; every
/// answer must be `expect`. Returns seconds taken.
fn pipelined(
    client: &mut TestClient,
    count: usize,
    expect: MessageKind,
    mut request: impl FnMut(&mut TestClient, usize),
) -> f64 {
    let started = Instant::now();
    let (mut sent, mut done) = (0, 0);
    while done < count {
        while sent < count && sent - done < WINDOW {
            request(client, sent);
            sent += 1;
        }
        let frame = client.recv().expect("answer");
        assert_eq!(frame.kind(), expect, "{:?}", frame.to_message());
        done += 1;
    }
    started.elapsed().as_secs_f64()
}

/// Requests per second and node CPU microseconds per request.
#[derive(Clone, Copy)]
struct Figure {
    per_sec: f64,
    cpu_us: f64,
}

fn measured(node: &TestNode, count: usize, run: impl FnOnce() -> f64) -> Figure {
    let cpu_before = process_cpu_seconds(node.pid() as u32);
    let seconds = run();
    let cpu = process_cpu_seconds(node.pid() as u32) - cpu_before;
    Figure {
        per_sec: count as f64 / seconds,
        cpu_us: cpu * 1e6 / count as f64,
    }
}

/// How `object` is sent in `mode` (raw when it does not compress).
fn payload(object: &Prepared, mode: Mode) -> (Codec, &[u8]) {
    let compressed = match mode {
        Mode::Raw => None,
        Mode::Zstd => object.zstd.as_ref(),
        Mode::Dictionary => object.dict.as_ref(),
    };
    match compressed {
        Some(compressed) => (Codec::Zstd, compressed.as_slice()),
        None => (Codec::Raw, object.raw.as_slice()),
    }
}

/// Puts, cached gets and uncached gets of `objects` in `mode`.
fn round(objects: &[Prepared], mode: Mode, dictionary: &Dictionary, cpus: &[usize]) -> [Figure; 3] {
    pin(&cpus[..1]); // the node inherits the first CPU
    let mut node = TestNode::start(1, &[]);
    pin(&cpus[1..2]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("connect");
    if mode == Mode::Dictionary {
        let install = Message::InstallDictionary(InstallDictionary {
            id: dictionary.id(),
            make_current: true,
        });
        let done = client.call(&install, dictionary.bytes()).expect("install");
        assert_eq!(done.kind(), MessageKind::DictionaryInstalled);
        client = TestClient::connect_revision(node.addr(0), 2).expect("connect");
    }
    let puts = measured(&node, objects.len(), || {
        pipelined(
            &mut client,
            objects.len(),
            MessageKind::PutAck,
            |client, i| {
                let (codec, bytes) = payload(&objects[i], mode);
                let put = Message::Put(Put {
                    id: objects[i].id,
                    kind: ObjectKind::Blob,
                });
                client.try_send_as(&put, bytes, codec).expect("send");
            },
        )
    });
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let picks: Vec<usize> = (0..objects.len())
        .map(|_| rng.random_range(0..objects.len()))
        .collect();
    let gets = |node: &TestNode, client: &mut TestClient| {
        measured(node, picks.len(), || {
            pipelined(client, picks.len(), MessageKind::GetOk, |client, i| {
                let get = Message::Get(Get {
                    id: objects[picks[i]].id,
                });
                client.send(&get, &[]);
            })
        })
    };
    // Warm the cache with one pass, then measure.
    gets(&node, &mut client);
    let cached = gets(&node, &mut client);
    drop(client);
    node.sigterm();
    let config = TestNode::write_file(&node.dir, "uncached.toml", "[store]\ncache_bytes = 0\n");
    pin(&cpus[..1]);
    node.add_args(&["--config", config.to_str().expect("path")]);
    node.launch();
    pin(&cpus[1..2]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("connect");
    let uncached = gets(&node, &mut client);
    node.sigterm();
    [puts, cached, uncached]
}

fn main() {
    let args = parse_args();
    let cpus = stratum_node::server::allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "needs two CPUs: one for the node, one for the load"
    );
    pin(&cpus[1..2]);
    let (objects, dictionary, compress_us, inflate_us) = prepare(args.objects);
    let logical: usize = objects.iter().map(|o| o.logical).sum();
    let sent = |mode| -> usize { objects.iter().map(|o| payload(o, mode).1.len()).sum() };
    let (compressed, with_dict) = (sent(Mode::Zstd), sent(Mode::Dictionary));
    println!(
        "{} objects, git sizes, text content: {:.1} MB logical, {:.1} MB compressed ({:.2}), {:.1} MB with a dictionary ({:.2}); node on CPU {}, load on CPU {}",
        objects.len(),
        logical as f64 / 1e6,
        compressed as f64 / 1e6,
        compressed as f64 / logical as f64,
        with_dict as f64 / 1e6,
        with_dict as f64 / logical as f64,
        cpus[0],
        cpus[1]
    );
    println!(
        "the loader's CPU per object (a frontend's cost): compress {compress_us:.1} µs, inflate {inflate_us:.1} µs"
    );
    let phases = ["durable puts", "cached gets", "uncached gets"];
    // Per phase, per compressed mode: throughput and CPU ratios to raw.
    let mut ratios = vec![[(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]; phases.len()];
    for number in 1..=args.rounds {
        let raw = round(&objects, Mode::Raw, &dictionary, &cpus);
        let zstd = round(&objects, Mode::Zstd, &dictionary, &cpus);
        let dict = round(&objects, Mode::Dictionary, &dictionary, &cpus);
        for (phase, name) in phases.iter().enumerate() {
            let (r, z, d) = (raw[phase], zstd[phase], dict[phase]);
            println!(
                "round {number} {name:<14} raw {:>8.0}/s {:>5.1} µs | zstd {:>8.0}/s {:>5.1} µs ({:.2}, CPU {:.2}) | dictionary {:>8.0}/s {:>5.1} µs ({:.2}, CPU {:.2})",
                r.per_sec,
                r.cpu_us,
                z.per_sec,
                z.cpu_us,
                z.per_sec / r.per_sec,
                z.cpu_us / r.cpu_us,
                d.per_sec,
                d.cpu_us,
                d.per_sec / r.per_sec,
                d.cpu_us / r.cpu_us
            );
            for (slot, figure) in ratios[phase].iter_mut().zip([z, d]) {
                slot.0.push(figure.per_sec / r.per_sec);
                slot.1.push(figure.cpu_us / r.cpu_us);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("medians over {} rounds, over raw:", args.rounds);
    for (name, modes) in phases.iter().zip(&ratios) {
        println!(
            "  {name:<14} zstd: throughput {:.2}, node CPU per request {:.2} | dictionary: throughput {:.2}, node CPU per request {:.2}",
            median(&modes[0].0),
            median(&modes[0].1),
            median(&modes[1].0),
            median(&modes[1].1)
        );
    }
}
