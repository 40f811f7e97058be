//! `stratum-node`: the storage node.
//!
//! - [`store`]: the shard store one core owns.
//! - [`server`]: the thread-per-core server around the stores.
//! - [`config`]: settings (defaults, TOML file, flags) and their validation.
//! - [`logging`]: `tracing` output.
//! - [`io_properties`]: the disk measurements `stratum-tune iotune` leaves
//!   for the node.
//!
//! Replication between nodes comes with issue 8.

pub mod config;
pub mod io_properties;
pub mod logging;
pub mod server;
pub mod store;
