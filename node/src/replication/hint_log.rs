//! Hint files: the writes a replica missed, kept durably by the coordinator
//! until that replica is back (hinted handoff; `handoff.rs` replays them).
//!
//! One append-only file per core and target node,
//! `<shard dir>/hints/node-<id>.hints`, of self-delimiting records:
//!
//! ```text
//! offset size field
//!  0     4    magic  "SHNT" (0x544E4853, little-endian)
//!  4     4    body length, little-endian (≤ MAX_BODY)
//!  8     4    CRC-32 (crc32fast) of the body
//! 12     1    op: 1 put, 2 delete
//! 13     1    object kind (wire numbering; 0 for a delete)
//! 14    32    object id
//! 46     …    content (puts only)
//! ```
//!
//! Files are written with buffered I/O on glommio's blocking pool (hints are
//! the failure path, not the hot path) and fdatasync'd after every batch.
//! A torn or damaged tail is cut off when the file is opened: what follows
//! the first bad record cannot be framed reliably, and every hint is only an
//! extra copy of a write that already has its quorum. Once every record of a
//! file has been replayed the file is truncated to zero.
//!
//! Replay progress sits beside it in `node-<id>.replayed`, 16 bytes
//! overwritten in place and fdatasync'd:
//!
//! ```text
//! offset size field
//!  0     4    magic  "SRPL" (0x4C505253, little-endian)
//!  4     8    offset in the hint file up to which every record was replayed
//! 12     4    CRC-32 (crc32fast) of bytes 0..12
//! ```
//!
//! It is trusted at open only if it is intact and falls on a record
//! boundary of the intact prefix; otherwise replay starts from the file's
//! beginning. It is reset to zero before a replayed file is truncated, so a
//! stale mark can never skip hints appended after the truncation.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use stratum_wire::{ObjectId, ObjectKind};

const MAGIC: u32 = 0x544E_4853;
const PROGRESS_MAGIC: u32 = 0x4C50_5253;
const PROGRESS_LEN: usize = 16;
const HEADER: usize = 12;
const FIXED_BODY: usize = 1 + 1 + 32;
/// Largest body: a 4 GiB payload limit plus the fixed fields, so a damaged
/// length can never make the reader allocate more than the wire allows.
pub const MAX_BODY: u64 = u32::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintOp {
    Put { kind: ObjectKind, content: Vec<u8> },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub id: ObjectId,
    pub op: HintOp,
}

impl Hint {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (op, kind, content): (u8, u8, &[u8]) = match &self.op {
            HintOp::Put { kind, content } => (1, kind.as_u8(), content),
            HintOp::Delete => (2, 0, &[]),
        };
        let mut body = Vec::with_capacity(FIXED_BODY + content.len());
        body.push(op);
        body.push(kind);
        body.extend_from_slice(self.id.as_bytes());
        body.extend_from_slice(content);
        let mut record = Vec::with_capacity(HEADER + body.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        record.extend_from_slice(&body);
        record
    }

    fn decode_body(body: &[u8]) -> Option<Self> {
        if body.len() < FIXED_BODY {
            return None;
        }
        let id = ObjectId::from_slice(&body[2..34]).ok()?;
        let op = match body[0] {
            1 => HintOp::Put {
                kind: ObjectKind::from_u8(body[1]).ok()?,
                content: body[FIXED_BODY..].to_vec(),
            },
            2 if body.len() == FIXED_BODY => HintOp::Delete,
            _ => return None,
        };
        Some(Self { id, op })
    }
}

/// The hint file of `node` in `dir`.
pub fn path_of(dir: &Path, node: u32) -> PathBuf {
    dir.join(format!("node-{node}.hints"))
}

/// The replay-progress file of `node`'s hints.
pub fn progress_path_of(dir: &Path, node: u32) -> PathBuf {
    dir.join(format!("node-{node}.replayed"))
}

