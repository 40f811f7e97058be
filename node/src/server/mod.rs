//! The thread-per-core server: one pinned glommio executor per shard, each
//! with its own store, listener, connections and metrics.
//!
//! - [`core`]: one core's state and life (open store, accept, drain, close).
//! - [`connection`]: one connection: handshake, reader, writer.
//! - [`handshake`]: hello / authentication.
//! - [`request`]: one request to its replies.
//! - [`mesh`]: the messages cores send each other.
//! - [`metrics`]: per-core counters and histograms, Prometheus rendering.
//! - [`maintenance`]: checkpoints, compaction and scrubs on each core.
//! - [`admin`]: the HTTP endpoint for metrics and health.
//!
//! Frames, outboxes and sockets are the `net` layer's; the store operations
//! a request turns into are the `shard` layer's.
//!
//! Startup and shutdown are coordinated from the main thread by message:
//! every core reports once it serves; on shutdown every core first drains
//! (stops accepting, finishes in-flight requests; forwarded requests are
//! still served) and only once all have drained do they close their stores.

pub mod admin;
pub mod connection;
pub mod core;
pub mod handshake;
pub mod log_limit;
pub mod maintenance;
pub mod mesh;
pub mod metrics;
pub mod preflight;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use stratum_wire::placement::{Topology, TopologyError};

use crate::config::NodeConfig;
use mesh::{CoreMsg, Mesh};

/// How long shutdown waits for connections to drain before closing the
/// stores anyway (in-flight writes are durable or refused either way).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the executor of shard {shard}")]
    Executor {
        shard: u16,
        #[source]
        source: glommio::GlommioError<()>,
    },
    #[error("{0}")]
    Core(String),
    #[error("shard {0} stopped during startup")]
    Vanished(u16),
    #[error("the data dir cannot be used")]
    DataDir(#[from] preflight::PreflightError),
}

/// Why a topology reload was refused (the node keeps its current one).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this node was started without --topology; there is no file to reload")]
    NoFile,
    #[error("topology {path}")]
    Load {
        path: std::path::PathBuf,
        #[source]
        source: TopologyError,
    },
    #[error("topology {path} refused: {reason}")]
    Refused {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// A running node.
pub struct Node {
    config: Arc<NodeConfig>,
    /// The topology every core routes by.
    topology: Topology,
    mesh: Mesh,
    executors: Vec<ExecutorJoinHandle<()>>,
    /// Shards that reported serving (only they are drained and closed).
    serving: Vec<u16>,
}

/// The CPUs the calling thread may run on (its affinity mask), in order.
/// Public for benchmarks that place a node and its load on separate CPUs.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set the kernel fills; CPU_ISSET only reads
    // it within its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| libc::CPU_ISSET(*cpu, &set))
            .collect()
    }
}

