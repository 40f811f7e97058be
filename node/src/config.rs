//! The node's settings: built-in defaults, overridden by an optional TOML
//! file, overridden by command-line flags. Everything is validated before a
//! single core starts, and a refusal names the setting at fault.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use stratum_wire::auth::ClusterSecret;
use stratum_wire::placement::topology::MAX_SHARDS_PER_NODE;
use stratum_wire::{FrameLimits, Topology, TopologyError};

use crate::io_properties::{self, IoProperties};
use crate::store::fs::SyncMethod;
use crate::store::StoreConfig;

/// Shard 0's default port; shard `i` listens on `DEFAULT_PORT + i`.
pub const DEFAULT_PORT: u16 = 7700;
pub const DEFAULT_ADMIN_PORT: u16 = 7780;
pub const DEFAULT_DATA_DIR: &str = "stratum-data";

/// `stratum-node`: serves one node's shards, one pinned core per shard.
#[derive(Debug, Parser)]
#[command(name = "stratum-node", version, about)]
pub struct Flags {
    /// TOML file with any of the settings below (flags win over the file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the shards keep their data [default: ./stratum-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shard 0's address; shard i listens on this port + i
    /// [default: this node's topology address, else 127.0.0.1:7700].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Number of shards (one pinned core each) [default: the topology's
    /// count for this node, else one per available CPU].
    #[arg(long, value_name = "N")]
    pub shards: Option<NonZeroU16>,
    /// This node's id in the topology [default: 1].
    #[arg(long, value_name = "ID")]
    pub node_id: Option<u32>,
    /// Cluster topology (TOML) [default: a single-node cluster of this node].
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Admin HTTP endpoint (/metrics, /health) [default: 127.0.0.1:7780];
    /// "off" disables it.
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub admin: Option<AdminSetting>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// File holding the cluster secret; when set, every connection must
    /// prove it in the handshake. (Never pass a secret on the command line.)
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Disk measurements from `stratum-tune iotune` [default:
    /// DATA_DIR/io-properties.toml if present, else safe defaults].
    #[arg(long, value_name = "FILE")]
    pub io_properties: Option<PathBuf>,
    /// Largest object accepted, in bytes [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_object_bytes: Option<u64>,
    /// Most open connections per shard [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `--admin ADDR:PORT` or `--admin off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminSetting {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for AdminSetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::On)
            .map_err(|err| format!("{text:?} is neither ADDR:PORT nor \"off\": {err}"))
    }
}

impl<'de> Deserialize<'de> for AdminSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The TOML file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    shards: Option<NonZeroU16>,
    node_id: Option<u32>,
    topology: Option<PathBuf>,
    admin: Option<AdminSetting>,
    log_format: Option<LogFormat>,
    secret_file: Option<PathBuf>,
    io_properties: Option<PathBuf>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    maintenance: FileMaintenance,
    #[serde(default)]
    replication: FileReplication,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReplication {
    request_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    ping_interval_ms: Option<u64>,
    hint_replay_per_sec: Option<u64>,
    max_queued_hint_bytes: Option<u64>,
    repair_interval_secs: Option<u64>,
    repair_bytes_per_sec: Option<u64>,
    tombstone_grace_secs: Option<u64>,
}

