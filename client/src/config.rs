//! How a client finds the cluster and how patient it is.

use std::path::PathBuf;
use std::time::Duration;

use stratum_wire::auth::ClusterSecret;

/// Where the cluster is.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A topology file (TOML, as the nodes use). Re-read when a node reports
    /// a newer epoch; when the file is older than the node's, the node's
    /// topology is fetched instead.
    TopologyFile(PathBuf),
    /// `host:port` of any shard of one or more nodes: the client asks the
    /// first that answers for the topology.
    Seeds(Vec<String>),
}

/// Client settings. [`ClientConfig::new`] gives production defaults.
#[derive(Clone)]
pub struct ClientConfig {
    pub discovery: Discovery,
    /// The cluster secret, when the nodes require one.
    pub secret: Option<ClusterSecret>,
    /// How long one request to one node may take before it counts as failed
    /// (and a read moves on to the next replica).
    pub request_timeout: Duration,
    /// How long a connect plus handshake may take.
    pub connect_timeout: Duration,
    /// After a failed connect, how long requests for that peer fail at once
    /// before the next connect is tried (doubles per failure, up to
    /// `max_reconnect_backoff`).
    pub reconnect_backoff: Duration,
    pub max_reconnect_backoff: Duration,
    /// Rounds over the replica set after the first, for failures another
    /// attempt may cure (busy, unreachable, timeout).
    pub retries: u32,
    /// Base delay before a retry round; grows exponentially, with jitter.
    pub retry_backoff: Duration,
    /// Requests in flight on one connection; more wait in the client.
    pub max_in_flight_per_connection: usize,
    /// Requests waiting for one connection beyond that; more fail at once
    /// with [`crate::AttemptError::Overloaded`].
    pub max_queued_per_connection: usize,
    /// I/O threads (each owns its connections); default: available cores,
    /// at most 4.
    pub io_threads: usize,
    /// Largest object accepted from a node (the nodes' maximum object size).
    pub max_object_size: u32,
    /// zstd level puts are compressed at (on the caller's thread, so the
    /// frontends pay for it and the nodes do not); `None` sends content as
    /// it is. Content that would shrink by less than a tenth is sent raw
    /// whatever the setting. Levels above 19 are refused: their windows
    /// exceed what nodes accept.
    pub compression_level: Option<i32>,
    /// Sent in the handshake, for the nodes' logs.
    pub agent: String,
}

impl ClientConfig {
    pub fn new(discovery: Discovery) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            discovery,
            secret: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff: Duration::from_millis(100),
            max_reconnect_backoff: Duration::from_secs(5),
            retries: 2,
            retry_backoff: Duration::from_millis(20),
            max_in_flight_per_connection: 512,
            max_queued_per_connection: 65_536,
            io_threads: cores.clamp(1, 4),
            max_object_size: 64 << 20,
            compression_level: Some(stratum_wire::codec::DEFAULT_LEVEL),
            agent: format!("stratum-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// A client of the node (or nodes) at `seeds`.
    pub fn seeds<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Discovery::Seeds(
            seeds.into_iter().map(Into::into).collect(),
        ))
    }

    /// A client of the cluster described by a topology file.
    pub fn topology_file(path: impl Into<PathBuf>) -> Self {
        Self::new(Discovery::TopologyFile(path.into()))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Discovery::Seeds(seeds) = &self.discovery {
            if seeds.is_empty() {
                return Err("no seed address given".into());
            }
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("timeouts must be above zero".into());
        }
        if let Some(level) = self.compression_level {
            if !(1..=19).contains(&level) {
                return Err(format!(
                    "compression_level {level} is outside 1..=19 (None turns compression off)"
                ));
            }
        }
        if self.max_in_flight_per_connection == 0 || self.io_threads == 0 {
            return Err("max_in_flight_per_connection and io_threads must be at least 1".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("discovery", &self.discovery)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retries", &self.retries)
            .field("io_threads", &self.io_threads)
            .finish_non_exhaustive()
    }
}
