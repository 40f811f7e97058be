//! Compaction: reclaims segments that are mostly dead (deleted or
//! superseded records) by copying what is still needed forward and then
//! removing the segment.
//!
//! For one victim (any closed segment whose dead fraction passes the
//! threshold; the segment being appended to is never a victim):
//! 1. Scan it. An object record is needed if the index points exactly at it;
//!    its bytes are verified (CRC-32 and SHA-256) before they are copied, and
//!    a damaged one stops the compaction of this segment (nothing is removed).
//!    A tombstone is needed unless the victim is the oldest segment (an older
//!    segment may still hold the object it deletes); its CRC-32 is checked
//!    before it is copied, like an object's.
//! 2. Send the needed records to the writer, which re-checks each against the
//!    index *at write time* (a record deleted or moved meanwhile is skipped; a
//!    tombstone whose object was put again meanwhile is dropped, or a replay
//!    would delete the new put), appends them through an ordinary group
//!    commit, and moves index entries only after the fdatasync.
//! 3. Once no index entry points into the victim, remove its file and sync
//!    the directory; then write a fresh checkpoint (the old one listed the
//!    victim and would be ignored).
//!
//! A crash at any point leaves at worst both copies of some records on disk;
//! replay keeps the first copy of an id and skips the duplicate. Nothing live
//! is lost (the victim goes only after its copies are durable) and nothing
//! is duplicated in the index.

use std::rc::Rc;

use super::error::{Result, StoreError};
use super::fs::{StoreFile, StoreFs};
use super::group_commit::Relocation;
use super::index::{key_of, Location};
use super::record::{self, RecordType, HEADER_LEN};
use super::recovery::{Scanner, Step};
use super::segment;
use super::ShardStore;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_removed: u32,
    pub records_copied: u64,
    pub bytes_reclaimed: u64,
    /// Segments left in place because a record in them failed its checks
    /// (see the scrub and recovery reports).
    pub segments_skipped: u32,
}

pub(crate) async fn compact<F: StoreFs + 'static>(
    store: &ShardStore<F>,
    min_dead_fraction: f64,
) -> Result<CompactionReport> {
    let shared = store.shared();
    let mut report = CompactionReport::default();
    // Victims, oldest first: (slot, sequence).
    let victims: Vec<(u16, u64)> = {
        let segments = shared.segments.borrow();
        let active = shared.active_slot.get();
        let mut victims: Vec<(u16, u64)> = segments
            .values()
            .filter(|segment| Some(segment.slot) != active)
            .filter(|segment| {
                let data = segment.end.saturating_sub(segment::HEADER_LEN);
                data > 0 && 1.0 - segment.live_bytes as f64 / data as f64 >= min_dead_fraction
            })
            .map(|segment| (segment.slot, segment.sequence))
            .collect();
        victims.sort_by_key(|(_, sequence)| *sequence);
        victims
    };
    for (slot, sequence) in victims {
        match compact_one(store, slot, sequence).await? {
            Some((copied, reclaimed)) => {
                report.segments_removed += 1;
                report.records_copied += copied;
                report.bytes_reclaimed += reclaimed;
            }
            None => report.segments_skipped += 1,
        }
    }
    if report.segments_removed > 0 {
        store.checkpoint().await?;
    }
    tracing::info!(
        shard = shared.config.shard_id,
        removed = report.segments_removed,
        copied = report.records_copied,
        reclaimed = report.bytes_reclaimed,
        skipped = report.segments_skipped,
        "compaction finished"
    );
    Ok(report)
}

