//! A store that mixes compressed and raw records: every path that reads,
//! checks or moves records (reads, scrub, compaction, checkpoints, full
//! replay) handles both, and damage to a compressed record is caught: bit
//! rot by the CRC on every read, wrong bytes under a matching CRC by scrub.

mod common;

use std::path::PathBuf;

use common::sim_fs::SimFs;
use common::{assert_exactly, on_executor, Obj};
use stratum_node::store::fs::StoreFs;
use stratum_node::store::{ShardStore, StoreConfig, StoreError, Verified};
use stratum_wire::codec::{self, DEFAULT_LEVEL};
use stratum_wire::{Codec, ObjectId, ObjectKind};

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    config.segment_bytes = 32 << 10;
    config.max_object_bytes = 8 << 10;
    config.max_batch_bytes = 8 << 10;
    config.cache_bytes = 0;
    config
}

fn dir() -> PathBuf {
    PathBuf::from("/sim/shard-0")
}

/// Object `i`: compressible text; every third one random-looking (stored
/// raw, as a client sends content that does not compress).
fn object(i: u64) -> Obj {
    if i % 3 == 0 {
        return common::object(i, 700);
    }
    let content: Vec<u8> = (0..40)
        .flat_map(|line| format!("line {line} of object {i}: some source text\n").into_bytes())
        .collect();
    let kind = ObjectKind::ALL[(i % 4) as usize];
    (ObjectId::compute(kind, &content), kind, content)
}

/// Puts as a revision-2 client would: compressed when that pays.
async fn put(store: &ShardStore<SimFs>, (id, kind, content): &Obj) -> Codec {
    let (codec, payload) = match codec::compress(content, DEFAULT_LEVEL, None).expect("compress") {
        Some(compressed) => (Codec::Zstd, compressed),
        None => (Codec::Raw, content.clone()),
    };
    let verified =
        Verified::check_payload(*id, *kind, codec, payload, 1 << 20, &Default::default())
            .expect("verifies");
    store.put_verified(verified).await.expect("put");
    codec
}

async fn reopen(fs: &SimFs, full_replay: bool) -> ShardStore<SimFs> {
    if full_replay {
        let _ = fs.remove(&dir().join("index.ckpt")).await;
    }
    let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
        .await
        .expect("reopen");
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    store
}

#[test]
fn compaction_scrub_and_replay_keep_mixed_records_intact() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all: Vec<Obj> = (0..240).map(object).collect();
        let mut compressed = 0;
        for obj in &all {
            if put(&store, obj).await == Codec::Zstd {
                compressed += 1;
            }
        }
        assert!((100..240).contains(&compressed), "{compressed} compressed");
        let stats = store.stats();
        assert!(
            stats.put_payload_bytes * 2 < stats.put_content_bytes,
            "{stats:?}"
        );

        let report = store.scrub(0).await.expect("scrub");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.records_checked, all.len() as u64);

        let (live, dead): (Vec<Obj>, Vec<Obj>) = all
            .iter()
            .cloned()
            .partition(|(id, _, _)| id.as_bytes()[0] % 3 == 0);
        for (id, _, _) in &dead {
            assert!(store.delete(*id).await.expect("delete"));
        }
        let compaction = store.compact(0.3).await.expect("compact");
        assert!(compaction.segments_removed > 0, "{compaction:?}");
        assert_exactly(&store, &live, &dead).await;
        let report = store.scrub(0).await.expect("scrub after compaction");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        store.close().await.expect("close");

        for full_replay in [false, true] {
            let store = reopen(&fs, full_replay).await;
            assert_exactly(&store, &live, &dead).await;
            store.close().await.expect("close");
        }
    });
}

fn segment(fs: &SimFs) -> PathBuf {
    fs.paths()
        .into_iter()
        .find(|path| path.to_string_lossy().ends_with(".dat"))
        .expect("a segment")
}

#[test]
fn bit_rot_in_a_compressed_record_is_refused_on_read_and_found_by_scrub() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let obj = object(1);
        assert_eq!(put(&store, &obj).await, Codec::Zstd);
        store.close().await.expect("close");
        // The first record starts after the 4096-byte segment header; its
        // content after the 48-byte record header.
        let path = segment(&fs);
        fs.flip_bit(&path, 4096 + 48 + 10, 2);
        let store = reopen(&fs, false).await;
        assert!(matches!(
            store.get(&obj.0).await,
            Err(StoreError::Corrupt { .. })
        ));
        let report = store.scrub(0).await.expect("scrub");
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        store.close().await.expect("close");
    });
}

/// The corruption matrix's last row: bytes changed between the check that
/// let them in and the write, under a CRC computed over the changed bytes.
/// A read checks only the CRC, so it serves them (every consumer hashes
/// what it gets, and refuses them); scrub hashes, and finds them.
#[test]
fn wrong_bytes_under_a_matching_crc_are_found_by_scrub() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let (id, kind, content) = object(2);
        assert_eq!(put(&store, &(id, kind, content.clone())).await, Codec::Zstd);
        store.close().await.expect("close");

        // Another content of the same compressed length, as the record.
        let path = segment(&fs);
        let record = fs.read_range(&path, 4096, 48);
        let len = u32::from_le_bytes(record[8..12].try_into().unwrap()) as usize;
        // (Same length, so the record layout holds: one changed letter.)
        let wrong = (0..content.len())
            .find_map(|at| {
                let mut other = content.clone();
                other[at] ^= 1;
                let wrong = codec::compress(&other, DEFAULT_LEVEL, None).unwrap()?;
                (wrong.len() == len).then_some(wrong)
            })
            .expect("a one-letter change that compresses to the same length");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record[0..12]);
        crc.update(&record[16..48]);
        crc.update(&wrong);
        fs.overwrite(&path, 4096 + 12, &crc.finalize().to_le_bytes());
        fs.overwrite(&path, 4096 + 48, &wrong);

        let store = reopen(&fs, false).await;
        let served = store
            .get(&id)
            .await
            .expect("the CRC passes")
            .expect("found");
        let inflated = served.content(&Default::default()).expect("inflates");
        assert!(!id.verify(kind, &inflated), "a consumer's hash refuses it");
        let report = store.scrub(0).await.expect("scrub");
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        store.close().await.expect("close");
    });
}
