//! Every exit status the README documents for the `stratum` command, each
//! produced the way a user would meet it.

use std::process::Command;

use stratum_testkit::node_proc::{damage_first_record, first_segment};
use stratum_testkit::TestNode;

/// Runs `stratum` with `args`; returns its exit status and stdout.
fn stratum(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .args(args)
        .output()
        .expect("stratum runs");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn each_documented_exit_status() {
    let temp = tempfile::tempdir().unwrap();
    let secret = TestNode::write_file(temp.path(), "secret", "a cluster secret of good length\n");
    let wrong = TestNode::write_file(temp.path(), "wrong", "not the secret of this cluster\n");
    let mut node = TestNode::start(1, &["--secret-file", secret.to_str().unwrap()]);
    let addr = node.addr(0).to_string();
    let file = TestNode::write_file(temp.path(), "object", &"stored then damaged ".repeat(100));
    let with_secret = ["--node", &addr, "--secret-file", secret.to_str().unwrap()];
    let args = |rest: &[&str]| -> Vec<String> {
        with_secret
            .iter()
            .chain(rest)
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    let run = |rest: &[&str]| {
        let owned = args(rest);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        stratum(&refs)
    };

    // 0: done.
    let (code, id) = run(&["put", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let id = id.trim().to_owned();
    // 1: not there.
    let missing = "ab".repeat(32);
    assert_eq!(run(&["get", &missing]).0, 1);
    // 2: bad usage.
    assert_eq!(run(&["get", "not-an-id"]).0, 2);
    // 5: rejected by a node (the wrong cluster secret, or none).
    let (code, _) = stratum(&[
        "--node",
        &addr,
        "--secret-file",
        wrong.to_str().unwrap(),
        "has",
        &id,
    ]);
    assert_eq!(code, 5);
    assert_eq!(stratum(&["--node", &addr, "has", &id]).0, 5);
    // 6: a local failure.
    assert_eq!(run(&["put", "/nonexistent/stratum-object"]).0, 6);
    // 78: bad configuration.
    assert_eq!(
        stratum(&["--topology", "/nonexistent/topology.toml", "stat"]).0,
        78
    );

    // 4: the only replica's copy is damaged (bit rot while it was stopped;
    // its clean shutdown checkpointed the index, so the open does not
    // re-read the record).
    node.sigterm();
    damage_first_record(&first_segment(&node), false);
    node.launch();
    let addr = node.addr(0).to_string();
    let (code, _) = stratum(&[
        "--node",
        &addr,
        "--secret-file",
        secret.to_str().unwrap(),
        "get",
        &id,
    ]);
    assert_eq!(code, 4);

    // 3: the cluster is unavailable.
    node.sigkill();
    let (code, _) = stratum(&[
        "--node",
        &addr,
        "--secret-file",
        secret.to_str().unwrap(),
        "--timeout",
        "2",
        "has",
        &id,
    ]);
    assert_eq!(code, 3);
}
