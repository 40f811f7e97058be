//! Payload codecs: the form an object's content takes on the wire and at
//! rest.
//!
//! A payload is either the content itself ([`Codec::Raw`]) or one zstd frame
//! that declares the content's size ([`Codec::Zstd`]). An object's id is
//! always the hash of its content (Git's encoding), never of a payload, so
//! every check of an id runs over the inflated bytes.
//!
//! Bomb safety: the declared size is judged against the receiver's limit
//! before anything is inflated, inflating stops at the declared size, and
//! the decoder's window is capped at [`MAX_WINDOW_LOG`]. Hashing a payload
//! ([`content_id`]) streams through a fixed scratch buffer, so it costs the
//! receiver no allocation at all, whatever the payload claims.

use std::borrow::Cow;
use std::cell::RefCell;

use zstd::stream::raw::{Decoder, Operation};
use zstd::zstd_safe::DParameter;

use crate::object_id::{ObjectHasher, ObjectId, ObjectKind};

/// How a payload encodes its content. The number is part of the wire format
/// (frame header flags) and of the record format (byte 6): never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// The content itself.
    Raw = 0,
    /// One zstd frame with its content size declared.
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Raw),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Zstd => "zstd",
        }
    }
}

/// zstd's own default level: about 4× smaller source code at several
/// hundred MB/s per core (figures: docs/measurements).
pub const DEFAULT_LEVEL: i32 = 3;

/// Content shorter than this is sent as it is: a zstd frame's own header
/// eats most of what compression could save on a few dozen bytes.
pub const MIN_COMPRESS_LEN: usize = 64;

/// Largest decoder window accepted (8 MiB, what zstd levels up to 19 use).
/// A frame asking for more is refused, so no payload can make a receiver
/// reserve a window larger than this.
pub const MAX_WINDOW_LOG: u32 = 23;

/// Why a payload cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown payload codec {0}")]
    UnknownCodec(u8),
    #[error("zstd payload does not declare its content size")]
    UndeclaredSize,
    #[error("payload declares {declared} bytes of content, over the limit of {max}")]
    TooLarge { declared: u64, max: u64 },
    #[error("payload is not a valid zstd frame: {0}")]
    Malformed(String),
    #[error("payload inflates to {actual} bytes, not the {declared} it declares")]
    SizeMismatch { declared: u64, actual: u64 },
    #[error("cannot compress: {0}")]
    Compress(String),
}

thread_local! {
    /// One compression context per thread (per core on a node, per caller
    /// thread in the client), reused: creating one costs more than
    /// compressing a small object.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    static STREAM: RefCell<Option<Box<StreamState>>> = const { RefCell::new(None) };
}

/// Bytes inflated per step when hashing a payload.
const STREAM_CHUNK: usize = 64 << 10;

struct StreamState {
    decoder: Decoder<'static>,
    out: Vec<u8>,
}

/// `content` compressed with zstd at `level`, or `None` when that would
/// save less than a tenth of its size (already-compressed blobs, random
/// bytes, tiny objects): such content is better sent and stored as it is.
pub fn compress(content: &[u8], level: i32) -> Result<Option<Vec<u8>>, CodecError> {
    if content.len() < MIN_COMPRESS_LEN {
        return Ok(None);
    }
    let compressed = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some((at, compressor)) if *at == level => compressor,
            slot => {
                let compressor = zstd::bulk::Compressor::new(level)
                    .map_err(|err| CodecError::Compress(err.to_string()))?;
                &mut slot.insert((level, compressor)).1
            }
        };
        compressor
            .compress(content)
            .map_err(|err| CodecError::Compress(err.to_string()))
    })?;
    Ok(worth_keeping(content.len(), compressed.len()).then_some(compressed))
}

/// Whether a compressed form saves at least a tenth of the content.
pub fn worth_keeping(content_len: usize, compressed_len: usize) -> bool {
    compressed_len <= content_len - content_len / 10
}

