//! Records: the unit of the append-only segments.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `"SREC"` |
//! | 4 | 1 | type: 1 object, 2 tombstone, 3 dropped (a copy handed off) |
//! | 5 | 1 | object kind (1 blob, 2 tree, 3 commit, 4 tag; 0 for a tombstone) |
//! | 6 | 1 | content codec: 0 raw, 1 zstd (objects only; 0 in every record of the first release) |
//! | 7 | 1 | reserved, zero |
//! | 8 | 4 | content length, u32 LE (tombstone: 8, the delete's time; 0 before that existed) |
//! | 12 | 4 | CRC-32 of bytes 0..12, bytes 16..48, then the content |
//! | 16 | 32 | object id |
//! | 48 | len | content, as the codec encodes it (a zstd frame declaring the inflated size) |
//! | 48+len | 0..7 | zero padding to a multiple of 8 |
//!
//! Records are self-delimiting and checksummed, so a scan can tell a record
//! from the zero padding that ends each write batch (a batch is padded to the
//! device block size) and from a torn tail.

use stratum_wire::{Codec, ObjectId, ObjectKind};

use super::error::Corruption;

pub const MAGIC: [u8; 4] = *b"SREC";
pub const HEADER_LEN: usize = 48;
/// Every record starts at a multiple of this within its segment.
pub const RECORD_ALIGN: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Object = 1,
    Tombstone = 2,
    /// Removes this shard's copy like a tombstone, but is not a delete: the
    /// copy was handed to the object's replicas after a topology change.
    Dropped = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_type: RecordType,
    /// `None` for tombstones.
    pub kind: Option<ObjectKind>,
    /// How the content is encoded (always raw for removals).
    pub codec: Codec,
    /// Bytes of content as stored (compressed, for a zstd record).
    pub content_len: u32,
    pub crc32: u32,
    pub id: ObjectId,
}

impl RecordHeader {
    pub fn object(id: ObjectId, kind: ObjectKind, codec: Codec, content: &[u8]) -> Self {
        let mut header = Self {
            record_type: RecordType::Object,
            kind: Some(kind),
            codec,
            content_len: content.len() as u32,
            crc32: 0,
            id,
        };
        header.crc32 = header.checksum(content);
        header
    }

    /// A tombstone whose content is `content` ([`tombstone_content`]: the
    /// time of the delete; empty in tombstones of older releases).
    pub fn tombstone(id: ObjectId, content: &[u8]) -> Self {
        Self::removal(id, RecordType::Tombstone, content)
    }

    pub fn dropped(id: ObjectId) -> Self {
        Self::removal(id, RecordType::Dropped, &[])
    }

    /// A record that removes `id` (tombstone or dropped).
    fn removal(id: ObjectId, record_type: RecordType, content: &[u8]) -> Self {
        let mut header = Self {
            record_type,
            kind: None,
            codec: Codec::Raw,
            content_len: content.len() as u32,
            crc32: 0,
            id,
        };
        header.crc32 = header.checksum(content);
        header
    }

    /// Bytes the whole record occupies on disk, padding included.
    pub fn disk_len(&self) -> u64 {
        disk_len(self.content_len as usize)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = self.record_type as u8;
        out[5] = self.kind.map_or(0, ObjectKind::as_u8);
        out[6] = self.codec.as_u8();
        out[8..12].copy_from_slice(&self.content_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32.to_le_bytes());
        out[16..48].copy_from_slice(self.id.as_bytes());
        out
    }

    /// Parses and checks the header fields (not the checksum: that needs the
    /// content; see [`RecordHeader::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, Corruption> {
        if bytes.len() < HEADER_LEN {
            return Err(Corruption::ShortRead {
                got: bytes.len(),
                wanted: HEADER_LEN,
            });
        }
        if bytes[0..4] != MAGIC {
            return Err(Corruption::BadMagic);
        }
        let record_type = match bytes[4] {
            1 => RecordType::Object,
            2 => RecordType::Tombstone,
            3 => RecordType::Dropped,
            other => return Err(Corruption::UnknownType(other)),
        };
        let kind = match (record_type, bytes[5]) {
            (RecordType::Tombstone | RecordType::Dropped, 0) => None,
            (RecordType::Object, byte) => {
                Some(ObjectKind::from_u8(byte).map_err(|_| Corruption::UnknownKind(byte))?)
            }
            (RecordType::Tombstone | RecordType::Dropped, byte) => {
                return Err(Corruption::UnknownKind(byte))
            }
        };
        let codec = match (record_type, Codec::from_u8(bytes[6])) {
            (RecordType::Object, Some(codec)) => codec,
            (_, Some(Codec::Raw)) => Codec::Raw,
            _ => return Err(Corruption::ReservedNotZero),
        };
        if bytes[7] != 0 {
            return Err(Corruption::ReservedNotZero);
        }
        let content_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let crc32 = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[16..48]);
        Ok(Self {
            record_type,
            kind,
            codec,
            content_len,
            crc32,
            id: ObjectId::from_bytes(id),
        })
    }

    fn checksum(&self, content: &[u8]) -> u32 {
        let bytes = self.encode();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[0..12]);
        crc.update(&bytes[16..48]);
        crc.update(content);
        crc.finalize()
    }

    /// Checks the checksum over header and content.
    pub fn verify(&self, content: &[u8]) -> Result<(), Corruption> {
        if content.len() != self.content_len as usize {
            return Err(Corruption::ShortRead {
                got: content.len(),
                wanted: self.content_len as usize,
            });
        }
        let computed = self.checksum(content);
        if computed != self.crc32 {
            return Err(Corruption::Checksum {
                stored: self.crc32,
                computed,
            });
        }
        Ok(())
    }
}

