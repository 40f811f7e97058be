//! The cluster changes shape under load, with real `stratum-node` processes
//! on 127.0.0.1: grown from 3 to 5 nodes, shrunk from 5 to 3, and changed
//! twice in quick succession. Through every change no get of an acknowledged
//! object fails, and afterwards every object sits on exactly its replica set
//! (asked of each node directly) and nowhere else.
//!
//! Every node runs one shard with anti-entropy every second (N=3, W=2).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratum_testkit::{
    object, one_cluster_at_a_time, replace_file, topology_text, TestClient, TestNode,
};
use stratum_wire::message::*;
use stratum_wire::placement::{Placement, Topology};
use stratum_wire::{Message, ObjectId, ObjectKind};

/// Acknowledged objects: id and content.
type Objects = Vec<(ObjectId, Vec<u8>)>;

struct Cluster {
    topology: PathBuf,
    config: PathBuf,
    nodes: BTreeMap<u32, TestNode>,
    epoch: u64,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(ids: &[u32]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = TestNode::write_file(
            dir.path(),
            "node.toml",
            "[replication]\nconnect_timeout_ms = 500\nping_interval_ms = 300\nrequest_timeout_ms = 2000\nrepair_interval_secs = 1\n",
        );
        let mut cluster = Self {
            topology: dir.path().join("topology.toml"),
            config,
            nodes: BTreeMap::new(),
            epoch: 0,
            _dir: dir,
        };
        for id in ids {
            cluster.prepare(*id);
        }
        cluster.publish(ids);
        for id in ids {
            cluster.nodes.get_mut(id).unwrap().launch();
        }
        cluster
    }

    fn prepare(&mut self, id: u32) {
        let args = [
            "--topology",
            self.topology.to_str().unwrap(),
            "--node-id",
            &id.to_string(),
            "--config",
            self.config.to_str().unwrap(),
        ];
        self.nodes.insert(id, TestNode::prepare(1, &args));
    }

    /// Writes the next epoch's topology naming `members`.
    fn publish(&mut self, members: &[u32]) {
        self.epoch += 1;
        let specs: Vec<(u32, String, u16)> = members
            .iter()
            .map(|id| (*id, self.nodes[id].address(), 1))
            .collect();
        replace_file(&self.topology, &topology_text(self.epoch, 3, 2, &specs));
    }

    /// Grows by `new` nodes and rolls out the topology naming `members`.
    fn change(&mut self, new: &[u32], members: &[u32]) {
        for id in new {
            self.prepare(*id);
        }
        self.publish(members);
        for id in new {
            self.nodes.get_mut(id).unwrap().launch();
        }
        for (id, node) in &self.nodes {
            if !new.contains(id) {
                node.sighup();
            }
        }
    }

    fn placement(&self) -> Placement {
        Placement::new(Topology::load(&self.topology).unwrap())
    }

    fn holds(&self, node: u32, id: ObjectId) -> bool {
        self.nodes[&node].holds(id)
    }

    /// Waits until every object is on exactly its replica set.
    fn wait_settled(&self, ids: &[ObjectId], members: &[u32], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let placement = self.placement();
            let mut misplaced = Vec::new();
            for id in ids {
                for node in members {
                    let wanted = placement.is_replica(*node, id);
                    if self.holds(*node, *id) != wanted {
                        misplaced.push((*id, *node, wanted));
                    }
                }
            }
            if misplaced.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} placements still wrong after {limit:?}, e.g. {:?}",
                misplaced.len(),
                &misplaced[..misplaced.len().min(3)]
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Addresses of every node's shard 0, by id, from the topology file.
fn addresses(topology: &std::path::Path) -> (Placement, BTreeMap<u32, std::net::SocketAddr>) {
    let placement = Placement::new(Topology::load(topology).unwrap());
    let addresses = placement
        .topology()
        .nodes()
        .iter()
        .map(|node| (node.id, node.address.parse().unwrap()))
        .collect();
    (placement, addresses)
}

/// A get as a client does it: the replicas of the current topology in
/// order, failing over on a miss or an unreachable node.
fn client_get(topology: &std::path::Path, id: ObjectId) -> Result<Vec<u8>, String> {
    let (placement, addresses) = addresses(topology);
    let mut said = Vec::new();
    for node in placement.replica_node_ids(&id) {
        let Ok(mut client) = TestClient::connect(addresses[node], None) else {
            said.push(format!("{node}: unreachable"));
            continue;
        };
        match client.call(&Message::Get(Get { id }), &[]) {
            Ok(frame) if frame.kind() == stratum_wire::MessageKind::GetOk => {
                return Ok(frame.payload().to_vec())
            }
            Ok(frame) => said.push(format!("{node}: {:?}", frame.to_message())),
            Err(err) => said.push(format!("{node}: {err}")),
        }
    }
    Err(said.join("; "))
}

/// A put as a client does it: to the first replica that answers.
fn client_put(topology: &std::path::Path, kind: ObjectKind, content: &[u8]) -> bool {
    let id = ObjectId::compute(kind, content);
    let (placement, addresses) = addresses(topology);
    for node in placement.replica_node_ids(&id) {
        let Ok(mut client) = TestClient::connect(addresses[node], None) else {
            continue;
        };
        if let Ok(frame) = client.call(&Message::Put(Put { id, kind }), content) {
            if frame.kind() == stratum_wire::MessageKind::PutAck {
                return true;
            }
        }
    }
    false
}

/// Reads and writes in a loop until stopped: every get of an acknowledged
/// object must succeed with its bytes.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Objects>>,
    gets: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(topology: PathBuf, acked: Objects, next_seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(acked));
        let gets = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked, gets, failures) = (
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&gets),
                Arc::clone(&failures),
            );
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut seed = next_seed;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let (id, kind, content) = object(seed, 1500);
                    seed += 1;
                    if client_put(&topology, kind, &content) {
                        acked.lock().unwrap().push((id, content));
                    }
                    let sample: Objects = {
                        let acked = acked.lock().unwrap();
                        let step = (acked.len() / 8).max(1);
                        acked
                            .iter()
                            .skip((seed as usize) % step)
                            .step_by(step)
                            .cloned()
                            .collect()
                    };
                    for (id, content) in sample {
                        gets.fetch_add(1, Ordering::Relaxed);
                        match client_get(&topology, id) {
                            Ok(bytes) if bytes == content => {}
                            Ok(_) => failures.lock().unwrap().push(format!("{id}: wrong bytes")),
                            Err(err) => failures.lock().unwrap().push(format!("{id}: {err}")),
                        }
                    }
                }
            })
        };
        Self {
            stop,
            acked,
            gets,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops the load; returns every acknowledged object.
    fn finish(mut self) -> Objects {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let failures = self.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} of {} gets failed, e.g. {:?}",
            failures.len(),
            self.gets.load(Ordering::Relaxed),
            &failures[..failures.len().min(3)]
        );
        assert!(
            self.gets.load(Ordering::Relaxed) > 100,
            "the load barely ran"
        );
        self.acked.lock().unwrap().clone()
    }
}

