//! Anti-entropy through real `stratum-node` processes on 127.0.0.1: what
//! refilling a wiped node costs, and what two replicas exchange to find that
//! they agree or where they differ.
//!
//! ```text
//! cargo bench -p stratum-node --bench repair [-- --objects 1000000 --size 1024 --dir DIR]
//! ```
//!
//! In one run:
//! 1. Baseline: one node alone, durable puts with 64 in flight; MB/s.
//! 2. Three nodes (N=3, W=2, one shard each, periodic passes off) get
//!    `--objects` objects through node 1.
//! 3. Node 3 is asked for a pass while in sync: bytes exchanged.
//! 4. One object is placed on nodes 1 and 2 only: bytes exchanged by node
//!    3's pass that finds and fetches it.
//! 5. Node 3's data dir is wiped and it is refilled by one pass with no
//!    rate limit on node 3: seconds and MB/s, beside the baseline. (Every
//!    other node paces its own repair at the default 32 MiB/s throughout.)
//! 6. Wiped again and refilled at the default 32 MiB/s: client gets and puts
//!    through node 1 meanwhile, beside the same before the refill.
//! 7. A fourth node joins (epoch 2, SIGHUP): client gets and puts during the
//!    move beside quiet ones, and the time until every old node has handed
//!    off what it no longer replicates.
//!
//! The bench keeps its own loader (64 requests in flight on one connection)
//! for every phase, so the ratios compare like with like.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stratum_testkit::node_proc::one_shard_cluster;
use stratum_testkit::{object, topology_text, TestClient, TestNode};
use stratum_wire::message::{Get, Put, Repair};
use stratum_wire::{Message, MessageKind, ObjectId};

