//! The shard store on the real DMA path (glommio, O_DIRECT) in a temp dir.

mod common;

use common::{object, on_executor, ring_fs};
use stratum_node::store::fs::SyncMethod;
use stratum_node::store::{PutOutcome, ShardStore, StoreConfig, StoreError};
use stratum_wire::ObjectKind;

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    config.segment_bytes = 4 << 20;
    config.max_object_bytes = 1 << 20;
    config.cache_bytes = 1 << 20;
    config
}

#[test]
fn put_get_has_delete_and_survive_reopen() {
    // The default (O_DSYNC files), reopened the other way: the sync method
    // changes how writes reach the disk, not what is on it.
    put_get_has_delete_and_survive_reopen_with(SyncMethod::Dsync, SyncMethod::Fdatasync);
}

#[test]
fn put_get_has_delete_and_survive_reopen_with_fdatasync() {
    put_get_has_delete_and_survive_reopen_with(SyncMethod::Fdatasync, SyncMethod::Dsync);
}

fn put_get_has_delete_and_survive_reopen_with(first: SyncMethod, then: SyncMethod) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shard-0");
    on_executor(move || async move {
        let fs = ring_fs(dir.path()).with_sync_method(first);
        let (store, report) = ShardStore::open(fs, &path, config())
            .await
            .expect("open new");
        assert_eq!(report.objects, 0);
        let objects: Vec<_> = (0..300u64)
            .map(|i| object(i, (i as usize * 37) % 9000))
            .collect();
        for (id, kind, content) in &objects {
            let outcome = store.put(*id, *kind, content.clone()).await.expect("put");
            assert_eq!(outcome, PutOutcome::Stored);
        }
        let (id0, kind0, content0) = &objects[0];
        assert_eq!(
            store
                .put(*id0, *kind0, content0.clone())
                .await
                .expect("re-put"),
            PutOutcome::AlreadyPresent
        );
        for (id, kind, content) in &objects {
            let got = store.get(id).await.expect("get").expect("present");
            assert_eq!(got.kind, *kind);
            assert!(
                *got.content(&Default::default()).expect("inflates") == content[..],
                "{id}: wrong bytes"
            );
            assert!(store.has(id).await.expect("has"));
        }
        assert!(store.delete(objects[1].0).await.expect("delete"));
        assert!(!store.delete(objects[1].0).await.expect("delete again"));
        assert!(store
            .get(&objects[1].0)
            .await
            .expect("get deleted")
            .is_none());
        let stats = store.stats();
        assert_eq!(stats.objects, 299);
        assert!(stats.group_commits >= 1);
        store.close().await.expect("close");

        // Reopen: everything acknowledged is there, the delete held.
        let fs = ring_fs(dir.path()).with_sync_method(then);
        let (store, report) = ShardStore::open(fs, &path, config()).await.expect("reopen");
        assert_eq!(report.objects, 299);
        assert_eq!(report.torn_tail_bytes, 0);
        assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
        for (i, (id, kind, content)) in objects.iter().enumerate() {
            let got = store.get(id).await.expect("get after reopen");
            if i == 1 {
                assert!(got.is_none());
            } else {
                let got = got.expect("present after reopen");
                assert!(
                    got.kind == *kind
                        && *got.content(&Default::default()).expect("inflates") == content[..],
                    "{id}: wrong bytes served"
                );
            }
        }
        // A re-put after delete comes back.
        let (id1, kind1, content1) = &objects[1];
        assert_eq!(
            store
                .put(*id1, *kind1, content1.clone())
                .await
                .expect("put again"),
            PutOutcome::Stored
        );
        store.close().await.expect("close");
    });
}

#[test]
fn concurrent_puts_share_group_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shard");
    on_executor(move || async move {
        let (store, _) = ShardStore::open(ring_fs(dir.path()), &path, config())
            .await
            .expect("open");
        let store = std::rc::Rc::new(store);
        let mut tasks = Vec::new();
        for i in 0..256u64 {
            let store = std::rc::Rc::clone(&store);
            tasks.push(glommio::spawn_local(async move {
                let (id, kind, content) = object(10_000 + i, 1000);
                store.put(id, kind, content).await.expect("put")
            }));
        }
        for task in tasks {
            assert_eq!(task.await, PutOutcome::Stored);
        }
        let stats = store.stats();
        assert_eq!(stats.puts_stored, 256);
        assert!(
            stats.group_commits < 256,
            "256 concurrent puts took {} commits: no batching",
            stats.group_commits
        );
        // Same id from many writers at once: stored once.
        let (id, kind, content) = object(99, 500);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = std::rc::Rc::clone(&store);
            let content = content.clone();
            tasks.push(glommio::spawn_local(async move {
                store.put(id, kind, content).await.expect("put")
            }));
        }
        let mut stored = 0;
        for task in tasks {
            if task.await == PutOutcome::Stored {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);
        let store = std::rc::Rc::try_unwrap(store).ok().expect("sole owner");
        store.close().await.expect("close");
    });
}

#[test]
fn refuses_bad_input_with_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shard");
    on_executor(move || async move {
        let (store, _) = ShardStore::open(ring_fs(dir.path()), &path, config())
            .await
            .expect("open");
        let (id, _, content) = object(1, 100);
        let wrong_kind = if store.get(&id).await.is_ok() {
            ObjectKind::Tag
        } else {
            ObjectKind::Blob
        };
        let err = store
            .put(id, wrong_kind, content)
            .await
            .expect_err("wrong hash");
        assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
        let big = vec![0u8; (1 << 20) + 1];
        let big_id = stratum_wire::ObjectId::compute(ObjectKind::Blob, &big);
        let err = store
            .put(big_id, ObjectKind::Blob, big)
            .await
            .expect_err("too large");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        store.close().await.expect("close");

        // Opening the same shard as if the node had another shard count.
        let err = ShardStore::open(
            ring_fs(dir.path()),
            &path,
            StoreConfig {
                shard_count: 2,
                ..config()
            },
        )
        .await
        .err()
        .expect("shard count mismatch refused");
        assert!(
            matches!(
                err,
                StoreError::ShardMismatch {
                    found_count: 1,
                    expected_count: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("refusing to misplace data"));
    });
}

#[test]
fn segments_rotate_and_large_objects_span_device_io_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shard");
    on_executor(move || async move {
        // A small device I/O limit forces split reads and writes.
        let fs = ring_fs(dir.path()).with_max_io(64 << 10);
        let (store, _) = ShardStore::open(fs.clone(), &path, config())
            .await
            .expect("open");
        let objects: Vec<_> = (0..24u64)
            .map(|i| object(500 + i, 300_000 + i as usize))
            .collect();
        for (id, kind, content) in &objects {
            store.put(*id, *kind, content.clone()).await.expect("put");
        }
        assert!(store.stats().segments >= 2, "{:?}", store.stats());
        store.close().await.expect("close");
        let (store, report) = ShardStore::open(fs, &path, config()).await.expect("reopen");
        assert_eq!(report.objects, 24);
        for (id, _, content) in &objects {
            let got = store.get(id).await.expect("get").expect("present");
            assert!(
                *got.content(&Default::default()).expect("inflates") == content[..],
                "{id}: wrong bytes"
            );
        }
        store.close().await.expect("close");
    });
}