/// The content length a payload declares, checked against `max` (nothing
/// is inflated).
pub fn content_len(codec: Codec, payload: &[u8], max: u64) -> Result<u64, CodecError> {
    let declared = match codec {
        Codec::Raw => payload.len() as u64,
        Codec::Zstd => match zstd::zstd_safe::get_frame_content_size(payload) {
            Ok(Some(len)) => len,
            Ok(None) => return Err(CodecError::UndeclaredSize),
            Err(_) => return Err(CodecError::Malformed("bad frame header".into())),
        },
    };
    if declared > max {
        return Err(CodecError::TooLarge { declared, max });
    }
    Ok(declared)
}

/// The content of a payload (borrowed when raw). Allocates exactly the
/// declared length, and only once that is known to be at most `max`.
pub fn decode(codec: Codec, payload: &[u8], max: u64) -> Result<Cow<'_, [u8]>, CodecError> {
    let declared = content_len(codec, payload, max)?;
    if codec == Codec::Raw {
        return Ok(Cow::Borrowed(payload));
    }
    let mut content = Vec::with_capacity(declared as usize);
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match &mut *cell {
            Some(decompressor) => decompressor,
            slot => slot.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|err| CodecError::Malformed(err.to_string()))?,
            ),
        };
        // The buffer has room for exactly the declared content: a payload
        // that inflates further (more frames, a lying header) fails here.
        decompressor
            .decompress_to_buffer(payload, &mut content)
            .map_err(|err| CodecError::Malformed(err.to_string()))
    })?;
    if content.len() as u64 != declared {
        return Err(CodecError::SizeMismatch {
            declared,
            actual: content.len() as u64,
        });
    }
    Ok(Cow::Owned(content))
}

/// The id of the content a payload encodes, and the content's length,
/// computed without holding the content: a zstd payload is inflated in
/// 64 KiB steps, each hashed and dropped.
pub fn content_id(
    kind: ObjectKind,
    codec: Codec,
    payload: &[u8],
    max: u64,
) -> Result<(ObjectId, u64), CodecError> {
    let declared = content_len(codec, payload, max)?;
    let mut hasher = ObjectHasher::new(kind, declared);
    if codec == Codec::Raw {
        hasher.update(payload);
        return Ok((hasher.finish(), declared));
    }
    let inflated = inflate_each(payload, declared, |piece| hasher.update(piece))?;
    if inflated != declared {
        return Err(CodecError::SizeMismatch {
            declared,
            actual: inflated,
        });
    }
    Ok((hasher.finish(), declared))
}

