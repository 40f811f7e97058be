//! `stratum repair` starts an anti-entropy pass on every node at once, and
//! `stratum stat` shows where repair and rebalancing stand.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use stratum_testkit::TestNode;
use stratum_wire::message::Put;
use stratum_wire::Message;

fn stratum(cluster: &Cluster, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .arg("--topology")
        .arg(&cluster.topology)
        .args(args)
        .output()
        .expect("stratum runs");
    assert!(
        output.status.success(),
        "stratum {args:?} exited {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn repair_on_demand_copies_what_a_replica_lacks_and_stat_reports_it() {
    let config_dir = tempfile::tempdir().unwrap();
    // No periodic passes: only the command starts one.
    let config = TestNode::write_file(
        config_dir.path(),
        "node.toml",
        "[replication]\nrepair_interval_secs = 0\n",
    );
    let cluster = Cluster::start_with(3, 1, 3, &["--config", config.to_str().unwrap()]);
    // The object is placed on node 1 alone (a peer's put is not replicated).
    let (id, kind, content) = common::object(5, 27);
    let reply = cluster.nodes[0]
        .node_client(0)
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    assert_eq!(reply.kind(), stratum_wire::MessageKind::PutAck);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!cluster.nodes[1].holds(id), "copied without being asked");

    let said = stratum(&cluster, &["repair"]);
    assert_eq!(
        said.matches("repair started on 1 shard(s)").count(),
        3,
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(cluster.nodes[1].holds(id) && cluster.nodes[2].holds(id)) {
        assert!(
            Instant::now() < deadline,
            "the repair never copied the object"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stat = stratum(&cluster, &["stat"]);
    assert!(stat.contains("  repair: in sync"), "{stat}");
    assert!(stat.contains("1 objects (27 bytes) fetched"), "{stat}");
    assert!(
        stat.contains("  rebalance: 0 copies still to hand off"),
        "{stat}"
    );
}
