//! Building frames. One encoder per connection (or per core) keeps its
//! serialization buffers warm so encoding a frame allocates nothing once the
//! buffers have grown to the largest message seen.

use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use crate::catalogue::Message;
use crate::codec::Codec;
use crate::frame::error::EncodeError;
use crate::frame::header::{FrameHeader, CRC_COVERED_HEADER_LEN, HEADER_LEN, PROTOCOL_VERSION};
use crate::frame::FrameLimits;

pub struct FrameEncoder {
    limits: FrameLimits,
    scratch: AlignedVec,
    arena: Arena,
}

impl FrameEncoder {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            scratch: AlignedVec::new(),
            arena: Arena::new(),
        }
    }

    /// Appends a whole frame (header, message, payload) to `out`.
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        request_id: u64,
        message: &Message,
        payload: &[u8],
    ) -> Result<FrameHeader, EncodeError> {
        self.encode_as(out, request_id, message, payload, Codec::Raw)
    }

    /// Appends only the header and the message to `out`; the checksum already
    /// covers `payload`, which the caller sends right after (e.g. with a
    /// vectored write), so object bytes are never copied into a frame buffer.
    pub fn encode_head(
        &mut self,
        out: &mut Vec<u8>,
        request_id: u64,
        message: &Message,
        payload: &[u8],
    ) -> Result<FrameHeader, EncodeError> {
        self.encode_head_as(out, request_id, message, payload, Codec::Raw)
    }

    /// [`FrameEncoder::encode`] for a payload in `codec` (sent only to a
    /// peer that negotiated it).
    pub fn encode_as(
        &mut self,
        out: &mut Vec<u8>,
        request_id: u64,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> Result<FrameHeader, EncodeError> {
        let header = self.encode_head_as(out, request_id, message, payload, codec)?;
        out.extend_from_slice(payload);
        Ok(header)
    }

    /// [`FrameEncoder::encode_head`] for a payload in `codec`.
    pub fn encode_head_as(
        &mut self,
        out: &mut Vec<u8>,
        request_id: u64,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> Result<FrameHeader, EncodeError> {
        let kind = message.kind();
        if codec != Codec::Raw && !kind.carries_payload() {
            return Err(EncodeError::UnexpectedPayload {
                kind,
                len: payload.len(),
            });
        }
        if !payload.is_empty() && !kind.carries_payload() {
            return Err(EncodeError::UnexpectedPayload {
                kind,
                len: payload.len(),
            });
        }
        let payload_len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= self.limits.max_payload_len)
            .ok_or(EncodeError::PayloadTooLarge {
                len: payload.len(),
                max: self.limits.max_payload_len,
            })?;

        self.scratch.clear();
        message
            .archive_into(&mut self.scratch, &mut self.arena)
            .map_err(EncodeError::Serialize)?;
        let message_len = u32::try_from(self.scratch.len())
            .ok()
            .filter(|len| *len <= self.limits.max_message_len)
            .ok_or(EncodeError::MessageTooLarge {
                len: self.scratch.len(),
                max: self.limits.max_message_len,
            })?;

        let mut header = FrameHeader {
            version: PROTOCOL_VERSION,
            kind,
            flags: codec.as_u8(),
            request_id,
            message_len,
            payload_len,
            crc32: 0,
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header.to_bytes()[..CRC_COVERED_HEADER_LEN]);
        crc.update(&self.scratch);
        crc.update(payload);
        header.crc32 = crc.finalize();

        out.reserve(HEADER_LEN + self.scratch.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&self.scratch);
        Ok(header)
    }
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new(FrameLimits::default())
    }
}