/// How a core talks to the other nodes' cores (see `replication`).
#[derive(Debug, Clone)]
pub struct Replication {
    /// A replica that has not answered a replicate (or any request) within
    /// this long counts as failed for that write; a hint is written.
    pub request_timeout: Duration,
    /// Connect plus handshake must finish within this long.
    pub connect_timeout: Duration,
    /// Idle peer connections are pinged this often; one that misses a pong
    /// for two intervals is closed (a hung peer is noticed without traffic).
    pub ping_interval: Duration,
    /// Most hints replayed per second per core once a peer is back.
    pub hint_replay_per_sec: u64,
    /// Hints waiting to be written per core; past it new hints are dropped
    /// (and counted): the write already has its quorum.
    pub max_queued_hint_bytes: u64,
    /// Each core compares its shard with its peers' this often (anti-
    /// entropy; `None`: off).
    pub repair_interval: Option<Duration>,
    /// Most object bytes a core's repair fetches per second.
    pub repair_bytes_per_sec: u64,
    /// How long a delete is remembered (its tombstone blocks repair from
    /// copying the object back). A node down longer than this must not
    /// rejoin with its data: it refuses to start (see `cli.rs`).
    pub tombstone_grace: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_object_bytes: Option<u64>,
    max_connections: Option<u32>,
    max_in_flight_per_connection: Option<u32>,
    max_in_flight_per_shard: Option<u32>,
    max_buffered_bytes_per_shard: Option<u64>,
    idle_timeout_secs: Option<u64>,
    frame_timeout_secs: Option<u64>,
    write_timeout_secs: Option<u64>,
    handshake_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    segment_bytes: Option<u64>,
    cache_bytes: Option<u64>,
    resume_free_bytes: Option<u64>,
    io_memory_bytes: Option<u64>,
    sync_method: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMaintenance {
    checkpoint_interval_secs: Option<u64>,
    compaction_interval_secs: Option<u64>,
    compaction_dead_fraction: Option<f64>,
    scrub_interval_secs: Option<u64>,
    scrub_bytes_per_sec: Option<u64>,
}

/// Protection against abusive or broken peers, per shard unless noted.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_object_bytes: u64,
    pub max_connections: u32,
    /// Requests one connection may have in flight; the connection stops
    /// reading until one completes (TCP flow control pushes back).
    pub max_in_flight_per_connection: u32,
    /// Requests a shard serves at once over all its connections; past it,
    /// new requests are answered `Busy` at once.
    pub max_in_flight_per_shard: u32,
    /// Request bodies a shard holds in memory at once; past it, `Busy`.
    pub max_buffered_bytes_per_shard: u64,
    /// A connection with no request in flight and nothing received for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this long of its first byte.
    pub frame_timeout: Duration,
    /// A new connection must finish `hello` (and `auth_proof` when a secret
    /// is set) within this long of being accepted, or it is closed: an
    /// unauthenticated peer holds a slot for seconds, not `idle_timeout`.
    pub handshake_timeout: Duration,
    /// A peer that accepts no reply bytes for this long is disconnected (a
    /// client that stops reading cannot pin memory).
    pub write_timeout: Duration,
}

/// Background upkeep each core runs on its own shard.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Index checkpoint cadence (bounds replay at the next start).
    pub checkpoint_interval: Duration,
    pub compaction_interval: Duration,
    pub compaction_dead_fraction: f64,
    /// Full scrub cadence; `None` when scrubbing is off.
    pub scrub_interval: Option<Duration>,
    pub scrub_bytes_per_sec: u64,
}