impl Node {
    /// Starts one executor per shard and returns once every shard serves,
    /// or stops the ones that started and reports why one could not.
    pub fn start(config: Arc<NodeConfig>) -> Result<Self, StartError> {
        preflight::check(&config.data_dir, config.shards)?;
        let (mesh, inboxes) = Mesh::new(config.shards);
        let (ready_tx, ready_rx) = flume::unbounded();
        let cpus = allowed_cpus();
        let mut executors = Vec::with_capacity(usize::from(config.shards));
        let mut failure = None;
        for (shard, inbox) in (0..config.shards).zip(inboxes) {
            // One shard per CPU; with more shards than CPUs they wrap around
            // (useful for testing only).
            let placement = match cpus.get(usize::from(shard) % cpus.len().max(1)) {
                Some(cpu) => Placement::Fixed(*cpu),
                None => Placement::Unbound,
            };
            let (config, mesh, ready) = (Arc::clone(&config), mesh.clone(), ready_tx.clone());
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{shard}"))
                .io_memory(usize::try_from(config.io_memory_bytes).unwrap_or(usize::MAX))
                .spawn(move || core::run(shard, config, mesh, inbox, ready));
            match spawned {
                Ok(handle) => executors.push(handle),
                Err(source) => {
                    failure = Some(StartError::Executor { shard, source });
                    break;
                }
            }
        }
        drop(ready_tx);
        // Every spawned core reports exactly once (serving, or why not).
        let mut serving = Vec::new();
        for _ in 0..executors.len() {
            match ready_rx.recv() {
                Ok(Ok(shard)) => serving.push(shard),
                Ok(Err(reason)) => {
                    failure.get_or_insert(StartError::Core(reason));
                }
                Err(_) => {
                    failure.get_or_insert(StartError::Vanished(serving.len() as u16));
                    break;
                }
            }
        }
        let node = Self {
            topology: config.topology.clone(),
            config,
            mesh,
            executors,
            serving,
        };
        match failure {
            None => Ok(node),
            Some(err) => {
                node.shutdown();
                Err(err)
            }
        }
    }

    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Re-reads the topology file and, if it is a valid successor of the
    /// current one, makes every core route by it. Returns the new epoch, or
    /// `None` when the file is unchanged.
    ///
    /// A successor has a higher epoch and keeps this node's id, address and
    /// shard count (those need a restart).
    pub fn reload_topology(&mut self) -> Result<Option<u64>, ReloadError> {
        let path = self
            .config
            .topology_path
            .clone()
            .ok_or(ReloadError::NoFile)?;
        let new = Topology::load(&path).map_err(|source| ReloadError::Load {
            path: path.clone(),
            source,
        })?;
        if new == self.topology {
            return Ok(None);
        }
        let refuse = |reason: String| ReloadError::Refused {
            path: path.clone(),
            reason,
        };
        let me = self.config.node_id;
        let current = self.topology.nodes().iter().find(|node| node.id == me);
        match new.nodes().iter().find(|node| node.id == me) {
            // Leaving the cluster: the node keeps running and hands every
            // copy it holds to the objects' replicas (`rebalance`).
            None => tracing::warn!(
                node = me,
                epoch = new.epoch(),
                "this node is not in the new topology: it is leaving; it hands its objects to their replicas, and may be stopped once stratum_rebalance_backlog is 0 on every shard"
            ),
            Some(mine) if mine.shards != self.config.shards => {
                return Err(refuse(format!(
                    "it gives node {me} {} shards; this node runs {} (changing that needs a restart)",
                    mine.shards, self.config.shards
                )));
            }
            Some(mine) => {
                if let Some(current) = current.filter(|current| current.address != mine.address) {
                    return Err(refuse(format!(
                        "it moves node {me} from {} to {} (changing that needs a restart)",
                        current.address, mine.address
                    )));
                }
            }
        }
        if new.epoch() <= self.topology.epoch() {
            return Err(refuse(format!(
                "its epoch {} is not above the current {}; a changed topology needs a higher epoch",
                new.epoch(),
                self.topology.epoch()
            )));
        }
        let (done_tx, done_rx) = flume::unbounded();
        for &shard in &self.serving {
            self.mesh.send_blocking(
                shard,
                CoreMsg::Topology {
                    topology: new.clone(),
                    done: done_tx.clone(),
                },
            );
        }
        drop(done_tx);
        let confirmed = done_rx.iter().count();
        if confirmed != self.serving.len() {
            tracing::error!(
                confirmed,
                shards = self.serving.len(),
                "not every shard took the new topology"
            );
        }
        let epoch = new.epoch();
        self.topology = new;
        Ok(Some(epoch))
    }

    /// Drains every core (stop accepting, finish in-flight requests), then
    /// closes every store (durable, checkpointed), then joins the threads.
    /// Returns whether everything stopped cleanly.
    pub fn shutdown(self) -> bool {
        let (drained_tx, drained_rx) = flume::unbounded();
        let mut asked = 0;
        for &shard in &self.serving {
            if self.mesh.send_blocking(
                shard,
                CoreMsg::Drain {
                    drained: drained_tx.clone(),
                },
            ) {
                asked += 1;
            }
        }
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        let mut clean = true;
        for _ in 0..asked {
            match drained_rx.recv_deadline(deadline) {
                Ok(shard) => tracing::info!(shard, "shard drained"),
                Err(_) => {
                    tracing::error!(timeout = ?DRAIN_TIMEOUT, "not every shard drained in time; closing anyway");
                    clean = false;
                    break;
                }
            }
        }
        for &shard in &self.serving {
            self.mesh.send_blocking(shard, CoreMsg::Close);
        }
        for executor in self.executors {
            if executor.join().is_err() {
                clean = false;
            }
        }
        clean
    }
}
