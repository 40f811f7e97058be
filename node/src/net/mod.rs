//! The network layer under the server and the peer links: reading frames
//! from a socket within a byte budget, the per-connection outbox, socket
//! helpers, and the latency histogram both sides record into. It knows no
//! store, no shard and no replication.

pub mod frame_reader;
pub mod latency;
pub mod outbox;
pub mod socket;
pub mod stream;