/// Compacts one segment. `None` if it had to be left in place.
async fn compact_one<F: StoreFs + 'static>(
    store: &ShardStore<F>,
    slot: u16,
    sequence: u64,
) -> Result<Option<(u64, u64)>> {
    let shared = store.shared();
    let path = shared.segment_path(slot);
    let Some((file, size)) = shared
        .segments
        .borrow()
        .get(&slot)
        .map(|segment| (Rc::clone(&segment.file), segment.end))
    else {
        return Ok(None);
    };
    let is_oldest = shared
        .segments
        .borrow()
        .values()
        .all(|segment| segment.sequence >= sequence);
    let align = file.alignment() as u64;
    let io_err = |err| StoreError::io("compacting segment", &path, err);

    let mut scanner = Scanner::new(&*file, size);
    let mut needed: Vec<Relocation> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut copied = 0u64;
    let mut offset = segment::HEADER_LEN;
    loop {
        let header = match scanner.step(offset, align).await.map_err(io_err)? {
            Step::Record { offset: at, header } => {
                offset = at;
                header
            }
            // Damaged bytes hold nothing the index points at: skip them.
            Step::Damaged { next, .. } => {
                offset = next;
                continue;
            }
            Step::End => break,
        };
        let location = Location {
            segment: slot,
            offset,
            len: header.disk_len() as u32,
        };
        offset += header.disk_len();
        match header.record_type {
            RecordType::Object => {
                let live = shared
                    .index
                    .borrow()
                    .candidates(key_of(&header.id))
                    .any(|found| found == location);
                if !live {
                    continue;
                }
                let bytes = scanner
                    .get(location.offset, HEADER_LEN + header.content_len as usize)
                    .await
                    .map_err(io_err)?;
                let dictionaries = std::rc::Rc::clone(&shared.dictionaries.borrow().dictionaries);
                match record::check_object(bytes, &dictionaries) {
                    Ok((_, _, content)) => needed.push(Relocation {
                        header,
                        content: content.to_vec(),
                        from: Some(location),
                    }),
                    Err(corruption) => {
                        tracing::error!(segment = slot, offset = location.offset, %corruption, "not compacting a segment holding a damaged live record");
                        return Ok(None);
                    }
                }
            }
            RecordType::Tombstone | RecordType::Dropped if !is_oldest => {
                // A tombstone's content (the delete's time) goes with it.
                let bytes = scanner
                    .get(location.offset, HEADER_LEN + header.content_len as usize)
                    .await
                    .map_err(io_err)?;
                let content = bytes.get(HEADER_LEN..).unwrap_or_default();
                // Copied only as read intact: a tombstone copied wrong would
                // be damage written fresh, and a lost one a delete undone.
                if let Err(corruption) = header.verify(content) {
                    tracing::error!(segment = slot, offset = location.offset, %corruption, "not compacting a segment holding a damaged tombstone");
                    return Ok(None);
                }
                let content = content.to_vec();
                needed.push(Relocation {
                    header,
                    content,
                    from: None,
                })
            }
            RecordType::Tombstone | RecordType::Dropped => {}
        }
        batch_bytes += header.disk_len();
        if batch_bytes >= shared.config.max_batch_bytes as u64 {
            copied += store.relocate(std::mem::take(&mut needed)).await?;
            batch_bytes = 0;
        }
    }
    if !needed.is_empty() {
        copied += store.relocate(needed).await?;
    }
    drop(scanner);

    // Every copy is durable and published; nothing may point here any more.
    if shared
        .index
        .borrow()
        .iter()
        .any(|(_, location)| location.segment == slot)
    {
        tracing::warn!(
            segment = slot,
            "entries still point into the segment; left in place"
        );
        return Ok(None);
    }
    shared.segments.borrow_mut().remove(&slot);
    drop(file);
    shared
        .fs
        .remove(&path)
        .await
        .map_err(|err| StoreError::io("removing compacted segment", &path, err))?;
    shared
        .fs
        .sync_dir(&shared.dir)
        .await
        .map_err(|err| StoreError::io("syncing shard directory", &shared.dir, err))?;
    tracing::info!(
        segment = slot,
        copied,
        bytes = size,
        "segment compacted away"
    );
    Ok(Some((copied, size)))
}
