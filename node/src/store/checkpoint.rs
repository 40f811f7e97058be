//! Index checkpoints: the index written to one file, so that opening a shard
//! loads it (memory-mapped) and replays only what was written after it.
//!
//! `index.ckpt`, written whole and atomically (temp file, fdatasync, rename,
//! directory fsync). All integers little-endian.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"STRCKPT1"` |
//! | 8 | 4 | format version (2; 1 is still read) |
//! | 12 | 2 | shard id |
//! | 14 | 2 | zero |
//! | 16 | 8 | entry count E |
//! | 24 | 8 | watermark: sequence of the segment the writer was appending to |
//! | 32 | 8 | watermark: offset in that segment; every record before it is reflected |
//! | 40 | 4 | segment count S |
//! | 44 | 4 | CRC-32 of bytes 52..64 (version 2), then everything after the 64-byte header |
//! | 48 | 4 | CRC-32 of header bytes 0..48 |
//! | 52 | 4 | live id count L (version 2; zero in 1) |
//! | 56 | 4 | deleted id count D (version 2) |
//! | 60 | 4 | revived id count R (version 2) |
//! | 64 | 16·E | entries: key u64, packed location u64 |
//! | 64+16·E | 24·S | segments: slot u16, 6 zero bytes, sequence u64, live bytes u64 |
//! | … | 32·L | live ids, ascending (version 2) |
//! | … | 40·D | deleted: id, then the delete's time (unix seconds, u64), ascending by id (version 2) |
//! | … | 40·R | revived: id, then the overridden delete's time, ascending by id (version 2) |
//!
//! The id lists are the shard's holdings (`holdings.rs`) at the watermark,
//! so a restart need not read every record's header to rebuild them. A
//! version 1 checkpoint (written before holdings existed) is still used for
//! the index; the live ids are then read from the records at open, and the
//! shard knows no tombstones older than the upgrade.
//!
//! A checkpoint is only an optimisation, never the truth: it is used only if
//! both checksums match and every segment it lists still exists with the
//! same slot and sequence, no other segment at or below the watermark exists,
//! and the watermark segment is at least as long as the watermark. Otherwise
//! the shard replays every segment, as if there were no checkpoint.

use stratum_wire::ObjectId;

use super::holdings::Holdings;
use super::index::Location;

pub const FILE_NAME: &str = "index.ckpt";
const MAGIC: &[u8; 8] = b"STRCKPT1";
const VERSION: u32 = 2;
const ID_LEN: usize = 32;
/// An id and a time.
const TIMED_LEN: usize = 40;
const HEADER_LEN: usize = 64;
const ENTRY_LEN: usize = 16;
const SEGMENT_LEN: usize = 24;

/// A segment as the checkpoint saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentState {
    pub slot: u16,
    pub sequence: u64,
    pub live_bytes: u64,
}

/// A decoded checkpoint (entries still in the mapped file).
pub struct Checkpoint<'a> {
    pub watermark_sequence: u64,
    pub watermark_offset: u64,
    pub segments: Vec<SegmentState>,
    entries: &'a [u8],
    /// Live, deleted and revived ids (version 2 only).
    holdings: Option<[&'a [u8]; 3]>,
}

fn id_at(chunk: &[u8]) -> ObjectId {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&chunk[..ID_LEN]);
    ObjectId::from_bytes(id)
}

fn ids(bytes: &[u8]) -> impl Iterator<Item = ObjectId> + '_ {
    bytes.chunks_exact(ID_LEN).map(id_at)
}

fn timed(bytes: &[u8]) -> impl Iterator<Item = (ObjectId, u64)> + '_ {
    bytes
        .chunks_exact(TIMED_LEN)
        .map(|chunk| (id_at(chunk), u64_at(chunk, ID_LEN)))
}

impl Checkpoint<'_> {
    /// The holdings saved with the index; `None` in a version 1 checkpoint.
    pub fn holdings(&self) -> Option<Holdings> {
        let [live, deleted, revived] = self.holdings?;
        Some(Holdings::from_parts(
            ids(live),
            timed(deleted),
            timed(revived),
        ))
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len() / ENTRY_LEN
    }

    /// `(key, location)` of every entry.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        self.entries.chunks_exact(ENTRY_LEN).map(|entry| {
            let key = u64::from_le_bytes(entry[0..8].try_into().unwrap_or_default());
            let packed = u64::from_le_bytes(entry[8..16].try_into().unwrap_or_default());
            (key, Location::unpack(packed))
        })
    }
}

