//! One core: its shard store, its listener, its connections, its inbox, its
//! metrics. Everything here lives on, and is touched by, this core's thread
//! only (`Rc`, `Cell`, `RefCell`; no locks).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::sync::{Gate, Semaphore};
use stratum_wire::message::ErrorCode;
use stratum_wire::placement::shard_of;
use stratum_wire::ObjectId;

use super::log_limit::LogLimiter;
use super::mesh::{CoreMsg, Mesh};
use super::metrics::{ConnEvent, MetricsSnapshot, ShardMetrics};
use super::{connection, maintenance};
use crate::config::NodeConfig;
use crate::net::frame_reader::ByteBudget;
use crate::net::stream::{Listener, Network, TcpListener, TcpNetwork};
use crate::replication::anti_entropy;
use crate::replication::handoff::{self, Handoff};
use crate::replication::Replicator;
use crate::shard::ops::{self, Done, Op, OpError};
use crate::store::fs::uring::UringFs;
use crate::store::fs::StoreFs;
use crate::store::{ShardStore, StoreError};

/// What a core reports once it is serving (or why it could not start).
pub type Startup = Result<u16, String>;

pub struct Core<F: StoreFs + 'static = UringFs> {
    pub shard_id: u16,
    pub config: Arc<NodeConfig>,
    pub store: ShardStore<F>,
    pub mesh: Mesh,
    pub metrics: RefCell<ShardMetrics>,
    /// Peer links, quorum counts, hints, the placement this core routes by.
    pub replication: Replicator,
    in_flight: Cell<u32>,
    /// Request bytes held in memory: admitted bodies and frames still
    /// arriving on this core's connections.
    pub buffered: ByteBudget,
    /// Repeated warnings of this core, limited (see `log_limit.rs`).
    pub log_limit: LogLimiter,
    /// Closed when draining starts: every `wait_shutdown` then returns. (A
    /// closed semaphore is glommio's broadcast.)
    shutdown: Semaphore,
    /// Tracks connection tasks so draining can wait for them.
    connections: Gate,
    open_connections: Cell<u32>,
    /// Set once draining finished: no connection is left.
    drained: Cell<bool>,
}

impl<F: StoreFs + 'static> crate::replication::shard::Shard for Core<F> {
    type Fs = F;

    fn shard_id(&self) -> u16 {
        self.shard_id
    }
    fn config(&self) -> &NodeConfig {
        &self.config
    }
    fn store(&self) -> &ShardStore<F> {
        &self.store
    }
    fn replication(&self) -> &Replicator {
        &self.replication
    }
    fn run_op(
        &self,
        id: &ObjectId,
        op: Op,
    ) -> impl std::future::Future<Output = Result<Done, OpError>> {
        Core::run_op(self, id, op)
    }
}

/// A request admitted past the shard's limits; releases its share on drop.
pub struct Admission<F: StoreFs + 'static = UringFs> {
    core: Rc<Core<F>>,
    bytes: u64,
}

impl<F: StoreFs + 'static> Drop for Admission<F> {
    fn drop(&mut self) {
        self.core.in_flight.set(self.core.in_flight.get() - 1);
        self.core.buffered.give_back(self.bytes);
    }
}

