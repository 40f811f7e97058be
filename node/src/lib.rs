//! `stratum-node`: the storage node.
//!
//! Layers, each importing only those before it:
//!
//! - [`store`]: the shard store one core owns (knows no sockets).
//! - [`net`]: frames off sockets, outboxes, socket helpers, latency
//!   histograms (knows no store).
//! - [`shard`]: the store operations a request turns into, and their errors.
//! - [`replication`]: the quorum coordinator on every core, peer links,
//!   hinted handoff, read repair, anti-entropy and rebalancing. It reaches
//!   its core only through [`replication::Shard`].
//! - [`server`]: the thread-per-core server around the stores: listeners,
//!   connections, request handling, the cores' mesh, metrics.
//!
//! Beside them:
//! - [`cli`]: the `stratum-node` program (signals, startup, shutdown).
//! - [`allocator`]: the program's allocator keeps the memory it frees.
//! - [`clock`]: time as the node sees it (real, or the simulator's).
//! - [`offload`]: blocking work off the core (glommio's pool, or the
//!   simulator's in-place runner).
//! - [`config`]: settings (defaults, TOML file, flags) and their validation.
//! - [`logging`]: `tracing` output.
//! - [`io_properties`]: the disk measurements `stratum-tune iotune` leaves
//!   for the node.
//! - [`liveness`]: the data dir's last-alive mark; a node down longer than
//!   the tombstone grace period does not rejoin with its data.

pub mod allocator;
pub mod cli;
pub mod clock;
pub mod config;
pub mod io_properties;
pub mod liveness;
pub mod logging;
pub mod net;
pub mod offload;
pub mod replication;
pub mod server;
pub mod shard;
pub mod store;
