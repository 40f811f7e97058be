//! Incremental frame decoding from a byte stream that arrives in arbitrary
//! pieces (a socket read may end anywhere, even inside the header).
//!
//! Memory discipline: the header is judged against [`FrameLimits`] before
//! anything is allocated for the body, and the body buffers then grow with
//! the bytes that actually arrive (at most doubling), never to a size a peer
//! merely claims. A peer that announces 64 MiB and sends 10 bytes costs us
//! about 10 bytes.

use rkyv::util::AlignedVec;

use crate::catalogue::{Message, MessageKind, MessageRef};
use crate::frame::error::FrameError;
use crate::frame::header::{FrameHeader, CRC_COVERED_HEADER_LEN, HEADER_LEN};
use crate::frame::FrameLimits;

/// First allocation for a body buffer; later growth doubles.
const INITIAL_BODY_RESERVE: usize = 4096;

/// A received frame that passed every check: header, checksum, and bytecheck
/// validation of its archive.
pub struct Frame {
    header: FrameHeader,
    /// Validated rkyv archive of a [`Message`]; 16-byte aligned; never
    /// mutated after validation.
    message: AlignedVec,
    payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    pub fn request_id(&self) -> u64 {
        self.header.request_id
    }

    pub fn kind(&self) -> MessageKind {
        self.header.kind
    }

    /// The message, read in place from the archive (zero-copy).
    pub fn message(&self) -> MessageRef<'_> {
        // SAFETY: `Frame` is only built by `complete`, after
        // `MessageRef::check` validated exactly these bytes for this kind.
        // The buffer is private, never mutated, and aligned (AlignedVec).
        unsafe { MessageRef::new_unchecked(self.header.kind, &self.message) }
    }

    /// The message as an owned value (allocates for strings and lists).
    pub fn to_message(&self) -> Result<Message, FrameError> {
        self.message()
            .to_owned_message()
            .map_err(FrameError::CorruptArchive)
    }

    /// How the payload encodes the object's content (see [`crate::codec`]).
    pub fn codec(&self) -> crate::codec::Codec {
        self.header.codec()
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out without copying it.
    pub fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// Raw archive bytes (for tests and diagnostics).
    pub fn message_bytes(&self) -> &[u8] {
        &self.message
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("header", &self.header)
            .field("message", &self.message())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

struct Body {
    header: FrameHeader,
    crc: crc32fast::Hasher,
    message: AlignedVec,
    payload: Vec<u8>,
}

enum State {
    Header {
        bytes: [u8; HEADER_LEN],
        filled: usize,
    },
    Body(Box<Body>),
    /// An oversize frame being read through: its bytes are checksummed and
    /// dropped, never stored.
    Skip {
        header: FrameHeader,
        crc: crc32fast::Hasher,
        left: u64,
    },
    Failed,
}

/// Turns a byte stream into checked [`Frame`]s.
pub struct FrameDecoder {
    limits: FrameLimits,
    /// Payloads above `limits.max_payload_len` and up to this are read
    /// through and reported as [`FrameError::PayloadSkipped`] instead of
    /// failing the stream (0: never).
    skip_up_to: u32,
    state: State,
    /// The last frame's body box, reused for the next (one allocation
    /// fewer per frame on every connection).
    spare: Option<Box<Body>>,
}

impl FrameDecoder {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            skip_up_to: 0,
            state: State::Header {
                bytes: [0; HEADER_LEN],
                filled: 0,
            },
            spare: None,
        }
    }

    pub fn limits(&self) -> &FrameLimits {
        &self.limits
    }

    /// Payloads over the limit but at most `up_to` bytes no longer fail the
    /// stream: the frame is read through without being stored (memory stays
    /// flat), its checksum still checked, and `decode` reports
    /// [`FrameError::PayloadSkipped`] so the receiver can answer the request
    /// (a node with a small object limit answers `too_large` instead of
    /// dropping the connection). Larger payloads still fail the stream.
    pub fn skip_oversize_payloads(&mut self, up_to: u32) {
        self.skip_up_to = up_to;
    }

    /// Changes the limits the next frame header is judged by (a frame in
    /// progress keeps the limits it was accepted under): a node decodes the
    /// handshake under [`FrameLimits::HANDSHAKE`], then under its own.
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Consumes bytes from the front of `input` and returns the next frame
    /// once it is complete. `Ok(None)` means every byte of `input` was taken
    /// and more are needed. Call again while `input` is non-empty: one call
    /// yields at most one frame.
    ///
    /// After an error the decoder stays failed ([`FrameError::Poisoned`]):
    /// the stream is out of sync and the connection must be closed.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        let result = self.step(input);
        if matches!(&result, Err(err) if err.is_fatal()) {
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        loop {
            match &mut self.state {
                State::Failed => return Err(FrameError::Poisoned),
                State::Header { bytes, filled } => {
                    let take = (HEADER_LEN - *filled).min(input.len());
                    bytes[*filled..*filled + take].copy_from_slice(&input[..take]);
                    *filled += take;
                    *input = &input[take..];
                    if *filled < HEADER_LEN {
                        return Ok(None);
                    }
                    let skippable = FrameLimits {
                        max_payload_len: self.limits.max_payload_len.max(self.skip_up_to),
                        ..self.limits
                    };
                    let header = FrameHeader::parse(bytes, &skippable)?;
                    let mut crc = crc32fast::Hasher::new();
                    crc.update(&bytes[..CRC_COVERED_HEADER_LEN]);
                    if header.payload_len > self.limits.max_payload_len {
                        self.state = State::Skip {
                            header,
                            crc,
                            left: u64::from(header.message_len) + u64::from(header.payload_len),
                        };
                        continue;
                    }
                    let body = Body {
                        header,
                        crc,
                        message: AlignedVec::new(),
                        payload: Vec::new(),
                    };
                    self.state = State::Body(match self.spare.take() {
                        Some(mut spare) => {
                            *spare = body;
                            spare
                        }
                        None => Box::new(body),
                    });
                }
                State::Skip { header, crc, left } => {
                    let take = (*left).min(input.len() as u64) as usize;
                    crc.update(&input[..take]);
                    *left -= take as u64;
                    *input = &input[take..];
                    if *left > 0 {
                        return Ok(None);
                    }
                    let (header, actual) = (*header, crc.clone().finalize());
                    self.state = State::Header {
                        bytes: [0; HEADER_LEN],
                        filled: 0,
                    };
                    if actual != header.crc32 {
                        return Err(FrameError::ChecksumMismatch {
                            expected: header.crc32,
                            actual,
                        });
                    }
                    return Err(FrameError::PayloadSkipped {
                        request_id: header.request_id,
                        kind: header.kind,
                        len: header.payload_len,
                        max: self.limits.max_payload_len,
                    });
                }
                State::Body(body) => {
                    let message_len = body.header.message_len as usize;
                    if body.message.len() < message_len {
                        let take = (message_len - body.message.len()).min(input.len());
                        let additional = growth(
                            body.message.len(),
                            body.message.capacity(),
                            take,
                            message_len,
                        );
                        body.message.reserve_exact(additional);
                        body.message.extend_from_slice(&input[..take]);
                        body.crc.update(&input[..take]);
                        *input = &input[take..];
                    }
                    let payload_len = body.header.payload_len as usize;
                    if body.message.len() == message_len && body.payload.len() < payload_len {
                        let take = (payload_len - body.payload.len()).min(input.len());
                        let additional = growth(
                            body.payload.len(),
                            body.payload.capacity(),
                            take,
                            payload_len,
                        );
                        body.payload.reserve_exact(additional);
                        body.payload.extend_from_slice(&input[..take]);
                        body.crc.update(&input[..take]);
                        *input = &input[take..];
                    }
                    if body.message.len() < message_len || body.payload.len() < payload_len {
                        return Ok(None);
                    }
                    let done = std::mem::replace(
                        &mut self.state,
                        State::Header {
                            bytes: [0; HEADER_LEN],
                            filled: 0,
                        },
                    );
                    let State::Body(mut body) = done else {
                        unreachable!("state was Body a moment ago")
                    };
                    let frame = complete(&mut body);
                    self.spare = Some(body);
                    return frame.map(Some);
                }
            }
        }
    }

    /// Call at end of stream: an error if the stream stopped inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match &self.state {
            State::Header { filled: 0, .. } => Ok(()),
            State::Header { filled, .. } => Err(FrameError::Truncated {
                needed: HEADER_LEN as u64,
                have: *filled as u64,
            }),
            State::Body(body) => Err(FrameError::Truncated {
                needed: body.header.frame_len(),
                have: (HEADER_LEN + body.message.len() + body.payload.len()) as u64,
            }),
            State::Skip { header, left, .. } => Err(FrameError::Truncated {
                needed: header.frame_len(),
                have: header.frame_len() - left,
            }),
            State::Failed => Err(FrameError::Poisoned),
        }
    }

    /// Bytes this decoder holds for a frame in progress (its memory cost is at
    /// most about twice this), for per-connection memory accounting.
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Header { filled, .. } => *filled,
            State::Body(body) => HEADER_LEN + body.message.len() + body.payload.len(),
            // Nothing is held, but a frame is in progress (its timeout runs).
            State::Skip { .. } => 1,
            State::Failed => 0,
        }
    }
}

