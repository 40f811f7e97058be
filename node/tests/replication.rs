//! Replication across real `stratum-node` processes on 127.0.0.1: quorum
//! writes with nodes killed, stopped or missing, hinted handoff, read
//! repair, coordination by a node outside the replica set, topology reload.
//!
//! Every node runs one shard, and the tests of this file run one at a time
//! (each io_uring executor locks memory against the 8 MiB memlock limit).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stratum_testkit::{
    object, one_cluster_at_a_time, replace_file, topology_text, TestClient, TestNode,
};
use stratum_wire::message::*;
use stratum_wire::placement::{Placement, Topology};
use stratum_wire::{Message, ObjectId, ObjectKind};

struct Cluster {
    nodes: Vec<TestNode>,
    topology: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `count` one-shard nodes, replication factor `rf`, write quorum `w`,
    /// with short replication timeouts (`request_timeout_ms` as given).
    fn start(count: u32, rf: u8, w: u8, request_timeout_ms: u64, secret: bool) -> Self {
        Self::start_replaying(count, rf, w, request_timeout_ms, secret, 5000)
    }

    /// As [`Cluster::start`], with hints replayed at `hint_replay_per_sec`.
    fn start_replaying(
        count: u32,
        rf: u8,
        w: u8,
        request_timeout_ms: u64,
        secret: bool,
        hint_replay_per_sec: u32,
    ) -> Self {
        Self::start_configured(
            count,
            rf,
            w,
            secret,
            &format!("request_timeout_ms = {request_timeout_ms}\nhint_replay_per_sec = {hint_replay_per_sec}\n"),
        )
    }

    /// `count` one-shard nodes with `replication` as extra lines of the
    /// config file's `[replication]` table.
    fn start_configured(count: u32, rf: u8, w: u8, secret: bool, replication: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.toml");
        let config = TestNode::write_file(
            dir.path(),
            "node.toml",
            &format!(
                "[replication]\nconnect_timeout_ms = 500\nping_interval_ms = 300\n{replication}"
            ),
        );
        let secret_file = TestNode::write_file(
            dir.path(),
            "secret",
            "a cluster secret for the replication tests\n",
        );
        let mut nodes: Vec<TestNode> = (1..=count)
            .map(|id| {
                let mut args = vec![
                    "--topology".to_owned(),
                    topology.to_str().unwrap().to_owned(),
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--config".to_owned(),
                    config.to_str().unwrap().to_owned(),
                ];
                if secret {
                    args.push("--secret-file".into());
                    args.push(secret_file.to_str().unwrap().into());
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut node = TestNode::prepare(1, &args);
                if secret {
                    node.secret = Some(
                        stratum_wire::auth::ClusterSecret::new(
                            &std::fs::read(&secret_file).unwrap(),
                        )
                        .unwrap(),
                    );
                }
                node
            })
            .collect();
        let specs: Vec<(u32, String, u16)> = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (index as u32 + 1, node.address(), 1))
            .collect();
        std::fs::write(&topology, topology_text(1, rf, w, &specs)).unwrap();
        for node in &mut nodes {
            node.launch();
        }
        Self {
            nodes,
            topology,
            dir,
        }
    }

    fn node(&mut self, id: u32) -> &mut TestNode {
        &mut self.nodes[id as usize - 1]
    }

    fn placement(&self) -> Placement {
        Placement::new(Topology::load(&self.topology).unwrap())
    }

    fn replicas(&self, id: &ObjectId) -> Vec<u32> {
        self.placement().replica_node_ids(id).to_vec()
    }

    /// Whether node `node` holds `id` (asked as a peer: no repair).
    fn holds(&mut self, node: u32, id: ObjectId) -> bool {
        self.node(node).holds(id)
    }

    /// Puts objects `seeds` of `len` bytes through node 1 while one of the
    /// three replicas is down: each acknowledged by exactly the two others
    /// (and hinted for the third).
    fn put_with_one_replica_down(
        &mut self,
        seeds: std::ops::Range<u64>,
        len: usize,
    ) -> Vec<ObjectId> {
        seeds
            .map(|seed| {
                let (id, kind, content) = object(seed, len);
                let ack = expect_ack(put(&mut self.node(1).client(0), kind, &content));
                assert_eq!(ack.durable_replicas, 2);
                id
            })
            .collect()
    }