/// A hint file found at open: its target node, the length of its intact
/// prefix, how many records that holds, how much of it was already
/// replayed (per its progress file), and what was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub node: u32,
    pub len: u64,
    pub records: u64,
    /// Offset up to which every record was replayed (0: none).
    pub replayed: u64,
    /// Records before `replayed`.
    pub replayed_records: u64,
    /// A progress mark was found but not usable (damaged, or not on a
    /// record boundary of the intact prefix); replay starts over.
    pub progress_ignored: bool,
    pub cut_bytes: u64,
}

/// Makes `offset` the durable replay mark of `node`'s hint file.
pub fn save_progress(dir: &Path, node: u32, offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let path = progress_path_of(dir, node);
    let created = !path.exists();
    let mut bytes = [0u8; PROGRESS_LEN];
    bytes[0..4].copy_from_slice(&PROGRESS_MAGIC.to_le_bytes());
    bytes[4..12].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    // Not truncated: the mark is overwritten in place, so it is never
    // briefly empty.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // One 16-byte write inside one sector: it lands whole or not at all on
    // any device we support, and the CRC catches anything else.
    file.write_all_at(&bytes, 0)?;
    file.sync_data()?;
    if created {
        // The new name must survive a crash too.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The durable replay mark of `node`'s hint file: `Ok(None)` when there is
/// none, `Err` only for I/O errors; a damaged mark reads as `Some(None)`.
fn load_progress(dir: &Path, node: u32) -> io::Result<Option<Option<u64>>> {
    let bytes = match std::fs::read(progress_path_of(dir, node)) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if bytes.len() != PROGRESS_LEN {
        return Ok(Some(None));
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default());
    let offset = u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let intact = magic == PROGRESS_MAGIC && crc == crc32fast::hash(&bytes[..12]);
    Ok(Some(intact.then_some(offset)))
}

/// Reads the next record at the reader's position: `Ok(None)` at a clean
/// end or at a damaged or torn record (the caller cuts there).
fn next_record(reader: &mut impl Read) -> io::Result<Option<(Hint, u64)>> {
    let mut header = [0u8; HEADER];
    if !read_full(reader, &mut header)? {
        return Ok(None);
    }
    let magic = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
    let len = u64::from(u32::from_le_bytes(
        header[4..8].try_into().unwrap_or_default(),
    ));
    let crc = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    if magic != MAGIC || len < FIXED_BODY as u64 || len > MAX_BODY {
        return Ok(None);
    }
    // Read through `take` so a damaged length allocates only what the file
    // really holds.
    let mut body = Vec::new();
    reader.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len || crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    Ok(Hint::decode_body(&body).map(|hint| (hint, HEADER as u64 + len)))
}

/// Fills `buf`; `false` if the input ended first (at any point).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// Opens `dir` (creating it): checks every hint file, cuts damaged tails.
pub fn open(dir: &Path) -> io::Result<Vec<Found>> {
    std::fs::create_dir_all(dir)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let node_of = |suffix: &str| {
            name.to_str()
                .and_then(|name| name.strip_prefix("node-"))
                .and_then(|rest| rest.strip_suffix(suffix))
                .and_then(|id| id.parse::<u32>().ok())
        };
        // A mark whose hint file is gone (removed by hand) would otherwise
        // be read against the next file of that name, and could skip its
        // hints: it goes.
        if let Some(node) = node_of(".replayed") {
            if !path_of(dir, node).exists() {
                std::fs::remove_file(entry.path())?;
            }
            continue;
        }
        let Some(node) = node_of(".hints") else {
            continue;
        };
        let path = entry.path();
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let total = file.metadata()?.len();
        let mark = load_progress(dir, node)?;
        let wanted = mark.flatten().filter(|offset| *offset > 0);
        let mut reader = BufReader::new(&file);
        let (mut len, mut records) = (0u64, 0u64);
        let mut replayed = None;
        while let Some((_, size)) = next_record(&mut reader)? {
            len += size;
            records += 1;
            if wanted == Some(len) {
                replayed = Some((len, records));
            }
        }
        if len < total {
            file.set_len(len)?;
            file.sync_data()?;
        }
        let (replayed, replayed_records) = replayed.unwrap_or((0, 0));
        found.push(Found {
            node,
            len,
            records,
            replayed,
            replayed_records,
            progress_ignored: matches!(mark, Some(None)) || (wanted.is_some() && replayed == 0),
            cut_bytes: total - len,
        });
    }
    found.sort_by_key(|found| found.node);
    Ok(found)
}

/// Appends records to one node's file and makes them durable; returns the
/// file's new length.
pub fn append(dir: &Path, node: u32, records: &[Vec<u8>]) -> io::Result<u64> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path_of(dir, node))?;
    let mut batch = Vec::with_capacity(records.iter().map(Vec::len).sum());
    for record in records {
        batch.extend_from_slice(record);
    }
    file.write_all(&batch)?;
    file.sync_data()?;
    file.metadata().map(|meta| meta.len())
}