/// The resolved, validated settings of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub shards: u16,
    pub node_id: u32,
    pub topology: Topology,
    /// The file `topology` came from (re-read on SIGHUP); `None` for the
    /// implicit single-node topology.
    pub topology_path: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub secret: Option<ClusterSecret>,
    pub limits: Limits,
    pub segment_bytes: u64,
    pub cache_bytes: u64,
    /// A shard read-only for lack of space resumes writes once its file
    /// system has this much free.
    pub resume_free_bytes: u64,
    /// Memory each core's io_uring buffers take: glommio's (network I/O)
    /// and, as much again, the segment ring's registered buffers.
    pub io_memory_bytes: u64,
    /// How group commits make their writes durable.
    pub sync_method: SyncMethod,
    /// Group-commit size (from the I/O properties file, else 1 MiB).
    pub max_batch_bytes: u64,
    /// Reads a batch-get keeps in flight (from the I/O properties file,
    /// else 16).
    pub read_parallelism: u32,
    /// The I/O properties file the two settings above came from.
    pub io_properties: Option<PathBuf>,
    /// The sync method that file's durable appends were measured with (the
    /// node warns at startup when it is not `sync_method`).
    pub io_properties_sync_method: Option<SyncMethod>,
    pub maintenance: Maintenance,
    pub replication: Replication,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("topology {path}: {source}")]
    Topology {
        path: PathBuf,
        #[source]
        source: TopologyError,
    },
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Resolves flags (and the file they name) into a validated config.
    pub fn resolve(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let node_id = flags.node_id.or(file.node_id).unwrap_or(1);
        let topology_path = flags.topology.or(file.topology);
        let (topology, shards, listen) = resolve_placement(
            node_id,
            topology_path.as_deref(),
            flags.shards.or(file.shards).map(NonZeroU16::get),
            flags.listen.or(file.listen),
        )?;
        let admin = resolve_admin(flags.admin.or(file.admin), listen, shards)?;
        let secret = resolve_secret(flags.secret_file.or(file.secret_file))?;
        let limits = resolve_limits(
            &flags.max_object_bytes,
            &flags.max_connections,
            &file.limits,
        )?;
        let store = resolve_store(&file.store)?;
        let maintenance = resolve_maintenance(&file.maintenance)?;
        let replication = resolve_replication(&file.replication)?;
        let data_dir = resolve_data_dir(flags.data_dir.or(file.data_dir))?;
        let io = resolve_io_properties(flags.io_properties.or(file.io_properties), &data_dir)?;

        let config = Self {
            data_dir,
            listen,
            shards,
            node_id,
            topology,
            topology_path,
            admin,
            log_format: flags
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            secret,
            limits,
            segment_bytes: store.segment_bytes,
            cache_bytes: store.cache_bytes,
            resume_free_bytes: store.resume_free_bytes,
            io_memory_bytes: store.io_memory_bytes,
            sync_method: store.sync_method,
            max_batch_bytes: io.max_batch_bytes,
            read_parallelism: io.read_parallelism,
            io_properties: io.path,
            io_properties_sync_method: io.sync_method,
            maintenance,
            replication,
        };
        // The store checks its own settings (segment size against object
        // size, ...): ask it now, before any core starts.
        config
            .store_config(0)
            .validate()
            .map_err(|err| invalid("store", err.to_string()))?;
        check_memlock(config.shards, config.io_memory_bytes, memlock_limit())?;
        Ok(config)
    }

    /// The store settings of shard `shard_id`.
    pub fn store_config(&self, shard_id: u16) -> StoreConfig {
        let mut store = StoreConfig::new(shard_id, self.shards);
        store.segment_bytes = self.segment_bytes;
        store.max_object_bytes = self.limits.max_object_bytes;
        store.cache_bytes = usize::try_from(self.cache_bytes).unwrap_or(usize::MAX);
        store.resume_free_bytes = self.resume_free_bytes;
        store.max_batch_bytes = usize::try_from(self.max_batch_bytes).unwrap_or(usize::MAX);
        store
    }

    /// Frame limits for connections: messages of the default bound,
    /// payloads up to the largest object.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_message_len: FrameLimits::DEFAULT_MAX_MESSAGE_LEN,
            max_payload_len: u32::try_from(self.limits.max_object_bytes).unwrap_or(u32::MAX),
        }
    }

    pub fn shard_dir(&self, shard_id: u16) -> PathBuf {
        self.data_dir.join(format!("shard-{shard_id:03}"))
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what: "config file",
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn available_cores() -> Result<u16, ConfigError> {
    let cores = std::thread::available_parallelism().map_err(|err| {
        invalid(
            "shards",
            format!("cannot count CPUs ({err}); pass --shards"),
        )
    })?;
    Ok(u16::try_from(cores.get())
        .unwrap_or(MAX_SHARDS_PER_NODE)
        .min(MAX_SHARDS_PER_NODE))
}

fn positive(setting: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(invalid(setting, "must be positive"));
    }
    Ok(value)
}

