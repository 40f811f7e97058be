//! Group commit: the shard's one writer task.
//!
//! Puts and deletes queue here. The writer wakes on the first waiting op
//! (a lone put is never delayed waiting for company), lets the tasks already
//! runnable finish their turn, then takes everything queued, up to
//! `max_batch_bytes`; while that batch is on its way to stable storage, new
//! ops queue up and form the next batch. So batch size follows load with no
//! timer.
//!
//! A batch is laid out at the segment tail (always block-aligned), padded
//! with zeros to the block size, and made durable: written through an
//! `O_DSYNC` file (the default, [`SyncMethod::Dsync`]: each write completes
//! only once durable), or written and then fdatasync'd
//! ([`SyncMethod::Fdatasync`]). Only then are index entries published and
//! callers answered: a reader never sees an object that is not durable, and
//! no put is acknowledged before its bytes are on stable storage.
//!
//! [`SyncMethod::Dsync`]: super::fs::SyncMethod::Dsync
//! [`SyncMethod::Fdatasync`]: super::fs::SyncMethod::Fdatasync
//!
//! Prepared space: a small batch (under [`PREPARE_BELOW`]) is written over
//! blocks of the active segment that were already written with zeros and
//! made durable, [`PREPARE_STEP`] at a time, by an earlier batch. Its sync
//! (the `O_DSYNC` write's, or the `fdatasync`) then has no metadata to
//! commit (no new blocks, no new file size), only the data and a cache
//! flush: measured here 242 → 164 µs per group commit (with fdatasync).
//! Larger batches are bandwidth-bound, so they append directly and zeroing
//! ahead of them would only double their writes.
//! Recovery knows a prepared tail (all zeros after the last record) from a
//! torn one.
//!
//! Acknowledgements go out one reactor turn after their batch is durable
//! (see [`Writer::acknowledge`]): the writers they wake start hashing their
//! next objects at once. Waiting one turn lets the writer form and submit
//! the next batch first, so its write is on the device while they hash.
//!
//! Failures: ENOSPC puts the shard in read-only mode; any other write error
//! (on an `O_DSYNC` file that includes a failed sync) or any fdatasync error
//! makes it fail stop for writes. A sync is never retried: after a failed
//! sync the kernel may have dropped the dirty pages, and a retry that
//! "succeeds" proves nothing.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use stratum_wire::{Codec, ObjectId, ObjectKind};

use super::checkpoint::{self, SegmentState};
use super::error::{Result, StoreError};
use super::fs::{StoreFile, StoreFs, WriteBuf};
use super::index::{key_of, Location, MAX_SEGMENT_SLOTS};
use super::record::{self, RecordHeader, RecordType, HEADER_LEN};
use super::segment::{self, SegmentHeader};
use super::{Found, PutOutcome, Segment, Shared, StoredObject, WriteMode};

pub(crate) enum Op {
    Put {
        id: ObjectId,
        kind: ObjectKind,
        codec: Codec,
        /// The payload as it will be stored (compressed when `codec` says).
        content: Bytes,
        /// The content's inflated length (for the stored/logical counters).
        content_len: u64,
        /// Refused if the id is deleted here (a copy, not a client's put).
        unless_deleted: bool,
    },
    Delete {
        id: ObjectId,
        /// The delete's time, when it is a peer's delete learned by repair
        /// (else now).
        at: Option<u64>,
    },
    /// Remove this shard's copy without deleting the object (it now lives
    /// on its replicas elsewhere).
    Drop { id: ObjectId },
    /// Write an index checkpoint once the batch it arrived with is durable.
    Checkpoint,
    /// Compaction: re-append records from a segment being emptied.
    Relocate { records: Vec<Relocation> },
}

/// One record compaction wants copied forward.
pub(crate) struct Relocation {
    pub(crate) header: RecordHeader,
    /// Content of an object record (empty for a tombstone).
    pub(crate) content: Vec<u8>,
    /// Where the live copy is now (`None`: a tombstone).
    pub(crate) from: Option<Location>,
}

pub(crate) enum Reply {
    Put(PutOutcome),
    Delete(bool),
    /// Entries written to the checkpoint.
    Checkpoint(u64),
    /// Records actually copied (the rest were deleted, moved or, for
    /// tombstones, superseded meanwhile).
    Relocated(u64),
}

pub(crate) struct WriteOp {
    pub(crate) op: Op,
    pub(crate) done: futures_channel::oneshot::Sender<Result<Reply>>,
}

impl WriteOp {
    fn disk_bytes(&self) -> usize {
        match &self.op {
            Op::Put { content, .. } => super::record::disk_len(content.len()) as usize,
            Op::Delete { .. } | Op::Drop { .. } => super::record::disk_len(8) as usize,
            Op::Checkpoint => 0,
            Op::Relocate { records } => records
                .iter()
                .map(|record| record.header.disk_len() as usize)
                .sum(),
        }
    }
}

