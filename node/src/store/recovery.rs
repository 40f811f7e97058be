//! Opening a shard: superblock first, then the index checkpoint if it can
//! be trusted (see `checkpoint.rs`), then every segment record after the
//! checkpoint's watermark (all of them without one) replayed in sequence
//! order.
//!
//! What a scan of a segment meets, and what it does:
//! - a valid record (header parses, fits, checksum matches): applied;
//! - zero bytes before a block boundary: the padding that ends a write
//!   batch, skipped;
//! - a zero block at a block boundary, or a record failing its checks: if a
//!   valid record follows later in the segment, the bytes in between are
//!   quarantined (reported, copied to `quarantine/`, never served) and the
//!   scan resumes there; if nothing valid follows, this is the end of the
//!   data — in the newest segment a torn tail from a crash, which is
//!   truncated (those bytes were never acknowledged: a batch is acknowledged
//!   only after its fdatasync, and the next batch is written only after that).
//! - A segment file shorter than its header is the remains of a rotation
//!   that crashed before its header was durable (no record can follow an
//!   unsynced header): removed. A segment whose header is damaged is renamed
//!   aside (`*.quarantined`) and reported, not deleted.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::checkpoint;
use super::error::{Corruption, Result, StoreError};
use super::fs::{StoreFile, StoreFs};
use super::group_commit::{self, Tail};
use super::index::{key_of, Index, Location, MAX_SEGMENT_SLOTS};
use super::record::{self, RecordHeader, RecordType, HEADER_LEN};
use super::scrub;
use super::segment::{self, SegmentHeader};
use super::superblock::{self, SUPERBLOCK_FILE};
use super::{Segment, Shared};

/// A damaged byte range that was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub segment: u16,
    pub offset: u64,
    pub len: u64,
    pub reason: String,
    /// Where the bytes were copied (up to 1 MiB of them).
    pub saved_to: Option<PathBuf>,
}

/// What opening the shard found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub tombstones: u64,
    /// Live objects after replay.
    pub objects: u64,
    /// Bytes cut from the newest segment's torn tail.
    pub torn_tail_bytes: u64,
    pub quarantined: Vec<Quarantined>,
    /// Segment files removed (leftovers of a rotation that crashed) or set
    /// aside (damaged header).
    pub discarded_files: Vec<String>,
    /// Index entries loaded from a checkpoint (0: none was used).
    pub checkpoint_entries: u64,
    /// Indexed records found damaged while a later record of the same key
    /// was replayed: unindexed, so the later record (or a fresh copy from a
    /// replica) takes their place instead of the shard refusing to open.
    pub damaged_unindexed: u64,
    /// Why a checkpoint present on disk was not used, if one was not.
    pub checkpoint_ignored: Option<String>,
    pub elapsed: Duration,
}

const SCAN_CHUNK: usize = 1 << 20;
const QUARANTINE_COPY_LIMIT: u64 = 1 << 20;

pub(crate) async fn recover<F: StoreFs>(shared: &Shared<F>) -> Result<(RecoveryReport, Tail)> {
    let started = crate::clock::now();
    let mut report = RecoveryReport::default();
    let slots = identify(shared).await?;
    let found = open_segments(shared, slots, &mut report).await?;
    let next_sequence = found.last().map_or(1, |(header, _, _)| header.sequence + 1);
    let plan = register_segments(shared, found);
    // (sequence, offset) before which the checkpoint already holds everything.
    let watermark = load_checkpoint(shared, &plan, &mut report)
        .await
        .unwrap_or((0, 0));
    let mut tail = replay(shared, &plan, watermark, &mut report).await?;
    tail.next_sequence = next_sequence;
    report.segments = plan.len();
    report.objects = shared.index.borrow().len() as u64;
    report.elapsed = crate::clock::since(started);
    tracing::info!(
        shard = shared.config.shard_id,
        segments = report.segments,
        objects = report.objects,
        torn_tail_bytes = report.torn_tail_bytes,
        quarantined = report.quarantined.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "shard recovered"
    );
    Ok((report, tail))
}