/// The soft `RLIMIT_MEMLOCK` of this process (`ulimit -l`), in bytes;
/// `None` when unlimited or unknown.
fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a plain struct the call fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Memory one core locks when every registration succeeds: glommio
/// registers `io_memory_bytes` of buffers (its network I/O) with each of its
/// three rings, and the segment ring registers as much again. What `ulimit
/// -l` should allow (`stratum-tune` recommends it).
pub fn locked_bytes_per_core(io_memory_bytes: u64) -> u64 {
    io_memory_bytes.saturating_mul(4)
}

/// A configuration whose cores cannot each lock even `io_memory_bytes` is
/// refused up front. Beyond that, registration is best effort: a ring the
/// limit refuses runs with unregistered buffers and says so in the log,
/// so a configuration that started under an earlier release still starts.
fn check_memlock(shards: u16, io_memory_bytes: u64, limit: Option<u64>) -> Result<(), ConfigError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let wanted = u64::from(shards).saturating_mul(io_memory_bytes);
    if wanted > limit {
        return Err(invalid(
            "store.io_memory_bytes",
            format!(
                "{shards} shards × {io_memory_bytes} bytes = {wanted} bytes to lock, over the memlock limit of {limit} bytes (ulimit -l); lower io_memory_bytes or raise the limit (stratum-tune recommend)"
            ),
        ));
    }
    Ok(())
}

/// The topology this node runs in, its shard count and its listen address:
/// from a topology file (which must list `node_id`, and agree with any
/// shard count given), or a single-node topology of the flags and defaults.
fn resolve_placement(
    node_id: u32,
    topology_path: Option<&std::path::Path>,
    shards_wanted: Option<u16>,
    listen_wanted: Option<SocketAddr>,
) -> Result<(Topology, u16, SocketAddr), ConfigError> {
    let (topology, shards, listen) = match topology_path {
        Some(path) => {
            let topology = Topology::load(path).map_err(|source| ConfigError::Topology {
                path: path.to_owned(),
                source,
            })?;
            let Some(me) = topology.nodes().iter().find(|node| node.id == node_id) else {
                return Err(invalid(
                    "node_id",
                    format!("node {node_id} is not in topology {}", path.display()),
                ));
            };
            if let Some(wanted) = shards_wanted {
                if wanted != me.shards {
                    return Err(invalid(
                        "shards",
                        format!(
                            "{wanted} given, but topology {} says node {node_id} has {}",
                            path.display(),
                            me.shards
                        ),
                    ));
                }
            }
            let listen = match listen_wanted {
                Some(listen) => listen,
                None => me.address.parse().map_err(|err| {
                    invalid(
                        "listen",
                        format!(
                            "no --listen given and node {node_id}'s topology address {:?} is not an IP:PORT to bind ({err})",
                            me.address
                        ),
                    )
                })?,
            };
            let shards = me.shards;
            (topology, shards, listen)
        }
        None => {
            let shards = match shards_wanted {
                Some(shards) => shards,
                None => available_cores()?,
            };
            let listen =
                listen_wanted.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
            let topology = Topology::single_node(node_id, listen.to_string(), shards)
                .map_err(|err| invalid("listen", err.to_string()))?;
            (topology, shards, listen)
        }
    };
    if shards > MAX_SHARDS_PER_NODE {
        return Err(invalid(
            "shards",
            format!("{shards} exceeds the maximum of {MAX_SHARDS_PER_NODE}"),
        ));
    }
    if listen.port() == 0 {
        return Err(invalid(
            "listen",
            "port 0 is not allowed: clients find shard i at port + i",
        ));
    }
    if u32::from(listen.port()) + u32::from(shards) - 1 > u32::from(u16::MAX) {
        return Err(invalid(
            "listen",
            format!(
                "ports {}..{} for {shards} shards pass 65535",
                listen.port(),
                u32::from(listen.port()) + u32::from(shards)
            ),
        ));
    }
    Ok((topology, shards, listen))
}

