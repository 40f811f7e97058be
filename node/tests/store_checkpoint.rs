//! Index checkpoints: used when they can be trusted, ignored (with a reason)
//! when they cannot, and never the cause of a lost or resurrected object.

mod common;

use std::path::PathBuf;

use common::sim_fs::SimFs;
use common::{assert_exactly, object, on_executor, put_all, Obj};
use stratum_node::store::fs::StoreFs;
use stratum_node::store::{PutOutcome, ShardStore, StoreConfig};

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    config.segment_bytes = 256 << 10; // several segments
    config.max_object_bytes = 64 << 10;
    config.max_batch_bytes = 32 << 10;
    config.cache_bytes = 0;
    config
}

fn dir() -> PathBuf {
    PathBuf::from("/sim/shard-0")
}

fn objects(range: std::ops::Range<u64>) -> Vec<Obj> {
    range
        .map(|i| object(i, 200 + (i as usize * 131) % 4000))
        .collect()
}

#[test]
fn a_clean_close_checkpoints_and_the_reopen_replays_nothing() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all = objects(0..300);
        put_all(&store, &all).await;
        for (id, _, _) in &all[..50] {
            assert!(store.delete(*id).await.expect("delete"));
        }
        assert!(store.stats().segments >= 3);
        store.close().await.expect("close");

        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.checkpoint_ignored, None);
        assert_eq!(report.checkpoint_entries, 250);
        assert_eq!(report.records, 0, "nothing after the watermark to replay");
        assert_exactly(&store, &all[50..], &all[..50]).await;
        store.close().await.expect("close");
    });
}

#[test]
fn writes_after_a_checkpoint_are_replayed_on_top_of_it() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let first = objects(0..150);
        put_all(&store, &first).await;
        assert_eq!(store.checkpoint().await.expect("checkpoint"), 150);
        // After the checkpoint: more puts (into new segments too), deletes of
        // objects the checkpoint holds, and a re-put of a deleted one.
        let second = objects(150..400);
        put_all(&store, &second).await;
        for (id, _, _) in &first[..40] {
            assert!(store.delete(*id).await.expect("delete"));
        }
        let (id, kind, content) = first[0].clone();
        store.put(id, kind, content).await.expect("re-put");
        // Crash: no clean close, and power goes.
        drop(store);
        fs.power_loss();

        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.checkpoint_ignored, None);
        assert_eq!(report.checkpoint_entries, 150);
        assert!(report.records > 0);
        let mut present: Vec<Obj> = first[40..].to_vec();
        present.extend(second.iter().cloned());
        present.push(first[0].clone());
        assert_exactly(&store, &present, &first[1..40]).await;
        store.close().await.expect("close");
    });
}

/// A checkpoint taken while the index is resizing (its old table still
/// draining into the new one) names every object of both tables. A store
/// starts with a table of 256 slots, which resizes at its 205th entry and
/// drains over the next 16 inserts, so the checkpoint at 210 objects lands
/// in the drain.
#[test]
fn a_checkpoint_taken_while_the_index_resizes_names_every_object() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let first = objects(0..210);
        put_all(&store, &first).await;
        assert_eq!(store.checkpoint().await.expect("checkpoint"), 210);
        let second = objects(210..260);
        put_all(&store, &second).await;
        for (id, _, _) in &first[..10] {
            assert!(store.delete(*id).await.expect("delete"));
        }
        drop(store);
        fs.power_loss();

        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.checkpoint_ignored, None);
        assert_eq!(report.checkpoint_entries, 210);
        let mut present: Vec<Obj> = first[10..].to_vec();
        present.extend(second.iter().cloned());
        assert_exactly(&store, &present, &first[..10]).await;
        store.close().await.expect("close");
    });
}

