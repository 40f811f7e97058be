//! The shard store: the durable object store one core owns.
//!
//! - [`superblock`]: what the shard is (refuses another shard id/count).
//! - [`segment`]: append-only data files; [`record`]: what is in them.
//! - [`index`]: key → location, in memory, ≤ 48 bytes per object.
//! - [`group_commit`]: the writer task; concurrent puts share one write and
//!   one `fdatasync`, and complete only once durable.
//! - [`recovery`]: rebuilds the index at open, truncates a torn tail,
//!   quarantines damaged records.
//! - [`cache`]: hot objects, bounded in bytes.
//! - [`fs`]: the I/O seam (glommio DMA in production, fault-injecting doubles
//!   in tests).
//!
//! Everything here is owned by one core: `Rc` and `RefCell`, no locks. A
//! `RefCell` borrow is never held across an `.await`.

pub mod cache;
pub mod checkpoint;
pub mod compaction;
pub mod dictionaries;
pub mod error;
pub mod fs;
pub mod group_commit;
pub mod holdings;
pub mod index;
pub mod record;
pub mod recovery;
pub mod scrub;
pub mod segment;
pub mod superblock;
pub mod verified;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use stratum_wire::{Codec, CodecError, ObjectId, ObjectKind};

pub use compaction::CompactionReport;
use error::Result;
pub use error::{Corruption, StoreError};
use fs::{StoreFile, StoreFs};
use index::{key_of, Index, Location};
use record::{RecordHeader, RecordType, HEADER_LEN};
pub use recovery::RecoveryReport;
pub use scrub::{ScrubFinding, ScrubReport};
pub use verified::Verified;

/// Settings of one shard store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub shard_id: u16,
    pub shard_count: u16,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Largest accepted object (content bytes).
    pub max_object_bytes: u64,
    /// Byte budget of the hot-object cache.
    pub cache_bytes: usize,
    /// Most bytes gathered into one group commit (a lone larger object is
    /// still written alone).
    pub max_batch_bytes: usize,
    /// Puts queued for the writer before `put` waits (backpressure).
    pub write_queue: usize,
    /// A shard read-only for lack of space resumes writes once the file
    /// system has this much free.
    pub resume_free_bytes: u64,
}

impl StoreConfig {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 256 << 20;
    pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 64 << 20;

    pub fn new(shard_id: u16, shard_count: u16) -> Self {
        Self {
            shard_id,
            shard_count,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_object_bytes: Self::DEFAULT_MAX_OBJECT_BYTES,
            cache_bytes: 64 << 20,
            max_batch_bytes: 1 << 20,
            write_queue: 4096,
            resume_free_bytes: 64 << 20,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(StoreError::Config(msg));
        if self.shard_count == 0 || self.shard_id >= self.shard_count {
            return fail(format!(
                "shard id {} is not below shard count {}",
                self.shard_id, self.shard_count
            ));
        }
        if self.segment_bytes > index::MAX_SEGMENT_BYTES {
            return fail(format!(
                "segment_bytes {} exceeds the format's {} byte limit",
                self.segment_bytes,
                index::MAX_SEGMENT_BYTES
            ));
        }
        let largest_record = record::disk_len(self.max_object_bytes as usize);
        if largest_record >= index::MAX_RECORD_BYTES {
            return fail(format!(
                "max_object_bytes {} exceeds the format's {} byte record limit",
                self.max_object_bytes,
                index::MAX_RECORD_BYTES
            ));
        }
        if self.segment_bytes < segment::HEADER_LEN + 2 * largest_record {
            return fail(format!(
                "segment_bytes {} must hold at least two maximum-size objects ({} bytes each)",
                self.segment_bytes, largest_record
            ));
        }
        if self.segment_bytes + self.max_batch_bytes as u64 + largest_record
            > index::MAX_SEGMENT_BYTES
        {
            return fail(format!(
                "segment_bytes {} plus a full batch ({}) and a maximum record ({}) must stay under {} bytes",
                self.segment_bytes,
                self.max_batch_bytes,
                largest_record,
                index::MAX_SEGMENT_BYTES
            ));
        }
        if self.write_queue == 0 || self.max_batch_bytes == 0 {
            return fail("write_queue and max_batch_bytes must be positive".into());
        }
        Ok(())
    }
}

/// Whether the shard takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    Writable,
    /// No space left: reads go on, writes are refused with this reason.
    ReadOnly(String),
    /// A write or fdatasync failed: nothing after the last successful sync
    /// can be trusted to be durable, so the shard refuses writes until it is
    /// reopened (recovery then decides from what is on disk).
    Failed(String),
}