/// Phase 1: the shard directory exists and knows which shard it is (its
/// superblock, created for a new shard). Returns the segment files there.
async fn identify<F: StoreFs>(shared: &Shared<F>) -> Result<Vec<(u16, String)>> {
    let fs = &shared.fs;
    let dir = &shared.dir;
    let config = &shared.config;
    fs.create_dir_all(dir)
        .await
        .map_err(|err| StoreError::io("creating shard directory", dir, err))?;
    let names = fs
        .list(dir)
        .await
        .map_err(|err| StoreError::io("listing shard directory", dir, err))?;
    let has_superblock = names.iter().any(|name| name == SUPERBLOCK_FILE);
    let slots: Vec<(u16, String)> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name).map(|slot| (slot, name.clone())))
        .collect();
    if !has_superblock && !slots.is_empty() {
        return Err(StoreError::BadSuperblock {
            path: dir.join(SUPERBLOCK_FILE),
            reason:
                "missing, but the directory holds segments; refusing to guess the shard's identity"
                    .into(),
        });
    }
    // First DMA open of the shard: the non-empty superblock (glommio probe).
    superblock::open_or_create(
        fs,
        dir,
        config.shard_id,
        config.shard_count,
        !has_superblock,
    )
    .await?;
    Ok(slots)
}

/// Phase 2: opens every segment file; removes one whose creation never
/// completed and sets aside one whose header is damaged or not this
/// shard's. Returns the rest in replay (sequence) order.
async fn open_segments<F: StoreFs>(
    shared: &Shared<F>,
    slots: Vec<(u16, String)>,
    report: &mut RecoveryReport,
) -> Result<Vec<(SegmentHeader, F::File, u64)>> {
    let fs = &shared.fs;
    let dir = &shared.dir;
    let config = &shared.config;
    let mut found: Vec<(SegmentHeader, F::File, u64)> = Vec::new();
    for (slot, name) in slots {
        let path = dir.join(&name);
        let file = fs
            .open(&path, false)
            .await
            .map_err(|err| StoreError::io("opening segment", &path, err))?;
        let size = file
            .size()
            .await
            .map_err(|err| StoreError::io("sizing segment", &path, err))?;
        if size < segment::HEADER_LEN {
            let _ = file.close().await;
            fs.remove(&path)
                .await
                .map_err(|err| StoreError::io("removing partial segment", &path, err))?;
            tracing::warn!(segment = %name, size, "removed a segment whose creation never completed");
            report.discarded_files.push(name);
            continue;
        }
        let block = file
            .read_at(0, segment::HEADER_LEN as usize)
            .await
            .map_err(|err| StoreError::io("reading segment header", &path, err))?;
        let header = SegmentHeader::decode(block.as_ref()).and_then(|header| {
            if header.slot != slot || header.shard_id != config.shard_id {
                Err(format!(
                    "header says shard {} slot {}, file is slot {slot} of shard {}",
                    header.shard_id, header.slot, config.shard_id
                ))
            } else {
                Ok(header)
            }
        });
        drop(block);
        match header {
            Ok(header) => found.push((header, file, size)),
            Err(reason) => {
                let _ = file.close().await;
                let aside = dir.join(format!("{name}.quarantined"));
                fs.rename(&path, &aside)
                    .await
                    .map_err(|err| StoreError::io("setting aside a damaged segment", &path, err))?;
                tracing::error!(segment = %name, %reason, "segment header damaged; file set aside");
                report.discarded_files.push(name);
            }
        }
    }
    if !report.discarded_files.is_empty() {
        fs.sync_dir(dir)
            .await
            .map_err(|err| StoreError::io("syncing shard directory", dir, err))?;
    }
    found.sort_by_key(|(header, _, _)| header.sequence);
    Ok(found)
}

/// Phase 3: the segments become the shard's, in replay order.
fn register_segments<F: StoreFs>(
    shared: &Shared<F>,
    found: Vec<(SegmentHeader, F::File, u64)>,
) -> Vec<Planned<F::File>> {
    let count = found.len();
    let mut plan: Vec<Planned<F::File>> = Vec::with_capacity(count);
    for (header, file, size) in found {
        let file = Rc::new(file);
        shared.segments.borrow_mut().insert(
            header.slot,
            Segment {
                slot: header.slot,
                sequence: header.sequence,
                file: Rc::clone(&file),
                end: size,
                live_bytes: 0,
            },
        );
        plan.push(Planned {
            slot: header.slot,
            sequence: header.sequence,
            size,
            file,
        });
    }
    plan
}

