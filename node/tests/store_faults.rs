//! Faults below the store, injected through the `StoreFs` seam. For each:
//! every acknowledged object survives (or the shard fails stop), and nothing
//! corrupt is ever returned as good. The matrix is in ARCHITECTURE.md.

mod common;

use std::path::PathBuf;

use common::sim_fs::{Faults, SimFs};
use common::{assert_present, object, on_executor, put_all, Obj};
use stratum_node::store::{PutOutcome, ShardStore, StoreConfig, StoreError, Verified, WriteMode};

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    config.segment_bytes = 1 << 20;
    config.max_object_bytes = 256 << 10;
    config.max_batch_bytes = 64 << 10;
    config.cache_bytes = 0; // every get reads the (faulty) disk
    config
}

fn dir() -> PathBuf {
    PathBuf::from("/sim/shard-0")
}

async fn open(fs: &SimFs) -> ShardStore<SimFs> {
    ShardStore::open(fs.clone(), &dir(), config())
        .await
        .expect("open")
        .0
}

/// Reopens after a power loss and checks every acknowledged object is there
/// and byte-identical, and that nothing that was not acknowledged is served
/// damaged.
async fn assert_survived(fs: &SimFs, acknowledged: &[Obj], maybe: &[Obj]) {
    fs.power_loss();
    let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
        .await
        .expect("reopen after power loss");
    assert_present(&store, acknowledged).await;
    for (id, kind, content) in maybe {
        if let Some(got) = store.get(id).await.expect("get unacknowledged") {
            assert!(
                got.kind == *kind
                    && *got.content(&Default::default()).expect("inflates") == content[..],
                "{id}: wrong bytes served"
            );
        }
    }
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    // The shard takes writes again after recovery.
    let (id, kind, content) = object(999_999, 100);
    store
        .put(id, kind, content)
        .await
        .expect("put after recovery");
    store.close().await.expect("close");
}

fn objects(range: std::ops::Range<u64>, len: usize) -> Vec<Obj> {
    range.map(|i| object(i, len + i as usize % 700)).collect()
}

/// A disk of either kind: files opened write-through (`O_DSYNC`, the
/// default sync method) or written and then fdatasync'd.
fn disk(write_through: bool) -> SimFs {
    if write_through {
        SimFs::write_through()
    } else {
        SimFs::new()
    }
}

#[test]
fn torn_last_write() {
    for (write_through, prefix) in [false, true]
        .into_iter()
        .flat_map(|mode| [0usize, 1, 100, 511, 512, 1000, 4096].map(|prefix| (mode, prefix)))
    {
        on_executor(move || async move {
            let fs = disk(write_through);
            let store = open(&fs).await;
            let acked = objects(0..40, 900);
            put_all(&store, &acked).await;
            let in_flight = objects(100..101, 3000);
            fs.set_faults(Faults {
                torn_write: Some(prefix),
                ..Faults::default()
            });
            let (id, kind, content) = in_flight[0].clone();
            let err = store
                .put(id, kind, content)
                .await
                .expect_err("torn write not acknowledged");
            assert!(matches!(err, StoreError::Failed { .. }), "{err}");
            assert!(matches!(store.write_mode(), WriteMode::Failed(_)));
            drop(store); // the process dies
            assert_survived(&fs, &acked, &in_flight).await;
        });
    }
}

#[test]
fn power_loss_drops_only_what_was_never_synced() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let acked = objects(0..60, 2000);
        put_all(&store, &acked).await;
        // The next batch is written but its fdatasync fails: not acknowledged.
        let unsynced = objects(200..201, 5000);
        fs.set_faults(Faults {
            fdatasync_eio: true,
            ..Faults::default()
        });
        let (id, kind, content) = unsynced[0].clone();
        assert!(store.put(id, kind, content).await.is_err());
        drop(store);
        assert_survived(&fs, &acked, &unsynced).await;
    });
}