/// Where the writer resumes, as recovery found it.
pub(crate) struct Tail {
    /// The segment to append to (None: start a new one).
    pub(crate) active: Option<u16>,
    /// Block-aligned offset of the next write in `active`.
    pub(crate) offset: u64,
    /// End of the durable zeroed space after `offset` (== `offset` when
    /// there is none).
    pub(crate) prepared: u64,
    pub(crate) next_sequence: u64,
}

/// One record of a batch.
struct Planned {
    header: RecordHeader,
    /// Moved on to the cache once durable (a refcount, not a copy).
    content: Option<Bytes>,
    effect: Effect,
    /// Offset inside the batch, set by layout.
    offset: u64,
    /// A put's inflated content length (0 for other records).
    content_len: u64,
}

impl Planned {
    /// A put's object, for the cache (taken: the batch is done with it).
    fn stored_object(&mut self) -> Option<StoredObject> {
        Some(StoredObject {
            kind: self.header.kind?,
            codec: self.header.codec,
            payload: self.content.take()?,
        })
    }
}

enum Effect {
    Insert,
    /// A put over a damaged record of the same object: the index moves to
    /// the new, good copy.
    Replace(Location),
    /// Remove the live record found on disk.
    RemoveExisting(Location),
    /// Remove the record of an earlier put in this batch (by plan index).
    RemovePlanned(usize),
    /// Compaction: the live copy moves here from this location.
    Relocate(Location),
    /// A tombstone copied forward: nothing to publish.
    Nothing,
    /// A tombstone for an object not held here: only the holdings change.
    TombstoneOnly,
}

/// Now, in unix seconds (a tombstone's time).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Batches smaller than this write into prepared (pre-zeroed) space.
pub const PREPARE_BELOW: u64 = 256 << 10;
/// Prepared space kept after put batches for batches without puts
/// (deletes, dropped copies): their room on a full disk (32 lone deletes,
/// or a few hundred in one batch). Small batches always keep it; large ones
/// write it as zeros after themselves once space runs low.
pub const DELETE_RESERVE: u64 = 16 << 10;
/// How much zeroed space a small batch adds when it runs out.
pub const PREPARE_STEP: u64 = 1 << 20;

pub(crate) struct Writer<F: StoreFs> {
    shared: Rc<Shared<F>>,
    active: Option<u16>,
    tail: u64,
    /// The active segment holds durable written bytes up to here; writes
    /// below it change no file metadata.
    prepared: u64,
    next_sequence: u64,
    /// Batches whose acknowledgements wait for the next reactor turn.
    acks_pending: Rc<Cell<usize>>,
}

/// A backlog at least this large is split over two batches (see
/// [`batch_limit`]): hashing this much takes about as long as writing and
/// syncing it, so below it a split would only add an fdatasync.
const SPLIT_BACKLOG_AT: usize = 512 << 10;

/// Bytes the next batch may take: `max_batch`, except that a large backlog
/// goes in two halves. Taken whole, it would put every waiting writer in one
/// batch; acknowledged together, they would all hash their next objects
/// while the device sits idle, then wait together on the device. In halves,
/// one half is on the device while the other half's writers hash. The
/// backlog is estimated from the first op's size (the queue's contents
/// cannot be seen without taking them); a wrong estimate only changes the
/// batch size.
fn batch_limit(max_batch: usize, first_bytes: usize, queued: usize) -> usize {
    let backlog = first_bytes.saturating_mul(queued.saturating_add(1));
    if backlog >= SPLIT_BACKLOG_AT {
        max_batch.min(backlog.div_ceil(2))
    } else {
        max_batch
    }
}

/// How long an acknowledgement waits: any timer lets the reactor turn
/// first (timers fire only there); the shortest one adds nothing more.
const ACK_TURN: Duration = Duration::from_micros(1);

/// The state of ids a batch touches: Some(plan index) if an earlier op in
/// the batch puts it, None if it deletes it. (ahash: randomly keyed like
/// std's SipHash, and several times cheaper on 32-byte keys.)
type Touched = HashMap<ObjectId, Option<usize>, ahash::RandomState>;

type Replies = Vec<(
    futures_channel::oneshot::Sender<Result<Reply>>,
    Result<Reply>,
)>;

impl<F: StoreFs> Writer<F> {
    pub(crate) fn new(shared: Rc<Shared<F>>, tail: Tail) -> Self {
        Self {
            shared,
            active: tail.active,
            tail: tail.offset,
            prepared: tail.prepared.max(tail.offset),
            next_sequence: tail.next_sequence,
            acks_pending: Rc::new(Cell::new(0)),
        }
    }

