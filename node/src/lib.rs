//! `stratum-node`: the storage node.
//!
//! - [`store`]: the shard store one core owns (issue 3).
//!
//! The server, its connections and replication come with issues 4 and 8.

pub mod store;
