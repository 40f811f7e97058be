//! `iotune` end to end on a small budget, in a temporary directory on the
//! real disk (not tmpfs: the node's DMA I/O needs O_DIRECT).

use std::path::Path;
use std::process::Output;

use stratum_node::io_properties::IoProperties;
use stratum_node::store::fs::SyncMethod;

/// `stratum-tune iotune ARGS --data-dir DIR`.
fn iotune(args: &[&str], dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stratum-tune"))
        .arg("iotune")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn iotune_measures_and_writes_a_file_the_node_reads() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = iotune(&["--budget-secs", "3"], dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Progress went to stderr as each measurement finished.
    assert!(stderr.contains("sequential write"), "{stderr}");
    assert!(stderr.contains("depth 64"), "{stderr}");
    assert!(
        stdout.contains("durable appends (dsync), 4 KiB groups"),
        "{stdout}"
    );

    let path = dir.path().join(stratum_node::io_properties::FILE_NAME);
    let properties = IoProperties::load(&path)
        .unwrap()
        .expect("properties written");
    assert!(properties.seq_write_bytes_per_sec > 0.0);
    assert_eq!(properties.durable_append.len(), 5);
    assert_eq!(properties.random_read.len(), 4);
    assert!(properties
        .durable_append
        .iter()
        .all(|d| d.appends_per_sec > 0.0));
    assert!(properties.random_read.iter().all(|r| r.iops > 0.0));
    assert!(properties.max_batch_bytes >= 4096);
    // Measured the way a node with the default store.sync_method commits.
    assert_eq!(properties.sync_method, SyncMethod::Dsync);
    // Nothing is left behind but the properties file.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("io-properties.toml")]);

    // A budget too small to measure anything is refused.
    let output = iotune(&["--budget-secs", "1"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("too small"));
}

#[test]
fn iotune_measures_durable_appends_with_the_sync_method_asked_for() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = dir.path().join("fdatasync.toml");
    let out_arg = out.to_str().unwrap();
    let output = iotune(
        &[
            "--budget-secs",
            "2",
            "--sync-method",
            "fdatasync",
            "--out",
            out_arg,
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("durable appends (fdatasync), 1024 KiB groups"),
        "{stdout}"
    );
    let properties = IoProperties::load(&out).unwrap().expect("written");
    assert_eq!(properties.sync_method, SyncMethod::Fdatasync);
    assert!(properties
        .durable_append
        .iter()
        .all(|d| d.appends_per_sec > 0.0));

    // An unknown method is a usage error that names the accepted ones.
    let output = iotune(&["--sync-method", "fsync"], dir.path());
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"dsync\" or \"fdatasync\""), "{stderr}");
}
