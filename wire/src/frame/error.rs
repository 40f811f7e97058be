//! Why a frame was refused. Every variant is a distinct failure a receiver
//! may want to count or log separately; none of them is reached by a panic.

use crate::catalogue::MessageKind;

/// A received frame failed a check. After any of these the byte stream can
/// no longer be trusted to be in sync: close the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {found:02x?} (expected \"STRM\"): not a Stratum stream")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported protocol version {found} (this build speaks {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("reserved header field is {0:#x}, must be 0")]
    ReservedNotZero(u32),
    #[error("frame has an empty message")]
    EmptyMessage,
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: u32, max: u32 },
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: u32, max: u32 },
    #[error("a {kind} frame may not carry a payload ({len} bytes sent)")]
    UnexpectedPayload { kind: MessageKind, len: u32 },
    #[error("checksum mismatch: header says {expected:#010x}, frame hashes to {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("message archive failed validation")]
    CorruptArchive(#[source] rkyv::rancor::Error),
    #[error("stream ended inside a frame ({have} of {needed} bytes)")]
    Truncated { needed: u64, have: u64 },
    #[error("decoder already failed on this stream")]
    Poisoned,
    /// Not a stream error: a frame whose payload passed the limit was read
    /// through and dropped (see [`crate::FrameDecoder::skip_oversize_payloads`]);
    /// the stream is still in sync, and the request deserves an answer.
    #[error(
        "{kind} request {request_id}: payload of {len} bytes exceeds the limit of {max}; skipped"
    )]
    PayloadSkipped {
        request_id: u64,
        kind: MessageKind,
        len: u32,
        max: u32,
    },
}

impl FrameError {
    /// Whether the stream is out of sync after this error (every error but
    /// [`FrameError::PayloadSkipped`]).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameError::PayloadSkipped { .. })
    }
}

/// A message could not be framed for sending.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: u32 },
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: usize, max: u32 },
    #[error("a {kind} frame may not carry a payload ({len} bytes given)")]
    UnexpectedPayload { kind: MessageKind, len: usize },
    #[error("rkyv serialization failed")]
    Serialize(#[source] rkyv::rancor::Error),
}
