//! `stratum-client`: what Git frontends link to read and write objects.
//!
//! # Threading model
//!
//! The client brings its own I/O threads (by default one per core, at most
//! four), each running one event loop that owns the connections dealt to
//! it (peers in turn, each keeping its thread for the client's life);
//! nothing about a connection is shared between threads. A caller's
//! request is encoded on the caller's thread and handed to the owning I/O
//! thread over a flume channel; the answer comes back on another flume
//! channel. So:
//!
//! - [`Client`] is async and runtime-agnostic: its futures wait only on
//!   flume channels (and a runtime-free timer for retry backoff), so they
//!   work under tokio, async-std, glommio or any executor, without putting
//!   the client's I/O on the caller's event loop.
//! - [`BlockingClient`] wraps the same client for plain threads.
//!
//! # Routing
//!
//! From a topology file or seed addresses the client knows every node and
//! its shard count, and computes each object's replicas and owning shard
//! with the same code the nodes use (`stratum-wire`'s placement), so every
//! request goes straight to the core that owns the object. A node that
//! reports a newer topology epoch makes the client refresh its topology.
//!
//! # Failures
//!
//! Requests have a timeout; reads fail over to the next replica on error,
//! timeout or not-found; failures a pause may cure (busy, connection lost)
//! get more rounds with exponential backoff and jitter; rejections are
//! final. Each peer has at most one connect in flight, and after a failed
//! connect its requests fail at once for a backoff period. Every object
//! read is checked against its id before it is returned.

mod blocking;
mod client;
mod cluster;
mod config;
mod dictionaries;
mod error;
mod get_many;
mod io;
mod retry;
mod traffic;

pub mod git_batch;

pub use blocking::{BlockingClient, GetManyIter};
pub use client::{Client, NodeDictionary, NodeRepair, NodeStats, Object, PutReceipt};
pub use config::{ClientConfig, Discovery};
pub use error::{AttemptError, ClientError, Peer, ReplicaAttempt};
pub use get_many::GetMany;
pub use io::PeerInfo;
pub use stratum_wire::message::{ErrorCode, PutOutcome};
pub use stratum_wire::{ObjectId, ObjectKind, Topology};
pub use traffic::TrafficStats;
