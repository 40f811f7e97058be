//! `stratum-bench` end to end: an embedded replicated cluster with
//! `--verify`, and `--record` / `verify` / `verify --direct` against real
//! nodes. The tests run one at a time (io_uring executors lock memory
//! against the 8 MiB memlock limit).

use std::path::Path;
use std::process::{Command, Output};

use stratum_testkit::{one_cluster_at_a_time, topology_text, TestNode};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stratum-bench"))
        .args(args)
        .output()
        .expect("run stratum-bench")
}

fn json(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn embedded_mixed_run_with_verify_reports_json_and_a_plot() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("latency.svg");
    let output = bench(&[
        "--embedded",
        "3",
        "--shards",
        "1",
        "mixed",
        "--read-ratio",
        "0.5",
        "--verify",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--keys",
        "200",
        "--size",
        "git",
        "--concurrency",
        "8",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_succeeded(&output);
    let report = json(&output);
    for kind in ["put", "get"] {
        let stats = &report[kind];
        assert!(stats["ops"].as_u64().unwrap() > 0, "{report}");
        assert!(stats["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert!(stats["bytes_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(stats["errors"], 0, "{report}");
        let p50 = stats["p50_us"].as_u64().unwrap();
        let p99 = stats["p99_us"].as_u64().unwrap();
        assert!(0 < p50 && p50 <= p99 && p99 <= stats["max_us"].as_u64().unwrap());
        assert!(stats["p90_us"].is_u64() && stats["p999_us"].is_u64());
    }
    assert_eq!(report["run"]["data_errors"], 0);
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
}

fn cluster(dir: &Path) -> (Vec<TestNode>, std::path::PathBuf) {
    let topology = dir.join("topology.toml");
    let topo = topology.to_str().unwrap().to_owned();
    let mut nodes: Vec<TestNode> = (1..=3)
        .map(|id| TestNode::prepare(1, &["--topology", &topo, "--node-id", &id.to_string()]))
        .collect();
    let specs: Vec<(u32, String, u16)> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| (index as u32 + 1, node.address(), 1))
        .collect();
    let text = topology_text(1, 2, 2, &specs);
    std::fs::write(&topology, text).unwrap();
    for node in &mut nodes {
        node.launch();
    }
    (nodes, topology)
}

#[test]
fn recorded_puts_verify_and_a_missing_id_fails_verification() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (nodes, topology) = cluster(dir.path());
    let topology = topology.to_str().unwrap();
    let record = dir.path().join("ids.txt");
    let output = bench(&[
        "--topology",
        topology,
        "put",
        "--ops",
        "300",
        "--duration",
        "30s",
        "--warmup",
        "0s",
        "--concurrency",
        "4",
        "--size",
        "1k",
        "--record",
        record.to_str().unwrap(),
        "--json",
    ]);
    assert_succeeded(&output);
    assert_eq!(json(&output)["put"]["errors"], 0);
    let recorded = std::fs::read_to_string(&record).unwrap().lines().count();
    assert!(recorded >= 300, "{recorded} ids recorded");

    // Every recorded id reads back through the cluster.
    let output = bench(&[
        "--topology",
        topology,
        "verify",
        record.to_str().unwrap(),
        "--json",
    ]);
    assert_succeeded(&output);
    assert_eq!(
        json(&output)["verify"]["ops"].as_u64().unwrap() as usize,
        recorded
    );

    // Directly, each node holds exactly its share: with replication factor
    // 2 of 3 nodes, no node holds everything, so --direct must fail on
    // every node and the cluster-wide check must not.
    for node in &nodes {
        let output = bench(&[
            "--node",
            &node.address(),
            "verify",
            record.to_str().unwrap(),
            "--direct",
            "--json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "a node holds all of a 2-of-3 cluster's objects?"
        );
        let report = json(&output);
        let found = report["verify"]["ops"].as_u64().unwrap() as usize;
        assert!(
            found > 0 && found < recorded,
            "node {} holds {found} of {recorded}",
            node.address()
        );
    }

    // An id nobody stored fails verification.
    std::fs::write(&record, format!("{}\n", "ab".repeat(32))).unwrap();
    let output = bench(&["--topology", topology, "verify", record.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("DATA ERRORS: 1"));
}

#[test]
fn bad_arguments_are_refused_with_status_2() {
    for args in [
        &["--size", "huge", "put"][..],
        &["--key-dist", "zipf:-1", "get"],
        &["--rate", "0", "put"],
        &["--read-ratio", "2", "mixed"],
        &["replay"],
    ] {
        let output = bench(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