/// Write-through files: a batch is durable when its writes complete, so no
/// fdatasync is issued for it, and every acknowledged put survives a power
/// loss. (The same puts on an fdatasync disk issue one per batch; without
/// them the power loss would take the objects, as the test above shows.)
#[test]
fn write_through_batches_are_durable_without_fdatasync() {
    for write_through in [true, false] {
        on_executor(move || async move {
            let fs = disk(write_through);
            let store = open(&fs).await;
            // The first put starts a segment (its header is synced either way).
            let first = objects(0..1, 900);
            put_all(&store, &first).await;
            let before = fs.fdatasyncs();
            let acked = objects(1..80, 900);
            futures_util::future::join_all(
                acked
                    .iter()
                    .map(|(id, kind, content)| store.put(*id, *kind, content.clone())),
            )
            .await
            .into_iter()
            .for_each(|result| {
                result.expect("put");
            });
            let issued = fs.fdatasyncs() - before;
            if write_through {
                assert_eq!(issued, 0, "a write-through batch issued fdatasync");
            } else {
                assert!(issued > 0, "an fdatasync disk's batches were never synced");
            }
            drop(store); // the process dies, then the power goes
            let all: Vec<Obj> = first.iter().chain(&acked).cloned().collect();
            assert_survived(&fs, &all, &[]).await;
        });
    }
}

/// A failed sync: the put is not acknowledged and says which step failed,
/// the shard fails stop for writes and never retries (it stays failed once
/// the fault is gone), reads go on, and every acknowledged object survives.
fn a_failed_sync_fails_stop(write_through: bool, fault: Faults, says: &'static str) {
    on_executor(move || async move {
        let fs = disk(write_through);
        let store = open(&fs).await;
        let acked = objects(0..20, 500);
        put_all(&store, &acked).await;
        fs.set_faults(fault);
        let (id, kind, content) = object(300, 700);
        let err = store
            .put(id, kind, content.clone())
            .await
            .expect_err("not acknowledged");
        assert!(err.to_string().contains(says), "{err}");
        fs.set_faults(Faults::default());
        let err = store
            .put(id, kind, content)
            .await
            .expect_err("still failed");
        assert!(matches!(err, StoreError::Failed { .. }), "{err}");
        assert_present(&store, &acked).await;
        drop(store);
        assert_survived(&fs, &acked, &[]).await;
    });
}

#[test]
fn fdatasync_eio_fails_stop_for_writes_but_reads_go_on() {
    let fault = Faults {
        fdatasync_eio: true,
        ..Faults::default()
    };
    a_failed_sync_fails_stop(false, fault, "fdatasync");
}

/// On a write-through file a failed sync is a failed write.
#[test]
fn write_through_write_eio_fails_stop() {
    let fault = Faults {
        write_errno: Some(5),
        ..Faults::default()
    };
    a_failed_sync_fails_stop(true, fault, "write to");
}

#[test]
fn enospc_makes_the_shard_read_only_and_says_why() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let acked = objects(0..20, 500);
        put_all(&store, &acked).await;
        fs.set_faults(Faults {
            write_errno: Some(28),
            ..Faults::default()
        });
        let (id, kind, content) = object(400, 700);
        let err = store.put(id, kind, content).await.expect_err("no space");
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
        assert!(err.to_string().contains("ENOSPC"), "{err}");
        assert!(matches!(store.write_mode(), WriteMode::ReadOnly(_)));
        assert_present(&store, &acked).await;
        drop(store);
        assert_survived(&fs, &acked, &[]).await;
    });
}

#[test]
fn a_full_disk_still_takes_deletes_and_writes_resume_once_space_is_back() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let acked = objects(0..20, 500);
        put_all(&store, &acked).await;
        // Full: nothing can grow a file any more.
        fs.set_faults(Faults {
            no_space: true,
            ..Faults::default()
        });
        // Puts fill the space the writer prepared, then one needs more.
        let mut refused = None;
        for seed in 0..20 {
            let (id, kind, content) = object(400 + seed, 200 << 10);
            if let Err(err) = store.put(id, kind, content).await {
                refused = Some(err);
                break;
            }
        }
        let err = refused.expect("the disk never filled");
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
        // Deletes go on (a tombstone lands in space the writer prepared).
        assert!(store
            .delete(acked[0].0)
            .await
            .expect("delete on a full disk"));
        assert!(store.get(&acked[0].0).await.expect("get").is_none());
        // Still full: puts are refused and the shard stays read-only.
        assert!(!store.try_resume().await);
        let (small, kind, content) = object(501, 100);
        assert!(store.put(small, kind, content.clone()).await.is_err());
        // Space is back: writes resume without a restart.
        fs.set_faults(Faults::default());
        assert!(store.try_resume().await);
        assert!(matches!(store.write_mode(), WriteMode::Writable));
        store
            .put(small, kind, content)
            .await
            .expect("put after resume");
        assert_present(&store, &acked[1..]).await;
        drop(store);
        assert_survived(&fs, &acked[1..], &[object(501, 100)]).await;
    });
}