/// Inflates a zstd payload piece by piece into `each`; stops with an error
/// as soon as it passes `declared` bytes or the frame is damaged. Returns
/// the bytes inflated.
fn inflate_each(
    payload: &[u8],
    declared: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, CodecError> {
    STREAM.with(|cell| {
        let mut cell = cell.borrow_mut();
        let state = match &mut *cell {
            Some(state) => {
                state
                    .decoder
                    .reinit()
                    .map_err(|err| CodecError::Malformed(err.to_string()))?;
                state
            }
            slot => slot.insert(Box::new(new_stream()?)),
        };
        let mut input = payload;
        let mut inflated = 0u64;
        loop {
            let status = state
                .decoder
                .run_on_buffers(input, &mut state.out)
                .map_err(|err| CodecError::Malformed(err.to_string()))?;
            input = &input[status.bytes_read..];
            inflated += status.bytes_written as u64;
            if inflated > declared {
                return Err(CodecError::SizeMismatch {
                    declared,
                    actual: inflated,
                });
            }
            each(&state.out[..status.bytes_written]);
            if status.remaining == 0 {
                // The frame is complete: anything after it is not ours.
                if !input.is_empty() {
                    return Err(CodecError::Malformed(format!(
                        "{} bytes after the zstd frame",
                        input.len()
                    )));
                }
                return Ok(inflated);
            }
            if input.is_empty() && status.bytes_written == 0 {
                return Err(CodecError::Malformed("the zstd frame is truncated".into()));
            }
        }
    })
}

fn new_stream() -> Result<StreamState, CodecError> {
    let mut decoder = Decoder::new().map_err(|err| CodecError::Malformed(err.to_string()))?;
    decoder
        .set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(|err| CodecError::Malformed(err.to_string()))?;
    Ok(StreamState {
        decoder,
        out: vec![0; STREAM_CHUNK],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_like(len: usize) -> Vec<u8> {
        let line = b"fn main() { println!(\"hello, stratum\"); } // a line of code\n";
        line.iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn compressed_content_round_trips_and_hashes_like_the_content() {
        let content = source_like(100_000);
        let payload = compress(&content, DEFAULT_LEVEL)
            .expect("compresses")
            .expect("worth it");
        assert!(payload.len() < content.len() / 10);
        assert_eq!(
            content_len(Codec::Zstd, &payload, 1 << 20),
            Ok(content.len() as u64)
        );
        let decoded = decode(Codec::Zstd, &payload, 1 << 20).expect("decodes");
        assert_eq!(decoded.as_ref(), content.as_slice());
        let (id, len) = content_id(ObjectKind::Blob, Codec::Zstd, &payload, 1 << 20).expect("id");
        assert_eq!(id, ObjectId::compute(ObjectKind::Blob, &content));
        assert_eq!(len, content.len() as u64);
        // Twice on the same thread: the reused contexts start clean.
        let again = content_id(ObjectKind::Blob, Codec::Zstd, &payload, 1 << 20).expect("id");
        assert_eq!(again.0, id);
    }

    #[test]
    fn incompressible_and_tiny_content_stay_raw() {
        let mut random = vec![0u8; 4096];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for byte in &mut random {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        assert_eq!(compress(&random, DEFAULT_LEVEL), Ok(None));
        assert_eq!(compress(b"tiny", DEFAULT_LEVEL), Ok(None));
        assert!(worth_keeping(100, 90));
        assert!(!worth_keeping(100, 91));
    }

    #[test]
    fn a_bomb_is_refused_before_inflating() {
        let content = vec![0u8; 8 << 20];
        let payload = compress(&content, DEFAULT_LEVEL).unwrap().unwrap();
        assert!(payload.len() < 4096, "{} bytes", payload.len());
        let limit = 1 << 20;
        let too_large: Result<(), _> = Err(CodecError::TooLarge {
            declared: 8 << 20,
            max: limit,
        });
        assert_eq!(
            content_len(Codec::Zstd, &payload, limit).map(|_| ()),
            too_large
        );
        assert_eq!(decode(Codec::Zstd, &payload, limit).map(|_| ()), too_large);
        assert_eq!(
            content_id(ObjectKind::Blob, Codec::Zstd, &payload, limit).map(|_| ()),
            too_large
        );
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_refused() {
        let content = source_like(10_000);
        let honest = compress(&content, DEFAULT_LEVEL).unwrap().unwrap();
        // Two frames back to back: the first declares 10,000 bytes, the
        // whole inflates to 20,000.
        let mut doubled = honest.clone();
        doubled.extend_from_slice(&honest);
        assert!(decode(Codec::Zstd, &doubled, 1 << 20).is_err());
        assert!(content_id(ObjectKind::Blob, Codec::Zstd, &doubled, 1 << 20).is_err());
        // Cut short.
        let cut = &honest[..honest.len() - 3];
        assert!(decode(Codec::Zstd, cut, 1 << 20).is_err());
        assert!(content_id(ObjectKind::Blob, Codec::Zstd, cut, 1 << 20).is_err());
    }

    #[test]
    fn a_frame_without_a_declared_size_is_refused() {
        let content = source_like(10_000);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut encoder, &content).unwrap();
        let streamed = encoder.finish().unwrap();
        assert_eq!(
            content_len(Codec::Zstd, &streamed, 1 << 20),
            Err(CodecError::UndeclaredSize)
        );
    }

    #[test]
    fn damaged_bytes_never_yield_the_content_id() {
        let content = source_like(50_000);
        let payload = compress(&content, DEFAULT_LEVEL).unwrap().unwrap();
        let id = ObjectId::compute(ObjectKind::Blob, &content);
        for at in (0..payload.len()).step_by(7) {
            let mut damaged = payload.clone();
            damaged[at] ^= 0x20;
            if let Ok((found, _)) = content_id(ObjectKind::Blob, Codec::Zstd, &damaged, 1 << 20) {
                assert_ne!(found, id, "flip at {at} went unnoticed");
            }
        }
    }
}