    pub(crate) async fn run(mut self, queue: flume::Receiver<WriteOp>) {
        let max_batch = self.shared.config.max_batch_bytes;
        while let Ok(first) = queue.recv_async().await {
            // Yielding once lets the puts the runnable tasks are finishing
            // join this batch (server bench, on glommio's I/O: about 10%
            // more records per commit, 8% fewer commits). A lone put loses
            // little: with nobody else runnable the yield returns at once.
            futures_lite::future::yield_now().await;
            let mut bytes = first.disk_bytes();
            let limit = batch_limit(max_batch, bytes, queue.len());
            let mut batch = vec![first];
            while bytes < limit {
                match queue.try_recv() {
                    Ok(op) => {
                        bytes += op.disk_bytes();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch).await;
        }
        // The queue is closed (the store is closing): every acknowledgement
        // goes out before the writer is done.
        while self.acks_pending.get() > 0 {
            crate::clock::sleep(ACK_TURN).await;
        }
    }

    /// Sends a durable batch's replies after the next reactor turn (see the
    /// module docs). Durability is already decided: this only picks when
    /// the waiting writers wake.
    fn acknowledge(&self, replies: Replies) {
        let pending = Rc::clone(&self.acks_pending);
        pending.set(pending.get() + 1);
        glommio::spawn_local(async move {
            crate::clock::sleep(ACK_TURN).await;
            for (done, reply) in replies {
                let _ = done.send(reply);
            }
            pending.set(pending.get() - 1);
        })
        .detach();
    }

    async fn commit(&mut self, batch: Vec<WriteOp>) {
        // Out of space, only what takes no new room or gives room back goes
        // on (deletes, dropped copies, compaction, checkpoints); a failed
        // shard takes nothing.
        let batch: Vec<WriteOp> =
            match (self.shared.check_writable(), self.shared.check_deletable()) {
                (Ok(()), _) => batch,
                (Err(_), Ok(())) => batch
                    .into_iter()
                    .filter_map(|op| match op.op {
                        Op::Put { .. } => {
                            let _ = op.done.send(Err(self.refusal()));
                            None
                        }
                        _ => Some(op),
                    })
                    .collect(),
                (Err(_), Err(_)) => {
                    for op in batch {
                        let _ = op.done.send(Err(self.refusal()));
                    }
                    return;
                }
            };
        if batch.is_empty() {
            return;
        }
        let mut planned: Vec<Planned> = Vec::with_capacity(batch.len());
        let mut replies: Replies = Vec::with_capacity(batch.len());
        let mut touched: Touched =
            HashMap::with_capacity_and_hasher(batch.len(), ahash::RandomState::new());
        let mut checkpoints = Vec::new();

        for WriteOp { op, done } in batch {
            match op {
                Op::Checkpoint => checkpoints.push(done),
                Op::Relocate { records } => {
                    let result = self
                        .plan_relocation(records, &mut planned, &mut touched)
                        .await;
                    replies.push((done, result.map(Reply::Relocated)));
                }
                Op::Put {
                    id,
                    kind,
                    codec,
                    content,
                    content_len,
                    unless_deleted,
                } => {
                    // Checked here, in order with this and earlier batches'
                    // deletes (published before this batch is planned).
                    let deleted = match touched.get(&id) {
                        Some(planned) => planned.is_none(),
                        None => self.shared.holdings.borrow().is_deleted(&id),
                    };
                    if unless_deleted && deleted {
                        replies.push((done, Ok(Reply::Put(PutOutcome::Deleted))));
                        continue;
                    }
                    let effect = match touched.get(&id) {
                        Some(Some(_)) => None,
                        Some(None) => Some(Effect::Insert),
                        None => match self.shared.find_verified(&id).await {
                            Ok(Found::Intact(_)) => None,
                            Ok(Found::Damaged(old)) => Some(Effect::Replace(old)),
                            Ok(Found::Absent) => Some(Effect::Insert),
                            Err(err) => {
                                replies.push((done, Err(err)));
                                continue;
                            }
                        },
                    };
                    let Some(effect) = effect else {
                        self.shared.stats.borrow_mut().puts_deduplicated += 1;
                        replies.push((done, Ok(Reply::Put(PutOutcome::AlreadyPresent))));
                        continue;
                    };
                    touched.insert(id, Some(planned.len()));
                    planned.push(Planned {
                        header: RecordHeader::object(id, kind, codec, &content),
                        content: Some(content),
                        effect,
                        offset: 0,
                        content_len,
                    });
                    replies.push((done, Ok(Reply::Put(PutOutcome::Stored))));
                }
                Op::Drop { id } => {
                    let effect = match self.removal(&touched, &id).await {
                        Ok(effect) => effect,
                        Err(err) => {
                            replies.push((done, Err(err)));
                            continue;
                        }
                    };
                    let Some(effect) = effect else {
                        replies.push((done, Ok(Reply::Delete(false))));
                        continue;
                    };
                    touched.insert(id, None);
                    planned.push(Planned {
                        header: RecordHeader::dropped(id),
                        content: None,
                        effect,
                        offset: 0,
                        content_len: 0,
                    });
                    replies.push((done, Ok(Reply::Delete(true))));
                }
                Op::Delete { id, at } => {
                    let effect = match self.removal(&touched, &id).await {
                        Ok(effect) => effect,
                        Err(err) => {
                            replies.push((done, Err(err)));
                            continue;
                        }
                    };
                    // A delete of an object this shard never held still
                    // leaves a tombstone (unless one is already there): it
                    // keeps anti-entropy from copying the object back here
                    // from a replica that missed the delete.
                    let existed = effect.is_some();
                    let effect = match effect {
                        Some(effect) => effect,
                        None if touched.get(&id) == Some(&None)
                            || self.shared.holdings.borrow().is_deleted(&id) =>
                        {
                            replies.push((done, Ok(Reply::Delete(false))));
                            continue;
                        }
                        None => Effect::TombstoneOnly,
                    };
                    touched.insert(id, None);
                    let time = record::tombstone_content(at.unwrap_or_else(unix_now));
                    planned.push(Planned {
                        header: RecordHeader::tombstone(id, &time),
                        content: Some(Bytes::copy_from_slice(&time)),
                        effect,
                        offset: 0,
                        content_len: 0,
                    });
                    replies.push((done, Ok(Reply::Delete(existed))));
                }
            }
        }

        if !planned.is_empty() {
            if let Err(err) = self.write_durably(&mut planned).await {
                self.enter_failure_mode(err);
                for done in replies.into_iter().map(|(done, _)| done).chain(checkpoints) {
                    let _ = done.send(Err(self.refusal()));
                }
                return;
            }
        }
        self.acknowledge(replies);
        if !checkpoints.is_empty() {
            let result = self.write_checkpoint().await;
            for done in checkpoints {
                let _ = done.send(match &result {
                    Ok(entries) => Ok(Reply::Checkpoint(*entries)),
                    Err(err) => Err(StoreError::io(
                        "writing index checkpoint",
                        self.shared.dir.join(checkpoint::FILE_NAME),
                        io::Error::other(err.to_string()),
                    )),
                });
            }
        }
    }

    /// Plans compaction copies. Decided here, in the writer, because only
    /// here is the index certain not to change between the check and the
    /// write: a record is copied only if it is still the live copy, a
    /// tombstone only if its object is not live (else a replay would delete
    /// a later re-put). All decisions are made before anything is planned,
    /// so an error leaves the batch untouched.
    async fn plan_relocation(
        &mut self,
        records: Vec<Relocation>,
        planned: &mut Vec<Planned>,
        touched: &mut Touched,
    ) -> Result<u64> {
        let mut keep = Vec::with_capacity(records.len());
        for record in records {
            let id = record.header.id;
            if touched.contains_key(&id) {
                continue; // a newer op in this batch decides
            }
            let wanted = match record.from {
                Some(from) => self
                    .shared
                    .index
                    .borrow()
                    .candidates(key_of(&id))
                    .any(|location| location == from),
                None => self.shared.find(&id).await?.is_none(),
            };
            if wanted {
                keep.push(record);
            }
        }
        let copied = keep.len() as u64;
        for record in keep {
            let id = record.header.id;
            match record.from {
                Some(from) => {
                    touched.insert(id, Some(planned.len()));
                    planned.push(Planned {
                        header: record.header,
                        content: Some(Bytes::from(record.content)),
                        effect: Effect::Relocate(from),
                        offset: 0,
                        content_len: 0,
                    });
                }
                None => {
                    touched.insert(id, None);
                    // A tombstone keeps its content (the delete's time).
                    let content = (!record.content.is_empty()).then(|| Bytes::from(record.content));
                    planned.push(Planned {
                        header: record.header,
                        content,
                        effect: Effect::Nothing,
                        offset: 0,
                        content_len: 0,
                    });
                }
            }
        }
        Ok(copied)
    }

    /// Whether the file system has less than twice `resume_free_bytes`
    /// free (or cannot say): then large batches keep the delete reserve.
    async fn space_is_low(&self) -> bool {
        let low_below = self.shared.config.resume_free_bytes.saturating_mul(2);
        self.shared
            .fs
            .free_bytes(&self.shared.dir)
            .await
            .map_or(true, |free| free < low_below)
    }

    /// What removing `id` (a delete or a dropped copy) does: remove a put
    /// earlier in this batch, or the live record on disk; `None` if there is
    /// nothing to remove (absent, or removed earlier in this batch).
    async fn removal(&self, touched: &Touched, id: &ObjectId) -> Result<Option<Effect>> {
        Ok(match touched.get(id) {
            Some(Some(plan)) => Some(Effect::RemovePlanned(*plan)),
            Some(None) => None,
            None => self
                .shared
                .find(id)
                .await?
                .map(|(location, _)| Effect::RemoveExisting(location)),
        })
    }

    /// Writes the index as it is now, with the writer's tail as watermark.
    /// The snapshot is taken with no `.await` in between, so every entry is
    /// of a durable record before the watermark and none is missing.
    async fn write_checkpoint(&self) -> Result<u64> {
        let (bytes, entries) = {
            let index = self.shared.index.borrow();
            let segments: Vec<SegmentState> = self
                .shared
                .segments
                .borrow()
                .values()
                .map(|segment| SegmentState {
                    slot: segment.slot,
                    sequence: segment.sequence,
                    live_bytes: segment.live_bytes,
                })
                .collect();
            let watermark_sequence = self
                .active
                .and_then(|slot| segments.iter().find(|segment| segment.slot == slot))
                .map_or(0, |segment| segment.sequence);
            let watermark_offset = if watermark_sequence == 0 {
                0
            } else {
                self.tail
            };
            let bytes = checkpoint::encode(
                self.shared.config.shard_id,
                watermark_sequence,
                watermark_offset,
                index.len(),
                index.iter(),
                &segments,
                &self.shared.holdings.borrow(),
            );
            (bytes, index.len() as u64)
        };
        let path = self.shared.dir.join(checkpoint::FILE_NAME);
        self.shared
            .fs
            .write_file_atomic(&path, &bytes)
            .await
            .map_err(|err| StoreError::io("writing index checkpoint", &path, err))?;
        tracing::info!(
            shard = self.shared.config.shard_id,
            entries,
            bytes = bytes.len(),
            "index checkpoint written"
        );
        Ok(entries)
    }

    /// Lays out, writes and syncs the batch, then publishes its effects.
    async fn write_durably(&mut self, planned: &mut [Planned]) -> Result<(), WriteFailure> {
        let laid = self.lay_out(planned).await?;
        let slot = laid.slot;
        let landed = land(laid).await.map_err(|failure| {
            let path = self.shared.segment_path(slot);
            match failure {
                (Stage::Write, err) => WriteFailure::write(&path, err),
                (Stage::Sync, err) => WriteFailure::sync(&path, err),
            }
        })?;
        self.publish(planned, landed);
        Ok(())
    }

    /// Places the batch at the segment tail (rotating first if it does not
    /// fit), sets each record's offset, and fills block-aligned buffers of at
    /// most one device I/O each: records, zero padding, and any prepared
    /// space the batch lays down ahead of itself.
    async fn lay_out(&mut self, planned: &mut [Planned]) -> Result<Laid<F>, WriteFailure> {
        let records: u64 = planned.iter().map(|p| p.header.disk_len()).sum();
        let file_for_alignment = self.active_file().await?;
        let align = file_for_alignment.alignment() as u64;
        let padded = records.div_ceil(align) * align;
        if self.tail + padded > self.shared.config.segment_bytes {
            self.rotate().await?;
        }
        let file = self.active_file().await?;
        let slot = self.active.unwrap_or(0);
        let start = self.tail;

        let mut offset = 0u64;
        for plan in planned.iter_mut() {
            plan.offset = offset;
            offset += plan.header.disk_len();
        }

        // Fill block-aligned buffers of at most one device I/O each.
        let max_io = (self.shared.fs.max_io() as u64 / align).max(1) * align;
        let mut chunks = Vec::new();
        let mut chunk_start = 0u64;
        while chunk_start < padded {
            let len = max_io.min(padded - chunk_start);
            chunks.push((chunk_start, file.alloc(len as usize)));
            chunk_start += len;
        }
        for plan in planned.iter() {
            let header = plan.header.encode();
            copy_into(&mut chunks, max_io, plan.offset, &header);
            if let Some(content) = &plan.content {
                copy_into(
                    &mut chunks,
                    max_io,
                    plan.offset + HEADER_LEN as u64,
                    content,
                );
            }
            // Record padding up to the next 8-byte boundary.
            let end = plan.offset + HEADER_LEN as u64 + u64::from(plan.header.content_len);
            zero_range(
                &mut chunks,
                max_io,
                end,
                plan.offset + plan.header.disk_len(),
            );
        }
        // Batch padding up to the block boundary: `alloc` does not zero
        // buffers, and every byte that reaches the disk must be ours.
        zero_range(&mut chunks, max_io, records, padded);
        // A small batch that runs past the prepared space prepares the next
        // step in the same durable write (zeros, explicitly: S3).
        let end = start + padded;
        let mut prepared = self.prepared.max(end);
        // Puts leave the last DELETE_RESERVE of prepared space alone: when
        // the disk fills, the prepare step that fails is a put's, and the
        // reserve is still there for the deletes that free space.
        let puts = planned
            .iter()
            .any(|plan| plan.header.record_type == RecordType::Object);
        let reserve = if puts { DELETE_RESERVE } else { 0 };
        // A small batch prepares the next step; a large one (bandwidth-bound,
        // so no zeroing ahead) lays the reserve down after itself only when
        // space runs low (the extra zeros cost it several percent).
        let target = if end + reserve <= self.prepared {
            None
        } else if padded < PREPARE_BELOW {
            let limit = (self.shared.config.segment_bytes + reserve).max(end + reserve);
            Some((end + PREPARE_STEP).min(limit))
        } else if reserve > 0 && self.space_is_low().await {
            Some(end + reserve)
        } else {
            None
        };
        if let Some(target) = target {
            prepared = (target.div_ceil(align) * align).max(end);
            let mut zero_start = padded;
            while zero_start < prepared - start {
                let len = max_io.min(prepared - start - zero_start);
                let mut buffer = file.alloc(len as usize);
                buffer.as_mut_bytes().fill(0);
                chunks.push((zero_start, buffer));
                zero_start += len;
            }
        }
        Ok(Laid {
            file,
            slot,
            start,
            padded,
            prepared,
            chunks,
        })
    }

    /// The batch is durable: moves the tail, indexes its records, updates
    /// holdings, segment accounting, the cache and the stats. No `.await`:
    /// readers see the whole batch or none of it.
    fn publish(&mut self, planned: &mut [Planned], landed: Landed) {
        let Landed {
            slot,
            start,
            padded,
            prepared,
            write_micros,
            sync_micros,
        } = landed;
        // S-invariants at publish: a batch starts at the writer's tail, block
        // aligned, and lies within durable written space.
        debug_assert_eq!(start, self.tail, "a batch published away from the tail");
        debug_assert!(
            prepared >= start + padded,
            "prepared space ends before the batch"
        );
        self.tail = start + padded;
        self.prepared = prepared;
        let locations: Vec<Location> = planned
            .iter()
            .map(|plan| Location {
                segment: slot,
                offset: start + plan.offset,
                len: plan.header.disk_len() as u32,
            })
            .collect();
        let shared = &self.shared;
        let mut index = shared.index.borrow_mut();
        let mut holdings = shared.holdings.borrow_mut();
        let mut segments = shared.segments.borrow_mut();
        let mut cache = shared.cache.borrow_mut();
        let mut stats = shared.stats.borrow_mut();
        stats.group_commits += 1;
        stats.group_commit_records += planned.len() as u64;
        stats.group_commit_write_micros += write_micros;
        stats.group_commit_sync_micros += sync_micros;
        if let Some(segment) = segments.get_mut(&slot) {
            // Published in order: a batch only ever extends its segment.
            debug_assert_eq!(segment.end, start, "a batch published out of order");
            segment.end = self.tail;
        }
        for (plan, location) in planned.iter_mut().zip(&locations) {
            let id = plan.header.id;
            let key = key_of(&id);
            let dropped = plan.header.record_type == RecordType::Dropped;
            match plan.effect {
                Effect::Insert | Effect::Replace(_) => holdings.record_put(id),
                Effect::RemoveExisting(_) | Effect::RemovePlanned(_) if dropped => {
                    holdings.forget(&id)
                }
                Effect::RemoveExisting(_) | Effect::RemovePlanned(_) | Effect::TombstoneOnly => {
                    let deleted_at = plan
                        .content
                        .as_deref()
                        .and_then(record::tombstone_time)
                        .unwrap_or_else(unix_now);
                    holdings.record_delete(id, deleted_at)
                }
                Effect::Relocate(_) | Effect::Nothing => {}
            }
            match plan.effect {
                Effect::Insert => {
                    index.insert(key, *location);
                    if let Some(segment) = segments.get_mut(&slot) {
                        segment.live_bytes += u64::from(location.len);
                    }
                    stats.puts_stored += 1;
                    stats.put_content_bytes += plan.content_len;
                    stats.put_payload_bytes += u64::from(plan.header.content_len);
                    if let Some(object) = plan.stored_object() {
                        cache.insert(id, object);
                    }
                }
                Effect::RemoveExisting(old) => {
                    index.remove(key, old);
                    if let Some(segment) = segments.get_mut(&old.segment) {
                        segment.live_bytes -= u64::from(old.len);
                    }
                    cache.remove(&id);
                    if dropped {
                        stats.dropped += 1;
                    } else {
                        stats.deletes += 1;
                    }
                }
                Effect::Replace(old) => {
                    if !index.replace(key, old, *location) {
                        index.insert(key, *location);
                    } else if let Some(segment) = segments.get_mut(&old.segment) {
                        segment.live_bytes -= u64::from(old.len);
                    }
                    if let Some(segment) = segments.get_mut(&slot) {
                        segment.live_bytes += u64::from(location.len);
                    }
                    stats.puts_stored += 1;
                    stats.put_content_bytes += plan.content_len;
                    stats.put_payload_bytes += u64::from(plan.header.content_len);
                    tracing::warn!(
                        shard = shared.config.shard_id,
                        id = %id,
                        damaged_segment = old.segment,
                        damaged_offset = old.offset,
                        "a put replaced a damaged copy"
                    );
                    if let Some(object) = plan.stored_object() {
                        cache.insert(id, object);
                    }
                }
                Effect::Relocate(from) => {
                    if index.replace(key, from, *location) {
                        if let Some(segment) = segments.get_mut(&from.segment) {
                            segment.live_bytes -= u64::from(from.len);
                        }
                        if let Some(segment) = segments.get_mut(&slot) {
                            segment.live_bytes += u64::from(location.len);
                        }
                    }
                    plan.content = None;
                }
                Effect::Nothing => {}
                Effect::TombstoneOnly => stats.deletes += 1,
                Effect::RemovePlanned(plan_index) => {
                    let old = locations[plan_index];
                    index.remove(key, old);
                    if let Some(segment) = segments.get_mut(&old.segment) {
                        segment.live_bytes -= u64::from(old.len);
                    }
                    cache.remove(&id);
                    if dropped {
                        stats.dropped += 1;
                    } else {
                        stats.deletes += 1;
                    }
                }
            }
        }
    }

    async fn active_file(&mut self) -> Result<Rc<F::File>, WriteFailure> {
        if self.active.is_none() {
            self.rotate().await?;
        }
        let slot = self.active.unwrap_or(0);
        self.shared
            .segments
            .borrow()
            .get(&slot)
            .map(|segment| Rc::clone(&segment.file))
            .ok_or_else(|| {
                WriteFailure::write(
                    &self.shared.segment_path(slot),
                    io::Error::new(io::ErrorKind::NotFound, "active segment vanished"),
                )
            })
    }

    /// Starts a new segment: header written and synced, directory entry
    /// synced, before any record goes into it. The old segment's prepared
    /// zeros are cut only once the new one exists: a rotation that fails
    /// (a full disk) leaves them for the deletes that free space.
    async fn rotate(&mut self) -> Result<(), WriteFailure> {
        let slot = {
            let segments = self.shared.segments.borrow();
            (0..MAX_SEGMENT_SLOTS).find(|slot| !segments.contains_key(slot))
        };
        let Some(slot) = slot else {
            return Err(WriteFailure::NoSpace(format!(
                "all {MAX_SEGMENT_SLOTS} segment slots are in use"
            )));
        };
        let path = self.shared.segment_path(slot);
        let file = self
            .shared
            .fs
            .open(&path, true)
            .await
            .map_err(|err| WriteFailure::write(&path, err))?;
        let mut block = file.alloc(segment::HEADER_LEN as usize);
        SegmentHeader {
            shard_id: self.shared.config.shard_id,
            slot,
            sequence: self.next_sequence,
        }
        .encode_into(block.as_mut_bytes());
        file.write_at(block, 0)
            .await
            .map_err(|err| WriteFailure::write(&path, err))?;
        file.fdatasync()
            .await
            .map_err(|err| WriteFailure::sync(&path, err))?;
        self.shared
            .fs
            .sync_dir(&self.shared.dir)
            .await
            .map_err(|err| WriteFailure::sync(&self.shared.dir, err))?;
        self.release_prepared().await?;
        tracing::debug!(
            shard = self.shared.config.shard_id,
            slot,
            sequence = self.next_sequence,
            "new segment"
        );
        self.shared.segments.borrow_mut().insert(
            slot,
            Segment {
                slot,
                sequence: self.next_sequence,
                file: Rc::new(file),
                end: segment::HEADER_LEN,
                live_bytes: 0,
            },
        );
        self.next_sequence += 1;
        self.active = Some(slot);
        self.shared.active_slot.set(Some(slot));
        self.tail = segment::HEADER_LEN;
        self.prepared = segment::HEADER_LEN;
        Ok(())
    }

    /// Cuts the unused prepared zeros off the segment being left, so closed
    /// segments end at their last record. (A crash before this leaves them
    /// in place; recovery and compaction read zeros as the end of data.)
    async fn release_prepared(&mut self) -> Result<(), WriteFailure> {
        let Some(slot) = self.active else {
            return Ok(());
        };
        if self.prepared <= self.tail {
            return Ok(());
        }
        let Some(file) = self
            .shared
            .segments
            .borrow()
            .get(&slot)
            .map(|segment| Rc::clone(&segment.file))
        else {
            return Ok(());
        };
        let path = self.shared.segment_path(slot);
        file.truncate(self.tail)
            .await
            .map_err(|err| WriteFailure::write(&path, err))?;
        file.fdatasync()
            .await
            .map_err(|err| WriteFailure::sync(&path, err))?;
        self.prepared = self.tail;
        Ok(())
    }

    /// The error every queued op gets once the shard takes no writes.
    fn refusal(&self) -> StoreError {
        match self.shared.check_writable() {
            Err(err) => err,
            // Only called after the mode left `Writable`.
            Ok(()) => StoreError::WriterGone,
        }
    }

    fn enter_failure_mode(&self, failure: WriteFailure) {
        let mode = match failure {
            WriteFailure::NoSpace(reason) => WriteMode::ReadOnly(reason),
            WriteFailure::Fatal(cause) => WriteMode::Failed(cause),
        };
        tracing::error!(
            shard = self.shared.config.shard_id,
            ?mode,
            "shard stops taking writes"
        );
        *self.shared.mode.borrow_mut() = mode;
    }
}

/// Why a batch could not be made durable.
enum WriteFailure {
    /// Out of space: the shard goes read-only.
    NoSpace(String),
    /// Anything else: the shard fails stop for writes.
    Fatal(String),
}

impl WriteFailure {
    fn write(path: &std::path::Path, err: io::Error) -> Self {
        if err.raw_os_error() == Some(28) || err.kind() == io::ErrorKind::StorageFull {
            Self::NoSpace(format!("disk full (ENOSPC) writing {}", path.display()))
        } else {
            Self::Fatal(format!("write to {} failed: {err}", path.display()))
        }
    }

    /// Any fsync error is fatal, ENOSPC included: the kernel may already
    /// have dropped the pages it could not write.
    fn sync(path: &std::path::Path, err: io::Error) -> Self {
        Self::Fatal(format!("fdatasync of {} failed: {err}", path.display()))
    }
}

/// A batch laid out in its buffers, ready to write.
struct Laid<F: StoreFs> {
    file: Rc<F::File>,
    slot: u16,
    /// Where the batch starts in the segment (block-aligned).
    start: u64,
    /// The batch's bytes, padded to the block size.
    padded: u64,
    /// The end of durable zeroed space once this batch lands.
    prepared: u64,
    /// (offset in the batch, buffer), each at most one device I/O.
    chunks: Vec<(u64, <F::File as StoreFile>::Buf)>,
}

/// A batch on stable storage, with what its I/O took.
struct Landed {
    slot: u16,
    start: u64,
    padded: u64,
    prepared: u64,
    write_micros: u64,
    sync_micros: u64,
}

/// Which I/O of a batch failed.
enum Stage {
    Write,
    Sync,
}

/// Writes a laid-out batch and makes it durable. Every chunk goes to the
/// kernel at once: one device round trip per batch, not one per chunk, and
/// `write_all_at` returns only once none is in flight, even after a failure.
/// A write-through file's writes are durable when they complete: no second
/// I/O.
async fn land<F: StoreFs>(laid: Laid<F>) -> Result<Landed, (Stage, io::Error)> {
    let Laid {
        file,
        slot,
        start,
        padded,
        prepared,
        chunks,
    } = laid;
    let write_started = crate::clock::now();
    let writes = chunks
        .into_iter()
        .map(|(chunk_offset, buffer)| (buffer, start + chunk_offset))
        .collect();
    file.write_all_at(writes)
        .await
        .map_err(|err| (Stage::Write, err))?;
    let sync_started = crate::clock::now();
    if !file.writes_are_durable() {
        file.fdatasync().await.map_err(|err| (Stage::Sync, err))?;
    }
    Ok(Landed {
        slot,
        start,
        padded,
        prepared,
        write_micros: (sync_started - write_started).as_micros() as u64,
        sync_micros: crate::clock::since(sync_started).as_micros() as u64,
    })
}

/// Zeroes batch bytes `from..to`, across chunk boundaries.
fn zero_range<B: WriteBuf>(chunks: &mut [(u64, B)], chunk_len: u64, from: u64, to: u64) {
    let mut position = from;
    while position < to {
        let chunk = (position / chunk_len) as usize;
        let within = (position % chunk_len) as usize;
        let target = chunks[chunk].1.as_mut_bytes();
        let n = ((to - position) as usize).min(target.len() - within);
        target[within..within + n].fill(0);
        position += n as u64;
    }
}

/// Copies `bytes` to batch offset `at`, across chunk boundaries.
fn copy_into<B: WriteBuf>(chunks: &mut [(u64, B)], chunk_len: u64, at: u64, bytes: &[u8]) {
    let mut position = at;
    let mut rest = bytes;
    while !rest.is_empty() {
        let chunk = (position / chunk_len) as usize;
        let within = (position % chunk_len) as usize;
        let target = chunks[chunk].1.as_mut_bytes();
        let n = rest.len().min(target.len() - within);
        target[within..within + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        position += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_limit, SPLIT_BACKLOG_AT};

    const MAX: usize = 1 << 20;

    #[test]
    fn a_small_backlog_goes_whole() {
        // 64 waiting puts of 1 KiB: one batch.
        assert_eq!(batch_limit(MAX, 1088, 63), MAX);
        assert_eq!(batch_limit(MAX, 100, 0), MAX);
    }

    #[test]
    fn a_large_backlog_that_fits_one_batch_goes_in_halves() {
        // 64 waiting puts of 16 KiB (records a little over 16 KiB).
        let limit = batch_limit(MAX, 16_448, 63);
        assert_eq!(limit, (16_448 * 64usize).div_ceil(2));
        assert!((SPLIT_BACKLOG_AT / 2..MAX).contains(&limit));
    }

    #[test]
    fn a_backlog_of_many_batches_is_cut_at_the_maximum() {
        // 64 waiting puts of 256 KiB: 16 MiB queued, batches stay at 1 MiB.
        assert_eq!(batch_limit(MAX, 262_208, 63), MAX);
        // A huge count cannot overflow the estimate.
        assert_eq!(batch_limit(MAX, usize::MAX, usize::MAX), MAX);
    }
}
