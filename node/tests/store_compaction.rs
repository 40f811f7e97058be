//! Compaction reclaims space without losing, duplicating or resurrecting
//! anything, whenever it is interrupted.

mod common;

use std::path::PathBuf;

use common::sim_fs::{Faults, SimFs};
use common::{assert_exactly, object, on_executor, put_all, Obj};
use stratum_node::store::fs::StoreFs;
use stratum_node::store::{ShardStore, StoreConfig};

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    config.segment_bytes = 32 << 10; // ~25 objects per segment
    config.max_object_bytes = 8 << 10;
    config.max_batch_bytes = 8 << 10;
    config.cache_bytes = 0;
    config
}

fn dir() -> PathBuf {
    PathBuf::from("/sim/shard-0")
}

fn objects(range: std::ops::Range<u64>) -> Vec<Obj> {
    range.map(|i| object(i, 900 + (i as usize % 200))).collect()
}

/// Opens (optionally forcing a full replay) and checks the exact contents.
async fn reopen_and_check(fs: &SimFs, present: &[Obj], absent: &[Obj], full_replay: bool) {
    if full_replay {
        let _ = fs.remove(&dir().join("index.ckpt")).await;
    }
    let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
        .await
        .expect("reopen");
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    assert_exactly(&store, present, absent).await;
    store.close().await.expect("close");
}

#[test]
fn compaction_reclaims_space_and_keeps_everything_live() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let all = objects(0..300);
        put_all(&store, &all).await;
        let (dead, live): (Vec<Obj>, Vec<Obj>) = all.iter().cloned().enumerate().fold(
            (Vec::new(), Vec::new()),
            |(mut dead, mut live), (i, obj)| {
                if i % 3 == 0 {
                    live.push(obj)
                } else {
                    dead.push(obj)
                }
                (dead, live)
            },
        );
        for (id, _, _) in &dead {
            assert!(store.delete(*id).await.expect("delete"));
        }
        let before = store.stats();
        let report = store.compact(0.5).await.expect("compact");
        let after = store.stats();
        assert!(report.segments_removed >= 5, "{report:?}");
        assert!(
            after.disk_bytes < before.disk_bytes / 2,
            "{before:?} -> {after:?}"
        );
        assert_eq!(after.objects, live.len() as u64);
        for (id, _, content) in &live {
            assert!(
                *store
                    .get(id)
                    .await
                    .expect("get")
                    .expect("live")
                    .content(&Default::default())
                    .expect("inflates")
                    == content[..]
            );
        }
        store.close().await.expect("close");
        reopen_and_check(&fs, &live, &dead, false).await;
        reopen_and_check(&fs, &live, &dead, true).await;
    });
}

/// X is put into a segment kept alive by other objects, then deleted; its
/// tombstone lands in a segment that becomes mostly dead and is compacted.
/// The tombstone must be carried forward, or a full replay resurrects X.
#[test]
fn tombstones_survive_while_an_older_segment_holds_the_object() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let keepers = objects(0..40); // segment A (and B), stay live
        put_all(&store, &keepers).await;
        let x = object(9_999, 1000);
        store.put(x.0, x.1, x.2.clone()).await.expect("put x");
        let fillers = objects(1000..1100); // later segments, all deleted
        put_all(&store, &fillers).await;
        assert!(store.delete(x.0).await.expect("delete x"));
        for (id, _, _) in &fillers {
            store.delete(*id).await.expect("delete filler");
        }
        let more = objects(2000..2030); // move the writer on
        put_all(&store, &more).await;
        let report = store.compact(0.6).await.expect("compact");
        assert!(report.segments_removed >= 1, "{report:?}");
        store.close().await.expect("close");
        let mut present = keepers.clone();
        present.extend(more.iter().cloned());
        let mut absent = fillers.clone();
        absent.push(x);
        reopen_and_check(&fs, &present, &absent, true).await;
    });
}

/// X put, deleted, put again; the segment with the tombstone is compacted.
/// Copying that tombstone forward would delete the re-put on replay.
#[test]
fn a_reput_after_delete_is_never_deleted_by_compaction() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let keepers = objects(0..40);
        put_all(&store, &keepers).await;
        let x = object(7_777, 1000);
        store.put(x.0, x.1, x.2.clone()).await.expect("put x");
        let fillers = objects(1000..1100);
        put_all(&store, &fillers).await;
        assert!(store.delete(x.0).await.expect("delete x"));
        for (id, _, _) in &fillers {
            store.delete(*id).await.expect("delete filler");
        }
        assert_eq!(
            store.put(x.0, x.1, x.2.clone()).await.expect("re-put x"),
            stratum_node::store::PutOutcome::Stored
        );
        let more = objects(2000..2030);
        put_all(&store, &more).await;
        store.compact(0.6).await.expect("compact");
        store.close().await.expect("close");
        let mut present = keepers.clone();
        present.extend(more.iter().cloned());
        present.push(x);
        reopen_and_check(&fs, &present, &fillers, true).await;
    });
}

fn mostly_dead_store() -> (Vec<Obj>, Vec<Obj>) {
    let all = objects(0..200);
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for (i, obj) in all.into_iter().enumerate() {
        if i % 4 == 0 {
            live.push(obj)
        } else {
            dead.push(obj)
        }
    }
    (live, dead)
}

#[test]
fn a_crash_during_or_after_the_copies_loses_and_duplicates_nothing() {
    for fault in ["torn copy", "unlink fails"] {
        on_executor(move || async move {
            let fs = SimFs::new();
            let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
                .await
                .expect("open");
            let (live, dead) = mostly_dead_store();
            let mut all = live.clone();
            all.extend(dead.iter().cloned());
            put_all(&store, &all).await;
            for (id, _, _) in &dead {
                store.delete(*id).await.expect("delete");
            }
            fs.set_faults(match fault {
                "torn copy" => Faults {
                    torn_write: Some(700),
                    ..Faults::default()
                },
                _ => Faults {
                    remove_eio: true,
                    ..Faults::default()
                },
            });
            let result = store.compact(0.5).await;
            assert!(
                result.is_err(),
                "{fault}: compaction should fail: {result:?}"
            );
            drop(store); // the process dies
            fs.power_loss();
            reopen_and_check(&fs, &live, &dead, true).await;
            reopen_and_check(&fs, &live, &dead, false).await;
        });
    }
}

#[test]
fn deletes_racing_compaction_stay_deleted() {
    on_executor(|| async {
        let fs = SimFs::new();
        let (store, _) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open");
        let store = std::rc::Rc::new(store);
        let (live, dead) = mostly_dead_store();
        let mut all = live.clone();
        all.extend(dead.iter().cloned());
        put_all(&store, &all).await;
        for (id, _, _) in &dead {
            store.delete(*id).await.expect("delete");
        }
        // Delete half of the survivors while compaction copies them.
        let (doomed, kept) = live.split_at(live.len() / 2);
        let deleter = {
            let store = std::rc::Rc::clone(&store);
            let doomed = doomed.to_vec();
            glommio::spawn_local(async move {
                for (id, _, _) in &doomed {
                    store.delete(*id).await.expect("racing delete");
                    glommio::yield_if_needed().await;
                }
            })
        };
        store.compact(0.5).await.expect("compact");
        deleter.await;
        let store = std::rc::Rc::try_unwrap(store).ok().expect("sole owner");
        store.close().await.expect("close");
        let mut absent = dead.clone();
        absent.extend(doomed.iter().cloned());
        reopen_and_check(&fs, kept, &absent, true).await;
    });
}
