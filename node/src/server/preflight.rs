//! Checks of the data dir before any core starts, so that a start refused
//! for a reason the dir itself shows leaves the dir exactly as it was (a
//! core that opened its shard first would have created files in it).
//!
//! Refused: a data dir that is not a directory; a shard dir whose
//! superblock records another shard count than this node runs (the shard
//! rule would look for objects in the wrong shard); a shard dir numbered
//! past the shard count; a shard dir the node cannot write (found at start,
//! not at the first put).

use std::path::{Path, PathBuf};

use crate::store::superblock::{Superblock, SUPERBLOCK_FILE};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("data dir {} exists but is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} was created for {found} shards; this node runs {configured} (the shard count of a data dir is fixed when it is created)", path.display())]
    ShardCount {
        path: PathBuf,
        found: u16,
        configured: u16,
    },
    #[error("{} holds shard {shard}, but this node runs {configured} shards (the shard count of a data dir is fixed when it is created)", path.display())]
    ExtraShard {
        path: PathBuf,
        shard: u16,
        configured: u16,
    },
    #[error("shard dir {} cannot be written", path.display())]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The shard number of a `shard-NNN` dir name.
fn shard_number(name: &str) -> Option<u16> {
    name.strip_prefix("shard-")?.parse().ok()
}

/// Checks `data_dir` for a node running `shards` shards; writes nothing
/// that stays (a writability probe file is removed at once).
pub fn check(data_dir: &Path, shards: u16) -> Result<(), PreflightError> {
    match std::fs::metadata(data_dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(PreflightError::NotADirectory {
                path: data_dir.to_owned(),
            })
        }
        Ok(_) => {}
        // A new node: everything is created at start.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(PreflightError::Read {
                path: data_dir.to_owned(),
                source,
            })
        }
    }
    let entries = std::fs::read_dir(data_dir).map_err(|source| PreflightError::Read {
        path: data_dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(shard) = name.to_str().and_then(shard_number) else {
            continue;
        };
        let path = entry.path();
        if shard >= shards {
            return Err(PreflightError::ExtraShard {
                path,
                shard,
                configured: shards,
            });
        }
        check_superblock(&path, shards)?;
        probe_writable(&path)?;
    }
    Ok(())
}

fn check_superblock(shard_dir: &Path, shards: u16) -> Result<(), PreflightError> {
    let path = shard_dir.join(SUPERBLOCK_FILE);
    let Ok(block) = std::fs::read(&path) else {
        // No superblock yet (a crash during creation): the shard's own open
        // judges the dir.
        return Ok(());
    };
    match Superblock::decode(&block) {
        Ok(superblock) if superblock.shard_count != shards => Err(PreflightError::ShardCount {
            path,
            found: superblock.shard_count,
            configured: shards,
        }),
        // A damaged superblock is the shard open's to report.
        _ => Ok(()),
    }
}

fn probe_writable(shard_dir: &Path) -> Result<(), PreflightError> {
    let probe = shard_dir.join(".write-probe");
    let result = std::fs::write(&probe, b"probe").and_then(|()| std::fs::remove_file(&probe));
    result.map_err(|source| PreflightError::NotWritable {
        path: shard_dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_dir(data: &Path, shard: u16, count: u16) {
        let dir = data.join(format!("shard-{shard:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let block = Superblock {
            format_version: 1,
            shard_id: shard,
            shard_count: count,
            created_unix: 0,
        }
        .encode();
        std::fs::write(dir.join(SUPERBLOCK_FILE), block).unwrap();
    }

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn another_shard_count_is_refused_and_nothing_is_created() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        shard_dir(&data, 0, 2);
        shard_dir(&data, 1, 2);
        check(&data, 2).expect("matching");
        let before = listing(&data);
        let err = check(&data, 3).unwrap_err();
        assert!(err.to_string().contains("created for 2 shards"), "{err}");
        assert_eq!(listing(&data), before);
        let err = check(&data, 1).unwrap_err();
        assert!(err.to_string().contains("holds shard 1"), "{err}");
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_named_as_such() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("data");
        std::fs::write(&file, b"not a dir").unwrap();
        let err = check(&file, 1).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        check(&temp.path().join("new"), 4).expect("a new data dir");
    }
}