/// Serializes a checkpoint.
pub fn encode(
    shard_id: u16,
    watermark_sequence: u64,
    watermark_offset: u64,
    entry_count: usize,
    entries: impl Iterator<Item = (u64, Location)>,
    segments: &[SegmentState],
    holdings: &Holdings,
) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.reserve(
        entry_count * ENTRY_LEN
            + segments.len() * SEGMENT_LEN
            + holdings.live_count() * ID_LEN
            + (holdings.deleted_count() + holdings.revived_count()) * TIMED_LEN,
    );
    let mut written = 0usize;
    for (key, location) in entries {
        written += 1;
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&location.pack().to_le_bytes());
    }
    for segment in segments {
        out.extend_from_slice(&segment.slot.to_le_bytes());
        out.extend_from_slice(&[0u8; 6]);
        out.extend_from_slice(&segment.sequence.to_le_bytes());
        out.extend_from_slice(&segment.live_bytes.to_le_bytes());
    }
    let mut counts = [0u32; 3];
    for id in holdings.live() {
        counts[0] += 1;
        out.extend_from_slice(id.as_bytes());
    }
    let mut put_timed = |count: &mut u32, id: &ObjectId, at: &u64| {
        *count += 1;
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&at.to_le_bytes());
    };
    for (id, at) in holdings.deleted() {
        put_timed(&mut counts[1], id, at);
    }
    for (id, at) in holdings.revived() {
        put_timed(&mut counts[2], id, at);
    }
    debug_assert_eq!(written, entry_count);
    for (at, count) in [52, 56, 60].into_iter().zip(counts) {
        out[at..at + 4].copy_from_slice(&count.to_le_bytes());
    }
    let body_crc = body_crc(&out, VERSION);
    out[0..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..14].copy_from_slice(&shard_id.to_le_bytes());
    out[16..24].copy_from_slice(&(written as u64).to_le_bytes());
    out[24..32].copy_from_slice(&watermark_sequence.to_le_bytes());
    out[32..40].copy_from_slice(&watermark_offset.to_le_bytes());
    out[40..44].copy_from_slice(&(segments.len() as u32).to_le_bytes());
    out[44..48].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[0..48]);
    out[48..52].copy_from_slice(&header_crc.to_le_bytes());
    out
}

/// The CRC at offset 44: of everything after the header, and from version 2
/// on also of the id counts at 52..64 (which the header CRC does not cover).
fn body_crc(bytes: &[u8], version: u32) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    if version >= 2 {
        crc.update(&bytes[52..HEADER_LEN]);
    }
    crc.update(&bytes[HEADER_LEN..]);
    crc.finalize()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

