//! Each core's background upkeep of its own shard: periodic index
//! checkpoints (so a restart replays little), forgetting deletes past the
//! tombstone grace period, compaction of segments whose dead fraction passed
//! the threshold, and scrubs at a bounded read rate.
//!
//! Upkeep runs on the shard's core between requests; the store's own
//! operations make each step safe against crashes and concurrent requests.

use std::rc::Rc;
use std::time::Duration;

use super::core::{chain, Core};
use crate::store::fs::StoreFs;
use crate::store::WriteMode;

/// How often the loop wakes to see what is due.
const TICK: Duration = Duration::from_secs(1);

pub async fn run<F: StoreFs + 'static>(core: Rc<Core<F>>) {
    let shard = core.shard_id;
    let plan = core.config.maintenance.clone();
    let mut last_checkpoint = crate::clock::now();
    let mut last_compaction = crate::clock::now();
    let mut last_scrub = crate::clock::now();
    let writes_of =
        |stats: &crate::store::StoreStats| stats.puts_stored + stats.deletes + stats.dropped;
    let mut objects_at_checkpoint = writes_of(&core.store.stats());
    loop {
        crate::clock::sleep(TICK).await;
        // Out of space: writes resume by themselves once there is room.
        if matches!(core.store.write_mode(), WriteMode::ReadOnly(_)) {
            core.store.try_resume().await;
        }
        let mode = core.store.write_mode();
        let writable = mode == WriteMode::Writable;

        if crate::clock::since(last_checkpoint) >= plan.checkpoint_interval {
            // Deletes older than the grace period are forgotten: every
            // replica has had that long to learn them.
            let purged = core
                .store
                .purge_tombstones(core.config.replication.tombstone_grace);
            if purged > 0 {
                tracing::info!(shard, purged, "tombstones past the grace period forgotten");
            }
        }

        if writable && crate::clock::since(last_checkpoint) >= plan.checkpoint_interval {
            last_checkpoint = crate::clock::now();
            let writes = writes_of(&core.store.stats());
            // Nothing written since the last one: the checkpoint on disk is
            // still current.
            if writes != objects_at_checkpoint {
                match core.store.checkpoint().await {
                    Ok(entries) => {
                        objects_at_checkpoint = writes;
                        tracing::debug!(shard, entries, "index checkpoint written");
                    }
                    Err(err) => {
                        tracing::warn!(shard, error = %chain(&err), "index checkpoint failed")
                    }
                }
            }
        }

        // Compaction runs out of space too: it is how deleted space comes back.
        let compactable = !matches!(mode, WriteMode::Failed(_));
        if compactable && crate::clock::since(last_compaction) >= plan.compaction_interval {
            last_compaction = crate::clock::now();
            match core.store.compact(plan.compaction_dead_fraction).await {
                Ok(report) if report.segments_removed > 0 => tracing::info!(
                    shard,
                    segments_removed = report.segments_removed,
                    records_copied = report.records_copied,
                    bytes_reclaimed = report.bytes_reclaimed,
                    "compaction"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(shard, error = %chain(&err), "compaction failed"),
            }
        }

        if let Some(interval) = plan.scrub_interval {
            if crate::clock::since(last_scrub) >= interval {
                match core.store.scrub(plan.scrub_bytes_per_sec).await {
                    Ok(report) => {
                        let level_findings = report.findings.len();
                        if level_findings > 0 || report.read_errors > 0 {
                            tracing::error!(
                                shard,
                                records = report.records_checked,
                                findings = level_findings,
                                read_errors = report.read_errors,
                                "scrub found damage; damaged records were unindexed"
                            );
                        } else {
                            tracing::info!(
                                shard,
                                records = report.records_checked,
                                bytes = report.bytes_checked,
                                elapsed_ms = report.elapsed.as_millis() as u64,
                                "scrub clean"
                            );
                        }
                    }
                    Err(err) => tracing::warn!(shard, error = %chain(&err), "scrub failed"),
                }
                // The interval counts from the end of a pass: a slow scrub
                // never runs back to back.
                last_scrub = crate::clock::now();
            }
        }
    }
}