struct Args {
    objects: u64,
    size: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        objects: 1_000_000,
        size: 1024,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--objects" => args.objects = value().parse().expect("--objects N"),
            "--size" => args.size = value().parse().expect("--size BYTES"),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// In flight on the loader's connection.
const WINDOW: u64 = 64;

/// Requests made by `request(n)` for n = 0, 1, ..., 64 in flight, until
/// `count` are answered or `seconds` pass; every answer must be `expect`.
/// Returns (answers, seconds).
fn pipelined(
    client: &mut TestClient,
    count: u64,
    seconds: f64,
    expect: MessageKind,
    mut request: impl FnMut(&mut TestClient, u64),
) -> (u64, f64) {
    let started = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let open = |sent: u64| sent < count && started.elapsed() < limit;
    let (mut sent, mut done) = (0u64, 0u64);
    while open(sent) || done < sent {
        while open(sent) && sent - done < WINDOW {
            request(client, sent);
            sent += 1;
        }
        let reply = client.recv().expect("reply");
        assert_eq!(reply.kind(), expect, "{:?}", reply.to_message());
        done += 1;
    }
    (done, started.elapsed().as_secs_f64())
}

fn put(client: &mut TestClient, seed: u64, size: usize) {
    let (id, kind, content) = object(seed, size);
    client.send(&Message::Put(Put { id, kind }), &content);
}

/// Objects `seeds` put through `client`, 64 in flight; returns seconds.
fn put_all(client: &mut TestClient, seeds: std::ops::Range<u64>, size: usize) -> f64 {
    let count = seeds.end - seeds.start;
    let put_seed = |client: &mut TestClient, n: u64| put(client, seeds.start + n, size);
    pipelined(client, count, 1e9, MessageKind::PutAck, put_seed).1
}

/// 4096 ids spread over `seeds` that `keep` accepts.
fn sample(
    seeds: std::ops::Range<u64>,
    size: usize,
    keep: impl Fn(&ObjectId) -> bool,
) -> Vec<ObjectId> {
    (0..4096u64 * 4)
        .map(|n| object(seeds.start + (n * 7919) % (seeds.end - seeds.start), size).0)
        .filter(|id| keep(id))
        .take(4096)
        .collect()
}

/// Gets of `ids`, round and round, for `seconds`; returns gets/s.
fn get_rate(client: &mut TestClient, ids: &[ObjectId], seconds: f64) -> f64 {
    let get = |client: &mut TestClient, n: u64| {
        let id = ids[(n as usize) % ids.len()];
        client.send(&Message::Get(Get { id }), &[]);
    };
    let (done, took) = pipelined(client, u64::MAX, seconds, MessageKind::GetOk, get);
    done as f64 / took
}

/// Puts of new objects (seeds from `first`) for `seconds`; returns puts/s.
fn put_rate(client: &mut TestClient, first: u64, size: usize, seconds: f64) -> f64 {
    let put_seed = |client: &mut TestClient, n: u64| put(client, first + n, size);
    let (done, took) = pipelined(client, u64::MAX, seconds, MessageKind::PutAck, put_seed);
    done as f64 / took
}

/// Starts a pass on `node` without waiting for it.
fn start_pass(node: &TestNode) {
    let reply = node
        .client(0)
        .call(&Message::Repair(Repair { all_shards: true }), &[])
        .expect("repair");
    assert_eq!(reply.kind(), MessageKind::RepairStarted);
}

/// Asks `node` for a pass and waits until it has finished one more.
fn pass(node: &TestNode) {
    let before = node.metric("stratum_repair_passes_total", "");
    start_pass(node);
    let deadline = Instant::now() + Duration::from_secs(3600);
    while node.metric("stratum_repair_passes_total", "") <= before {
        assert!(Instant::now() < deadline, "the pass never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wire_bytes(node: &TestNode) -> f64 {
    node.metric("stratum_repair_wire_bytes_total", "")
}

/// Waits until `node` holds `objects` objects; returns seconds since `from`.
fn wait_objects(node: &TestNode, objects: f64, from: Instant) -> f64 {
    while node.metric("stratum_store_objects", "") < objects {
        assert!(from.elapsed() < Duration::from_secs(3600), "refill stalled");
        std::thread::sleep(Duration::from_millis(50));
    }
    from.elapsed().as_secs_f64()
}

fn write_config(path: &Path, repair_bytes_per_sec: u64) {
    std::fs::write(
        path,
        format!(
            "[replication]\nrepair_interval_secs = 0\nrepair_bytes_per_sec = {repair_bytes_per_sec}\n"
        ),
    )
    .unwrap();
}

fn wipe_and_restart(node: &mut TestNode) {
    node.sigkill();
    std::fs::remove_dir_all(node.dir.join("data")).unwrap();
    node.launch();
}

fn main() {
    let args = parse_args();
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).unwrap();
    let work = tempfile::tempdir_in(&base).unwrap();
    let mb = |objects: f64| objects * args.size as f64 / 1e6;
    println!(
        "repair bench: {} objects of {} B, N=3 W=2, one shard per node",
        args.objects, args.size
    );

    // 1. Baseline: one node's durable put rate with the same loader.
    let baseline_objects = args.objects.min(200_000);
    let single = TestNode::start(1, &[]);
    let seconds = put_all(&mut single.client(0), 0..baseline_objects, args.size);
    let single_mb_s = mb(baseline_objects as f64) / seconds;
    println!(
        "single-node puts: {:.1} MB/s ({baseline_objects} objects)",
        single_mb_s
    );
    drop(single);

    // 2. The cluster, loaded through node 1.
    let configs: Vec<PathBuf> = (1..=3)
        .map(|id| work.path().join(format!("node-{id}.toml")))
        .collect();
    // Nodes 1 and 2 pace their own repair and rebalancing at the default
    // rate throughout; node 3, the one refilled, runs unpaced for the
    // refill's throughput (phase 5), then at the default rate.
    for (index, config) in configs.iter().enumerate() {
        let rate = if index == 2 { u64::MAX / 2 } else { 32 << 20 };
        write_config(config, rate);
    }
    let (mut nodes, topology) = one_shard_cluster(work.path(), 3, 2, &configs);
    let seeds = 1_000_000_000..1_000_000_000 + args.objects;
    let seconds = put_all(&mut nodes[0].client(0), seeds.clone(), args.size);
    println!(
        "cluster load: {} objects in {seconds:.1} s ({:.1} MB/s of replicated puts)",
        args.objects,
        mb(args.objects as f64) / seconds
    );
    wait_objects(&nodes[2], args.objects as f64, Instant::now());

    // 3. In sync.
    let before = wire_bytes(&nodes[2]);
    pass(&nodes[2]);
    let in_sync = wire_bytes(&nodes[2]) - before;
    println!(
        "in-sync pass (node 3 against nodes 1 and 2): {in_sync:.0} bytes exchanged ({:.4} bytes per object held)",
        in_sync / args.objects as f64
    );

    // 4. One missing object among them.
    let (id, kind, content) = object(7, args.size);
    for node in &nodes[..2] {
        let reply = node
            .node_client(0)
            .call(&Message::Put(Put { id, kind }), &content)
            .unwrap();
        assert_eq!(reply.kind(), MessageKind::PutAck);
    }
    let before = wire_bytes(&nodes[2]);
    pass(&nodes[2]);
    let one = wire_bytes(&nodes[2]) - before;
    assert!(
        nodes[2].metric("stratum_store_objects", "") > args.objects as f64,
        "the missing object was not found"
    );
    println!(
        "one missing object among {}: {one:.0} bytes exchanged (the object itself: {} bytes)",
        args.objects, args.size
    );
    let held = args.objects as f64 + 1.0;

    // 5. Refill, unpaced.
    wipe_and_restart(&mut nodes[2]);
    let started = Instant::now();
    pass(&nodes[2]);
    let seconds = wait_objects(&nodes[2], held, started);
    let refill_mb_s = mb(held) / seconds;
    println!(
        "refill of a wiped node: {held} objects in {seconds:.1} s, {refill_mb_s:.1} MB/s = {:.2}x single-node puts",
        refill_mb_s / single_mb_s
    );

    // 6. Client traffic during a paced refill.
    let mut client = nodes[0].client(0);
    let ids = sample(seeds.clone(), args.size, |_| true);
    let quiet_gets = get_rate(&mut client, &ids, 3.0);
    let quiet_puts = put_rate(&mut client, 2_000_000_000, args.size, 3.0);
    write_config(&configs[2], 32 << 20);
    wipe_and_restart(&mut nodes[2]);
    start_pass(&nodes[2]);
    std::thread::sleep(Duration::from_millis(500));
    let gets = get_rate(&mut client, &ids, 3.0);
    let puts = put_rate(&mut client, 2_100_000_000, args.size, 3.0);
    println!(
        "during a refill at 32 MiB/s, through node 1: gets {gets:.0}/s vs {quiet_gets:.0}/s quiet = {:.2}x; puts {puts:.0}/s vs {quiet_puts:.0}/s = {:.2}x",
        gets / quiet_gets,
        puts / quiet_puts
    );
    let held = nodes[0].metric("stratum_store_objects", "");
    wait_objects(&nodes[2], held, Instant::now());

    // 7. Client traffic while the cluster grows to four nodes (rebalancing).
    // Gets go to node 1 for objects it replicates before and after (a new
    // node only takes ranges away), as a client routing by either topology
    // would send them.
    let quiet_gets = get_rate(&mut client, &ids, 3.0);
    let quiet_puts = put_rate(&mut client, 2_200_000_000, args.size, 3.0);
    write_config(&configs[2], 32 << 20);
    let config4 = work.path().join("node-4.toml");
    write_config(&config4, 32 << 20);
    let mut fourth = TestNode::prepare(
        1,
        &[
            "--topology",
            topology.to_str().unwrap(),
            "--node-id",
            "4",
            "--config",
            config4.to_str().unwrap(),
        ],
    );
    let mut specs: Vec<(u32, String, u16)> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| (index as u32 + 1, node.address(), 1))
        .collect();
    specs.push((4, fourth.address(), 1));
    std::fs::write(&topology, topology_text(2, 3, 2, &specs)).unwrap();
    let grown = stratum_wire::placement::Placement::new(
        stratum_wire::placement::Topology::load(&topology).unwrap(),
    );
    let ids = sample(seeds, args.size, |id| grown.is_replica(1, id));
    fourth.launch();
    for node in &nodes {
        node.sighup();
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    for node in nodes.iter().chain([&fourth]) {
        start_pass(node);
    }
    let gets = get_rate(&mut client, &ids, 3.0);
    let puts = put_rate(&mut client, 2_300_000_000, args.size, 3.0);
    println!(
        "while growing from 3 to 4 nodes, through node 1: gets {gets:.0}/s vs {quiet_gets:.0}/s quiet = {:.2}x; puts {puts:.0}/s vs {quiet_puts:.0}/s = {:.2}x",
        gets / quiet_gets,
        puts / quiet_puts
    );
    // Settled: every old node has handed off what it no longer replicates.
    let settled = |node: &TestNode| node.metric("stratum_rebalance_backlog", "") == 0.0;
    while !nodes.iter().all(settled) {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "rebalance stalled"
        );
        for node in &nodes {
            start_pass(node);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let handed_off: f64 = nodes
        .iter()
        .map(|node| node.metric("stratum_rebalance_handed_off_total", ""))
        .sum();
    println!(
        "grow 3 -> 4 settled in {:.1} s: {handed_off:.0} copies handed off and dropped, node 4 holds {:.0} objects",
        started.elapsed().as_secs_f64(),
        fourth.metric("stratum_store_objects", "")
    );
}