/// Checks and decodes a checkpoint file's bytes. The error says why it was
/// not usable (the caller then replays everything).
pub fn decode(bytes: &[u8], shard_id: u16) -> Result<Checkpoint<'_>, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if &bytes[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    if u32_at(bytes, 48) != crc32fast::hash(&bytes[0..48]) {
        return Err("header checksum mismatch".into());
    }
    let version = u32_at(bytes, 8);
    if !(1..=VERSION).contains(&version) {
        return Err(format!("version {version}"));
    }
    let found_shard = u16::from_le_bytes([bytes[12], bytes[13]]);
    if found_shard != shard_id {
        return Err(format!("written by shard {found_shard}"));
    }
    let entries = u64_at(bytes, 16);
    let segments = u64::from(u32_at(bytes, 40));
    let expected = (HEADER_LEN as u64)
        .checked_add(
            entries
                .checked_mul(ENTRY_LEN as u64)
                .ok_or("entry count overflows")?,
        )
        .and_then(|len| len.checked_add(segments * SEGMENT_LEN as u64))
        .ok_or("length overflows")?;
    let id_counts = if version >= 2 {
        [u32_at(bytes, 52), u32_at(bytes, 56), u32_at(bytes, 60)]
    } else {
        [0; 3]
    };
    let id_lens = [ID_LEN, TIMED_LEN, TIMED_LEN];
    let id_bytes: u64 = id_counts
        .iter()
        .zip(id_lens)
        .map(|(count, len)| u64::from(*count) * len as u64)
        .sum();
    let expected = expected.checked_add(id_bytes).ok_or("length overflows")?;
    if expected != bytes.len() as u64 {
        return Err(format!("{} bytes, header implies {expected}", bytes.len()));
    }
    if u32_at(bytes, 44) != body_crc(bytes, version) {
        return Err("body checksum mismatch".into());
    }
    let entries_end = HEADER_LEN + entries as usize * ENTRY_LEN;
    let segments_end = entries_end + segments as usize * SEGMENT_LEN;
    let holdings = (version >= 2).then(|| {
        let mut at = segments_end;
        let mut lens = id_lens.into_iter();
        id_counts.map(|count| {
            let list = &bytes[at..at + count as usize * lens.next().unwrap_or(ID_LEN)];
            at += list.len();
            list
        })
    });
    let segments = bytes[entries_end..segments_end]
        .chunks_exact(SEGMENT_LEN)
        .map(|chunk| SegmentState {
            slot: u16::from_le_bytes([chunk[0], chunk[1]]),
            sequence: u64_at(chunk, 8),
            live_bytes: u64_at(chunk, 16),
        })
        .collect();
    Ok(Checkpoint {
        watermark_sequence: u64_at(bytes, 24),
        watermark_offset: u64_at(bytes, 32),
        segments,
        entries: &bytes[HEADER_LEN..entries_end],
        holdings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let entries = vec![
            (
                7u64,
                Location {
                    segment: 1,
                    offset: 4096,
                    len: 64,
                },
            ),
            (
                9u64,
                Location {
                    segment: 2,
                    offset: 8192,
                    len: 1072,
                },
            ),
        ];
        let segments = vec![
            SegmentState {
                slot: 1,
                sequence: 3,
                live_bytes: 64,
            },
            SegmentState {
                slot: 2,
                sequence: 4,
                live_bytes: 1072,
            },
        ];
        let bytes = encode(
            5,
            4,
            9264,
            entries.len(),
            entries.iter().copied(),
            &segments,
            &Holdings::new(),
        );
        let checkpoint = decode(&bytes, 5).expect("valid");
        assert_eq!(checkpoint.entries().collect::<Vec<_>>(), entries);
        assert_eq!(checkpoint.segments, segments);
        assert_eq!(
            (checkpoint.watermark_sequence, checkpoint.watermark_offset),
            (4, 9264)
        );
        assert!(decode(&bytes, 6).is_err(), "another shard's checkpoint");
        for position in [0, 20, 50, 70, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 4;
            assert!(decode(&damaged, 5).is_err(), "flip at {position} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1], 5).is_err());
    }

    fn id(byte: u8) -> ObjectId {
        ObjectId::from_bytes([byte; 32])
    }

    #[test]
    fn holdings_round_trip_and_their_counts_are_checked() {
        let mut holdings = Holdings::new();
        holdings.record_put(id(1));
        holdings.record_put(id(2));
        holdings.record_delete(id(3), 300);
        holdings.record_delete(id(4), 400);
        holdings.record_put(id(4));
        let bytes = encode(0, 0, 0, 0, std::iter::empty(), &[], &holdings);
        let decoded = decode(&bytes, 0).expect("valid").holdings().expect("v2");
        assert_eq!(
            decoded.live().copied().collect::<Vec<_>>(),
            [id(1), id(2), id(4)]
        );
        let timed = |list: Vec<(&ObjectId, &u64)>| -> Vec<(ObjectId, u64)> {
            list.into_iter().map(|(id, at)| (*id, *at)).collect()
        };
        assert_eq!(timed(decoded.deleted().collect()), [(id(3), 300)]);
        assert_eq!(timed(decoded.revived().collect()), [(id(4), 400)]);
        // Moving one entry from the revived list to the deleted list keeps
        // the length: the CRC must catch it.
        let mut shifted = bytes.clone();
        shifted[60] -= 1;
        shifted[56] += 1;
        assert!(decode(&shifted, 0).is_err());
    }

    #[test]
    fn a_version_1_checkpoint_is_still_read_without_holdings() {
        // Version 1 layout, byte for byte: no id lists, zeros at 52..64, the
        // body CRC over the entries and segments only.
        let entry = (
            11u64,
            Location {
                segment: 0,
                offset: 4096,
                len: 64,
            },
        );
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes.extend_from_slice(&entry.0.to_le_bytes());
        bytes.extend_from_slice(&entry.1.pack().to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 6]);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&64u64.to_le_bytes());
        let body_crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
        bytes[24..32].copy_from_slice(&1u64.to_le_bytes());
        bytes[32..40].copy_from_slice(&4160u64.to_le_bytes());
        bytes[40..44].copy_from_slice(&1u32.to_le_bytes());
        bytes[44..48].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&bytes[0..48]);
        bytes[48..52].copy_from_slice(&header_crc.to_le_bytes());
        let checkpoint = decode(&bytes, 0).expect("version 1 is read");
        assert_eq!(checkpoint.entries().collect::<Vec<_>>(), [entry]);
        assert!(checkpoint.holdings().is_none());
    }
}
