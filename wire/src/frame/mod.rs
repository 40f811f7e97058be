//! Frames: how messages travel on a byte stream.
//!
//! ```text
//! +----------------------+---------------------------+-----------------+
//! | header (32 bytes)    | message (rkyv archive)    | payload (raw)   |
//! |                      | message_len bytes         | payload_len     |
//! +----------------------+---------------------------+-----------------+
//! ```
//!
//! The byte-by-byte layout is in [`header`] and in ARCHITECTURE.md. The
//! checksum covers the first 24 header bytes, the message and the payload.

pub mod decode;
pub mod encode;
pub mod error;
pub mod header;

pub use decode::{Frame, FrameDecoder};
pub use encode::FrameEncoder;
pub use error::{EncodeError, FrameError};
pub use header::{FrameHeader, HEADER_LEN, MAGIC, PROTOCOL_VERSION};

/// Upper bounds a receiver enforces before it allocates anything for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted rkyv message. Default 1 MiB: a batch-get of ~30,000
    /// ids, far beyond any single request's needs.
    pub max_message_len: u32,
    /// Largest accepted payload: the node's maximum object size.
    pub max_payload_len: u32,
}

impl FrameLimits {
    pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 1 << 20;
    /// 64 MiB, the default maximum object size.
    pub const DEFAULT_MAX_PAYLOAD_LEN: u32 = 64 << 20;
    /// What a connector may send before its handshake completes: `hello`
    /// and `auth_proof` are a few hundred bytes and carry no payload, so a
    /// peer that has not yet said who it is can make a node buffer at most
    /// one small frame.
    pub const HANDSHAKE: FrameLimits = FrameLimits {
        max_message_len: 4096,
        max_payload_len: 0,
    };
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_message_len: Self::DEFAULT_MAX_MESSAGE_LEN,
            max_payload_len: Self::DEFAULT_MAX_PAYLOAD_LEN,
        }
    }
}
