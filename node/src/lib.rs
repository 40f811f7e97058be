//! `stratum-node`: the storage node.
//!
//! - [`store`]: the shard store one core owns.
//! - [`server`]: the thread-per-core server around the stores.
//! - [`replication`]: the quorum coordinator on every core, peer links,
//!   hinted handoff and read repair.
//! - [`cli`]: the `stratum-node` program (signals, startup, shutdown).
//! - [`config`]: settings (defaults, TOML file, flags) and their validation.
//! - [`logging`]: `tracing` output.
//! - [`io_properties`]: the disk measurements `stratum-tune iotune` leaves
//!   for the node.
//! - [`liveness`]: the data dir's last-alive mark; a node down longer than
//!   the tombstone grace period does not rejoin with its data.

pub mod cli;
pub mod config;
pub mod io_properties;
pub mod liveness;
pub mod logging;
pub mod replication;
pub mod server;
pub mod store;