#[test]
fn a_damaged_or_stale_checkpoint_is_ignored_and_everything_replayed() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all = objects(0..200);
        put_all(&store, &all).await;
        store.close().await.expect("close");
        let checkpoint = dir().join("index.ckpt");

        // A flipped bit anywhere: refused by its checksums.
        let len = fs.file_len(&checkpoint);
        fs.flip_bit(&checkpoint, len / 2, 3);
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert!(
            report
                .checkpoint_ignored
                .as_deref()
                .is_some_and(|r| r.contains("checksum")),
            "{report:?}"
        );
        assert_eq!(report.checkpoint_entries, 0);
        assert_exactly(&store, &all, &[]).await;
        store.close().await.expect("close"); // writes a fresh one

        // A checkpoint naming a segment that no longer exists.
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.checkpoint_ignored, None);
        drop(store);
        let good = fs.map_file(&checkpoint).await.expect("read checkpoint");
        let segment = dir().join("seg-00000.dat");
        let saved = fs.map_file(&segment).await.expect("read segment");
        fs.remove(&segment).await.expect("remove segment");
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen without a segment");
        assert!(
            report
                .checkpoint_ignored
                .as_deref()
                .is_some_and(|r| r.contains("gone")),
            "{report:?}"
        );
        drop(store);
        // Put things back as they were: the checkpoint is trusted again.
        fs.write_file_atomic(&segment, &saved)
            .await
            .expect("restore segment");
        fs.write_file_atomic(&checkpoint, &good)
            .await
            .expect("restore checkpoint");
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.checkpoint_ignored, None);
        assert_exactly(&store, &all, &[]).await;
        store.close().await.expect("close");
    });
}

/// What the holdings say of `id`: (live, deleted, revived).
fn holding<F: StoreFs + 'static>(
    store: &ShardStore<F>,
    id: &stratum_wire::ObjectId,
) -> (bool, bool, bool) {
    let holdings = store.holdings();
    (
        holdings.is_live(id),
        holdings.is_deleted(id),
        holdings.is_revived(id),
    )
}

#[test]
fn holdings_survive_a_reopen_with_and_without_a_checkpoint() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all = objects(0..40);
        put_all(&store, &all).await;
        let (deleted, revived, dropped, never) = (all[0].0, all[1].0, all[2].0, object(999, 10).0);
        assert!(store.delete(deleted).await.expect("delete"));
        assert!(store.delete(revived).await.expect("delete"));
        put_all(&store, &all[1..2]).await;
        assert!(store.drop_copy(dropped).await.expect("drop"));
        // A delete of an object never held still leaves a tombstone.
        assert!(!store.delete(never).await.expect("delete"));
        let expect = |store: &ShardStore<SimFs>| {
            assert_eq!(holding(store, &deleted), (false, true, false));
            assert_eq!(holding(store, &revived), (true, false, true));
            assert_eq!(holding(store, &dropped), (false, false, false));
            assert_eq!(holding(store, &never), (false, true, false));
            assert_eq!(holding(store, &all[5].0), (true, false, false));
            assert_eq!(store.holdings().live_count(), 38);
        };
        expect(&store);
        store.close().await.expect("close");

        // From the checkpoint.
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.records, 0);
        expect(&store);
        assert!(store.get(&dropped).await.expect("get").is_none());
        store.close().await.expect("close");

        // From the records alone.
        fs.remove(&dir().join("index.ckpt")).await.expect("remove");
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert!(report.records > 0);
        expect(&store);
        store.close().await.expect("close");
    });
}

/// A put that finds its object's copy damaged writes a new one; a replay on
/// top of a checkpoint that still names the damaged copy must take the new
/// one (the later record), not keep serving the damaged. Found by the
/// cluster simulator: a replica acknowledged the put, lost power, and
/// served a corrupt copy after it came back.
#[test]
fn a_replacement_of_a_damaged_copy_survives_a_replay_over_a_checkpoint() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all = objects(0..20);
        put_all(&store, &all).await;
        assert_eq!(store.checkpoint().await.expect("checkpoint"), 20);

        // Bit rot in the body of one object's record.
        let (id, kind, content) = all[7].clone();
        let segment = fs
            .paths()
            .into_iter()
            .find(|path| path.to_string_lossy().ends_with(".dat"))
            .expect("a segment");
        let bytes = fs.read_range(&segment, 0, fs.file_len(&segment));
        let at = bytes
            .windows(content.len())
            .position(|window| window == content.as_slice())
            .expect("the object's bytes are in the segment");
        fs.flip_bit(&segment, at + content.len() / 2, 5);
        assert!(
            store.get(&id).await.is_err(),
            "the damaged copy is not served"
        );

        // The put replaces it; then the power goes.
        assert_eq!(
            store.put(id, kind, content.clone()).await.expect("put"),
            PutOutcome::Stored
        );
        drop(store);
        fs.power_loss();

        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        let object = store
            .get(&id)
            .await
            .expect("the replacement is served, not the damaged copy")
            .expect("present");
        let bytes = object.content(&store.dictionary_set()).expect("content");
        assert_eq!(bytes.as_ref(), content.as_slice());
        assert_exactly(&store, &all, &[]).await;
        store.close().await.expect("close");
    });
}