impl<F: StoreFs + 'static> Core<F> {
    pub fn topology_epoch(&self) -> u64 {
        self.replication.settings.epoch.get()
    }

    /// Admits a request carrying `body_bytes` if the shard is under both its
    /// in-flight and its buffered-bytes limits; `None` means answer `Busy`.
    pub fn admit(self: &Rc<Self>, body_bytes: u64) -> Option<Admission<F>> {
        let limits = &self.config.limits;
        if self.in_flight.get() >= limits.max_in_flight_per_shard
            || !self.buffered.try_take(body_bytes)
        {
            return None;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        Some(Admission {
            core: Rc::clone(self),
            bytes: body_bytes,
        })
    }

    /// Resolves once draining has started.
    pub async fn wait_shutdown(&self) {
        let _ = self.shutdown.acquire(1).await;
    }

    /// The shard of this node that owns `id`.
    pub fn owner_of(&self, id: &ObjectId) -> u16 {
        shard_of(id, self.config.shards)
    }

    /// Runs `op` on the core that owns `id`: here, or forwarded by message
    /// (counted as misrouted: a shard-aware client never needs it).
    pub async fn run_op(&self, id: &ObjectId, op: Op) -> Result<Done, OpError> {
        let owner = self.owner_of(id);
        if owner == self.shard_id {
            return ops::execute(&self.store, op).await;
        }
        self.metrics.borrow_mut().misrouted += 1;
        let (reply, answer) = flume::bounded(1);
        if self
            .mesh
            .try_send(owner, CoreMsg::Forward { op, reply })
            .is_err()
        {
            return Err(OpError::new(
                ErrorCode::Busy,
                format!("shard {owner} is not taking forwarded requests (inbox full or stopping)"),
            ));
        }
        match answer.recv_async().await {
            Ok(result) => result,
            Err(_) => Err(OpError::new(
                ErrorCode::Internal,
                format!("shard {owner} dropped a forwarded request"),
            )),
        }
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut metrics = self.metrics.borrow().clone();
        metrics.open_connections = u64::from(self.open_connections.get());
        let placement = self.replication.placement();
        let (hints_pending, hints_stranded) = self
            .replication
            .handoff
            .pending(|node| placement.node(node).is_some());
        MetricsSnapshot {
            shard_id: self.shard_id,
            metrics,
            store: self.store.stats(),
            write_mode: self.store.write_mode(),
            replication: self.replication.stats.borrow().clone(),
            peers: self.replication.peer_snapshots(),
            hints_pending,
            hints_stranded,
            tombstones: self.store.holdings().deleted_count() as u64,
            epoch_mismatches: self.replication.settings.epoch_mismatches.get(),
            topology_epoch: self.topology_epoch(),
            in_flight: u64::from(self.in_flight.get()),
            buffered_bytes: self.buffered.used(),
        }
    }
}

/// Binds shard `shard_id`'s port without SO_REUSEPORT (which glommio's own
/// `bind` sets): a second process on the same port must fail to start, not
/// silently share our connections.
fn bind_exclusive(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    // SAFETY: the fd is a bound, listening TCP socket we own; ownership
    // moves into glommio's listener.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) })
}

/// The whole life of one core on TCP and its own segment ring. Reports on
/// `ready` once it serves (or why it cannot), then serves until told to
/// drain and close.
pub async fn run(
    shard_id: u16,
    config: Arc<NodeConfig>,
    mesh: Mesh,
    inbox: flume::Receiver<CoreMsg>,
    ready: flume::Sender<Startup>,
) {
    let addr = SocketAddr::new(config.listen.ip(), config.listen.port() + shard_id);
    let listener = match bind_exclusive(addr) {
        Ok(listener) => TcpListener(listener),
        Err(err) => {
            let _ = ready.send(Err(format!(
                "shard {shard_id}: cannot listen on {addr}: {err}"
            )));
            return;
        }
    };
    let dir = config.shard_dir(shard_id);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        let _ = ready.send(Err(format!(
            "shard {shard_id}: cannot create {}: {err}",
            dir.display()
        )));
        return;
    }
    let registered = usize::try_from(config.io_memory_bytes).unwrap_or(usize::MAX);
    let fs = match UringFs::for_dir(&dir, registered) {
        Ok(fs) => fs.with_sync_method(config.sync_method),
        Err(err) => {
            let _ = ready.send(Err(format!(
                "shard {shard_id}: cannot set up the segment I/O ring: {err}"
            )));
            return;
        }
    };
    let seams = Seams {
        fs,
        listener: Box::new(listener),
        network: Rc::new(TcpNetwork),
    };
    serve_shard(shard_id, config, mesh, inbox, ready, seams).await;
}