#[test]
fn eio_short_and_misdirected_reads_never_return_a_good_object() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let acked = objects(0..30, 1500);
        put_all(&store, &acked).await;
        for faults in [
            Faults {
                read_eio: true,
                ..Faults::default()
            },
            Faults {
                short_reads: true,
                ..Faults::default()
            },
            Faults {
                misdirect_reads: Some(4096),
                ..Faults::default()
            },
            Faults {
                misdirect_reads: Some(8),
                ..Faults::default()
            },
        ] {
            fs.set_faults(faults.clone());
            for (id, _, content) in &acked {
                match store.get(id).await {
                    Ok(Some(got)) => {
                        // Only acceptable if the bytes really are the object.
                        assert!(
                            *got.content(&Default::default()).expect("inflates") == content[..],
                            "{faults:?} served wrong bytes for {id}"
                        );
                    }
                    Ok(None) => {
                        // A misdirected header read may not find the id: the
                        // object is reported missing, never served wrong.
                    }
                    Err(StoreError::Io { .. } | StoreError::Corrupt { .. }) => {}
                    Err(other) => panic!("{faults:?}: unexpected {other}"),
                }
            }
        }
        fs.set_faults(Faults::default());
        assert_present(&store, &acked).await;
        store.close().await.expect("close");
    });
}

fn segment_paths(fs: &SimFs) -> Vec<PathBuf> {
    fs.paths()
        .into_iter()
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect()
}

/// End of the records in the (single) segment: the file itself may run on
/// with zeroed space the writer prepared.
fn data_end<F: stratum_node::store::fs::StoreFs + 'static>(store: &ShardStore<F>) -> usize {
    store.stats().disk_bytes as usize
}

#[test]
fn bit_flips_are_quarantined_and_everything_else_served() {
    // Flip one bit inside each of several records; the store opens, serves
    // every other object intact, and reports each damaged one.
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..50, 800);
        put_all(&store, &all).await;
        // Where the records end (the file runs on with prepared zeros).
        let len = data_end(&store);
        store.close().await.expect("close");
        let segment = segment_paths(&fs).remove(0);
        // Positions spread over the data, past the 4096-byte segment header.
        let positions: Vec<usize> = (1..6).map(|i| 4096 + (len - 4096) * i / 6).collect();
        for (n, position) in positions.iter().enumerate() {
            fs.flip_bit(&segment, *position, (n % 8) as u8);
        }
        // Recovery's own handling of damage is under test, so replay every
        // record: with the clean close's checkpoint the damaged range would
        // not be re-read at open (reads and scrub refuse it instead; see
        // `content_damaged_while_running_is_refused_on_read`).
        use stratum_node::store::fs::StoreFs;
        fs.remove(&dir().join("index.ckpt"))
            .await
            .expect("drop checkpoint");
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("open damaged");
        assert!(!report.quarantined.is_empty(), "damage not reported");
        let mut served = 0;
        let mut refused = 0;
        for (id, kind, content) in &all {
            match store.get(id).await {
                Ok(Some(got)) => {
                    assert!(
                        got.kind == *kind
                            && *got.content(&Default::default()).expect("inflates") == content[..],
                        "{id}: wrong bytes served"
                    );
                    served += 1;
                }
                Ok(None) | Err(StoreError::Corrupt { .. }) => refused += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(
            refused >= 1 && refused <= positions.len(),
            "{refused} refused"
        );
        assert_eq!(served + refused, all.len());
        store.close().await.expect("close");
    });
}

#[test]
fn a_shard_without_a_superblock_but_with_segments_is_refused() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        put_all(&store, &objects(0..3, 100)).await;
        store.close().await.expect("close");
        use stratum_node::store::fs::StoreFs;
        fs.remove(&dir().join("superblock")).await.expect("remove");
        let err = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, StoreError::BadSuperblock { .. }), "{err}");
    });
}