/// How much to reserve so `incoming` more bytes fit: at least double the
/// capacity (amortized O(1) appends), never past `total` (what the header
/// announced and the limits allowed), and start at a small fixed size.
fn growth(len: usize, capacity: usize, incoming: usize, total: usize) -> usize {
    let needed = len + incoming;
    if needed <= capacity {
        return 0;
    }
    let target = needed
        .max(capacity.saturating_mul(2))
        .max(INITIAL_BODY_RESERVE)
        .min(total);
    target - len
}

/// Checks a whole body and moves its buffers into a frame (the emptied body
/// is kept for reuse).
fn complete(body: &mut Body) -> Result<Frame, FrameError> {
    let actual = body.crc.clone().finalize();
    if actual != body.header.crc32 {
        return Err(FrameError::ChecksumMismatch {
            expected: body.header.crc32,
            actual,
        });
    }
    MessageRef::check(body.header.kind, &body.message).map_err(FrameError::CorruptArchive)?;
    Ok(Frame {
        header: body.header,
        message: std::mem::take(&mut body.message),
        payload: std::mem::take(&mut body.payload),
    })
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FrameLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn growth_never_exceeds_the_announced_total() {
        assert_eq!(growth(0, 0, 10, 100), 100);
        assert_eq!(growth(0, 0, 10, 1 << 26), 4096);
        assert_eq!(growth(4096, 4096, 10, 1 << 26), 4096);
        assert_eq!(growth(10, 4096, 10, 1 << 26), 0);
        assert_eq!(growth((1 << 26) - 5, 1 << 26, 5, 1 << 26), 0);
    }
}