/// What a core runs over: its store's file system, where its connections
/// come from, and how it reaches other nodes. A node runs on the shard's
/// segment ring and TCP; the cluster simulator passes its own.
pub struct Seams<F> {
    pub fs: F,
    pub listener: Box<dyn Listener>,
    pub network: Rc<dyn Network>,
}

/// One core's life over `seams`: opens its store and hints, serves until
/// told to drain, then closes (see [`run`]).
pub async fn serve_shard<F: StoreFs + 'static>(
    shard_id: u16,
    config: Arc<NodeConfig>,
    mesh: Mesh,
    inbox: flume::Receiver<CoreMsg>,
    ready: flume::Sender<Startup>,
    seams: Seams<F>,
) {
    let Seams {
        fs,
        listener,
        network,
    } = seams;
    let dir = config.shard_dir(shard_id);
    let addr = SocketAddr::new(config.listen.ip(), config.listen.port() + shard_id);
    let started = crate::clock::now();
    let (store, report) = match ShardStore::open(fs, &dir, config.store_config(shard_id)).await {
        Ok(opened) => opened,
        Err(err) => {
            let _ = ready.send(Err(format!(
                "shard {shard_id}: cannot open store: {}",
                chain(&err)
            )));
            return;
        }
    };
    let hints_dir = dir.join("hints");
    let handoff =
        match Handoff::open(hints_dir.clone(), config.replication.max_queued_hint_bytes).await {
            Ok(handoff) => handoff,
            Err(err) => {
                let _ = ready.send(Err(format!(
                    "shard {shard_id}: cannot open hints in {}: {err}",
                    hints_dir.display()
                )));
                return;
            }
        };
    tracing::info!(
        shard = shard_id,
        %addr,
        objects = store.stats().objects,
        recovery_ms = crate::clock::since(started).as_millis() as u64,
        checkpoint_entries = report.checkpoint_entries,
        replayed_records = report.records,
        torn_tail_bytes = report.torn_tail_bytes,
        quarantined = report.quarantined.len(),
        checkpoint_ignored = report.checkpoint_ignored.as_deref().unwrap_or("-"),
        sync_method = config.sync_method.name(),
        "shard open"
    );
    let core = Rc::new(Core {
        shard_id,
        store,
        mesh,
        metrics: RefCell::new(ShardMetrics::default()),
        replication: Replicator::new(&config, handoff, network),
        in_flight: Cell::new(0),
        buffered: ByteBudget::new(config.limits.max_buffered_bytes_per_shard),
        log_limit: LogLimiter::default(),
        shutdown: Semaphore::new(0),
        connections: Gate::new(),
        open_connections: Cell::new(0),
        drained: Cell::new(false),
        config,
    });
    let inbox_task = glommio::spawn_local(serve_inbox(Rc::clone(&core), inbox));
    let upkeep = glommio::spawn_local(maintenance::run(Rc::clone(&core)));
    let hint_writer = glommio::spawn_local(handoff::write_loop(Rc::clone(&core)));
    let hint_replay = glommio::spawn_local(handoff::replay_loop(Rc::clone(&core)));
    let repair = glommio::spawn_local(anti_entropy::run(Rc::clone(&core)));
    let _ = ready.send(Ok(shard_id));
    accept_loop(&core, listener, hint_replay).await;

    // Drained: the inbox task ends on `Close`, after which nothing else will
    // touch the store.
    inbox_task.await;
    upkeep.cancel().await;
    // A repair pass cut short here is simply done again by the next start.
    repair.cancel().await;
    hint_writer.cancel().await;
    core.replication
        .handoff
        .flush_queued(&core.replication.stats)
        .await;
    core.replication.close_links();
    let core = match Rc::try_unwrap(core) {
        Ok(core) => core,
        Err(core) => {
            tracing::error!(
                shard = shard_id,
                refs = Rc::strong_count(&core),
                "core still referenced at close; skipping the final checkpoint"
            );
            return;
        }
    };
    match core.store.close().await {
        Ok(()) => tracing::info!(shard = shard_id, "shard closed cleanly"),
        Err(err) => {
            tracing::error!(shard = shard_id, error = %chain(&err), "shard close failed; the next start replays")
        }
    }
}