#[test]
fn every_write_is_block_aligned() {
    // SimFs fails unaligned writes with EINVAL, as O_DIRECT does; a whole
    // workload of odd sizes must never hit that.
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let odd: Vec<Obj> = (0..200u64)
            .map(|i| object(7000 + i, (i as usize * 97) % 5000 + 1))
            .collect();
        put_all(&store, &odd).await;
        for (id, _, _) in odd.iter().step_by(3) {
            assert!(store.delete(*id).await.expect("delete"));
        }
        assert!(matches!(store.write_mode(), WriteMode::Writable));
        store.close().await.expect("close");
    });
}

#[test]
fn content_damaged_while_running_is_refused_on_read() {
    // Media corruption after open: the index still points at the record, so
    // only the read path's own checks stand between the damage and a client.
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..20, 3000);
        put_all(&store, &all).await;
        let segment = segment_paths(&fs).remove(0);
        let len = data_end(&store);
        for bit in 0..8u8 {
            // Block starts hold record headers; aim 1000 bytes in, at content.
            let position = 4096 + (len - 4096) * (usize::from(bit) + 1) / 10 + 1000;
            fs.flip_bit(&segment, position, bit);
        }
        let mut refused = 0;
        for (id, kind, content) in &all {
            match store.get(id).await {
                Ok(Some(got)) => assert!(
                    got.kind == *kind
                        && *got.content(&Default::default()).expect("inflates") == content[..],
                    "{id}: wrong bytes served"
                ),
                Ok(None) => panic!("{id} vanished"),
                Err(StoreError::Corrupt { .. }) => refused += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(refused >= 1, "no damaged object was detected");
        assert!(store.stats().corrupt_reads >= 1);
        store.close().await.expect("close");
    });
}

#[test]
fn scrub_finds_damage_unindexes_it_and_a_fresh_put_heals() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..20, 3000);
        put_all(&store, &all).await;
        let clean = store.scrub(0).await.expect("scrub");
        assert_eq!(clean.records_checked, 20);
        assert!(clean.findings.is_empty(), "{:?}", clean.findings);

        let segment = segment_paths(&fs).remove(0);
        let len = data_end(&store);
        for bit in 0..3u8 {
            let position = 4096 + (len - 4096) * (usize::from(bit) + 1) / 5 + 1000;
            fs.flip_bit(&segment, position, bit);
        }
        let report = store.scrub(0).await.expect("scrub");
        assert!(!report.findings.is_empty());
        assert!(report.findings.iter().all(|finding| finding.unindexed));
        assert_eq!(store.stats().objects, 20 - report.findings.len() as u64);
        // Damaged objects now read as missing, and a put stores them afresh.
        for finding in &report.findings {
            let id = finding.id.expect("header was intact");
            assert!(store.get(&id).await.expect("get").is_none());
            let (_, kind, content) = all
                .iter()
                .find(|(oid, _, _)| *oid == id)
                .expect("known")
                .clone();
            assert_eq!(
                store.put(id, kind, content.clone()).await.expect("re-put"),
                stratum_node::store::PutOutcome::Stored
            );
            let got = store.get(&id).await.expect("get").expect("healed");
            assert!(*got.content(&Default::default()).expect("inflates") == content[..]);
        }
        let after = store.scrub(0).await.expect("scrub");
        assert!(after.findings.is_empty());
        store.close().await.expect("close");
    });
}

#[test]
fn a_damaged_length_field_is_unindexed_by_scrub_not_taken_for_a_short_read() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..5, 3000);
        put_all(&store, &all).await;
        let segment = segment_paths(&fs).remove(0);
        // The first record starts after the 4096-byte segment header; its
        // content length is bytes 8..12. A high bit makes it claim far more
        // than the record the index knows.
        fs.flip_bit(&segment, 4096 + 10, 4);
        let report = store.scrub(0).await.expect("scrub");
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(
            report.findings[0].unindexed,
            "taken for a transient short read"
        );
        let id = report.findings[0]
            .id
            .expect("the header still names its object");
        assert!(
            !store.holdings().is_live(&id),
            "repair would not fetch it again"
        );
        assert!(store.get(&id).await.expect("get").is_none());
        store.close().await.expect("close");
    });
}

