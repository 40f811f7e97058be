//! `stratum-wire`: what every Stratum process must agree on, byte for byte.
//!
//! - [`auth`]: the cluster-secret challenge–response both sides compute.
//! - [`object_id`]: object ids (SHA-256 of the Git encoding) and object kinds.
//! - [`codec`]: payload codecs (raw, zstd) and bomb-safe decoding.
//! - [`handshake`]: the hello a connector sends and the greeting it reads.
//! - [`message`]: the protocol's messages (rkyv archives).
//! - [`frame`]: the frame around a message: header, checksum, incremental
//!   decoding with limits, encoding.
//! - [`placement`]: topology files, the consistent-hash ring, and the shard
//!   rule inside a node.
//!
//! Client and node link this same crate, so they cannot disagree on where an
//! object lives or how it is framed.

pub mod auth;
pub mod catalogue;
pub mod codec;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod object_id;

pub use catalogue::{Message, MessageKind, MessageRef};
pub use codec::{Codec, CodecError};
pub use frame::{Frame, FrameDecoder, FrameEncoder, FrameError, FrameLimits};
pub use object_id::{ObjectId, ObjectIdError, ObjectKind};
pub mod placement;

pub use placement::{Placement, Topology, TopologyError};
