//! The data dir's "last alive" mark, and the rule it enforces: a node that
//! was down longer than the tombstone grace period does not rejoin with its
//! data.
//!
//! Why: a delete is remembered (as a tombstone that stops anti-entropy from
//! copying the object back) for `replication.tombstone_grace_secs`. A node
//! that missed a delete and comes back after its peers forgot it would hold
//! the only trace of the object, and anti-entropy would copy it back to
//! every replica. So such a node refuses to start; the operator wipes its
//! data dir and anti-entropy refills it.
//!
//! `<data dir>/alive`, 20 bytes, little-endian, rewritten (temp file and
//! rename) at start and every [`INTERVAL`] while the node runs:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"STRALIVE"` |
//! | 8 | 8 | unix seconds when written |
//! | 16 | 4 | CRC-32 of bytes 0..16 |

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a running node rewrites its mark.
pub const INTERVAL: Duration = Duration::from_secs(60);
const FILE_NAME: &str = "alive";
const MAGIC: &[u8; 8] = b"STRALIVE";
const LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error(
        "this node was last alive {down_for_secs} s ago ({}), longer than replication.tombstone_grace_secs ({grace_secs} s): its peers may have forgotten deletes it missed, and anti-entropy would copy those objects back. Wipe {} (anti-entropy refills it from the peers) and start again, or raise tombstone_grace_secs only if every peer's tombstones are that old",
        path.display(),
        data_dir.display()
    )]
    Stale {
        down_for_secs: u64,
        grace_secs: u64,
        path: PathBuf,
        data_dir: PathBuf,
    },
    #[error("cannot write the liveness mark {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The mark's bytes for `at` (unix seconds).
pub fn encode(at: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[0..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&at.to_le_bytes());
    let crc = crc32fast::hash(&out[0..16]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The time in a mark, if it is intact.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != LEN || &bytes[0..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc != crc32fast::hash(&bytes[0..16]) {
        return None;
    }
    Some(u64::from_le_bytes(bytes[8..16].try_into().ok()?))
}

/// Refuses a data dir whose mark is older than `grace`. A missing mark (a
/// new data dir, or one of an older release) or a damaged one is accepted:
/// there is nothing to judge by.
pub fn check(data_dir: &Path, grace: Duration) -> Result<(), LivenessError> {
    let path = data_dir.join(FILE_NAME);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let Some(at) = decode(&bytes) else {
        tracing::warn!(path = %path.display(), "liveness mark damaged; not judged");
        return Ok(());
    };
    let down_for_secs = now().saturating_sub(at);
    if down_for_secs > grace.as_secs() {
        return Err(LivenessError::Stale {
            down_for_secs,
            grace_secs: grace.as_secs(),
            path,
            data_dir: data_dir.to_owned(),
        });
    }
    Ok(())
}

/// Writes the mark with the current time.
pub fn mark(data_dir: &Path) -> Result<(), LivenessError> {
    let path = data_dir.join(FILE_NAME);
    let temp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let write = || -> io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        std::fs::write(&temp, encode(now()))?;
        std::fs::rename(&temp, &path)
    };
    write().map_err(|source| LivenessError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_damage_is_not_judged() {
        let bytes = encode(1_234);
        assert_eq!(decode(&bytes), Some(1_234));
        let mut damaged = bytes;
        damaged[9] ^= 1;
        assert_eq!(decode(&damaged), None);
        assert_eq!(decode(&bytes[..19]), None);
    }

    #[test]
    fn a_data_dir_idle_past_the_grace_period_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let grace = Duration::from_secs(100);
        check(dir.path(), grace).expect("no mark: nothing to judge");
        mark(dir.path()).unwrap();
        check(dir.path(), grace).expect("fresh");
        std::fs::write(dir.path().join(FILE_NAME), encode(now() - 101)).unwrap();
        let err = check(dir.path(), grace).unwrap_err();
        assert!(err.to_string().contains("tombstone_grace_secs"), "{err}");
    }
}