    /// Waits until node 1 reports at least `hints` hints pending.
    fn wait_hints_pending(&mut self, hints: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.node(1).metric("stratum_hints_pending", "") < hints {
            assert!(Instant::now() < deadline, "hints never queued");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `node` holds every id, or panics after `limit`.
    fn wait_holds_all(&mut self, node: u32, ids: &[ObjectId], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let missing = ids.iter().filter(|id| !self.holds(node, **id)).count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} still lacks {missing} of {} objects after {limit:?}; its log:\n{}",
                ids.len(),
                self.node(node).log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A client-role put through `client`: the node coordinates it.
fn put(client: &mut TestClient, kind: ObjectKind, content: &[u8]) -> Message {
    let id = ObjectId::compute(kind, content);
    client
        .call(&Message::Put(Put { id, kind }), content)
        .unwrap()
        .to_message()
        .unwrap()
}

/// A get through `client`: the answer frame (payload included).
fn get(client: &mut TestClient, id: ObjectId) -> stratum_wire::Frame {
    client.call(&Message::Get(Get { id }), &[]).unwrap()
}

fn expect_ack(reply: Message) -> PutAck {
    match reply {
        Message::PutAck(ack) => ack,
        other => panic!("expected put_ack, got {other:?}"),
    }
}

#[test]
fn a_killed_node_does_not_stop_puts_and_hinted_handoff_catches_it_up() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    cluster.node(3).sigkill();

    let mut ids = Vec::new();
    for seed in 0..40u64 {
        let (id, kind, content) = object(seed, 200 + seed as usize * 37);
        let coordinator = 1 + (seed % 2) as u32;
        let mut client = cluster.node(coordinator).client(0);
        let ack = expect_ack(put(&mut client, kind, &content));
        assert_eq!(ack.id, id);
        assert_eq!(
            ack.durable_replicas, 2,
            "acknowledged by exactly the two live replicas"
        );
        ids.push(id);
    }
    // Reads still work, from either live replica.
    for (index, id) in ids.iter().enumerate() {
        let node = 1 + (index % 2) as u32;
        let reply = get(&mut cluster.node(node).client(0), *id);
        let Message::GetOk(ok) = reply.to_message().unwrap() else {
            panic!("get on node {node}: {reply:?}")
        };
        assert!(id.verify(ok.kind, reply.payload()));
        assert!(cluster.holds(1, *id) && cluster.holds(2, *id));
    }
    assert!(
        cluster.node(1).metric("stratum_hints_pending", "")
            + cluster.node(2).metric("stratum_hints_pending", "")
            >= 40.0,
        "every put left a hint for node 3"
    );

    // Node 3 comes back empty-handed; the hints bring it every object.
    cluster.node(3).launch();
    cluster.wait_holds_all(3, &ids, Duration::from_secs(30));
    let replayed = cluster.node(1).metric("stratum_hints_replayed_total", "")
        + cluster.node(2).metric("stratum_hints_replayed_total", "");
    assert!(replayed >= 40.0, "hints replayed: {replayed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.node(1).metric("stratum_hints_pending", "")
        + cluster.node(2).metric("stratum_hints_pending", "")
        > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "hints still pending after delivery"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hints_survive_a_coordinator_crash_and_are_delivered_after_its_restart() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    cluster.node(3).sigkill();
    let ids = cluster.put_with_one_replica_down(100..130, 900);
    // The coordinator's hints reach its hint file (fdatasync'd), then it
    // is killed: no clean shutdown, no final flush.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let on_disk: u64 = walk(&cluster.node(1).dir)
            .iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "hints"))
            .map(|path| std::fs::metadata(path).map_or(0, |meta| meta.len()))
            .sum();
        // A hint record is a 12-byte header, 34 bytes of op, kind and id,
        // then the content.
        if on_disk >= 30 * (12 + 34 + 900) {
            break;
        }
        assert!(Instant::now() < deadline, "hints never reached the disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.node(1).sigkill();
    cluster.node(1).launch();
    assert!(cluster.node(1).metric("stratum_hints_pending", "") >= 30.0);
    cluster.node(3).launch();
    cluster.wait_holds_all(3, &ids, Duration::from_secs(30));
}

#[test]
fn a_coordinator_restarted_mid_replay_resumes_where_it_left_off() {
    let _one = one_cluster_at_a_time();
    // Slow replay (20 hints a second) so the coordinator can be killed in
    // the middle of it.
    let mut cluster = Cluster::start_replaying(3, 3, 2, 2_000, false, 20);
    cluster.node(3).sigkill();
    let ids = cluster.put_with_one_replica_down(200..240, 300);
    let hints = ids.len() as f64;
    cluster.wait_hints_pending(hints);

    cluster.node(3).launch();
    let deadline = Instant::now() + Duration::from_secs(20);
    let replayed_before = loop {
        let replayed = cluster.node(1).metric("stratum_hints_replayed_total", "");
        if replayed >= 12.0 {
            break replayed;
        }
        assert!(Instant::now() < deadline, "replay never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(replayed_before < hints, "replay finished before the kill");
    cluster.node(1).sigkill();
    cluster.node(1).launch();
    let pending = cluster.node(1).metric("stratum_hints_pending", "");
    cluster.wait_holds_all(3, &ids, Duration::from_secs(30));
    let replayed_after = cluster.node(1).metric("stratum_hints_replayed_total", "");
    // Progress is durable every 250 ms (5 hints at this rate), so a restart
    // replays at most a few hints twice; without it, all 40 again.
    assert!(
        pending <= hints - replayed_before + 6.0,
        "{pending} hints pending after the restart, {replayed_before} of {hints} replayed before it"
    );
    assert!(
        replayed_after <= hints - replayed_before + 6.0,
        "{replayed_after} hints replayed after the restart, {replayed_before} of {hints} before it"
    );
}

/// Node 3 is down while ten writes are hinted for it, then decommissioned
/// (epoch 2 names nodes 1 and 2 only).
fn remove_node_3_with_hints_pending(cluster: &mut Cluster) {
    cluster.node(3).sigkill();
    cluster.put_with_one_replica_down(300..310, 200);
    cluster.wait_hints_pending(10.0);
    assert_eq!(cluster.node(1).metric("stratum_hints_stranded", ""), 0.0);
    let specs: Vec<(u32, String, u16)> = (1..=2)
        .map(|id| (id, cluster.node(id).address(), 1))
        .collect();
    replace_file(&cluster.topology, &topology_text(2, 2, 2, &specs));
    cluster.node(1).sighup();
    cluster.node(2).sighup();
}

/// Waits until node 1 has no hint pending, `stranded` stranded, and its
/// log says `said`.
fn wait_hints_settled(cluster: &mut Cluster, stranded: f64, said: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let node = cluster.node(1);
        let (pending, now) = (
            node.metric("stratum_hints_pending", ""),
            node.metric("stratum_hints_stranded", ""),
        );
        if pending == 0.0 && now == stranded && node.log().contains(said) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, stranded {now}; log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hints_for_a_node_removed_from_the_topology_are_removed_as_moot() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    remove_node_3_with_hints_pending(&mut cluster);
    wait_hints_settled(&mut cluster, 0.0, "are moot");
    let hint_files: Vec<PathBuf> = walk(&cluster.node(1).dir)
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("node-3."))
        .collect();
    assert!(hint_files.is_empty(), "left behind: {hint_files:?}");
}

#[test]
fn without_anti_entropy_hints_for_a_removed_node_are_reported_stranded() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start_configured(
        3,
        3,
        2,
        false,
        "request_timeout_ms = 2000\nrepair_interval_secs = 0\n",
    );
    remove_node_3_with_hints_pending(&mut cluster);
    wait_hints_settled(&mut cluster, 10.0, "left the topology");
    // Said once, not on every replay tick.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(
        cluster.node(1).log().matches("left the topology").count(),
        1
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn with_two_nodes_down_puts_are_unavailable_and_never_surface() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    // Links come up with a first write, so the kill is noticed the way it
    // would be in production (an established link breaking).
    let (warm, kind, content) = object(1_000, 100);
    expect_ack(put(&mut cluster.node(1).client(0), kind, &content));
    cluster.node(2).sigkill();
    cluster.node(3).sigkill();
    std::thread::sleep(Duration::from_millis(300));

    let mut refused = Vec::new();
    for seed in 0..10u64 {
        let (id, kind, content) = object(seed, 500);
        let reply = put(&mut cluster.node(1).client(0), kind, &content);
        let Message::Error(err) = reply else {
            panic!("a put with two of three replicas down must fail, got {reply:?}")
        };
        assert_eq!(err.code, ErrorCode::Unavailable, "{}", err.detail);
        let failed: Vec<u32> = err.replicas.iter().map(|replica| replica.node_id).collect();
        assert!(failed.contains(&2) && failed.contains(&3), "{err:?}");
        refused.push(id);
    }
    assert_eq!(
        cluster
            .node(1)
            .metric("stratum_quorum_unavailable_total", ""),
        10.0
    );

    // The nodes return; nothing refused shows up anywhere, even after the
    // hint replay interval.
    cluster.node(2).launch();
    cluster.node(3).launch();
    std::thread::sleep(Duration::from_millis(1_500));
    for id in &refused {
        for node in 1..=3 {
            assert!(!cluster.holds(node, *id), "node {node} holds refused {id}");
        }
        let reply = get(&mut cluster.node(1).client(0), *id);
        assert!(matches!(
            reply.to_message().unwrap(),
            Message::Error(ErrorReply {
                code: ErrorCode::NotFound,
                ..
            })
        ));
    }
    assert!(cluster.holds(2, warm) && cluster.holds(3, warm));
}

#[test]
fn a_hung_replica_does_not_slow_acknowledged_puts() {
    let _one = one_cluster_at_a_time();
    // A replica request timeout of 20 s: a coordinator that waited for the
    // hung node would take that long per put.
    let mut cluster = Cluster::start(3, 3, 2, 20_000, false);
    let (warm, kind, content) = object(2_000, 100);
    expect_ack(put(&mut cluster.node(1).client(0), kind, &content));
    cluster.node(3).pause(true);

    let mut ids = Vec::new();
    let mut slowest = Duration::ZERO;
    for seed in 0..30u64 {
        let (id, kind, content) = object(seed, 1_000);
        let coordinator = 1 + (seed % 2) as u32;
        let started = Instant::now();
        let ack = expect_ack(put(
            &mut cluster.node(coordinator).client(0),
            kind,
            &content,
        ));
        slowest = slowest.max(started.elapsed());
        assert_eq!(ack.durable_replicas, 2);
        ids.push(id);
    }
    assert!(
        slowest < Duration::from_secs(5),
        "the slowest put took {slowest:?}: the coordinator waited for the hung replica"
    );

    cluster.node(3).pause(false);
    cluster.wait_holds_all(3, &ids, Duration::from_secs(40));
    assert!(cluster.holds(3, warm));
}

#[test]
fn a_node_outside_the_replica_set_coordinates_and_deletes_replicate_with_auth_on() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 2, 2, 2_000, true);
    // An object that node 1 does not hold a replica of.
    let (id, kind, content) = (0..)
        .map(|seed| object(seed, 700))
        .find(|(id, _, _)| !cluster.replicas(id).contains(&1))
        .unwrap();
    let replicas = cluster.replicas(&id);
    let ack = expect_ack(put(&mut cluster.node(1).client(0), kind, &content));
    assert_eq!((ack.outcome, ack.durable_replicas), (PutOutcome::Stored, 2));
    for node in &replicas {
        assert!(cluster.holds(*node, id), "replica {node} lacks it");
    }
    assert!(
        !cluster.holds(1, id),
        "the coordinator is not a replica and keeps no copy"
    );

