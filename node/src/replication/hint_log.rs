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

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use stratum_wire::{ObjectId, ObjectKind};

const MAGIC: u32 = 0x544E_4853;
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

/// A hint file found at open: its target node, the length of its intact
/// prefix, how many records that holds, and what was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub node: u32,
    pub len: u64,
    pub records: u64,
    pub cut_bytes: u64,
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
        let Some(node) = name
            .to_str()
            .and_then(|name| name.strip_prefix("node-"))
            .and_then(|rest| rest.strip_suffix(".hints"))
            .and_then(|id| id.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let total = file.metadata()?.len();
        let mut reader = BufReader::new(&file);
        let (mut len, mut records) = (0u64, 0u64);
        while let Some((_, size)) = next_record(&mut reader)? {
            len += size;
            records += 1;
        }
        if len < total {
            file.set_len(len)?;
            file.sync_data()?;
        }
        found.push(Found {
            node,
            len,
            records,
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

/// Empties a fully replayed file.
pub fn truncate(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(0)?;
    file.sync_data()
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
        let records: Vec<Vec<u8>> = (0..4).map(|seed| put(seed, 100).encode()).collect();
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
        let records: Vec<Vec<u8>> = (0..10).map(|seed| put(seed, 1000).encode()).collect();
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
        truncate(&path).unwrap();
        assert!(read_from(&path, 0, u64::MAX).unwrap().is_empty());
    }
}