/// The admin endpoint (on by default, on loopback), never on a shard port.
fn resolve_admin(
    setting: Option<AdminSetting>,
    listen: SocketAddr,
    shards: u16,
) -> Result<Option<SocketAddr>, ConfigError> {
    let admin = match setting {
        Some(AdminSetting::Off) => None,
        Some(AdminSetting::On(addr)) => Some(addr),
        None => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
    };
    if let Some(admin) = admin {
        let shard_ports = listen.port()..listen.port().saturating_add(shards);
        if shard_ports.contains(&admin.port()) && (admin.ip() == listen.ip()) {
            return Err(invalid(
                "admin",
                format!("{admin} collides with a shard port"),
            ));
        }
    }
    Ok(admin)
}

/// The cluster secret, read from its file when one is named.
fn resolve_secret(path: Option<PathBuf>) -> Result<Option<ClusterSecret>, ConfigError> {
    let secret = match path {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
                what: "secret file",
                path: path.clone(),
                source,
            })?;
            Some(
                ClusterSecret::new(&bytes)
                    .map_err(|err| invalid("secret_file", format!("{}: {err}", path.display())))?,
            )
        }
        None => None,
    };
    Ok(secret)
}

/// The `[store]` settings, with their defaults.
struct StoreSettings {
    segment_bytes: u64,
    cache_bytes: u64,
    resume_free_bytes: u64,
    io_memory_bytes: u64,
    sync_method: SyncMethod,
}

fn resolve_store(store: &FileStore) -> Result<StoreSettings, ConfigError> {
    let segment_bytes = store
        .segment_bytes
        .unwrap_or(StoreConfig::DEFAULT_SEGMENT_BYTES);
    let cache_bytes = store.cache_bytes.unwrap_or(64 << 20);
    let resume_free_bytes = positive(
        "store.resume_free_bytes",
        store.resume_free_bytes.unwrap_or(64 << 20),
    )?;
    let io_memory_bytes = store.io_memory_bytes.unwrap_or(512 << 10);
    if io_memory_bytes < 64 << 10 {
        return Err(invalid(
            "store.io_memory_bytes",
            "must be at least 65536 (each core's io_uring needs buffers)",
        ));
    }
    let sync_method = match &store.sync_method {
        Some(name) => name
            .parse::<SyncMethod>()
            .map_err(|err| invalid("store.sync_method", err))?,
        None => SyncMethod::default(),
    };
    Ok(StoreSettings {
        segment_bytes,
        cache_bytes,
        resume_free_bytes,
        io_memory_bytes,
        sync_method,
    })
}

fn resolve_data_dir(data_dir: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(invalid(
            "data_dir",
            format!("{} exists but is not a directory", data_dir.display()),
        ));
    }
    Ok(data_dir)
}

/// What `stratum-tune iotune` measured, or the defaults.
struct MeasuredIo {
    max_batch_bytes: u64,
    read_parallelism: u32,
    path: Option<PathBuf>,
    sync_method: Option<SyncMethod>,
}

/// The I/O properties file: the one named (which must exist), else the data
/// dir's (which may not).
fn resolve_io_properties(
    named: Option<PathBuf>,
    data_dir: &std::path::Path,
) -> Result<MeasuredIo, ConfigError> {
    // An explicitly named file must exist; the default one may not.
    let (io_path, required) = match named {
        Some(path) => (path, true),
        None => (data_dir.join(io_properties::FILE_NAME), false),
    };
    let measured =
        IoProperties::load(&io_path).map_err(|err| invalid("io_properties", err.to_string()))?;
    if measured.is_none() && required {
        return Err(invalid(
            "io_properties",
            format!(
                "{} does not exist (run stratum-tune iotune)",
                io_path.display()
            ),
        ));
    }
    let io_properties_sync_method = measured.as_ref().map(|measured| measured.sync_method);
    let (max_batch_bytes, read_parallelism, io_properties) = match measured {
        Some(measured) => (
            measured.max_batch_bytes,
            measured.read_parallelism,
            Some(io_path),
        ),
        None => (
            io_properties::DEFAULT_MAX_BATCH_BYTES,
            io_properties::DEFAULT_READ_PARALLELISM,
            None,
        ),
    };
    Ok(MeasuredIo {
        max_batch_bytes,
        read_parallelism,
        path: io_properties,
        sync_method: io_properties_sync_method,
    })
}