/// Found by the cluster simulator (seed 80): a flipped bit in a record's
/// id made scrub forget the id the header now claims, not the object the
/// index entry was for. The shard kept listing the object as held, so
/// anti-entropy never fetched it again, and the replica stayed without it.
#[test]
fn a_damaged_id_in_a_header_is_forgotten_by_its_index_key() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..5, 3000);
        put_all(&store, &all).await;
        let segment = segment_paths(&fs).remove(0);
        // The first record's full id is header bytes 16..48.
        fs.flip_bit(&segment, 4096 + 20, 2);
        let report = store.scrub(0).await.expect("scrub");
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(report.findings[0].unindexed);
        let damaged: Vec<_> = all
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| !store.holdings().is_live(id))
            .collect();
        assert_eq!(
            damaged.len(),
            1,
            "exactly the damaged object is no longer held"
        );
        assert_ne!(
            report.findings[0].id,
            Some(damaged[0]),
            "the header's id was damaged"
        );
        assert!(store.get(&damaged[0]).await.expect("get").is_none());
        store.close().await.expect("close");
    });
}

#[test]
fn scrub_honours_its_rate_limit() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        put_all(&store, &objects(0..10, 10_000)).await;
        // ~100 KB of records at 500 KB/s: at least ~0.15 s, however fast the disk.
        let report = store.scrub(500_000).await.expect("scrub");
        let floor = report.bytes_checked as f64 / 500_000.0 * 0.9;
        assert!(
            report.elapsed.as_secs_f64() >= floor,
            "{:?} for {} bytes",
            report.elapsed,
            report.bytes_checked
        );
        store.close().await.expect("close");
    });
}

/// Prepared space (zeros the writer wrote ahead of small batches) is neither
/// a torn tail nor damage: a crash or a clean close keeps it, the reopened
/// store writes into it, and a torn write inside it is cut like any torn
/// tail.
#[test]
fn prepared_space_survives_crashes_and_torn_writes_inside_it_are_cut() {
    for write_through in [false, true] {
        prepared_space_case(write_through);
    }
}

fn prepared_space_case(write_through: bool) {
    on_executor(move || async move {
        let fs = disk(write_through);
        let store = open(&fs).await;
        let first = objects(0..30, 700);
        put_all(&store, &first).await;
        let segment = segment_paths(&fs).remove(0);
        let data_end = data_end(&store);
        assert!(
            fs.file_len(&segment) > data_end,
            "small batches should have prepared zeroed space past the data"
        );
        drop(store); // crash, no checkpoint
        fs.power_loss();
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(
            report.torn_tail_bytes, 0,
            "prepared zeros taken for a torn tail"
        );
        assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
        assert_present(&store, &first).await;
        // New writes land in the prepared space: the file does not grow.
        let len_before = fs.file_len(&segment);
        let second = objects(100..110, 300);
        put_all(&store, &second).await;
        assert_eq!(fs.file_len(&segment), len_before);

        // A torn write inside the prepared space: the next put's bytes only
        // partly reach the disk and its sync never happens.
        fs.set_faults(Faults {
            torn_write: Some(700),
            ..Faults::default()
        });
        let torn = objects(200..201, 3000);
        let (id, kind, content) = torn[0].clone();
        assert!(store.put(id, kind, content).await.is_err());
        drop(store);
        fs.set_faults(Faults::default());
        let acked: Vec<Obj> = first.iter().chain(&second).cloned().collect();
        assert_survived(&fs, &acked, &torn).await;
    });
}