/// Phase 4: replays every record after the checkpoint's watermark into the
/// index, and settles the newest segment's tail, where writing resumes.
async fn replay<F: StoreFs>(
    shared: &Shared<F>,
    plan: &[Planned<F::File>],
    (watermark_sequence, watermark_offset): (u64, u64),
    report: &mut RecoveryReport,
) -> Result<Tail> {
    let count = plan.len();
    let mut tail = Tail {
        active: None,
        offset: 0,
        prepared: 0,
        next_sequence: 0,
    };
    for (position, planned) in plan.iter().enumerate() {
        let is_newest = position + 1 == count;
        let from = match planned.sequence.cmp(&watermark_sequence) {
            std::cmp::Ordering::Less => continue, // wholly in the checkpoint
            std::cmp::Ordering::Equal => watermark_offset.max(segment::HEADER_LEN),
            std::cmp::Ordering::Greater => segment::HEADER_LEN,
        };
        let end = scan_segment(
            shared,
            planned.slot,
            &planned.file,
            planned.size,
            from,
            report,
        )
        .await?;
        if is_newest {
            tail = settle_tail(shared, planned, from, end, report).await?;
        }
    }
    Ok(tail)
}

/// The newest segment's end: zeros after its last record are space the
/// writer prepared (see group_commit.rs) and are kept; anything else after
/// it is a torn tail, cut. Writing resumes at the next block boundary.
async fn settle_tail<F: StoreFs>(
    shared: &Shared<F>,
    planned: &Planned<F::File>,
    from: u64,
    end: u64,
    report: &mut RecoveryReport,
) -> Result<Tail> {
    let (slot, size, file) = (planned.slot, planned.size, &planned.file);
    let align = file.alignment() as u64;
    let mut prepared_end = 0;
    let prepared = end < size
        && is_zero(file.as_ref(), end, size).await.map_err(|err| {
            StoreError::io("reading the segment tail", shared.segment_path(slot), err)
        })?;
    if prepared {
        prepared_end = size;
    } else if end < size {
        // A torn tail is cut only after everything the scan kept, and never
        // inside what the checkpoint already holds.
        debug_assert!(
            end >= from && end >= segment::HEADER_LEN,
            "truncating segment {slot} at {end}, before its scan start {from}"
        );
        let path = shared.segment_path(slot);
        file.truncate(end)
            .await
            .map_err(|err| StoreError::io("truncating torn tail", &path, err))?;
        file.fdatasync()
            .await
            .map_err(|err| StoreError::io("syncing truncated segment", &path, err))?;
        tracing::warn!(segment = slot, cut = size - end, "truncated a torn tail");
        report.torn_tail_bytes += size - end;
    }
    let resume = end.div_ceil(align) * align;
    if let Some(segment) = shared.segments.borrow_mut().get_mut(&slot) {
        segment.end = resume;
    }
    Ok(Tail {
        active: Some(slot),
        offset: resume,
        prepared: prepared_end.max(resume),
        next_sequence: 0,
    })
}

/// A segment found at open, in replay order.
struct Planned<File> {
    slot: u16,
    sequence: u64,
    size: u64,
    file: Rc<File>,
}