/// The checks a read makes before serving a record: a header that parses,
/// an object record, the whole content present, and the CRC-32 over header
/// and content. (The SHA-256 of the content was checked when it entered the
/// node; scrub and every consumer check it again: [`check_object`].)
pub fn check_record(bytes: &[u8]) -> Result<(RecordHeader, ObjectKind, &[u8]), Corruption> {
    let header = RecordHeader::parse(bytes)?;
    let kind = match (header.record_type, header.kind) {
        (RecordType::Object, Some(kind)) => kind,
        _ => return Err(Corruption::NotAnObject),
    };
    let wanted = HEADER_LEN + header.content_len as usize;
    let content = bytes.get(HEADER_LEN..wanted).ok_or(Corruption::ShortRead {
        got: bytes.len(),
        wanted,
    })?;
    header.verify(content)?;
    Ok((header, kind, content))
}

/// Every check a stored object must pass before it is trusted by scrub and
/// compaction: [`check_record`], then the SHA-256 of its Git encoding (of
/// the inflated content, for a compressed record) equal to the record's id.
/// Inflating streams through a fixed buffer: nothing is allocated for it.
pub fn check_object<'a>(
    bytes: &'a [u8],
    dictionaries: &stratum_wire::codec::Dictionaries,
) -> Result<(RecordHeader, ObjectKind, &'a [u8]), Corruption> {
    let (header, kind, content) = check_record(bytes)?;
    match stratum_wire::codec::content_id(
        kind,
        header.codec,
        content,
        MAX_CONTENT_LEN,
        dictionaries,
    ) {
        Ok((id, _)) if id == header.id => Ok((header, kind, content)),
        Ok(_) => Err(Corruption::HashMismatch),
        Err(err) => Err(Corruption::Codec(err)),
    }
}

/// Largest inflated content a record may declare: the format's own bound
/// (a record's length field is 32 bits). Not the node's configured
/// `max_object_bytes`, which may have been lowered since the record was
/// written, and must not make a good record look damaged.
pub const MAX_CONTENT_LEN: u64 = u32::MAX as u64;

/// A tombstone's content: when the delete happened, unix seconds, u64 LE.
/// (Tombstones written before this existed have no content.)
pub fn tombstone_content(deleted_at: u64) -> [u8; 8] {
    deleted_at.to_le_bytes()
}

/// The time in a tombstone's content; `None` for an older, empty one.
pub fn tombstone_time(content: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(content.try_into().ok()?))
}

/// On-disk length of a record with `content_len` bytes of content.
pub fn disk_len(content_len: usize) -> u64 {
    (HEADER_LEN as u64 + content_len as u64).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_verifies() {
        let content = b"tree 1234\n";
        let id = ObjectId::compute(ObjectKind::Commit, content);
        let header = RecordHeader::object(id, ObjectKind::Commit, Codec::Raw, content);
        let parsed = RecordHeader::parse(&header.encode()).expect("parse");
        assert_eq!(parsed, header);
        parsed.verify(content).expect("verify");
        assert!(matches!(
            parsed.verify(b"tree 1235\n"),
            Err(Corruption::Checksum { .. })
        ));
        assert_eq!(header.disk_len(), 64);
        let time = tombstone_content(1_700_000_000);
        let tombstone = RecordHeader::tombstone(id, &time);
        assert_eq!(RecordHeader::parse(&tombstone.encode()), Ok(tombstone));
        tombstone.verify(&time).expect("tombstone verifies");
        assert_eq!(tombstone_time(&time), Some(1_700_000_000));
        // An older release's tombstone: no content, no time.
        let legacy = RecordHeader::tombstone(id, &[]);
        legacy.verify(&[]).expect("legacy tombstone verifies");
        assert_eq!(tombstone_time(&[]), None);
    }

    #[test]
    fn every_header_bit_is_covered() {
        let content = b"x";
        let header = RecordHeader::object(
            ObjectId::from_bytes([3; 32]),
            ObjectKind::Blob,
            Codec::Zstd,
            content,
        );
        let bytes = header.encode();
        for position in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut damaged = bytes;
                damaged[position] ^= 1 << bit;
                let caught = match RecordHeader::parse(&damaged) {
                    Err(_) => true,
                    Ok(parsed) => parsed.verify(content).is_err(),
                };
                assert!(caught, "bit {bit} of byte {position} not caught");
            }
        }
    }
}
