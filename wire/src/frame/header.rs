//! The fixed 32-byte frame header.
//!
//! | offset | size | field         | meaning                                        |
//! |-------:|-----:|---------------|------------------------------------------------|
//! | 0      | 4    | magic         | `b"STRM"`                                      |
//! | 4      | 2    | version       | protocol version, u16 LE (1)                   |
//! | 6      | 1    | kind          | [`MessageKind`] byte                           |
//! | 7      | 1    | flags         | bits 0–1: payload codec (0 raw, 1 zstd); rest 0 |
//! | 8      | 8    | request_id    | u64 LE, echoed by every answer                 |
//! | 16     | 4    | message_len   | u32 LE, length of the rkyv archive (>0)        |
//! | 20     | 4    | payload_len   | u32 LE, length of the raw payload              |
//! | 24     | 4    | crc32         | CRC-32 (IEEE) of bytes 0..24, message, payload |
//! | 28     | 4    | reserved      | must be 0                                      |
//!
//! A codec other than raw is sent only to a peer that negotiated protocol
//! revision 2 in its handshake (see [`crate::message::Welcome`]): a peer of
//! the first release refuses any non-zero flag.
//!
//! The header is 32 bytes so that the message that follows starts 16-byte
//! aligned relative to the frame start, which rkyv's archives need.

use crate::catalogue::MessageKind;
use crate::codec::Codec;
use crate::frame::error::FrameError;
use crate::frame::FrameLimits;

pub const MAGIC: [u8; 4] = *b"STRM";
pub const PROTOCOL_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
/// Bytes of the header covered by the checksum (everything before it).
pub const CRC_COVERED_HEADER_LEN: usize = 24;
/// The flag bits that carry the payload's [`Codec`].
pub const CODEC_FLAGS: u8 = 0b11;

/// A parsed and checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub kind: MessageKind,
    pub flags: u8,
    pub request_id: u64,
    pub message_len: u32,
    pub payload_len: u32,
    pub crc32: u32,
}

impl FrameHeader {
    /// Checks a received header against the protocol and `limits`. Everything
    /// that can be judged from the header alone is judged here, before the
    /// receiver allocates a byte for the body.
    pub fn parse(bytes: &[u8; HEADER_LEN], limits: &FrameLimits) -> Result<Self, FrameError> {
        let magic: [u8; 4] = field(bytes, 0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes(field(bytes, 4));
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let kind = MessageKind::from_u8(bytes[6]).ok_or(FrameError::UnknownKind(bytes[6]))?;
        let flags = bytes[7];
        let codec = Codec::from_u8(flags & CODEC_FLAGS);
        if flags & !CODEC_FLAGS != 0 || codec.is_none() {
            return Err(FrameError::UnknownFlags(flags));
        }
        let reserved = u32::from_le_bytes(field(bytes, 28));
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero(reserved));
        }
        let message_len = u32::from_le_bytes(field(bytes, 16));
        if message_len == 0 {
            return Err(FrameError::EmptyMessage);
        }
        if message_len > limits.max_message_len {
            return Err(FrameError::MessageTooLarge {
                len: message_len,
                max: limits.max_message_len,
            });
        }
        let payload_len = u32::from_le_bytes(field(bytes, 20));
        if payload_len > 0 && !kind.carries_payload() {
            return Err(FrameError::UnexpectedPayload {
                kind,
                len: payload_len,
            });
        }
        if codec != Some(Codec::Raw) && !kind.carries_payload() {
            return Err(FrameError::UnknownFlags(flags));
        }
        if payload_len > limits.max_payload_len {
            return Err(FrameError::PayloadTooLarge {
                len: payload_len,
                max: limits.max_payload_len,
            });
        }
        Ok(Self {
            version,
            kind,
            flags,
            request_id: u64::from_le_bytes(field(bytes, 8)),
            message_len,
            payload_len,
            crc32: u32::from_le_bytes(field(bytes, 24)),
        })
    }

    /// How the payload encodes the object's content.
    pub fn codec(&self) -> Codec {
        // `parse` refused any other value; a header built by the encoder
        // holds a codec's own number.
        Codec::from_u8(self.flags & CODEC_FLAGS).unwrap_or(Codec::Raw)
    }

    /// The header's bytes. `crc32` is written as stored in `self`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6] = self.kind.as_u8();
        out[7] = self.flags;
        out[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.message_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.payload_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc32.to_le_bytes());
        out
    }

    /// Total frame length on the wire.
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.message_len) + u64::from(self.payload_len)
    }
}

fn field<const N: usize>(bytes: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}