/// Loads `index.ckpt` into the index if it is usable, and returns its
/// watermark. `None`: no checkpoint, or one that cannot be trusted (the
/// reason goes into the report); the caller then replays every segment.
async fn load_checkpoint<F: StoreFs>(
    shared: &Shared<F>,
    plan: &[Planned<F::File>],
    report: &mut RecoveryReport,
) -> Option<(u64, u64)> {
    let path = shared.dir.join(checkpoint::FILE_NAME);
    if !shared.fs.exists(&path).await.unwrap_or(false) {
        return None;
    }
    let mut ignore = |reason: String| {
        tracing::warn!(checkpoint = %path.display(), %reason, "checkpoint not used; replaying every segment");
        report.checkpoint_ignored = Some(reason);
        None
    };
    let mapped = match shared.fs.map_file(&path).await {
        Ok(mapped) => mapped,
        Err(err) => return ignore(format!("unreadable: {err}")),
    };
    let checkpoint = match checkpoint::decode(mapped.as_ref(), shared.config.shard_id) {
        Ok(checkpoint) => checkpoint,
        Err(reason) => return ignore(reason),
    };
    for listed in &checkpoint.segments {
        if !plan
            .iter()
            .any(|p| p.slot == listed.slot && p.sequence == listed.sequence)
        {
            return ignore(format!(
                "it lists segment slot {} sequence {}, which is gone or changed",
                listed.slot, listed.sequence
            ));
        }
    }
    for planned in plan
        .iter()
        .filter(|p| p.sequence <= checkpoint.watermark_sequence)
    {
        if !checkpoint
            .segments
            .iter()
            .any(|c| c.slot == planned.slot && c.sequence == planned.sequence)
        {
            return ignore(format!(
                "segment slot {} sequence {} predates its watermark but is not in it",
                planned.slot, planned.sequence
            ));
        }
    }
    if checkpoint.watermark_sequence > 0 {
        let long_enough = plan
            .iter()
            .find(|p| p.sequence == checkpoint.watermark_sequence)
            .is_some_and(|p| p.size >= checkpoint.watermark_offset);
        if !long_enough {
            return ignore("the watermark segment is shorter than the watermark".into());
        }
    }
    let mut known = vec![false; usize::from(MAX_SEGMENT_SLOTS)];
    for listed in &checkpoint.segments {
        known[usize::from(listed.slot)] = true;
    }
    let mut index = Index::with_capacity(checkpoint.entry_count());
    for (key, location) in checkpoint.entries() {
        if !known
            .get(usize::from(location.segment))
            .copied()
            .unwrap_or(false)
        {
            return ignore(format!(
                "an entry points into unknown segment slot {}",
                location.segment
            ));
        }
        index.insert(key, location);
    }
    *shared.index.borrow_mut() = index;
    {
        let mut segments = shared.segments.borrow_mut();
        for listed in &checkpoint.segments {
            if let Some(segment) = segments.get_mut(&listed.slot) {
                segment.live_bytes = listed.live_bytes;
            }
        }
    }
    report.checkpoint_entries = checkpoint.entry_count() as u64;
    let watermark = (checkpoint.watermark_sequence, checkpoint.watermark_offset);
    match checkpoint.holdings() {
        Some(holdings) => *shared.holdings.borrow_mut() = holdings,
        None => {
            drop(checkpoint);
            holdings_from_records(shared).await;
        }
    }
    Some(watermark)
}

/// Rebuilds the live ids from the records the index points at (a version 1
/// checkpoint has no holdings): one header read per object, once, at the
/// first open after an upgrade.
async fn holdings_from_records<F: StoreFs>(shared: &Shared<F>) {
    let locations: Vec<Location> = shared
        .index
        .borrow()
        .iter()
        .map(|(_, location)| location)
        .collect();
    tracing::info!(
        shard = shared.config.shard_id,
        objects = locations.len(),
        "version 1 checkpoint: reading record headers to list the shard's ids"
    );
    for location in locations {
        // An unreadable header is left to reads and scrub; repair treats the
        // object as missing and fetches a good copy.
        if let Ok(header) = shared.read_header(location).await {
            shared.holdings.borrow_mut().record_put(header.id);
        }
    }
}

/// What a walk of a segment meets next (see [`Scanner::step`]).
pub(crate) enum Step {
    Record {
        offset: u64,
        header: RecordHeader,
    },
    /// Bytes `offset..next` fail their checks; a valid record is at `next`.
    Damaged {
        offset: u64,
        next: u64,
        reason: String,
    },
    /// No valid record at or after the offset asked for.
    End,
}

