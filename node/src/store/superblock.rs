//! The superblock: the first file a shard opens, and the one that says what
//! the shard is.
//!
//! One 4096-byte block, `superblock` in the shard directory:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"STRSHARD"` |
//! | 8 | 4 | format version, u32 LE (1) |
//! | 12 | 2 | shard id, u16 LE |
//! | 14 | 2 | shard count the node had when the shard was created, u16 LE |
//! | 16 | 8 | creation time, unix seconds, u64 LE |
//! | 24 | 4068 | zero |
//! | 4092 | 4 | CRC-32 of bytes 0..4092, u32 LE |
//!
//! A shard opened with another shard id or count is refused: the shard rule
//! would send objects to shards that do not hold them.
//!
//! It is also the glommio probe file: glommio decides whether polled I/O
//! works by reading offset 0 of the first DMA file opened on a device, and an
//! empty file fools that probe (every later read then fails with
//! EOPNOTSUPP). The superblock is never empty and is always the first file a
//! store opens with DMA.

use std::path::Path;

use super::error::{Result, StoreError};
use super::fs::{StoreFile, StoreFs};

pub const SUPERBLOCK_FILE: &str = "superblock";
pub const SUPERBLOCK_LEN: usize = 4096;
const MAGIC: &[u8; 8] = b"STRSHARD";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub format_version: u32,
    pub shard_id: u16,
    pub shard_count: u16,
    pub created_unix: u64,
}

impl Superblock {
    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; SUPERBLOCK_LEN];
        block[0..8].copy_from_slice(MAGIC);
        block[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        block[12..14].copy_from_slice(&self.shard_id.to_le_bytes());
        block[14..16].copy_from_slice(&self.shard_count.to_le_bytes());
        block[16..24].copy_from_slice(&self.created_unix.to_le_bytes());
        let crc = crc32fast::hash(&block[..SUPERBLOCK_LEN - 4]);
        block[SUPERBLOCK_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        block
    }

    pub fn decode(block: &[u8]) -> Result<Self, String> {
        if block.len() < SUPERBLOCK_LEN {
            return Err(format!("{} bytes, expected {SUPERBLOCK_LEN}", block.len()));
        }
        if &block[0..8] != MAGIC {
            return Err("bad magic (not a Stratum shard)".into());
        }
        let stored = u32::from_le_bytes(le(&block[SUPERBLOCK_LEN - 4..]));
        let computed = crc32fast::hash(&block[..SUPERBLOCK_LEN - 4]);
        if stored != computed {
            return Err(format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ));
        }
        let format_version = u32::from_le_bytes(le(&block[8..12]));
        if format_version != FORMAT_VERSION {
            return Err(format!(
                "format version {format_version}; this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(Self {
            format_version,
            shard_id: u16::from_le_bytes(le(&block[12..14])),
            shard_count: u16::from_le_bytes(le(&block[14..16])),
            created_unix: u64::from_le_bytes(le(&block[16..24])),
        })
    }
}

fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Creates the superblock if the shard is new, then opens it with DMA first
/// (see the module docs) and checks it against the expected identity.
pub async fn open_or_create<F: StoreFs>(
    fs: &F,
    dir: &Path,
    shard_id: u16,
    shard_count: u16,
    is_new: bool,
) -> Result<Superblock> {
    let path = dir.join(SUPERBLOCK_FILE);
    if is_new {
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|age| age.as_secs())
            .unwrap_or(0);
        let block = Superblock {
            format_version: FORMAT_VERSION,
            shard_id,
            shard_count,
            created_unix,
        }
        .encode();
        fs.write_file_atomic(&path, &block)
            .await
            .map_err(|err| StoreError::io("writing superblock", &path, err))?;
    }
    let file = fs
        .open(&path, false)
        .await
        .map_err(|err| StoreError::io("opening superblock", &path, err))?;
    let block = file
        .read_at(0, SUPERBLOCK_LEN)
        .await
        .map_err(|err| StoreError::io("reading superblock", &path, err))?;
    let superblock =
        Superblock::decode(block.as_ref()).map_err(|reason| StoreError::BadSuperblock {
            path: path.clone(),
            reason,
        })?;
    drop(block);
    file.close()
        .await
        .map_err(|err| StoreError::io("closing superblock", &path, err))?;
    if superblock.shard_id != shard_id || superblock.shard_count != shard_count {
        return Err(StoreError::ShardMismatch {
            path,
            found_id: superblock.shard_id,
            found_count: superblock.shard_count,
            expected_id: shard_id,
            expected_count: shard_count,
        });
    }
    Ok(superblock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let block = Superblock {
            format_version: FORMAT_VERSION,
            shard_id: 3,
            shard_count: 8,
            created_unix: 1_700_000_000,
        };
        let bytes = block.encode();
        assert_eq!(Superblock::decode(&bytes), Ok(block));
        for position in [0, 13, 100, SUPERBLOCK_LEN - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 1;
            assert!(Superblock::decode(&damaged).is_err(), "flip at {position}");
        }
    }
}