fn seed_objects(cluster: &Cluster, seeds: std::ops::Range<u64>) -> Objects {
    seeds
        .map(|seed| {
            let (id, kind, content) = object(seed, 1500);
            assert!(client_put(&cluster.topology, kind, &content));
            (id, content)
        })
        .collect()
}

fn ids(objects: &[(ObjectId, Vec<u8>)]) -> Vec<ObjectId> {
    objects.iter().map(|(id, _)| *id).collect()
}

#[test]
fn growing_from_three_to_five_nodes_under_load_moves_every_object_and_fails_no_get() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(&[1, 2, 3]);
    let objects = seed_objects(&cluster, 10_000..10_300);
    let load = Load::start(cluster.topology.clone(), objects, 20_000);
    std::thread::sleep(Duration::from_millis(500));
    cluster.change(&[4, 5], &[1, 2, 3, 4, 5]);
    std::thread::sleep(Duration::from_secs(4));
    let objects = load.finish();
    cluster.wait_settled(&ids(&objects), &[1, 2, 3, 4, 5], Duration::from_secs(60));
    // With the move done, two of the original nodes can be lost.
    cluster.nodes.get_mut(&1).unwrap().sigkill();
    cluster.nodes.get_mut(&2).unwrap().sigkill();
    for (id, content) in &objects {
        assert_eq!(&client_get(&cluster.topology, *id).unwrap(), content);
    }
}

#[test]
fn shrinking_from_five_to_three_nodes_hands_off_everything_before_the_leavers_stop() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(&[1, 2, 3, 4, 5]);
    let objects = seed_objects(&cluster, 30_000..30_300);
    let load = Load::start(cluster.topology.clone(), objects, 40_000);
    std::thread::sleep(Duration::from_millis(500));
    cluster.change(&[], &[1, 2, 3]);
    std::thread::sleep(Duration::from_secs(4));
    let objects = load.finish();
    cluster.wait_settled(&ids(&objects), &[1, 2, 3], Duration::from_secs(60));
    // The leavers report nothing left to hand off, hold nothing, and can go.
    for leaver in [4, 5] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let node = &cluster.nodes[&leaver];
        while node.metric("stratum_store_objects", "") > 0.0
            || node.metric("stratum_rebalance_backlog", "") > 0.0
        {
            assert!(
                Instant::now() < deadline,
                "node {leaver} still holds objects"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    cluster.nodes.get_mut(&4).unwrap().sigkill();
    cluster.nodes.get_mut(&5).unwrap().sigkill();
    for (id, content) in &objects {
        assert_eq!(&client_get(&cluster.topology, *id).unwrap(), content);
    }
}

#[test]
fn two_topology_changes_in_quick_succession_strand_nothing() {
    let _one = one_cluster_at_a_time();
    let mut cluster = Cluster::start(&[1, 2, 3]);
    let objects = seed_objects(&cluster, 50_000..50_300);
    let load = Load::start(cluster.topology.clone(), objects, 60_000);
    std::thread::sleep(Duration::from_millis(300));
    cluster.change(&[4], &[1, 2, 3, 4]);
    // Epoch 3 arrives before epoch 2's move can have finished: node 5 joins
    // and node 1 leaves.
    std::thread::sleep(Duration::from_millis(300));
    cluster.change(&[5], &[2, 3, 4, 5]);
    std::thread::sleep(Duration::from_secs(4));
    let objects = load.finish();
    cluster.wait_settled(&ids(&objects), &[1, 2, 3, 4, 5], Duration::from_secs(60));
    cluster.nodes.get_mut(&1).unwrap().sigkill();
    for (id, content) in &objects {
        assert_eq!(&client_get(&cluster.topology, *id).unwrap(), content);
    }
}