/// Up to `max_bytes` of whole records from `offset` (at least one record
/// when there is one, however large), each with the offset after it.
pub fn read_from(path: &Path, offset: u64, max_bytes: u64) -> io::Result<Vec<(Hint, u64)>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let (mut out, mut at) = (Vec::new(), offset);
    while let Some((hint, size)) = next_record(&mut reader)? {
        at += size;
        out.push((hint, at));
        if at - offset >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// Empties `node`'s fully replayed file. Its progress mark goes back to
/// zero first: a crash in between leaves a file replayed again from its
/// start, never a stale mark over hints appended later.
pub fn truncate(dir: &Path, node: u32) -> io::Result<()> {
    save_progress(dir, node, 0)?;
    let file = OpenOptions::new().write(true).open(path_of(dir, node))?;
    file.set_len(0)?;
    file.sync_data()
}

/// Removes `node`'s hint file and its progress mark, then syncs the
/// directory: for a node that left the topology, whose hints anti-entropy
/// and rebalancing have made moot.
pub fn remove(dir: &Path, node: u32) -> io::Result<()> {
    for path in [path_of(dir, node), progress_path_of(dir, node)] {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seed: u8, len: usize) -> Hint {
        let content = vec![seed; len];
        Hint {
            id: ObjectId::compute(ObjectKind::Blob, &content),
            op: HintOp::Put {
                kind: ObjectKind::Blob,
                content,
            },
        }
    }

    /// Encoded put hints of `len` bytes, one per seed.
    fn encoded(seeds: std::ops::Range<u8>, len: usize) -> Vec<Vec<u8>> {
        seeds.map(|seed| put(seed, len).encode()).collect()
    }

    /// A hint file of three 64-byte puts for `node`, with its mark at the
    /// end (every hint replayed); returns the directory and the records.
    fn fully_replayed(node: u32) -> (tempfile::TempDir, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let records = encoded(0..3, 64);
        let len = append(dir.path(), node, &records).unwrap();
        save_progress(dir.path(), node, len).unwrap();
        (dir, records)
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let hints = [
            put(1, 10),
            Hint {
                id: put(2, 3).id,
                op: HintOp::Delete,
            },
            put(3, 5000),
        ];
        let records: Vec<Vec<u8>> = hints.iter().map(Hint::encode).collect();
        let len = append(dir.path(), 7, &records).unwrap();
        let path = path_of(dir.path(), 7);
        let read: Vec<Hint> = read_from(&path, 0, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(hint, _)| hint)
            .collect();
        assert_eq!(read, hints);

        // Tear the last record at every offset inside it: open keeps exactly
        // the first two.
        let keep = (records[0].len() + records[1].len()) as u64;
        for cut in keep + 1..len {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            let found = open(dir.path()).unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(
                (found[0].node, found[0].len, found[0].records),
                (7, keep, 2)
            );
            assert_eq!(std::fs::metadata(&path).unwrap().len(), keep);
            append(dir.path(), 7, &records[2..]).unwrap();
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_intact_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let records = encoded(0..4, 100);
        append(dir.path(), 2, &records).unwrap();
        let path = path_of(dir.path(), 2);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = records[0].len();
        bytes[second + HEADER + 40] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let found = open(dir.path()).unwrap();
        assert_eq!((found[0].records, found[0].len), (1, second as u64));
    }

    #[test]
    fn a_huge_damaged_length_does_not_allocate_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = put(9, 10).encode();
        record[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(path_of(dir.path(), 1), &record).unwrap();
        let found = open(dir.path()).unwrap();
        assert_eq!((found[0].records, found[0].len), (0, 0));
    }

    #[test]
    fn reads_come_in_bounded_pages_of_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let records = encoded(0..10, 1000);
        append(dir.path(), 3, &records).unwrap();
        let path = path_of(dir.path(), 3);
        let (mut offset, mut seen) = (0, 0);
        loop {
            let page = read_from(&path, offset, 2500).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            seen += page.len();
            offset = page.last().unwrap().1;
        }
        assert_eq!(seen, 10);
        truncate(dir.path(), 3).unwrap();
        assert!(read_from(&path, 0, u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn replay_progress_survives_a_reopen_only_when_it_can_be_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let records = encoded(0..4, 100);
        let len = append(dir.path(), 5, &records).unwrap();
        let after_two = (records[0].len() + records[1].len()) as u64;
        let found_with = |mark: Option<u64>| {
            if let Some(offset) = mark {
                save_progress(dir.path(), 5, offset).unwrap();
            }
            let found = open(dir.path()).unwrap();
            assert_eq!(found.len(), 1, "the mark is not taken for a hint file");
            let found = &found[0];
            (
                found.replayed,
                found.replayed_records,
                found.progress_ignored,
            )
        };
        // No mark yet: everything is to replay.
        assert_eq!(found_with(None), (0, 0, false));
        // A mark on a record boundary is resumed from.
        assert_eq!(found_with(Some(after_two)), (after_two, 2, false));
        assert_eq!(found_with(Some(len)), (len, 4, false));
        // Off a boundary, or past the end: start over, and say so.
        assert_eq!(found_with(Some(after_two + 1)), (0, 0, true));
        assert_eq!(found_with(Some(len + 46)), (0, 0, true));
        // A damaged mark is not trusted.
        save_progress(dir.path(), 5, after_two).unwrap();
        let mark = progress_path_of(dir.path(), 5);
        let mut bytes = std::fs::read(&mark).unwrap();
        bytes[5] ^= 0x01;
        std::fs::write(&mark, &bytes).unwrap();
        assert_eq!(found_with(None), (0, 0, true));
        std::fs::write(&mark, &bytes[..10]).unwrap();
        assert_eq!(found_with(None), (0, 0, true));
        // A mark past a torn tail that open cuts off is not trusted either.
        save_progress(dir.path(), 5, len).unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(path_of(dir.path(), 5))
            .unwrap();
        file.set_len(len - 1).unwrap();
        let keep = len - records[3].len() as u64;
        let found = open(dir.path()).unwrap();
        assert_eq!(
            (found[0].len, found[0].replayed, found[0].progress_ignored),
            (keep, 0, true)
        );
    }

    #[test]
    fn a_truncated_file_starts_with_no_progress() {
        let (dir, _) = fully_replayed(8);
        truncate(dir.path(), 8).unwrap();
        // New hints land where the old ones were; the old mark must not
        // skip them, even where it falls on one of their boundaries.
        let later = encoded(10..13, 64);
        append(dir.path(), 8, &later).unwrap();
        let found = open(dir.path()).unwrap();
        assert_eq!(
            (
                found[0].records,
                found[0].replayed,
                found[0].replayed_records
            ),
            (3, 0, 0)
        );
    }

    #[test]
    fn a_mark_without_its_hint_file_is_removed_at_open() {
        let (dir, records) = fully_replayed(4);
        std::fs::remove_file(path_of(dir.path(), 4)).unwrap();
        assert!(open(dir.path()).unwrap().is_empty());
        assert!(!progress_path_of(dir.path(), 4).exists());
        // New hints of the same size are all replayed.
        append(dir.path(), 4, &records).unwrap();
        let found = open(dir.path()).unwrap();
        assert_eq!((found[0].records, found[0].replayed_records), (3, 0));
    }
}