/// Reads a segment through a sliding window of large aligned reads.
pub(crate) struct Scanner<'a, File: StoreFile> {
    file: &'a File,
    size: u64,
    start: u64,
    window: Vec<u8>,
}

impl<'a, File: StoreFile> Scanner<'a, File> {
    pub(crate) fn new(file: &'a File, size: u64) -> Self {
        Self {
            file,
            size,
            start: 0,
            window: Vec::new(),
        }
    }

    /// Up to `len` bytes at `offset` (fewer at end of file).
    pub(crate) async fn get(&mut self, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        let end = (offset + len as u64).min(self.size);
        if offset < self.start || end > self.start + self.window.len() as u64 {
            let want = (len.max(SCAN_CHUNK) as u64).min(self.size.saturating_sub(offset)) as usize;
            let data = self.file.read_at(offset, want).await?;
            self.window.clear();
            self.window.extend_from_slice(data.as_ref());
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        let to = ((end - self.start) as usize)
            .min(self.window.len())
            .max(from);
        Ok(&self.window[from..to])
    }

    /// The valid record at `offset`, or `None` if every byte from `offset`
    /// to the next multiple of `align` is zero (padding: a record never
    /// starts with a zero byte, its magic does not).
    pub(crate) async fn record_at(
        &mut self,
        offset: u64,
        align: u64,
    ) -> std::io::Result<Result<Option<RecordHeader>, Corruption>> {
        let boundary = (offset / align + 1) * align;
        let to_boundary = self.get(offset, (boundary - offset) as usize).await?;
        if !to_boundary.is_empty() && to_boundary.iter().all(|byte| *byte == 0) {
            return Ok(Ok(None));
        }
        let bytes = self.get(offset, HEADER_LEN).await?;
        if bytes.len() < HEADER_LEN {
            return Ok(Err(Corruption::ShortRead {
                got: bytes.len(),
                wanted: HEADER_LEN,
            }));
        }
        let header = match RecordHeader::parse(bytes) {
            Ok(header) => header,
            Err(corruption) => return Ok(Err(corruption)),
        };
        if offset + header.disk_len() > self.size {
            return Ok(Err(Corruption::LengthPastEnd {
                len: header.disk_len(),
            }));
        }
        let whole = self
            .get(offset, HEADER_LEN + header.content_len as usize)
            .await?;
        Ok(header.verify(&whole[HEADER_LEN..]).map(|()| Some(header)))
    }

    /// The next thing a walk of the segment meets at or after `offset`:
    /// a valid record (batch padding before it skipped), a damaged range
    /// followed by a valid record, or the end of the data. Recovery and
    /// compaction walk segments only through this, so they cannot disagree
    /// about where records are.
    pub(crate) async fn step(&mut self, mut offset: u64, align: u64) -> std::io::Result<Step> {
        while offset < self.size {
            let reason = match self.record_at(offset, align).await? {
                Ok(Some(header)) => return Ok(Step::Record { offset, header }),
                Ok(None) if offset % align != 0 => {
                    offset = offset.div_ceil(align) * align; // batch padding
                    continue;
                }
                Ok(None) => "zeroed block where data continues".to_owned(),
                Err(corruption) => corruption.to_string(),
            };
            return Ok(
                match self
                    .next_valid(offset + record::RECORD_ALIGN, align)
                    .await?
                {
                    Some(next) => Step::Damaged {
                        offset,
                        next,
                        reason,
                    },
                    None => Step::End,
                },
            );
        }
        Ok(Step::End)
    }

    /// The next offset at or after `from` holding a valid record.
    pub(crate) async fn next_valid(
        &mut self,
        from: u64,
        align: u64,
    ) -> std::io::Result<Option<u64>> {
        let mut offset = from.div_ceil(record::RECORD_ALIGN) * record::RECORD_ALIGN;
        while offset + HEADER_LEN as u64 <= self.size {
            let magic_matches = self.get(offset, 4).await? == record::MAGIC;
            if magic_matches {
                if let Ok(Some(_)) = self.record_at(offset, align).await? {
                    return Ok(Some(offset));
                }
            }
            offset += record::RECORD_ALIGN;
        }
        Ok(None)
    }
}

/// Whether every byte of `file` in `from..to` is zero.
async fn is_zero<File: StoreFile>(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    const CHUNK: u64 = 1 << 20;
    let mut offset = from;
    while offset < to {
        let len = CHUNK.min(to - offset) as usize;
        let bytes = file.read_at(offset, len).await?;
        let bytes = bytes.as_ref();
        if bytes.len() < len || bytes.iter().any(|byte| *byte != 0) {
            return Ok(false);
        }
        offset += len as u64;
    }
    Ok(true)
}

/// Replays one segment into the index. Returns the end of its valid data.
async fn scan_segment<F: StoreFs>(
    shared: &Shared<F>,
    slot: u16,
    file: &F::File,
    size: u64,
    from: u64,
    report: &mut RecoveryReport,
) -> Result<u64> {
    let path = shared.segment_path(slot);
    let io_err = |err| StoreError::io("scanning segment", &path, err);
    let align = file.alignment() as u64;
    let mut scanner = Scanner {
        file,
        size,
        start: 0,
        window: Vec::new(),
    };
    let mut offset = from;
    let mut end_of_data = offset;
    loop {
        match scanner.step(offset, align).await.map_err(io_err)? {
            Step::Record { offset: at, header } => {
                let location = Location {
                    segment: slot,
                    offset: at,
                    len: header.disk_len() as u32,
                };
                let deleted_at = if header.record_type == RecordType::Tombstone {
                    let content = scanner
                        .get(at + HEADER_LEN as u64, header.content_len as usize)
                        .await
                        .map_err(io_err)?;
                    // An older release's tombstone has no time: it counts
                    // from now, so it is kept a whole grace period.
                    record::tombstone_time(content).unwrap_or_else(group_commit::unix_now)
                } else {
                    0
                };
                apply(shared, &header, location, deleted_at, report).await?;
                offset = at + header.disk_len();
                end_of_data = offset;
            }
            Step::Damaged {
                offset: at,
                next,
                reason,
            } => {
                let saved_to = save_quarantined(shared, slot, &mut scanner, at, next).await;
                tracing::error!(segment = slot, offset = at, len = next - at, %reason, "quarantined damaged bytes");
                report.quarantined.push(Quarantined {
                    segment: slot,
                    offset: at,
                    len: next - at,
                    reason,
                    saved_to,
                });
                offset = next;
            }
            Step::End => break,
        }
    }
    // The zero padding that ends the last batch belongs to the data.
    let padded_end = (end_of_data.div_ceil(align) * align).min(size);
    if padded_end > end_of_data {
        let tail = scanner
            .get(end_of_data, (padded_end - end_of_data) as usize)
            .await
            .map_err(io_err)?;
        if tail.iter().all(|byte| *byte == 0) {
            end_of_data = padded_end;
        }
    }
    Ok(end_of_data)
}

/// What an indexed record sharing a replayed record's key turned out to be.
enum Identity {
    /// A record of the same object.
    Same,
    /// An intact record of another object whose key and length fit the
    /// index entry: a true 64-bit key collision.
    Collision,
    /// Damaged, twice in a row.
    Damaged(Corruption),
}

/// Reads the header at `candidate` to tell whether it is `id`'s. Anything
/// but a match or a true collision is read a second time before replay
/// acts on it (S12): a misdirected read taken for "another object" would
/// let a tombstone miss the live record it deletes, and one taken for
/// damage would unindex a good record.
async fn identify_candidate<F: StoreFs>(
    shared: &Shared<F>,
    candidate: Location,
    id: &stratum_wire::ObjectId,
) -> Result<Identity> {
    let mut first_damage = None;
    for _ in 0..2 {
        match shared.read_header(candidate).await {
            Ok(found) if found.id == *id => return Ok(Identity::Same),
            Ok(found) if super::is_collision(&found, id, candidate) => {
                return Ok(Identity::Collision)
            }
            Ok(found) => {
                tracing::warn!(segment = candidate.segment, offset = candidate.offset, expected = %id, found = %found.id, "replay read another object at an index location; reading it again");
            }
            Err(StoreError::Corrupt { corruption, .. }) => match first_damage {
                Some(_) => return Ok(Identity::Damaged(corruption)),
                None => first_damage = Some(corruption),
            },
            Err(other) => return Err(other),
        }
    }
    // Two reads that disagree, or that both name another object where the
    // index has this key: the device cannot be trusted now. The open
    // fails; a restart tries again.
    Err(StoreError::Corrupt {
        id: *id,
        segment: u32::from(candidate.segment),
        offset: candidate.offset,
        corruption: first_damage.unwrap_or(Corruption::KeyMismatch),
    })
}

/// Applies one replayed record; `deleted_at` is a tombstone's time.
async fn apply<F: StoreFs>(
    shared: &Shared<F>,
    header: &RecordHeader,
    location: Location,
    deleted_at: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    report.records += 1;
    let key = key_of(&header.id);
    let candidates: Vec<Location> = shared.index.borrow().candidates(key).collect();
    let mut existing = None;
    for candidate in candidates {
        // Rare: only when another record shares the 64-bit key.
        match identify_candidate(shared, candidate, &header.id).await? {
            Identity::Same => {
                existing = Some(candidate);
                break;
            }
            Identity::Collision => {}
            // Damaged since it was indexed (bit rot): whoever it belonged
            // to, it cannot be served. Unindexed, not fatal: one bad record
            // must not keep the whole shard from opening.
            Identity::Damaged(corruption) => {
                tracing::warn!(
                    segment = candidate.segment,
                    offset = candidate.offset,
                    %corruption,
                    "an indexed record is damaged; unindexed during replay"
                );
                shared.index.borrow_mut().remove(key, candidate);
                if let Some(segment) = shared.segments.borrow_mut().get_mut(&candidate.segment) {
                    segment.live_bytes =
                        segment.live_bytes.saturating_sub(u64::from(candidate.len));
                }
                scrub::forget_unvouched(shared, key).await;
                report.damaged_unindexed += 1;
            }
        }
    }
    let mut segments = shared.segments.borrow_mut();
    match header.record_type {
        RecordType::Object => {
            shared.holdings.borrow_mut().record_put(header.id);
            if existing == Some(location) {
                return Ok(());
            }
            // A later record of an id is its live copy, as it was when it
            // was written: a put writes one only to replace a copy it found
            // damaged (or could not read back), compaction to relocate one.
            // Keeping the earlier one would serve the damaged copy again.
            if let Some(old) = existing {
                shared.index.borrow_mut().remove(key, old);
                if let Some(segment) = segments.get_mut(&old.segment) {
                    segment.live_bytes = segment.live_bytes.saturating_sub(u64::from(old.len));
                }
            }
            shared.index.borrow_mut().insert(key, location);
            if let Some(segment) = segments.get_mut(&location.segment) {
                segment.live_bytes += u64::from(location.len);
            }
        }
        RecordType::Tombstone | RecordType::Dropped => {
            if header.record_type == RecordType::Tombstone {
                report.tombstones += 1;
                shared
                    .holdings
                    .borrow_mut()
                    .record_delete(header.id, deleted_at);
            } else {
                shared.holdings.borrow_mut().forget(&header.id);
            }
            if let Some(old) = existing {
                shared.index.borrow_mut().remove(key, old);
                if let Some(segment) = segments.get_mut(&old.segment) {
                    segment.live_bytes -= u64::from(old.len);
                }
            }
        }
    }
    Ok(())
}

async fn save_quarantined<F: StoreFs>(
    shared: &Shared<F>,
    slot: u16,
    scanner: &mut Scanner<'_, F::File>,
    offset: u64,
    next: u64,
) -> Option<PathBuf> {
    let len = (next - offset).min(QUARANTINE_COPY_LIMIT) as usize;
    let bytes = scanner.get(offset, len).await.ok()?.to_vec();
    let dir = shared.dir.join("quarantine");
    shared.fs.create_dir_all(&dir).await.ok()?;
    let path = dir.join(format!("seg-{slot:05}-{offset:012}.bin"));
    shared.fs.write_file_atomic(&path, &bytes).await.ok()?;
    Some(path)
}
