//! The README's disk-full walkthrough, end to end: the real node on a small
//! ext4 file system, loop-mounted by this test (and unmounted and removed
//! by it; CI runs as root, which mounting needs).
//!
//! Filled until puts are refused: `/health` says why, reads and deletes go
//! on, and once space is freed the shard takes writes again by itself, with
//! every acknowledged object intact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stratum_testkit::{object, TestNode};
use stratum_wire::message::{Delete, ErrorCode, Get, Put};
use stratum_wire::{Message, MessageKind, ObjectId};

/// A loop-mounted ext4 file system of `mib` MiB, gone on drop.
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
}

impl LoopFs {
    fn new(dir: &Path, mib: u64) -> Self {
        let image = dir.join("fs.img");
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(mib << 20))
            .unwrap();
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(program)
                .args(args)
                .output()
                .unwrap_or_else(|err| panic!("{program}: {err}"));
            assert!(
                output.status.success(),
                "{program} {args:?}: {} (this test mounts a file system: it runs as root, as CI does)",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mount.to_str().unwrap(),
            ],
        );
        Self { image, mount }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn health(node: &TestNode) -> (u16, String) {
    node.admin_get("/health")
}

#[test]
fn a_full_disk_refuses_puts_takes_deletes_and_resumes_by_itself() {
    let temp = tempfile::tempdir().unwrap();
    let fs = LoopFs::new(temp.path(), 48);
    // Room an operator can free later.
    let ballast = fs.mount.join("ballast");
    std::fs::write(&ballast, vec![7u8; 12 << 20]).unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[limits]\nmax_object_bytes = 1048576\n[store]\nsegment_bytes = 4194304\nresume_free_bytes = 8388608\n",
    );
    let mut node = TestNode::prepare(1, &["--config", config.to_str().unwrap()]);
    // The data dir on the small file system; the node's log stays off it.
    let data = fs.mount.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&data, node.dir.join("data")).unwrap();
    node.launch();

    // Fill it.
    let mut client = node.client(0);
    let mut acked: Vec<(ObjectId, Vec<u8>)> = Vec::new();
    let refusal = (0..400u64)
        .find_map(|seed| {
            let (id, kind, content) = object(90_000 + seed, 256 << 10);
            let reply = client
                .call(&Message::Put(Put { id, kind }), &content)
                .unwrap();
            match reply.to_message().unwrap() {
                Message::PutAck(_) => {
                    acked.push((id, content));
                    None
                }
                Message::Error(err) => Some(err),
                other => panic!("{other:?}"),
            }
        })
        .expect("the file system never filled");
    assert_eq!(refusal.code, ErrorCode::ReadOnly, "{}", refusal.detail);
    let (status, body) = health(&node);
    assert_eq!(status, 503);
    assert!(body.contains("ENOSPC"), "{body}");

    // Reads and deletes go on.
    for (id, content) in acked.iter().step_by(10) {
        let reply = client.call(&Message::Get(Get { id: *id }), &[]).unwrap();
        assert_eq!(reply.payload(), &content[..]);
    }
    let (deleted, _) = acked.remove(0);
    let reply = client
        .call(&Message::Delete(Delete { id: deleted }), &[])
        .unwrap();
    assert_eq!(
        reply.kind(),
        MessageKind::DeleteAck,
        "{:?}",
        reply.to_message()
    );

    // The operator frees space; the shard resumes without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while health(&node).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never resumed: {:?}",
            health(&node)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (id, kind, content) = object(99_999, 256 << 10);
    let reply = client
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    assert_eq!(
        reply.kind(),
        MessageKind::PutAck,
        "{:?}",
        reply.to_message()
    );
    for (id, content) in &acked {
        let reply = client.call(&Message::Get(Get { id: *id }), &[]).unwrap();
        assert_eq!(reply.payload(), &content[..], "{id} lost");
    }
    assert!(node.log().contains("space is back"));
    drop(client);
    drop(node);
}