    // A body that does not hash to its id is refused by the coordinator and
    // reaches no replica (it is checked once, where it enters the node).
    let (bad_id, bad_kind, mut bad_content) = (1000..)
        .map(|seed| object(seed, 700))
        .find(|(id, _, _)| !cluster.replicas(id).contains(&1))
        .unwrap();
    bad_content[0] ^= 1;
    let reply = cluster
        .node(1)
        .client(0)
        .call(
            &Message::Put(Put {
                id: bad_id,
                kind: bad_kind,
            }),
            &bad_content,
        )
        .unwrap();
    match reply.to_message().unwrap() {
        Message::Error(err) => assert_eq!(err.code, ErrorCode::HashMismatch, "{}", err.detail),
        other => panic!("expected hash_mismatch, got {other:?}"),
    }
    for node in cluster.replicas(&bad_id) {
        assert!(
            !cluster.holds(node, bad_id),
            "replica {node} took a bad body"
        );
    }

    // A delete through a replica reaches both.
    let reply = cluster
        .node(replicas[0])
        .client(0)
        .call(&Message::Delete(Delete { id }), &[])
        .unwrap();
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::DeleteAck(DeleteAck { existed: true, .. })
    ));
    for node in &replicas {
        assert!(
            !cluster.holds(*node, id),
            "replica {node} still holds a deleted object"
        );
    }
}