async fn accept_loop<F: StoreFs + 'static>(
    core: &Rc<Core<F>>,
    listener: Box<dyn Listener>,
    hint_replay: glommio::Task<()>,
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            core.wait_shutdown().await;
            None
        })
        .await;
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(accepted)) => accepted,
            Some(Err(err)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = core.shard_id, error = %err, "accept failed");
                crate::clock::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if core.open_connections.get() >= core.config.limits.max_connections {
            core.metrics.borrow_mut().connection(ConnEvent::Refused);
            tracing::warn!(shard = core.shard_id, %peer, limit = core.config.limits.max_connections, "connection refused: at the connection limit");
            glommio::spawn_local(connection::refuse(Rc::clone(core), stream)).detach();
            continue;
        }
        core.metrics.borrow_mut().connection(ConnEvent::Accepted);
        core.open_connections.set(core.open_connections.get() + 1);
        let conn_core = Rc::clone(core);
        let spawned = core.connections.spawn(async move {
            connection::serve(Rc::clone(&conn_core), stream, peer).await;
            conn_core
                .open_connections
                .set(conn_core.open_connections.get() - 1);
            conn_core.metrics.borrow_mut().connection(ConnEvent::Closed);
        });
        match spawned {
            Ok(task) => {
                task.detach();
            }
            Err(_) => break,
        }
    }
    drop(listener);
    tracing::info!(
        shard = core.shard_id,
        open = core.open_connections.get(),
        "stopped accepting; draining connections"
    );
    let _ = core.connections.close().await;
    // Replica writes still running for answered clients, and repairs, end
    // within their request timeout; hint replay stops here.
    hint_replay.cancel().await;
    let _ = core.replication.background.close().await;
    core.drained.set(true);
}

/// Serves messages from other cores until `Close`.
async fn serve_inbox<F: StoreFs + 'static>(core: Rc<Core<F>>, inbox: flume::Receiver<CoreMsg>) {
    while let Ok(msg) = inbox.recv_async().await {
        match msg {
            CoreMsg::Forward { op, reply } => {
                core.metrics.borrow_mut().forwarded_in += 1;
                let core = Rc::clone(&core);
                glommio::spawn_local(async move {
                    let result = ops::execute(&core.store, op).await;
                    let _ = reply.send(result);
                })
                .detach();
            }
            CoreMsg::Metrics { reply } => {
                let _ = reply.send(core.snapshot());
            }
            CoreMsg::Topology { topology, done } => {
                let epoch = topology.epoch();
                core.replication
                    .set_placement(stratum_wire::placement::Placement::new(topology));
                tracing::info!(shard = core.shard_id, epoch, "routing by a new topology");
                let _ = done.send(core.shard_id);
            }
            CoreMsg::Repair => core.replication.request_repair(),
            CoreMsg::InstallDictionary {
                bytes,
                make_current,
                done,
            } => {
                let core = Rc::clone(&core);
                glommio::spawn_local(async move {
                    let result = core
                        .store
                        .install_dictionary(bytes, make_current)
                        .await
                        .map_err(OpError::from);
                    let _ = done.send(result);
                })
                .detach();
            }
            CoreMsg::Drain { drained } => {
                core.shutdown.close();
                let core = Rc::clone(&core);
                glommio::spawn_local(async move {
                    // Connections finish their in-flight requests, then
                    // close; the accept loop's gate waits for all of them.
                    while !core.drained.get() {
                        crate::clock::sleep(Duration::from_millis(5)).await;
                    }
                    let _ = drained.send(core.shard_id);
                })
                .detach();
            }
            CoreMsg::Close => break,
        }
    }
}

/// An error with its causes, for logs and startup reports.
pub fn chain(err: &StoreError) -> String {
    crate::logging::error_chain(err)
}