/// A put's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    AlreadyPresent,
    /// Refused by [`ShardStore::put_unless_deleted`]: the shard holds a
    /// tombstone for the id.
    Deleted,
}

/// An object read back from the store; its record passed its checks.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub kind: ObjectKind,
    /// How `payload` encodes the content.
    pub codec: Codec,
    /// Shared with the cache, never copied on the way to a reply.
    pub payload: Bytes,
}

impl StoredObject {
    /// The content, inflated if stored compressed (for a peer that takes
    /// raw payloads only), with the dictionaries of the shard it came from.
    pub fn content(
        &self,
        dictionaries: &stratum_wire::codec::Dictionaries,
    ) -> std::result::Result<std::borrow::Cow<'_, [u8]>, CodecError> {
        stratum_wire::codec::decode(
            self.codec,
            &self.payload,
            record::MAX_CONTENT_LEN,
            dictionaries,
        )
    }
}

/// Counters of one store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub objects: u64,
    pub segments: u64,
    pub disk_bytes: u64,
    pub live_bytes: u64,
    pub puts_stored: u64,
    /// Content bytes of the objects stored by puts (inflated), and the
    /// bytes their records hold: the second over the first is what
    /// compression saves.
    pub put_content_bytes: u64,
    pub put_payload_bytes: u64,
    pub puts_deduplicated: u64,
    pub deletes: u64,
    /// Copies removed after they were handed to their replicas elsewhere.
    pub dropped: u64,
    pub group_commits: u64,
    pub group_commit_records: u64,
    /// Time group commits spent writing their batch, and in fdatasync
    /// (microseconds, summed): divided by `group_commits`, the mean cost of
    /// each step. With write-through files the write includes the sync and
    /// no fdatasync is issued.
    pub group_commit_write_micros: u64,
    pub group_commit_sync_micros: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub corrupt_reads: u64,
    pub scrubs: u64,
    pub scrub_findings: u64,
    pub index_bytes: u64,
    /// Segment I/O operations in flight past the engine's stall limit (a
    /// wedged device or ring): 0 when healthy.
    pub stalled_io_ops: u64,
}

pub(crate) struct Segment<File> {
    pub(crate) slot: u16,
    pub(crate) sequence: u64,
    pub(crate) file: Rc<File>,
    /// Bytes written (header, records, padding).
    pub(crate) end: u64,
    /// Bytes of live object records.
    pub(crate) live_bytes: u64,
}

/// What a verified lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Intact(Location),
    /// The index points at a record of this object (or an unreadable one
    /// under its key) that fails its checks.
    Damaged(Location),
    Absent,
}

/// State shared by the store handle and its writer task.
pub(crate) struct Shared<F: StoreFs> {
    pub(crate) fs: F,
    pub(crate) dir: PathBuf,
    pub(crate) config: StoreConfig,
    pub(crate) index: RefCell<Index>,
    /// Ids held, deleted and revived, in ring order (anti-entropy's view).
    pub(crate) holdings: RefCell<holdings::Holdings>,
    /// Dictionaries compressed records may name (only ever added).
    pub(crate) dictionaries: RefCell<dictionaries::Held>,
    pub(crate) cache: RefCell<cache::ObjectCache>,
    pub(crate) segments: RefCell<BTreeMap<u16, Segment<F::File>>>,
    pub(crate) mode: RefCell<WriteMode>,
    pub(crate) stats: RefCell<StoreStats>,
    /// The segment the writer appends to (never compacted).
    pub(crate) active_slot: std::cell::Cell<Option<u16>>,
}

/// One shard's store. Lives on, and is used from, one core.
pub struct ShardStore<F: StoreFs + 'static> {
    shared: Rc<Shared<F>>,
    queue: Option<flume::Sender<group_commit::WriteOp>>,
    writer: Option<glommio::Task<()>>,
    /// One dictionary install at a time: two of the same id must not
    /// both pass the conflict check and then overwrite each other's file.
    installing: glommio::sync::Semaphore,
}