fn resolve_replication(file: &FileReplication) -> Result<Replication, ConfigError> {
    let millis = |setting, value: Option<u64>, default| -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(positive(
            setting,
            value.unwrap_or(default),
        )?))
    };
    Ok(Replication {
        request_timeout: millis(
            "replication.request_timeout_ms",
            file.request_timeout_ms,
            5_000,
        )?,
        connect_timeout: millis(
            "replication.connect_timeout_ms",
            file.connect_timeout_ms,
            1_000,
        )?,
        ping_interval: millis("replication.ping_interval_ms", file.ping_interval_ms, 1_000)?,
        hint_replay_per_sec: positive(
            "replication.hint_replay_per_sec",
            file.hint_replay_per_sec.unwrap_or(2_000),
        )?,
        max_queued_hint_bytes: positive(
            "replication.max_queued_hint_bytes",
            file.max_queued_hint_bytes.unwrap_or(64 << 20),
        )?,
        repair_interval: match file.repair_interval_secs.unwrap_or(60) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
        repair_bytes_per_sec: positive(
            "replication.repair_bytes_per_sec",
            file.repair_bytes_per_sec.unwrap_or(32 << 20),
        )?,
        tombstone_grace: Duration::from_secs(positive(
            "replication.tombstone_grace_secs",
            file.tombstone_grace_secs.unwrap_or(10 * 24 * 3600),
        )?),
    })
}

fn resolve_limits(
    max_object_bytes: &Option<u64>,
    max_connections: &Option<u32>,
    file: &FileLimits,
) -> Result<Limits, ConfigError> {
    let max_object_bytes = max_object_bytes
        .or(file.max_object_bytes)
        .unwrap_or(StoreConfig::DEFAULT_MAX_OBJECT_BYTES);
    positive("max_object_bytes", max_object_bytes)?;
    if max_object_bytes > u64::from(u32::MAX) {
        return Err(invalid(
            "max_object_bytes",
            format!(
                "{max_object_bytes} exceeds the wire format's {} byte payload limit",
                u32::MAX
            ),
        ));
    }
    let secs = |setting, value: Option<u64>, default| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(positive(
            setting,
            value.unwrap_or(default),
        )?))
    };
    let limits = Limits {
        max_object_bytes,
        max_connections: positive(
            "max_connections",
            u64::from(max_connections.or(file.max_connections).unwrap_or(1024)),
        )? as u32,
        max_in_flight_per_connection: positive(
            "limits.max_in_flight_per_connection",
            u64::from(file.max_in_flight_per_connection.unwrap_or(512)),
        )? as u32,
        max_in_flight_per_shard: positive(
            "limits.max_in_flight_per_shard",
            u64::from(file.max_in_flight_per_shard.unwrap_or(8192)),
        )? as u32,
        max_buffered_bytes_per_shard: positive(
            "limits.max_buffered_bytes_per_shard",
            file.max_buffered_bytes_per_shard.unwrap_or(512 << 20),
        )?,
        idle_timeout: secs("limits.idle_timeout_secs", file.idle_timeout_secs, 300)?,
        frame_timeout: secs("limits.frame_timeout_secs", file.frame_timeout_secs, 30)?,
        write_timeout: secs("limits.write_timeout_secs", file.write_timeout_secs, 30)?,
        handshake_timeout: secs(
            "limits.handshake_timeout_secs",
            file.handshake_timeout_secs,
            10,
        )?,
    };
    if limits.max_buffered_bytes_per_shard < max_object_bytes {
        return Err(invalid(
            "limits.max_buffered_bytes_per_shard",
            format!(
                "{} is below max_object_bytes {max_object_bytes}: the largest object could never be accepted",
                limits.max_buffered_bytes_per_shard
            ),
        ));
    }
    Ok(limits)
}

