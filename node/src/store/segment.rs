//! Segments: the append-only data files of a shard.
//!
//! `seg-NNNNN.dat`, where NNNNN is the segment's *slot* (0..16384), the
//! number the index stores. Slots of removed segments are reused, so replay
//! order comes from the header's sequence number, never from the name.
//!
//! The first 4096 bytes are the segment header:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"STRSEGMT"` |
//! | 8 | 4 | format version, u32 LE (1) |
//! | 12 | 2 | shard id, u16 LE |
//! | 14 | 2 | slot, u16 LE |
//! | 16 | 8 | sequence, u64 LE (strictly increasing per shard) |
//! | 24 | 4068 | zero |
//! | 4092 | 4 | CRC-32 of bytes 0..4092 |
//!
//! Records follow from offset 4096. Each write batch starts at a multiple
//! of the device block size and is zero-padded to one.

pub const HEADER_LEN: u64 = 4096;
const MAGIC: &[u8; 8] = b"STRSEGMT";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u16,
    pub slot: u16,
    pub sequence: u64,
}

impl SegmentHeader {
    pub fn encode_into(&self, block: &mut [u8]) {
        block[..HEADER_LEN as usize].fill(0);
        block[0..8].copy_from_slice(MAGIC);
        block[8..12].copy_from_slice(&VERSION.to_le_bytes());
        block[12..14].copy_from_slice(&self.shard_id.to_le_bytes());
        block[14..16].copy_from_slice(&self.slot.to_le_bytes());
        block[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        let end = HEADER_LEN as usize - 4;
        let crc = crc32fast::hash(&block[..end]);
        block[end..HEADER_LEN as usize].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(block: &[u8]) -> Result<Self, String> {
        if block.len() < HEADER_LEN as usize {
            return Err(format!("header is {} bytes", block.len()));
        }
        if &block[0..8] != MAGIC {
            return Err("bad segment magic".into());
        }
        let end = HEADER_LEN as usize - 4;
        let stored =
            u32::from_le_bytes([block[end], block[end + 1], block[end + 2], block[end + 3]]);
        if stored != crc32fast::hash(&block[..end]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32::from_le_bytes([block[8], block[9], block[10], block[11]]);
        if version != VERSION {
            return Err(format!("segment format version {version}"));
        }
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&block[16..24]);
        Ok(Self {
            shard_id: u16::from_le_bytes([block[12], block[13]]),
            slot: u16::from_le_bytes([block[14], block[15]]),
            sequence: u64::from_le_bytes(sequence),
        })
    }
}

pub fn file_name(slot: u16) -> String {
    format!("seg-{slot:05}.dat")
}

pub fn parse_file_name(name: &str) -> Option<u16> {
    name.strip_prefix("seg-")?
        .strip_suffix(".dat")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_names_round_trip() {
        let header = SegmentHeader {
            shard_id: 1,
            slot: 42,
            sequence: 9_000_000_000,
        };
        let mut block = vec![0u8; HEADER_LEN as usize];
        header.encode_into(&mut block);
        assert_eq!(SegmentHeader::decode(&block), Ok(header));
        block[20] ^= 1;
        assert!(SegmentHeader::decode(&block).is_err());
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("seg-x.dat"), None);
    }
}