impl<F: StoreFs + 'static> ShardStore<F> {
    /// Opens (creating if new) the shard in `dir`, rebuilds its index from
    /// disk and starts its writer task on the current glommio executor.
    pub async fn open(fs: F, dir: &Path, config: StoreConfig) -> Result<(Self, RecoveryReport)> {
        config.validate()?;
        let held = dictionaries::load(&fs, dir).await?;
        let shared = Rc::new(Shared {
            dictionaries: RefCell::new(held),
            fs,
            dir: dir.to_owned(),
            index: RefCell::new(Index::new()),
            holdings: RefCell::new(holdings::Holdings::new()),
            cache: RefCell::new(cache::ObjectCache::new(config.cache_bytes)),
            segments: RefCell::new(BTreeMap::new()),
            mode: RefCell::new(WriteMode::Writable),
            stats: RefCell::new(StoreStats::default()),
            active_slot: std::cell::Cell::new(None),
            config,
        });
        let (report, tail) = recovery::recover(&shared).await?;
        shared.active_slot.set(tail.active);
        let (sender, receiver) = flume::bounded(shared.config.write_queue);
        let writer = group_commit::Writer::new(Rc::clone(&shared), tail);
        // The writer shares the executor's default task queue. A dedicated
        // latency-sensitive queue would let it preempt request tasks, but
        // glommio 0.9.0 can park an executor while a second queue is still
        // runnable (a permanent hang, seen here in tests; fixed upstream after
        // 0.9.0), so one queue it is.
        let task = glommio::spawn_local(writer.run(receiver));
        Ok((
            Self {
                shared,
                queue: Some(sender),
                writer: Some(task),
                installing: glommio::sync::Semaphore::new(1),
            },
            report,
        ))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What this shard holds, deleted and revived, in ring order. Borrowed
    /// only between awaits.
    pub fn holdings(&self) -> std::cell::Ref<'_, holdings::Holdings> {
        self.shared.holdings.borrow()
    }

    /// The dictionaries this shard holds, and the one clients are asked to
    /// use. Borrowed only between awaits.
    pub fn dictionaries(&self) -> std::cell::Ref<'_, dictionaries::Held> {
        self.shared.dictionaries.borrow()
    }

    /// A snapshot of the dictionaries held (an `Rc`: keep it across awaits).
    pub fn dictionary_set(&self) -> Rc<stratum_wire::codec::Dictionaries> {
        Rc::clone(&self.shared.dictionaries.borrow().dictionaries)
    }

    /// Stores a dictionary durably on this shard (and, with `make_current`,
    /// asks clients to compress with it). `Ok(false)` if it was held
    /// already. Records may name it only once this returns.
    pub async fn install_dictionary(&self, bytes: Vec<u8>, make_current: bool) -> Result<bool> {
        if bytes.len() > dictionaries::MAX_DICTIONARY_BYTES {
            return Err(StoreError::Config(format!(
                "a dictionary of {} bytes exceeds {}",
                bytes.len(),
                dictionaries::MAX_DICTIONARY_BYTES
            )));
        }
        let dictionary = stratum_wire::codec::Dictionary::new(bytes)
            .map_err(|err| StoreError::Config(err.to_string()))?;
        let id = dictionary.id();
        let _installing = self
            .installing
            .acquire_permit(1)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let fresh = match self.shared.dictionaries.borrow().dictionaries.get(id) {
            Some(held) if held.bytes() != dictionary.bytes() => {
                return Err(StoreError::Config(
                    stratum_wire::CodecError::DictionaryConflict(id).to_string(),
                ))
            }
            Some(_) => false,
            None => true,
        };
        if fresh {
            dictionaries::save(&self.shared.fs, &self.shared.dir, &dictionary).await?;
        }
        let mut set = (*self.shared.dictionaries.borrow().dictionaries).clone();
        let added = set
            .insert(Arc::new(dictionary))
            .map_err(|err| StoreError::Config(err.to_string()))?;
        self.shared.dictionaries.borrow_mut().dictionaries = Rc::new(set);
        if make_current && self.shared.dictionaries.borrow().current != id {
            dictionaries::save_current(&self.shared.fs, &self.shared.dir, id).await?;
            self.shared.dictionaries.borrow_mut().current = id;
        }
        Ok(added)
    }

    pub fn write_mode(&self) -> WriteMode {
        self.shared.mode.borrow().clone()
    }

    pub fn stats(&self) -> StoreStats {
        let mut stats = self.shared.stats.borrow().clone();
        let index = self.shared.index.borrow();
        stats.objects = index.len() as u64;
        stats.index_bytes = index.memory_bytes() as u64;
        stats.stalled_io_ops = self.shared.fs.stalled_ops();
        let cache = self.shared.cache.borrow();
        stats.cache_hits = cache.hits;
        stats.cache_misses = cache.misses;
        let segments = self.shared.segments.borrow();
        stats.segments = segments.len() as u64;
        stats.disk_bytes = segments.values().map(|segment| segment.end).sum();
        stats.live_bytes = segments.values().map(|segment| segment.live_bytes).sum();
        stats
    }

    /// Stores an object durably. `id` must be the object's id: the content is
    /// hashed and a mismatch refused. Completes only after the record is on
    /// stable storage (fdatasync), or with an error, never in between.
    pub async fn put(
        &self,
        id: ObjectId,
        kind: ObjectKind,
        content: Vec<u8>,
    ) -> Result<PutOutcome> {
        // Refused before any hashing is spent on it.
        self.check_put(content.len() as u64)?;
        self.store_checked(Verified::check(id, kind, content)?, false)
            .await
    }

    /// Proves a payload that arrived in `codec` against `id`: within this
    /// shard's object size limit, with the dictionaries it holds, hashed in
    /// steps if large (see [`Verified::check_payload_yielding`]).
    pub async fn verify_payload(
        &self,
        id: ObjectId,
        kind: ObjectKind,
        codec: Codec,
        payload: Vec<u8>,
    ) -> Result<Verified> {
        let max = self.shared.config.max_object_bytes;
        let dictionaries = self.dictionary_set();
        Verified::check_payload_yielding(id, kind, codec, payload, max, &dictionaries).await
    }

    /// Stores an object whose content was already checked against its id
    /// (see [`Verified`]): the same as [`ShardStore::put`] without hashing
    /// again.
    pub async fn put_verified(&self, object: Verified) -> Result<PutOutcome> {
        self.check_put(object.content_len())?;
        self.store_checked(object, false).await
    }

    /// Stores a copy that is not a client's write (a replayed hint, read
    /// repair, a repair fetch) unless the shard holds a tombstone for its
    /// id: then [`PutOutcome::Deleted`]. The copy may be older than a
    /// delete that reached this shard first. Decided by the writer, in
    /// order with deletes, so a delete that lands while the copy waits is
    /// seen too.
    pub async fn put_unless_deleted(&self, object: Verified) -> Result<PutOutcome> {
        self.check_put(object.content_len())?;
        self.store_checked(object, true).await
    }

    /// The put itself, once the shard may take it and its hash is checked.
    async fn store_checked(&self, object: Verified, unless_deleted: bool) -> Result<PutOutcome> {
        // S11: never a record this shard could not read back.
        if let Some(dictionary) = stratum_wire::codec::frame_dictionary(object.payload())
            .filter(|_| object.codec() == Codec::Zstd)
        {
            if !self
                .shared
                .dictionaries
                .borrow()
                .dictionaries
                .contains(dictionary)
            {
                return Err(StoreError::BadPayload {
                    id: object.id(),
                    source: CodecError::UnknownDictionary(dictionary),
                });
            }
        }
        let content_len = object.content_len();
        let (id, kind, codec, content) = object.into_parts();
        // Deduplicate only against an intact copy: a damaged one is replaced
        // by this put (read repair heals through put).
        if let Found::Intact(_) = self.shared.find_verified(&id).await? {
            self.shared.stats.borrow_mut().puts_deduplicated += 1;
            return Ok(PutOutcome::AlreadyPresent);
        }
        let reply = self
            .submit(group_commit::Op::Put {
                id,
                kind,
                codec,
                content,
                content_len,
                unless_deleted,
            })
            .await?;
        match reply {
            group_commit::Reply::Put(outcome) => Ok(outcome),
            _ => Err(StoreError::WriterGone),
        }
    }

    /// Refuses a put the shard cannot take: not writable, or too large.
    /// `len` is the content's (inflated) length: the object size limit
    /// is about objects, whatever form they are stored in.
    fn check_put(&self, len: u64) -> Result<()> {
        self.shared.check_writable()?;
        let max = self.shared.config.max_object_bytes;
        if len > max {
            return Err(StoreError::TooLarge { size: len, max });
        }
        Ok(())
    }

    /// Deletes an object with a durable tombstone. Returns whether a live
    /// object existed.
    pub async fn delete(&self, id: ObjectId) -> Result<bool> {
        self.delete_with_time(id, None).await
    }

    /// As [`ShardStore::delete`], with the tombstone dated `at` (unix
    /// seconds): a delete learned from a peer keeps the peer's time, so
    /// every replica remembers the same delete for the same grace period.
    pub async fn delete_at(&self, id: ObjectId, at: u64) -> Result<bool> {
        self.delete_with_time(id, Some(at)).await
    }

    async fn delete_with_time(&self, id: ObjectId, at: Option<u64>) -> Result<bool> {
        self.shared.check_deletable()?;
        match self.submit(group_commit::Op::Delete { id, at }).await? {
            group_commit::Reply::Delete(existed) => Ok(existed),
            _ => Err(StoreError::WriterGone),
        }
    }

    /// A shard made read-only by a full disk takes writes again once the
    /// file system has [`StoreConfig::resume_free_bytes`] free. Returns
    /// whether it resumed. (Safe: an out-of-space write is refused before
    /// anything is written, and nothing was acknowledged for it.)
    pub async fn try_resume(&self) -> bool {
        if !matches!(*self.shared.mode.borrow(), WriteMode::ReadOnly(_)) {
            return false;
        }
        let free = match self.shared.fs.free_bytes(&self.shared.dir).await {
            Ok(free) => free,
            Err(err) => {
                tracing::warn!(shard = self.shared.config.shard_id, error = %err, "cannot read the free space");
                return false;
            }
        };
        if free < self.shared.config.resume_free_bytes {
            return false;
        }
        let mut mode = self.shared.mode.borrow_mut();
        if !matches!(*mode, WriteMode::ReadOnly(_)) {
            return false;
        }
        *mode = WriteMode::Writable;
        tracing::warn!(
            shard = self.shared.config.shard_id,
            free_bytes = free,
            "space is back: the shard takes writes again"
        );
        true
    }

    /// Forgets deletes older than `grace` (see `holdings.rs`); returns how
    /// many. Their tombstone records stay on disk until compaction.
    pub fn purge_tombstones(&self, grace: std::time::Duration) -> usize {
        let cutoff = group_commit::unix_now().saturating_sub(grace.as_secs());
        self.shared.holdings.borrow_mut().purge(cutoff)
    }

    /// Removes this shard's copy of `id` durably, without deleting the
    /// object: no tombstone is remembered, so anti-entropy neither spreads
    /// a delete nor refuses the object back. For a copy that was handed to
    /// the object's replicas after a topology change. Returns whether a copy
    /// existed.
    pub async fn drop_copy(&self, id: ObjectId) -> Result<bool> {
        self.shared.check_deletable()?;
        match self.submit(group_commit::Op::Drop { id }).await? {
            group_commit::Reply::Delete(existed) => Ok(existed),
            _ => Err(StoreError::WriterGone),
        }
    }

    /// Writes an index checkpoint (after the writes queued before it are
    /// durable), so the next open replays only what comes after. Returns the
    /// number of entries written.
    pub async fn checkpoint(&self) -> Result<u64> {
        self.shared.check_writable()?;
        match self.submit(group_commit::Op::Checkpoint).await? {
            group_commit::Reply::Checkpoint(entries) => Ok(entries),
            _ => Err(StoreError::WriterGone),
        }
    }

    async fn submit(&self, op: group_commit::Op) -> Result<group_commit::Reply> {
        let queue = self.queue.as_ref().ok_or(StoreError::WriterGone)?;
        // A oneshot, not a flume channel: one allocation and no lock per
        // op (the writer answers thousands of these per group commit).
        let (done, reply) = futures_channel::oneshot::channel();
        queue
            .send_async(group_commit::WriteOp { op, done })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        reply.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Reads an object. Every read from disk checks the record's CRC-32
    /// over its header (with the whole id) and content; a record failing it
    /// is reported as [`StoreError::Corrupt`], never returned. The SHA-256
    /// was checked when the content entered the node, and is checked again
    /// by scrub and by every consumer (ARCHITECTURE.md, corruption matrix).
    pub async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>> {
        if let Some(object) = self.shared.cache.borrow_mut().get(id) {
            return Ok(Some(object));
        }
        let candidates: Vec<Location> = self.shared.index.borrow().candidates(key_of(id)).collect();
        for location in candidates {
            // One read of the whole record; a record of another object that
            // shares the 64-bit key is skipped.
            match self.shared.read_object(id, location).await {
                Ok(Some(object)) => {
                    self.shared.cache.borrow_mut().insert(*id, object.clone());
                    return Ok(Some(object));
                }
                Ok(None) => {}
                // Damage is reported, never served; a re-put of the object
                // replaces the damaged record (see `find_verified`).
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// The object if it is in the cache (no I/O; a miss is not counted).
    pub fn get_cached(&self, id: &ObjectId) -> Option<StoredObject> {
        self.shared.cache.borrow_mut().peek(id)
    }

    /// Whether the store holds `id` (confirmed against the record on disk
    /// unless cached).
    pub async fn has(&self, id: &ObjectId) -> Result<bool> {
        if self.shared.cache.borrow_mut().get(id).is_some() {
            return Ok(true);
        }
        Ok(self.shared.find(id).await?.is_some())
    }

    /// Ids of every stored object, read from the records (for verification
    /// tools and tests; reads every record header).
    pub async fn ids(&self) -> Result<Vec<ObjectId>> {
        let locations: Vec<Location> = self
            .shared
            .index
            .borrow()
            .iter()
            .map(|(_, location)| location)
            .collect();
        let mut ids = Vec::with_capacity(locations.len());
        for location in locations {
            if let Ok(header) = self.shared.read_header(location).await {
                ids.push(header.id);
            }
        }
        Ok(ids)
    }

    /// One page of stored ids in ascending index-key order: those whose key
    /// is above `after`, at least `max_ids` of them when that many remain
    /// (a page never splits ids sharing a key, so a page may hold a few
    /// more). Returns the page and the cursor for the next one (`None` at
    /// the end). Scans the whole index per page (O(objects), a few ms per
    /// million) and reads one record header per id returned.
    pub async fn list_ids(
        &self,
        after: Option<u64>,
        max_ids: usize,
    ) -> Result<(Vec<ObjectId>, Option<u64>)> {
        let max_ids = max_ids.max(1);
        let mut page: Vec<(u64, Location)> = self
            .shared
            .index
            .borrow()
            .iter()
            .filter(|(key, _)| after.is_none_or(|after| *key > after))
            .collect();
        let more = page.len() > max_ids;
        if more {
            // O(n) selection of the smallest keys, then the ids that share
            // the page's last key.
            let (_, nth, _) = page.select_nth_unstable_by_key(max_ids - 1, |(key, _)| *key);
            let last_key = nth.0;
            let mut end = max_ids;
            for index in max_ids..page.len() {
                if page[index].0 == last_key {
                    page.swap(end, index);
                    end += 1;
                }
            }
            page.truncate(end);
        }
        page.sort_unstable_by_key(|(key, location)| (*key, location.pack()));
        let next = if more {
            page.last().map(|(key, _)| *key)
        } else {
            None
        };
        let mut ids = Vec::with_capacity(page.len());
        for (_, location) in page {
            // A record that fails its header checks is left to reads and
            // scrub to report; a listing only names what it can read.
            if let Ok(header) = self.shared.read_header(location).await {
                ids.push(header.id);
            }
        }
        Ok((ids, next))
    }

    /// Rewrites every closed segment whose dead fraction is at least
    /// `min_dead_fraction` (0.0..=1.0), then removes it. Safe against a crash
    /// at any point: see `compaction.rs`.
    pub async fn compact(&self, min_dead_fraction: f64) -> Result<CompactionReport> {
        self.shared.check_deletable()?;
        compaction::compact(self, min_dead_fraction).await
    }

    pub(crate) fn shared(&self) -> &Shared<F> {
        &self.shared
    }

    pub(crate) async fn relocate(&self, records: Vec<group_commit::Relocation>) -> Result<u64> {
        match self.submit(group_commit::Op::Relocate { records }).await? {
            group_commit::Reply::Relocated(copied) => Ok(copied),
            _ => Err(StoreError::WriterGone),
        }
    }

    /// Re-verifies every live record (CRC-32 and SHA-256) reading at most
    /// `bytes_per_second` (0: unlimited), and reports what it found. Meant to
    /// run as a background task on the shard's core; reads and writes go on
    /// meanwhile.
    pub async fn scrub(&self, bytes_per_second: u64) -> Result<ScrubReport> {
        scrub::scrub(&self.shared, bytes_per_second).await
    }

    /// A consumer found `id` as served from here not hashing to its id (a
    /// read checks only the CRC): checks its record as scrub does, and
    /// unindexes it if it is damaged, so a good copy can be stored again.
    /// Returns whether it did. An intact record is left alone, whoever
    /// claims otherwise.
    pub async fn quarantine_if_damaged(&self, id: &ObjectId) -> Result<bool> {
        let key = key_of(id);
        // Served from the cache, perhaps: the next read goes to the record.
        self.shared.cache.borrow_mut().remove(id);
        let candidates: Vec<Location> = self.shared.index.borrow().candidates(key).collect();
        let mut unindexed = false;
        for location in candidates {
            unindexed |=
                scrub::unindex_if_confirmed(&self.shared, key, location, Some(*id), None).await;
        }
        if unindexed {
            self.shared.stats.borrow_mut().scrub_findings += 1;
        }
        Ok(unindexed)
    }

    /// Checkpoints the index (if the shard still takes writes), stops the
    /// writer after the queued writes, and closes the files. A failed
    /// checkpoint is logged, not fatal: the next open replays instead.
    pub async fn close(mut self) -> Result<()> {
        if self.shared.check_writable().is_ok() {
            if let Err(err) = self.checkpoint().await {
                tracing::warn!(shard = self.shared.config.shard_id, error = %err, "no checkpoint at close; the next open replays every segment");
            }
        }
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            writer.await;
        }
        let segments = std::mem::take(&mut *self.shared.segments.borrow_mut());
        for segment in segments.into_values() {
            if let Ok(file) = Rc::try_unwrap(segment.file) {
                let path = self.shared.segment_path(segment.slot);
                file.close()
                    .await
                    .map_err(|err| StoreError::io("closing segment", path, err))?;
            }
        }
        Ok(())
    }
}

impl<F: StoreFs> Shared<F> {
    pub(crate) fn segment_path(&self, slot: u16) -> PathBuf {
        self.dir.join(segment::file_name(slot))
    }

    /// Whether the shard takes deletes (and compaction): also when it is
    /// out of space, since a tombstone is small and usually lands in space
    /// the writer prepared, and both can give space back.
    pub(crate) fn check_deletable(&self) -> Result<()> {
        match &*self.mode.borrow() {
            WriteMode::Writable | WriteMode::ReadOnly(_) => Ok(()),
            WriteMode::Failed(cause) => Err(StoreError::Failed {
                cause: cause.clone(),
            }),
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        match &*self.mode.borrow() {
            WriteMode::Writable => Ok(()),
            WriteMode::ReadOnly(reason) => Err(StoreError::ReadOnly {
                reason: reason.clone(),
            }),
            WriteMode::Failed(cause) => Err(StoreError::Failed {
                cause: cause.clone(),
            }),
        }
    }

    fn segment_file(&self, slot: u16) -> Option<Rc<F::File>> {
        self.segments
            .borrow()
            .get(&slot)
            .map(|segment| Rc::clone(&segment.file))
    }

    /// Reads `len` bytes of the record at `location` (one aligned read).
    pub(crate) async fn read_bytes(
        &self,
        location: Location,
        len: usize,
    ) -> Result<<F::File as StoreFile>::ReadBuf> {
        let path = || self.segment_path(location.segment);
        let file = self.segment_file(location.segment).ok_or_else(|| {
            StoreError::io(
                "reading record",
                path(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "segment not open"),
            )
        })?;
        file.read_at(location.offset, len)
            .await
            .map_err(|err| StoreError::io("reading record", path(), err))
    }

    /// Reads and parses the header of the record at `location`.
    pub(crate) async fn read_header(&self, location: Location) -> Result<RecordHeader> {
        let bytes = self.read_bytes(location, HEADER_LEN).await?;
        RecordHeader::parse(bytes.as_ref()).map_err(|corruption| StoreError::Corrupt {
            id: ObjectId::from_bytes([0; 32]),
            segment: u32::from(location.segment),
            offset: location.offset,
            corruption,
        })
    }

    /// The location and header of `id`'s live record, confirmed against the
    /// full id stored in the record.
    pub(crate) async fn find(&self, id: &ObjectId) -> Result<Option<(Location, RecordHeader)>> {
        let candidates: Vec<Location> = self.index.borrow().candidates(key_of(id)).collect();
        for location in candidates {
            match self.read_header(location).await {
                Ok(header) if header.id == *id && header.record_type == RecordType::Object => {
                    return Ok(Some((location, header)));
                }
                Ok(header) if is_collision(&header, id, location) => continue,
                // Not what the index put there: the read returned the wrong
                // block. Answering "absent" would let a delete miss the
                // live record.
                Ok(header) => {
                    self.stats.borrow_mut().corrupt_reads += 1;
                    return Err(StoreError::Corrupt {
                        id: *id,
                        segment: u32::from(location.segment),
                        offset: location.offset,
                        corruption: Corruption::WrongObject {
                            expected: *id,
                            found: header.id,
                        },
                    });
                }
                Err(StoreError::Corrupt { corruption, .. }) => {
                    self.stats.borrow_mut().corrupt_reads += 1;
                    return Err(StoreError::Corrupt {
                        id: *id,
                        segment: u32::from(location.segment),
                        offset: location.offset,
                        corruption,
                    });
                }
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    /// Looks `id` up and checks the whole record (as a read does: CRC-32),
    /// for put deduplication: a put must not be acknowledged as "already
    /// present" against a copy that can no longer be read back.
    pub(crate) async fn find_verified(&self, id: &ObjectId) -> Result<Found> {
        let candidates: Vec<Location> = self.index.borrow().candidates(key_of(id)).collect();
        for location in candidates {
            let bytes = self.read_bytes(location, location.len as usize).await?;
            let bytes = bytes.as_ref();
            match record::check_record(bytes) {
                Ok((header, _, _)) if header.id == *id => return Ok(Found::Intact(location)),
                Ok((header, _, _)) if is_collision(&header, id, location) => continue,
                Err(_) => match RecordHeader::parse(bytes) {
                    // A damaged record of another object: not ours to judge.
                    Ok(header) if is_collision(&header, id, location) => continue,
                    // Ours, or too damaged to say whose: replace it.
                    _ => return Ok(Found::Damaged(location)),
                },
                // An intact record that cannot be at this location (a
                // misdirected read): this copy cannot be vouched for, so the
                // put writes a fresh one.
                Ok(_) => return Ok(Found::Damaged(location)),
            }
        }
        Ok(Found::Absent)
    }

    /// One aligned read of the whole record, then every check. `None` if
    /// the record belongs to another object (a 64-bit key collision).
    async fn read_object(&self, id: &ObjectId, location: Location) -> Result<Option<StoredObject>> {
        let corrupt = |corruption| {
            self.stats.borrow_mut().corrupt_reads += 1;
            StoreError::Corrupt {
                id: *id,
                segment: u32::from(location.segment),
                offset: location.offset,
                corruption,
            }
        };
        let bytes = self.read_bytes(location, location.len as usize).await?;
        let (header, kind, content) = match record::check_record(bytes.as_ref()) {
            Ok(checked) => checked,
            Err(corruption) => return Err(corrupt(corruption)),
        };
        if header.id != *id {
            // An intact record of another object: a true key collision, or
            // the read returned the wrong block.
            return if is_collision(&header, id, location) {
                Ok(None)
            } else {
                Err(corrupt(Corruption::WrongObject {
                    expected: *id,
                    found: header.id,
                }))
            };
        }
        Ok(Some(StoredObject {
            kind,
            codec: header.codec,
            payload: Bytes::copy_from_slice(content),
        }))
    }
}

/// Whether `header`, read at `location` while looking for `id`, is a record
/// of another object the index rightly lists there: its key matches `id`'s
/// (a 64-bit key collision) and its length fits the index entry. Anything
/// else is a wrong read (misdirected or damaged), never "another object".
pub(crate) fn is_collision(header: &RecordHeader, id: &ObjectId, location: Location) -> bool {
    header.id != *id
        && key_of(&header.id) == key_of(id)
        && header.disk_len() == u64::from(location.len)
}
