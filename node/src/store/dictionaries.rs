//! The zstd dictionaries this shard's compressed records may name.
//!
//! They live beside the segments and are only ever added: a record
//! compressed with a dictionary can be read back only with it, so a shard
//! stores such a record only once the dictionary is durable here (S11).
//!
//! ```text
//! <shard dir>/dictionaries/<id as 8 hex digits>.zdict
//!     0   4  magic "SDCT"
//!     4   4  CRC-32 of the dictionary, u32 LE
//!     8   …  the zstd dictionary (its header carries the id)
//! <shard dir>/dictionaries/current
//!     0   4  magic "SDCU"
//!     4   4  id of the dictionary clients are asked to compress with, u32 LE
//!     8   4  CRC-32 of bytes 0..8, u32 LE
//! ```
//!
//! Both are written whole and atomically (temp file, sync, rename,
//! directory sync). A file that fails its checks is logged and skipped at
//! open, never deleted: records that need it fail their reads as corrupt,
//! and are healed from replicas like any damaged record.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use stratum_wire::codec::{Dictionaries, Dictionary};

use super::error::{Result, StoreError};
use super::fs::StoreFs;

const DIR: &str = "dictionaries";
const MAGIC: [u8; 4] = *b"SDCT";
const CURRENT: &str = "current";
const CURRENT_MAGIC: [u8; 4] = *b"SDCU";

/// Largest dictionary accepted (zstd's own default is 110 KiB).
pub const MAX_DICTIONARY_BYTES: usize = 1 << 20;

/// What a shard holds: its dictionaries, and the one clients should use
/// (0: none).
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Replaced whole when one is added, so a reader keeps a cheap
    /// snapshot across awaits.
    pub dictionaries: Rc<Dictionaries>,
    pub current: u32,
}

fn dir_of(shard_dir: &Path) -> PathBuf {
    shard_dir.join(DIR)
}

fn file_of(shard_dir: &Path, id: u32) -> PathBuf {
    dir_of(shard_dir).join(format!("{id:08x}.zdict"))
}

/// Reads every dictionary file of the shard.
pub(crate) async fn load<F: StoreFs>(fs: &F, shard_dir: &Path) -> Result<Held> {
    let dir = dir_of(shard_dir);
    let mut held = Held::default();
    let mut found = Dictionaries::default();
    if !fs
        .exists(&dir)
        .await
        .map_err(|err| StoreError::io("look for", &dir, err))?
    {
        return Ok(held);
    }
    let names = fs
        .list(&dir)
        .await
        .map_err(|err| StoreError::io("list", &dir, err))?;
    for name in names {
        let path = dir.join(&name);
        if name == CURRENT {
            let bytes = fs
                .map_file(&path)
                .await
                .map_err(|err| StoreError::io("read", &path, err))?;
            match parse_current(bytes.as_ref()) {
                Some(id) => held.current = id,
                None => {
                    tracing::error!(path = %path.display(), "damaged current-dictionary mark; clients are asked for no dictionary")
                }
            }
            continue;
        }
        let Some(id) = name
            .strip_suffix(".zdict")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        else {
            continue; // a temp file of an interrupted install
        };
        let bytes = fs
            .map_file(&path)
            .await
            .map_err(|err| StoreError::io("read", &path, err))?;
        match parse(bytes.as_ref(), id) {
            Ok(dictionary) => {
                // Ids are unique by construction: one file per id.
                let _ = found.insert(Arc::new(dictionary));
            }
            Err(reason) => {
                tracing::error!(path = %path.display(), %reason, "damaged dictionary file skipped; records compressed with it read as corrupt until repaired")
            }
        }
    }
    if held.current != 0 && !found.contains(held.current) {
        held.current = 0;
    }
    held.dictionaries = Rc::new(found);
    Ok(held)
}

fn parse(bytes: &[u8], id: u32) -> std::result::Result<Dictionary, String> {
    if bytes.len() < 8 || bytes[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let stored = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let body = &bytes[8..];
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch".into());
    }
    let dictionary = Dictionary::new(body.to_vec()).map_err(|err| err.to_string())?;
    if dictionary.id() != id {
        return Err(format!(
            "file named for {id:08x} holds {:08x}",
            dictionary.id()
        ));
    }
    Ok(dictionary)
}

fn parse_current(bytes: &[u8]) -> Option<u32> {
    let bytes: &[u8; 12] = bytes.try_into().ok()?;
    if bytes[0..4] != CURRENT_MAGIC
        || crc32fast::hash(&bytes[0..8]) != u32::from_le_bytes(bytes[8..12].try_into().ok()?)
    {
        return None;
    }
    Some(u32::from_le_bytes(bytes[4..8].try_into().ok()?))
}

/// Writes `dictionary` durably (before any record may name it).
pub(crate) async fn save<F: StoreFs>(
    fs: &F,
    shard_dir: &Path,
    dictionary: &Dictionary,
) -> Result<()> {
    let dir = dir_of(shard_dir);
    fs.create_dir_all(&dir)
        .await
        .map_err(|err| StoreError::io("create", &dir, err))?;
    let mut contents = Vec::with_capacity(8 + dictionary.bytes().len());
    contents.extend_from_slice(&MAGIC);
    contents.extend_from_slice(&crc32fast::hash(dictionary.bytes()).to_le_bytes());
    contents.extend_from_slice(dictionary.bytes());
    let path = file_of(shard_dir, dictionary.id());
    fs.write_file_atomic(&path, &contents)
        .await
        .map_err(|err| StoreError::io("write", &path, err))?;
    // The new directory's own entry, for a shard's first dictionary.
    fs.sync_dir(shard_dir)
        .await
        .map_err(|err| StoreError::io("sync", shard_dir, err))
}

/// Records which dictionary clients are asked to use.
pub(crate) async fn save_current<F: StoreFs>(fs: &F, shard_dir: &Path, id: u32) -> Result<()> {
    let mut contents = Vec::with_capacity(12);
    contents.extend_from_slice(&CURRENT_MAGIC);
    contents.extend_from_slice(&id.to_le_bytes());
    contents.extend_from_slice(&crc32fast::hash(&contents).to_le_bytes());
    let path = dir_of(shard_dir).join(CURRENT);
    fs.write_file_atomic(&path, &contents)
        .await
        .map_err(|err| StoreError::io("write", &path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_mark_round_trips_and_damage_is_refused() {
        let mut contents = Vec::new();
        contents.extend_from_slice(&CURRENT_MAGIC);
        contents.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        contents.extend_from_slice(&crc32fast::hash(&contents).to_le_bytes());
        assert_eq!(parse_current(&contents), Some(0xdead_beef));
        contents[5] ^= 1;
        assert_eq!(parse_current(&contents), None);
        assert!(parse(b"SDCTxxxxnot a dictionary", 1).is_err());
    }
}