/// Closed segments end at their last record (rotation releases the
/// prepared zeros), and a large batch appends without zeroing ahead (with
/// space to spare: it keeps a reserve for deletes only when space runs low).
#[test]
fn rotation_releases_prepared_space_and_large_batches_do_not_prepare() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        // 1 MiB segments: ~1.2 MiB of small objects forces a rotation.
        let small = objects(0..1500, 800);
        put_all(&store, &small).await;
        let mut segments = segment_paths(&fs);
        segments.sort();
        assert!(segments.len() >= 2, "no rotation happened");
        let closed = &segments[0];
        let len = fs.file_len(closed);
        // The closed segment's length is a block multiple holding only data:
        // its last 4 KiB block is not all zeros.
        let tail = fs.read_range(closed, len - 4096, 4096);
        assert!(
            tail.iter().any(|byte| *byte != 0),
            "closed segment kept zeros"
        );
        store.close().await.expect("close");

        let fs = SimFs::new();
        let mut large_config = config();
        large_config.max_object_bytes = 512 << 10;
        large_config.segment_bytes = 4 << 20;
        let (store, _) = ShardStore::open(fs.clone(), &dir(), large_config)
            .await
            .expect("open");
        let large = objects(5000..5001, 300 << 10);
        put_all(&store, &large).await;
        let segment = segment_paths(&fs).remove(0);
        assert_eq!(
            fs.file_len(&segment),
            data_end(&store),
            "a large batch zeroed ahead"
        );
        assert_present(&store, &large).await;
        store.close().await.expect("close");
    });
}

/// A get that finds an object damaged on the media reports it (every time:
/// it is never served), and a re-put of the object (read repair) stores a
/// good copy instead of deduplicating against the bad one; the index moves
/// to the good copy, and it survives a reopen.
#[test]
fn a_re_put_replaces_a_damaged_copy() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..10, 3000);
        put_all(&store, &all).await;
        let segment = segment_paths(&fs).remove(0);
        // Flip a content bit of the first record (header 4096 + 48 + 100).
        fs.flip_bit(&segment, 4096 + 48 + 100, 3);
        let (id, kind, content) = all[0].clone();
        for _ in 0..2 {
            assert!(matches!(
                store.get(&id).await,
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert_eq!(
            store.put(id, kind, content.clone()).await.expect("re-put"),
            stratum_node::store::PutOutcome::Stored,
            "the re-put deduplicated against the damaged record"
        );
        // And once healed, a further put deduplicates again.
        assert_eq!(
            store.put(id, kind, content).await.expect("re-put"),
            stratum_node::store::PutOutcome::AlreadyPresent
        );
        assert_present(&store, &all).await;
        assert_eq!(store.stats().objects, 10);
        store.close().await.expect("close");
        // Full replay: the damaged record is quarantined, the good copy wins.
        use stratum_node::store::fs::StoreFs;
        fs.remove(&dir().join("index.ckpt"))
            .await
            .expect("drop checkpoint");
        let (store, report) = ShardStore::open(fs.clone(), &dir(), config())
            .await
            .expect("reopen");
        assert_eq!(report.quarantined.len(), 1, "{:?}", report.quarantined);
        assert_present(&store, &all).await;
        store.close().await.expect("close");
    });
}

/// A copy that is not a client's write is refused over a tombstone, and the
/// writer decides it in order with deletes: a delete queued just before the
/// copy (same batch) refuses it too. The cluster simulator (seed 111) found
/// the race when the check was made before the write was queued: a delete
/// landed in between and a replayed hint's copy undid it.
#[test]
fn a_copy_never_lands_over_a_delete_queued_before_it() {
    on_executor(|| async {
        let fs = SimFs::new();
        let store = open(&fs).await;
        let all = objects(0..3, 500);
        put_all(&store, &all[1..]).await;
        // A delete of an object this shard never held (it leaves a
        // tombstone) and a copy of it arriving at once.
        let (id, kind, content) = all[0].clone();
        let copy = Verified::check(id, kind, content.clone()).expect("verified");
        let (deleted, copied) =
            futures_lite::future::zip(store.delete(id), store.put_unless_deleted(copy)).await;
        assert!(!deleted.expect("delete"), "nothing was held");
        assert_eq!(copied.expect("copy"), PutOutcome::Deleted);
        assert!(store.get(&id).await.expect("get").is_none());
        assert!(store.holdings().is_deleted(&id));

        // Later, still refused; a client's put revives it.
        let copy = Verified::check(id, kind, content.clone()).expect("verified");
        assert_eq!(
            store.put_unless_deleted(copy).await.expect("copy"),
            PutOutcome::Deleted
        );
        assert_eq!(
            store.put(id, kind, content).await.expect("re-put"),
            PutOutcome::Stored
        );
        assert!(store.holdings().is_revived(&id));
        store.close().await.expect("close");
    });
}
