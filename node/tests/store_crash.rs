//! Crash consistency on the real I/O path (the shard's own io_uring ring): a writer process is killed with
//! SIGKILL at random moments while it prints every acknowledged put; after
//! each kill the store is reopened and every acknowledged object must be
//! there, byte-identical. Also: tails torn at random offsets.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{object, on_executor, ring_fs};
use stratum_node::store::{ShardStore, StoreConfig};

const CHILD_DIR_ENV: &str = "STRATUM_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "STRATUM_CRASH_CHILD_SEED";
const CYCLES: u64 = 24;

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    // Small segments so kills also land around rotations.
    config.segment_bytes = 2 << 20;
    config.max_object_bytes = 256 << 10;
    config.cache_bytes = 1 << 20;
    config
}

fn object_len(seed: u64) -> usize {
    // Mostly small, sometimes large, like Git objects.
    match seed % 10 {
        0 => 60_000 + (seed as usize % 90_000),
        1..=3 => 4_000 + (seed as usize % 8_000),
        _ => 50 + (seed as usize % 1_500),
    }
}

/// The writer process. Runs only when the parent sets the environment; as a
/// plain test it is ignored.
#[test]
#[ignore = "child process of kill_the_writer_at_random_moments"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let base: u64 = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0);
    let dir = PathBuf::from(dir);
    on_executor(move || async move {
        let (store, _) = ShardStore::open(ring_fs(&dir), &dir.join("shard"), config())
            .await
            .expect("child open");
        let store = std::rc::Rc::new(store);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut writers = Vec::new();
        for writer in 0..16u64 {
            let store = std::rc::Rc::clone(&store);
            writers.push(glommio::spawn_local(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let seed = base + writer * 1_000_000 + n;
                    n += 1;
                    let (id, kind, content) = object(seed, object_len(seed));
                    store.put(id, kind, content).await.expect("child put");
                    // Printed only after the put was acknowledged.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {seed}").expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for writer in writers {
            writer.await;
        }
    });
}

fn verify_all(dir: &Path, acknowledged: &[u64]) -> (u64, u64) {
    let dir = dir.to_owned();
    let seeds = acknowledged.to_vec();
    on_executor(move || async move {
        let (store, report) = ShardStore::open(ring_fs(&dir), &dir.join("shard"), config())
            .await
            .expect("reopen after kill");
        assert!(
            report.quarantined.is_empty(),
            "a crash must not look like corruption: {:?}",
            report.quarantined
        );
        for seed in &seeds {
            let (id, kind, content) = object(*seed, object_len(*seed));
            let got = store
                .get(&id)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged object {id} (seed {seed}) lost"));
            assert!(
                got.kind == kind
                    && *got.content(&Default::default()).expect("inflates") == content[..],
                "{id}: wrong bytes"
            );
        }
        let objects = report.objects;
        store.close().await.expect("close");
        (objects, report.torn_tail_bytes)
    })
}

#[test]
fn kill_the_writer_at_random_moments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut torn_cycles = 0;
    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SEED_ENV, (cycle * 100_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    line.strip_prefix("ACK ")
                        .and_then(|seed| seed.parse::<u64>().ok())
                })
                .collect::<Vec<u64>>()
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(100 + rng % 400);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let seeds = reader.join().expect("reader");
        // Reopen after every kill and check what this run acknowledged; all
        // of it is checked again at the end.
        let (objects, torn) = verify_all(dir.path(), &seeds);
        acknowledged.extend(seeds);
        if torn > 0 {
            torn_cycles += 1;
        }
        assert!(objects >= acknowledged.len() as u64);
    }
    verify_all(dir.path(), &acknowledged);
    eprintln!(
        "{CYCLES} kills, {} acknowledged objects all intact, {torn_cycles} cycles recovered a torn tail",
        acknowledged.len()
    );
    assert!(acknowledged.len() > 100, "the writer barely ran");
}

/// Builds a store; returns the segment path and where the last put's record
/// (the last one in the file) starts and ends. (The file may run on past it
/// with zeroed space the writer prepared.)
fn store_with_last_record(dir: &Path, count: u64) -> (PathBuf, u64, u64) {
    let dir = dir.to_owned();
    on_executor(move || async move {
        let shard = dir.join("shard");
        let (store, _) = ShardStore::open(ring_fs(&dir), &shard, config())
            .await
            .expect("open");
        for seed in 0..count - 1 {
            let (id, kind, content) = object(seed, object_len(seed));
            store.put(id, kind, content).await.expect("put");
        }
        let segment = shard.join("seg-00000.dat");
        let before = store.stats().disk_bytes;
        let seed = count - 1;
        let (id, kind, content) = object(seed, 20_000);
        store.put(id, kind, content).await.expect("last put");
        let after = store.stats().disk_bytes;
        // The process dies (no clean close, so no checkpoint covers the last
        // record): a torn write can only hit data written after the last
        // checkpoint, because a checkpoint covers only fdatasync'd records.
        drop(store);
        (segment, before, after)
    })
}

#[test]
fn tails_torn_at_random_offsets_lose_only_the_torn_record() {
    let count = 40u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..12 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (segment, before, full) = store_with_last_record(dir.path(), count);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Somewhere inside the last record: cut it (truncate) or zero it (a
        // torn write whose later blocks never reached the media).
        let cut = before + 1 + rng % (full - before - 1);
        if round % 2 == 0 {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .and_then(|file| file.set_len(cut))
                .expect("truncate");
        } else {
            let mut bytes = std::fs::read(&segment).expect("read");
            bytes[cut as usize..].fill(0);
            std::fs::write(&segment, bytes).expect("write");
        }
        let dir_path = dir.path().to_owned();
        on_executor(move || async move {
            let (store, report) =
                ShardStore::open(ring_fs(&dir_path), &dir_path.join("shard"), config())
                    .await
                    .expect("open torn");
            assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
            for seed in 0..count - 1 {
                let (id, kind, content) = object(seed, object_len(seed));
                let got = store
                    .get(&id)
                    .await
                    .expect("get")
                    .expect("intact object lost");
                assert!(
                    got.kind == kind
                        && *got.content(&Default::default()).expect("inflates") == content[..]
                );
            }
            let (torn_id, _, _) = object(count - 1, 20_000);
            assert!(store.get(&torn_id).await.expect("get torn").is_none());
            // The shard keeps working after the cut.
            let (id, kind, content) = object(5_000, 3_000);
            store
                .put(id, kind, content)
                .await
                .expect("put after recovery");
            store.close().await.expect("close");
        });
    }
}