fn resolve_maintenance(file: &FileMaintenance) -> Result<Maintenance, ConfigError> {
    let fraction = file.compaction_dead_fraction.unwrap_or(0.5);
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(invalid(
            "maintenance.compaction_dead_fraction",
            format!("{fraction} is not in (0, 1]"),
        ));
    }
    let scrub_bytes_per_sec = file.scrub_bytes_per_sec.unwrap_or(16 << 20);
    let scrub_interval = match (scrub_bytes_per_sec, file.scrub_interval_secs) {
        (0, _) | (_, Some(0)) => None,
        (_, interval) => Some(Duration::from_secs(interval.unwrap_or(24 * 3600))),
    };
    Ok(Maintenance {
        checkpoint_interval: Duration::from_secs(positive(
            "maintenance.checkpoint_interval_secs",
            file.checkpoint_interval_secs.unwrap_or(60),
        )?),
        compaction_interval: Duration::from_secs(positive(
            "maintenance.compaction_interval_secs",
            file.compaction_interval_secs.unwrap_or(600),
        )?),
        compaction_dead_fraction: fraction,
        scrub_interval,
        scrub_bytes_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["stratum-node"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn io_memory_past_the_memlock_limit_is_refused() {
        check_memlock(2, 512 << 10, Some(8 << 20)).expect("fits");
        check_memlock(64, 1 << 30, None).expect("unlimited");
        let err = check_memlock(4, 4 << 20, Some(8 << 20)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("store.io_memory_bytes") && text.contains("memlock"),
            "{text}"
        );
    }

    fn resolve(args: &[&str]) -> Result<NodeConfig, ConfigError> {
        NodeConfig::resolve(flags(args))
    }

    fn setting_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("expected an invalid setting, got {other}"),
        }
    }

    #[test]
    fn no_configuration_gives_a_single_node_cluster() {
        let config = resolve(&["--shards", "2"]).unwrap();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 7700)));
        assert_eq!(config.shards, 2);
        assert_eq!(config.node_id, 1);
        assert_eq!(config.data_dir, PathBuf::from("stratum-data"));
        assert_eq!(config.topology.nodes().len(), 1);
        assert_eq!(config.topology.nodes()[0].shards, 2);
        assert_eq!(config.admin, Some(SocketAddr::from(([127, 0, 0, 1], 7780))));
        assert!(config.secret.is_none());
        assert!(resolve(&[]).unwrap().shards >= 1);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nshards = 3\nadmin = \"off\"\n[limits]\nidle_timeout_secs = 7\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let config = resolve(&["--config", path, "--shards", "2"]).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.shards, 2);
        assert_eq!(config.admin, None);
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(7));
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[limits]\nidle_timeout_secs = 0\n").unwrap();
        let err = resolve(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(
            err.to_string().contains("limits.idle_timeout_secs"),
            "{err}"
        );

        std::fs::write(&path, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = resolve(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("listne"), "{err}");

        assert_eq!(
            setting_of(resolve(&["--listen", "127.0.0.1:0"]).unwrap_err()),
            "listen"
        );
        assert_eq!(
            setting_of(resolve(&["--listen", "127.0.0.1:65535", "--shards", "2"]).unwrap_err()),
            "listen"
        );
        assert_eq!(
            setting_of(
                resolve(&[
                    "--listen",
                    "127.0.0.1:7000",
                    "--shards",
                    "2",
                    "--admin",
                    "127.0.0.1:7001"
                ])
                .unwrap_err()
            ),
            "admin"
        );
        assert_eq!(
            setting_of(resolve(&["--max-object-bytes", "0"]).unwrap_err()),
            "max_object_bytes"
        );
        assert!(Flags::try_parse_from(["stratum-node", "--shards", "0"]).is_err());
        assert!(Flags::try_parse_from(["stratum-node", "--admin", "nowhere"]).is_err());
    }

    #[test]
    fn the_sync_method_defaults_to_dsync_and_a_bad_one_is_named() {
        assert_eq!(resolve(&[]).unwrap().sync_method, SyncMethod::Dsync);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[store]\nsync_method = \"fdatasync\"\n").unwrap();
        let config = resolve(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(config.sync_method, SyncMethod::Fdatasync);

        std::fs::write(&path, "[store]\nsync_method = \"fsync\"\n").unwrap();
        let err = resolve(&["--config", path.to_str().unwrap()]).unwrap_err();
        let message = err.to_string();
        assert_eq!(setting_of(err), "store.sync_method");
        assert!(
            message.contains("\"fsync\"") && message.contains("fdatasync"),
            "{message}"
        );
    }

    #[test]
    fn the_topology_supplies_shards_and_address_and_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.toml");
        std::fs::write(
            &path,
            "epoch = 4\nreplication_factor = 1\nwrite_quorum = 1\n\
             [[node]]\nid = 1\naddress = \"127.0.0.1:9100\"\nshards = 2\n\
             [[node]]\nid = 2\naddress = \"127.0.0.1:9200\"\nshards = 1\n",
        )
        .unwrap();
        let topology = path.to_str().unwrap();
        let config = resolve(&["--topology", topology, "--node-id", "2"]).unwrap();
        assert_eq!((config.shards, config.listen.port()), (1, 9200));
        assert_eq!(config.topology.epoch(), 4);
        assert_eq!(
            setting_of(resolve(&["--topology", topology, "--node-id", "3"]).unwrap_err()),
            "node_id"
        );
        assert_eq!(
            setting_of(resolve(&["--topology", topology, "--shards", "4"]).unwrap_err()),
            "shards"
        );
    }

    #[test]
    fn io_properties_size_group_commits_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let config = resolve(&["--data-dir", data]).unwrap();
        assert_eq!(
            config.max_batch_bytes,
            io_properties::DEFAULT_MAX_BATCH_BYTES
        );
        assert_eq!(config.io_properties, None);
        std::fs::write(
            dir.path().join(io_properties::FILE_NAME),
            "device = \"vda\"\nlogical_block_size = 512\nmax_io_bytes = 4194304\n\
             seq_write_bytes_per_sec = 1.0e8\nmax_batch_bytes = 262144\nread_parallelism = 8\n\
             durable_append = []\nrandom_read = []\n",
        )
        .unwrap();
        let config = resolve(&["--data-dir", data]).unwrap();
        assert_eq!(
            (config.max_batch_bytes, config.read_parallelism),
            (262144, 8)
        );
        assert_eq!(config.store_config(0).max_batch_bytes, 262144);
        // A file without `sync_method` predates it: measured with fdatasync.
        assert_eq!(
            config.io_properties_sync_method,
            Some(SyncMethod::Fdatasync)
        );
        let path = dir.path().join(io_properties::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("sync_method = \"dsync\"\n{text}")).unwrap();
        let config = resolve(&["--data-dir", data]).unwrap();
        assert_eq!(config.io_properties_sync_method, Some(SyncMethod::Dsync));
        std::fs::write(&path, format!("sync_method = \"fsync\"\n{text}")).unwrap();
        let err = resolve(&["--data-dir", data]).unwrap_err();
        assert_eq!(setting_of(err), "io_properties");
        let missing = dir.path().join("nope.toml");
        let err = resolve(&["--io-properties", missing.to_str().unwrap()]).unwrap_err();
        assert_eq!(setting_of(err), "io_properties");
    }

    #[test]
    fn secrets_come_from_a_file_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "tiny\n").unwrap();
        let err = resolve(&["--secret-file", path.to_str().unwrap()]).unwrap_err();
        assert_eq!(setting_of(err), "secret_file");
        std::fs::write(&path, "a secret that is long enough\n").unwrap();
        assert!(resolve(&["--secret-file", path.to_str().unwrap()])
            .unwrap()
            .secret
            .is_some());
        let missing = dir.path().join("missing");
        assert!(matches!(
            resolve(&["--secret-file", missing.to_str().unwrap()]).unwrap_err(),
            ConfigError::Read { .. }
        ));
    }
}