#[test]
fn a_replica_missing_an_object_copies_it_on_a_client_read() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    let (id, kind, content) = object(77, 4_000);
    // Only node 1 holds it (placed as a peer would, without coordination).
    let reply = cluster
        .node(1)
        .node_client(0)
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    assert!(matches!(reply.to_message().unwrap(), Message::PutAck(_)));
    assert!(!cluster.holds(2, id));

    // A client read on node 2 misses (the client fails over by itself) and
    // starts the repair.
    let reply = get(&mut cluster.node(2).client(0), id);
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::Error(ErrorReply {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    cluster.wait_holds_all(2, &[id], Duration::from_secs(10));
    assert_eq!(
        cluster.node(2).metric("stratum_read_repairs_total", ""),
        1.0
    );
    // A peer's read of node 3 does not repair it.
    let reply = get(&mut cluster.node(3).node_client(0), id);
    assert!(matches!(reply.to_message().unwrap(), Message::Error(_)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!cluster.holds(3, id));

    // A client's batch get on node 3 misses it too, and repairs it the same
    // way.
    let mut client = cluster.node(3).client(0);
    let request = client.send(&Message::BatchGet(BatchGet { ids: vec![id] }), &[]);
    let end = loop {
        let frame = client.recv().unwrap();
        assert_eq!(frame.request_id(), request);
        match frame.to_message().unwrap() {
            Message::BatchItem(item) => assert_eq!(item.status, BatchStatus::NotFound),
            Message::BatchEnd(end) => break end,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((end.found, end.not_found, end.failed), (0, 1, 0));
    cluster.wait_holds_all(3, &[id], Duration::from_secs(10));
}

#[test]
fn sighup_rolls_out_a_new_topology_and_refuses_an_invalid_one() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(3, 3, 2, 2_000, false);
    let specs: Vec<(u32, String, u16)> = (1..=3)
        .map(|id| (id, cluster.node(id).address(), 1))
        .collect();
    let epoch_of = |node: &TestNode| node.client(0).ack.topology_epoch;

    // Epoch 2 with a write quorum of 3, on every node.
    replace_file(&cluster.topology, &topology_text(2, 3, 3, &specs));
    for node in &cluster.nodes {
        node.sighup();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.nodes.iter().any(|node| epoch_of(node) != 2) {
        assert!(Instant::now() < deadline, "not every node took epoch 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new quorum is in force: with node 3 down a put cannot reach 3.
    cluster.node(3).sigkill();
    std::thread::sleep(Duration::from_millis(300));
    let (_, kind, content) = object(5, 100);
    let reply = put(&mut cluster.node(1).client(0), kind, &content);
    assert!(
        matches!(
            reply,
            Message::Error(ErrorReply {
                code: ErrorCode::Unavailable,
                ..
            })
        ),
        "{reply:?}"
    );

    // A file that changes node 1's shard count is refused; epoch 2 stays.
    let mut bad = specs.clone();
    bad[0].2 = 4;
    replace_file(&cluster.topology, &topology_text(3, 3, 2, &bad));
    cluster.node(1).sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.node(1).log().contains("topology reload refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            cluster.node(1).log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cluster.node(1).log().contains("shards"));
    assert_eq!(epoch_of(cluster.node(1)), 2);
    drop(cluster.dir);
}

/// Three nodes (N=3, W=2) comparing their shards every second, with hints
/// that cannot be queued (so only anti-entropy can heal a missed write).
fn repairing_cluster() -> Cluster {
    Cluster::start_configured(
        3,
        3,
        2,
        false,
        "request_timeout_ms = 1000\nrepair_interval_secs = 1\nmax_queued_hint_bytes = 1\n",
    )
}

#[test]
fn a_wiped_node_is_refilled_by_anti_entropy_while_gets_keep_succeeding() {
    let _serial = one_cluster_at_a_time();
    let mut cluster = repairing_cluster();
    let objects: Vec<_> = (0..300).map(|seed| object(7000 + seed, 2048)).collect();
    let mut client = cluster.node(1).client(0);
    for (_, kind, content) in &objects {
        expect_ack(put(&mut client, *kind, content));
    }
    let ids: Vec<ObjectId> = objects.iter().map(|(id, _, _)| *id).collect();
    cluster.wait_holds_all(3, &ids, Duration::from_secs(10));

    // The disk is replaced: the node restarts empty under its old id.
    cluster.node(3).sigkill();
    let data = cluster.node(3).dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    cluster.node(3).launch();
    assert!(!cluster.holds(3, ids[0]));

    // Reads through nodes 1 and 2 never fail meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reader = cluster.node(2).client(0);
    loop {
        for (id, _, content) in objects.iter().step_by(7) {
            let reply = reader.call(&Message::Get(Get { id: *id }), &[]).unwrap();
            assert_eq!(
                reply.payload(),
                &content[..],
                "a get failed during the refill"
            );
        }
        let missing = ids.iter().filter(|id| !cluster.holds(3, **id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 still lacks {missing} objects; its log:\n{}",
            cluster.node(3).log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        cluster
            .node(3)
            .metric("stratum_repair_objects_fetched_total", "")
            >= 300.0
    );
    // Once in sync, a pass fetches nothing more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.node(3).metric("stratum_repair_peers_in_sync", "") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "node 3 never reported its peers in sync"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// A write whose hint was dropped, and a delete missed by a down replica,
// are healed by anti-entropy: scripted scenarios in simulate_cluster.rs, on
// virtual time (they were real-process tests here that polled and slept).

#[test]
fn a_node_down_longer_than_the_tombstone_grace_period_refuses_to_rejoin_until_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let topology = TestNode::write_file(
        dir.path(),
        "topology.toml",
        &topology_text(
            1,
            2,
            1,
            &[
                (1, "127.0.0.1:19991".to_owned(), 1),
                (2, "127.0.0.1:19993".to_owned(), 1),
            ],
        ),
    );
    let config = TestNode::write_file(
        dir.path(),
        "node.toml",
        "[replication]\ntombstone_grace_secs = 3600\n",
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Last alive two hours ago: past the one-hour grace period.
    std::fs::write(
        data.join("alive"),
        stratum_node::liveness::encode(now - 7200),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stratum-node"))
        .args(["--topology", topology.to_str().unwrap(), "--node-id", "1"])
        .args(["--config", config.to_str().unwrap(), "--admin", "off"])
        .args(["--data-dir", data.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stale node started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("tombstone_grace_secs"), "{said}");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        1,
        "a refused start wrote into the data dir"
    );
}

#[test]
fn deletes_are_forgotten_after_the_grace_period() {
    let _serial = one_cluster_at_a_time();
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[maintenance]\ncheckpoint_interval_secs = 1\n[replication]\ntombstone_grace_secs = 2\n",
    );
    let node = TestNode::start(1, &["--config", config.to_str().unwrap()]);
    let mut client = node.client(0);
    let (id, kind, content) = object(7700, 100);
    expect_ack(put(&mut client, kind, &content));
    client.call(&Message::Delete(Delete { id }), &[]).unwrap();
    assert_eq!(node.metric("stratum_store_tombstones", ""), 1.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.metric("stratum_store_tombstones", "") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the tombstone was never forgotten"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_read_that_finds_a_damaged_copy_heals_it_from_another_replica() {
    let _serial = one_cluster_at_a_time();
    let mut cluster = Cluster::start_configured(
        3,
        3,
        2,
        false,
        "request_timeout_ms = 1000\nrepair_interval_secs = 0\n",
    );
    let (id, kind, content) = object(7800, 4000);
    expect_ack(put(&mut cluster.node(1).client(0), kind, &content));
    cluster.wait_holds_all(3, &[id], Duration::from_secs(10));
    // Bit rot in node 3's only record while it is stopped (its clean
    // shutdown checkpointed the index, so the open does not re-read it).
    cluster.node(3).sigterm();
    let segment = walk(&cluster.node(3).dir.join("data"))
        .into_iter()
        .find(|path| path.to_string_lossy().ends_with(".dat"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 48 + 100] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();
    cluster.node(3).launch();

    let mut client = cluster.node(3).client(0);
    let first = client.call(&Message::Get(Get { id }), &[]).unwrap();
    match first.to_message().unwrap() {
        Message::Error(err) => assert_eq!(err.code, ErrorCode::Corrupt),
        other => panic!("damaged bytes served: {other:?}"),
    }
    // The refused read fetched a good copy from a replica over the damage.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.call(&Message::Get(Get { id }), &[]).unwrap();
        if reply.kind() == stratum_wire::MessageKind::GetOk {
            assert_eq!(reply.payload(), &content[..]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healed: {:?}",
            reply.to_message()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cluster.node(3).metric("stratum_read_repairs_total", "") >= 1.0);
}
