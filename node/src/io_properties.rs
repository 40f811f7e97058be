//! The I/O properties file: what `stratum-tune iotune` measured on a data
//! directory's device, and what the node sizes from it. Written by
//! stratum-tune, read by the node at startup; when it is absent the node runs
//! with safe defaults.
//!
//! ```toml
//! device = "vda"
//! logical_block_size = 512
//! max_io_bytes = 4194304
//! seq_write_bytes_per_sec = 180000000
//! max_batch_bytes = 1048576        # group-commit size the node uses
//! read_parallelism = 16            # reads a batch-get keeps in flight
//! sync_method = "dsync"            # how the durable appends were synced
//! [[durable_append]]
//! group_bytes = 4096
//! appends_per_sec = 5900.0
//! [[random_read]]
//! depth = 1
//! iops = 7000.0
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::fs::SyncMethod;

/// File name inside the data directory.
pub const FILE_NAME: &str = "io-properties.toml";

/// Group-commit size without measurements.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 1 << 20;
/// Batch-get reads in flight without measurements.
pub const DEFAULT_READ_PARALLELISM: u32 = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoProperties {
    /// Block device the data directory lives on.
    pub device: String,
    pub logical_block_size: u32,
    /// Largest single I/O the device takes (max_sectors_kb).
    pub max_io_bytes: u64,
    pub seq_write_bytes_per_sec: f64,
    /// The smallest group-commit size that reached 90% of the best durable
    /// append bandwidth: bigger batches add latency and gain nothing.
    pub max_batch_bytes: u64,
    /// The smallest read depth that reached 90% of the best random-read IOPS.
    pub read_parallelism: u32,
    /// How the durable appends below were made durable: `max_batch_bytes`
    /// fits a node with this `store.sync_method`. Files written before the
    /// field existed were measured with fdatasync.
    #[serde(default = "measured_with_fdatasync")]
    pub sync_method: SyncMethod,
    pub durable_append: Vec<DurableAppend>,
    pub random_read: Vec<RandomRead>,
}

fn measured_with_fdatasync() -> SyncMethod {
    SyncMethod::Fdatasync
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableAppend {
    pub group_bytes: u64,
    /// Durable appends of `group_bytes` per second (a write through an
    /// `O_DSYNC` file, or a write then an fdatasync: see `sync_method`).
    pub appends_per_sec: f64,
}

impl DurableAppend {
    pub fn bytes_per_sec(&self) -> f64 {
        self.appends_per_sec * self.group_bytes as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRead {
    pub depth: u32,
    pub iops: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum IoPropertiesError {
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid I/O properties file: {source}")]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {reason}")]
    Invalid {
        path: std::path::PathBuf,
        reason: String,
    },
}

impl IoProperties {
    /// Loads `path`; `Ok(None)` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Self>, IoPropertiesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IoPropertiesError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let properties: Self =
            toml::from_str(&text).map_err(|source| IoPropertiesError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |reason: &str| IoPropertiesError::Invalid {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if properties.max_batch_bytes < 4096 || properties.max_batch_bytes > 64 << 20 {
            return Err(invalid("max_batch_bytes must be between 4 KiB and 64 MiB"));
        }
        if properties.read_parallelism == 0 || properties.read_parallelism > 4096 {
            return Err(invalid("read_parallelism must be between 1 and 4096"));
        }
        Ok(Some(properties))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Picks `max_batch_bytes` and `read_parallelism` from the measurements:
    /// the smallest setting within 90% of the best.
    pub fn recommend(durable: &[DurableAppend], reads: &[RandomRead]) -> (u64, u32) {
        let best_bw = durable
            .iter()
            .map(DurableAppend::bytes_per_sec)
            .fold(0.0, f64::max);
        let batch = durable
            .iter()
            .filter(|d| d.bytes_per_sec() >= 0.9 * best_bw)
            .map(|d| d.group_bytes)
            .min()
            .unwrap_or(DEFAULT_MAX_BATCH_BYTES);
        let best_iops = reads.iter().map(|r| r.iops).fold(0.0, f64::max);
        let depth = reads
            .iter()
            .filter(|r| r.iops >= 0.9 * best_iops)
            .map(|r| r.depth)
            .min()
            .unwrap_or(DEFAULT_READ_PARALLELISM);
        (batch.max(4096), depth.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommends_the_smallest_setting_near_the_best() {
        let durable = [
            DurableAppend {
                group_bytes: 4096,
                appends_per_sec: 5000.0,
            },
            DurableAppend {
                group_bytes: 65536,
                appends_per_sec: 2500.0,
            },
            DurableAppend {
                group_bytes: 1 << 20,
                appends_per_sec: 200.0,
            },
            DurableAppend {
                group_bytes: 4 << 20,
                appends_per_sec: 52.0,
            },
        ];
        let reads = [
            RandomRead {
                depth: 1,
                iops: 5000.0,
            },
            RandomRead {
                depth: 8,
                iops: 40000.0,
            },
            RandomRead {
                depth: 32,
                iops: 60000.0,
            },
            RandomRead {
                depth: 128,
                iops: 62000.0,
            },
        ];
        // 1 MiB: 210 MB/s, 4 MiB: 218 MB/s (best) -> 1 MiB is within 90%.
        assert_eq!(IoProperties::recommend(&durable, &reads), (1 << 20, 32));
        assert_eq!(
            IoProperties::recommend(&[], &[]),
            (DEFAULT_MAX_BATCH_BYTES, DEFAULT_READ_PARALLELISM)
        );
    }

    #[test]
    fn round_trips_and_refuses_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(IoProperties::load(&path).unwrap().is_none());
        let properties = IoProperties {
            device: "nvme0n1".into(),
            logical_block_size: 4096,
            max_io_bytes: 128 << 10,
            seq_write_bytes_per_sec: 2e9,
            max_batch_bytes: 256 << 10,
            read_parallelism: 64,
            sync_method: SyncMethod::Dsync,
            durable_append: vec![DurableAppend {
                group_bytes: 4096,
                appends_per_sec: 30000.0,
            }],
            random_read: vec![RandomRead {
                depth: 64,
                iops: 500000.0,
            }],
        };
        std::fs::write(&path, properties.to_toml()).unwrap();
        assert!(properties.to_toml().contains("sync_method = \"dsync\""));
        assert_eq!(IoProperties::load(&path).unwrap(), Some(properties.clone()));
        let mut bad = properties;
        bad.read_parallelism = 0;
        std::fs::write(&path, bad.to_toml()).unwrap();
        assert!(matches!(
            IoProperties::load(&path),
            Err(IoPropertiesError::Invalid { .. })
        ));
        std::fs::write(&path, "device = 3\n").unwrap();
        assert!(matches!(
            IoProperties::load(&path),
            Err(IoPropertiesError::Parse { .. })
        ));
    }
}
