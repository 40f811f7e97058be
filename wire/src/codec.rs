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
use std::collections::HashMap;
use std::sync::Arc;

use zstd::zstd_safe::{self, CDict, DCtx, DDict, DParameter, InBuffer, OutBuffer};

use crate::object_id::{ObjectHasher, ObjectId, ObjectKind};

/// How a payload encodes its content. The number is part of the wire format
/// (frame header flags) and of the record format (byte 6): never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// The content itself.
    Raw = 0,
    /// One zstd frame with its content size declared; it may name a
    /// [`Dictionary`] in its header.
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

/// zstd's own default level: about 3x smaller source code at about
/// 200 MB/s per core (figures: docs/measurements).
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
    #[error("payload was compressed with dictionary {0:#010x}, which is not held here")]
    UnknownDictionary(u32),
    #[error("not a zstd dictionary with an id: {0}")]
    BadDictionary(String),
    #[error("dictionary {0:#010x} is already held with other bytes")]
    DictionaryConflict(u32),
    #[error("cannot compress: {0}")]
    Compress(String),
}

/// A trained zstd dictionary: small objects of one repository look alike
/// (tree entries, commit headers, the same source lines), and a dictionary
/// of what they share lets each compress alone nearly as well as together.
/// Its id (in its header, and in the header of every frame compressed with
/// it) is how a payload names it.
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    ddict: DDict<'static>,
    /// For compressing, at the level it was prepared for.
    cdict: Option<(i32, CDict<'static>)>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Dictionary {
    /// Checks `bytes` are a zstd dictionary with an id, and prepares it for
    /// decompressing.
    pub fn new(bytes: Vec<u8>) -> Result<Self, CodecError> {
        let id = zstd_safe::get_dict_id_from_dict(&bytes)
            .ok_or_else(|| CodecError::BadDictionary("no dictionary header".into()))?
            .get();
        let ddict = DDict::try_create(&bytes)
            .ok_or_else(|| CodecError::BadDictionary("zstd refused it".into()))?;
        Ok(Self {
            id,
            bytes,
            ddict,
            cdict: None,
        })
    }

    /// Prepares it for compressing at `level` too.
    pub fn for_compressing(mut self, level: i32) -> Result<Self, CodecError> {
        let cdict = CDict::try_create(&self.bytes, level)
            .ok_or_else(|| CodecError::BadDictionary("zstd refused it".into()))?;
        self.cdict = Some((level, cdict));
        Ok(self)
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The dictionaries a process holds, by id. Dictionaries are only ever
/// added: an object compressed with one needs it for as long as it exists.
#[derive(Debug, Clone, Default)]
pub struct Dictionaries {
    by_id: HashMap<u32, Arc<Dictionary>>,
}

impl Dictionaries {
    pub fn get(&self, id: u32) -> Option<&Arc<Dictionary>> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds `dictionary`; `Ok(false)` if the same bytes were held already.
    /// Another dictionary under the same id is refused: payloads name
    /// dictionaries by id only.
    pub fn insert(&mut self, dictionary: Arc<Dictionary>) -> Result<bool, CodecError> {
        match self.by_id.get(&dictionary.id) {
            Some(held) if held.bytes == dictionary.bytes => Ok(false),
            Some(_) => Err(CodecError::DictionaryConflict(dictionary.id)),
            None => {
                self.by_id.insert(dictionary.id, dictionary);
                Ok(true)
            }
        }
    }

    /// Ids held, in ascending order.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The dictionary a payload needs, if any: `Ok(None)` for a payload
    /// that names none.
    fn for_payload(&self, codec: Codec, payload: &[u8]) -> Result<Option<&Dictionary>, CodecError> {
        match (codec, frame_dictionary(payload)) {
            (Codec::Zstd, Some(id)) => self
                .get(id)
                .map(|dictionary| Some(dictionary.as_ref()))
                .ok_or(CodecError::UnknownDictionary(id)),
            _ => Ok(None),
        }
    }
}

/// The id of the dictionary a zstd payload was compressed with, if any.
pub fn frame_dictionary(payload: &[u8]) -> Option<u32> {
    zstd_safe::get_dict_id_from_frame(payload).map(|id| id.get())
}

/// Trains a dictionary of at most `max_bytes` on `samples` (objects of the
/// kind it will compress). Its id is drawn at random by zstd.
pub fn train<S: AsRef<[u8]>>(samples: &[S], max_bytes: usize) -> Result<Dictionary, CodecError> {
    let bytes = zstd::dict::from_samples(samples, max_bytes)
        .map_err(|err| CodecError::BadDictionary(format!("training failed: {err}")))?;
    Dictionary::new(bytes)
}

thread_local! {
    /// One compression context per thread (per core on a node, per caller
    /// thread in the client), reused: creating one costs more than
    /// compressing a small object.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<Box<Decoding>>> = const { RefCell::new(None) };
}

/// Bytes inflated per step when hashing a payload.
const STREAM_CHUNK: usize = 64 << 10;

/// A decompression context and the buffer a streamed payload inflates into.
struct Decoding {
    dctx: DCtx<'static>,
    out: Vec<u8>,
}

/// `content` compressed with zstd at `level` (with `dictionary` when given:
/// at the level it was prepared for), or `None` when that would save less
/// than a tenth of its size (already-compressed blobs, random bytes, tiny
/// objects): such content is better sent and stored as it is.
pub fn compress(
    content: &[u8],
    level: i32,
    dictionary: Option<&Dictionary>,
) -> Result<Option<Vec<u8>>, CodecError> {
    if content.len() < MIN_COMPRESS_LEN {
        return Ok(None);
    }
    let compressed = match dictionary.and_then(|dictionary| dictionary.cdict.as_ref()) {
        Some((_, cdict)) => compress_with(content, cdict)?,
        None => COMPRESSOR.with(|cell| {
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
        })?,
    };
    Ok(worth_keeping(content.len(), compressed.len()).then_some(compressed))
}

fn compress_with(content: &[u8], cdict: &CDict<'static>) -> Result<Vec<u8>, CodecError> {
    CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        let cctx = cell.get_or_insert_with(zstd_safe::CCtx::create);
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(content.len()));
        cctx.compress_using_cdict(&mut out, content, cdict)
            .map_err(|code| CodecError::Compress(zstd_safe::get_error_name(code).into()))?;
        Ok(out)
    })
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
        Codec::Zstd => match zstd_safe::get_frame_content_size(payload) {
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

/// Runs `work` with this thread's decompression context, which is left
/// with no dictionary and a fresh session afterwards, whatever happened.
fn with_decoding<T>(
    work: impl FnOnce(&mut Decoding) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    DCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decoding = match &mut *cell {
            Some(decoding) => decoding,
            slot => {
                let mut dctx = DCtx::create();
                dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
                    .map_err(|code| {
                        CodecError::Malformed(zstd_safe::get_error_name(code).into())
                    })?;
                slot.insert(Box::new(Decoding {
                    dctx,
                    out: vec![0; STREAM_CHUNK],
                }))
            }
        };
        let result = work(decoding);
        // Forget the session and any referenced dictionary (keeps the
        // window limit): the next payload starts clean, and no dictionary
        // stays referenced past the borrow that lent it.
        let _ = decoding.dctx.init();
        result
    })
}

fn zstd_error(code: usize) -> CodecError {
    CodecError::Malformed(zstd_safe::get_error_name(code).into())
}

/// The content of a payload (borrowed when raw). Allocates exactly the
/// declared length, and only once that is known to be at most `max`.
pub fn decode<'a>(
    codec: Codec,
    payload: &'a [u8],
    max: u64,
    dictionaries: &Dictionaries,
) -> Result<Cow<'a, [u8]>, CodecError> {
    let declared = content_len(codec, payload, max)?;
    if codec == Codec::Raw {
        return Ok(Cow::Borrowed(payload));
    }
    let dictionary = dictionaries.for_payload(codec, payload)?;
    let mut content = Vec::with_capacity(declared as usize);
    with_decoding(|decoding| {
        // The buffer has room for exactly the declared content: a payload
        // that inflates further (more frames, a lying header) fails here.
        match dictionary {
            Some(dictionary) => {
                decoding
                    .dctx
                    .decompress_using_ddict(&mut content, payload, &dictionary.ddict)
            }
            None => decoding.dctx.decompress(&mut content, payload),
        }
        .map_err(zstd_error)
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
    dictionaries: &Dictionaries,
) -> Result<(ObjectId, u64), CodecError> {
    let declared = content_len(codec, payload, max)?;
    let mut hasher = ObjectHasher::new(kind, declared);
    if codec == Codec::Raw {
        hasher.update(payload);
        return Ok((hasher.finish(), declared));
    }
    let dictionary = dictionaries.for_payload(codec, payload)?;
    let inflated = inflate_each(payload, declared, dictionary, |piece| hasher.update(piece))?;
    if inflated != declared {
        return Err(CodecError::SizeMismatch {
            declared,
            actual: inflated,
        });
    }
    Ok((hasher.finish(), declared))
}

/// [`content_id`] a piece at a time, for a caller that gives its thread
/// away between pieces (a node hashing a large object on a core that
/// serves others). Owns its own decompression context, so pieces of
/// several payloads may interleave on one thread.
pub struct ContentHashing<'a> {
    payload: &'a [u8],
    /// Bytes of `payload` consumed so far.
    read: usize,
    hasher: ObjectHasher,
    declared: u64,
    inflated: u64,
    /// `Some` for a zstd payload. Declared before `dictionary`, so it is
    /// dropped first: it may reference the dictionary's prepared form.
    decoding: Option<Box<Decoding>>,
    /// Kept alive for as long as the context may reference it.
    _dictionary: Option<Arc<Dictionary>>,
}

impl<'a> ContentHashing<'a> {
    /// Judges the declared size against `max` and finds the dictionary the
    /// payload names, before any work.
    pub fn new(
        kind: ObjectKind,
        codec: Codec,
        payload: &'a [u8],
        max: u64,
        dictionaries: &Dictionaries,
    ) -> Result<Self, CodecError> {
        let declared = content_len(codec, payload, max)?;
        let (decoding, dictionary) = match codec {
            Codec::Raw => (None, None),
            Codec::Zstd => {
                let dictionary = match frame_dictionary(payload) {
                    Some(id) => Some(Arc::clone(
                        dictionaries
                            .get(id)
                            .ok_or(CodecError::UnknownDictionary(id))?,
                    )),
                    None => None,
                };
                let mut dctx = DCtx::create();
                dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
                    .map_err(zstd_error)?;
                if let Some(dictionary) = &dictionary {
                    dctx.ref_ddict(&dictionary.ddict).map_err(zstd_error)?;
                }
                let decoding = Box::new(Decoding {
                    dctx,
                    out: vec![0; STREAM_CHUNK],
                });
                (Some(decoding), dictionary)
            }
        };
        Ok(Self {
            payload,
            read: 0,
            hasher: ObjectHasher::new(kind, declared),
            declared,
            inflated: 0,
            decoding,
            _dictionary: dictionary,
        })
    }

    /// Hashes about `budget` more bytes of content; the id and length once
    /// the whole content is hashed.
    pub fn step(&mut self, budget: usize) -> Result<Option<(ObjectId, u64)>, CodecError> {
        let Some(decoding) = self.decoding.as_mut() else {
            let end = (self.read + budget.max(1)).min(self.payload.len());
            self.hasher.update(&self.payload[self.read..end]);
            self.read = end;
            return Ok((end == self.payload.len()).then(|| self.finish()));
        };
        let mut done = 0;
        while done < budget.max(1) {
            let mut input = InBuffer::around(&self.payload[self.read..]);
            let mut output = OutBuffer::around(&mut decoding.out[..]);
            let remaining = decoding
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            let written = output.pos();
            self.read += input.pos();
            self.inflated += written as u64;
            done += written.max(1);
            if self.inflated > self.declared {
                return Err(CodecError::SizeMismatch {
                    declared: self.declared,
                    actual: self.inflated,
                });
            }
            self.hasher.update(&decoding.out[..written]);
            if remaining == 0 {
                if self.read < self.payload.len() {
                    return Err(CodecError::Malformed(format!(
                        "{} bytes after the zstd frame",
                        self.payload.len() - self.read
                    )));
                }
                if self.inflated != self.declared {
                    return Err(CodecError::SizeMismatch {
                        declared: self.declared,
                        actual: self.inflated,
                    });
                }
                return Ok(Some(self.finish()));
            }
            if self.read == self.payload.len() && written == 0 {
                return Err(CodecError::Malformed("the zstd frame is truncated".into()));
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> (ObjectId, u64) {
        let hasher = std::mem::replace(&mut self.hasher, ObjectHasher::new(ObjectKind::Blob, 0));
        (hasher.finish(), self.declared)
    }
}

/// Inflates a zstd payload piece by piece into `each`; stops with an error
/// as soon as it passes `declared` bytes or the frame is damaged. Returns
/// the bytes inflated.
fn inflate_each(
    payload: &[u8],
    declared: u64,
    dictionary: Option<&Dictionary>,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, CodecError> {
    with_decoding(|decoding| {
        if let Some(dictionary) = dictionary {
            decoding
                .dctx
                .ref_ddict(&dictionary.ddict)
                .map_err(zstd_error)?;
        }
        let mut input = InBuffer::around(payload);
        let mut inflated = 0u64;
        loop {
            let mut output = OutBuffer::around(&mut decoding.out[..]);
            let remaining = decoding
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            let written = output.pos();
            inflated += written as u64;
            if inflated > declared {
                return Err(CodecError::SizeMismatch {
                    declared,
                    actual: inflated,
                });
            }
            each(&decoding.out[..written]);
            if remaining == 0 {
                // The frame is complete: anything after it is not ours.
                let left = payload.len() - input.pos();
                if left > 0 {
                    return Err(CodecError::Malformed(format!(
                        "{left} bytes after the zstd frame"
                    )));
                }
                return Ok(inflated);
            }
            if input.pos() == payload.len() && written == 0 {
                return Err(CodecError::Malformed("the zstd frame is truncated".into()));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Dictionaries {
        Dictionaries::default()
    }

    fn source_like(len: usize) -> Vec<u8> {
        let line = b"fn main() { println!(\"hello, stratum\"); } // a line of code\n";
        line.iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn compressed_content_round_trips_and_hashes_like_the_content() {
        let content = source_like(100_000);
        let payload = compress(&content, DEFAULT_LEVEL, None)
            .expect("compresses")
            .expect("worth it");
        assert!(payload.len() < content.len() / 10);
        assert_eq!(
            content_len(Codec::Zstd, &payload, 1 << 20),
            Ok(content.len() as u64)
        );
        let decoded = decode(Codec::Zstd, &payload, 1 << 20, &none()).expect("decodes");
        assert_eq!(decoded.as_ref(), content.as_slice());
        let (id, len) =
            content_id(ObjectKind::Blob, Codec::Zstd, &payload, 1 << 20, &none()).expect("id");
        assert_eq!(id, ObjectId::compute(ObjectKind::Blob, &content));
        assert_eq!(len, content.len() as u64);
        // Twice on the same thread: the reused contexts start clean.
        let again =
            content_id(ObjectKind::Blob, Codec::Zstd, &payload, 1 << 20, &none()).expect("id");
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
        assert_eq!(compress(&random, DEFAULT_LEVEL, None), Ok(None));
        assert_eq!(compress(b"tiny", DEFAULT_LEVEL, None), Ok(None));
        assert!(worth_keeping(100, 90));
        assert!(!worth_keeping(100, 91));
    }

    #[test]
    fn a_bomb_is_refused_before_inflating() {
        let content = vec![0u8; 8 << 20];
        let payload = compress(&content, DEFAULT_LEVEL, None).unwrap().unwrap();
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
        assert_eq!(
            decode(Codec::Zstd, &payload, limit, &none()).map(|_| ()),
            too_large
        );
        assert_eq!(
            content_id(ObjectKind::Blob, Codec::Zstd, &payload, limit, &none()).map(|_| ()),
            too_large
        );
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_refused() {
        let content = source_like(10_000);
        let honest = compress(&content, DEFAULT_LEVEL, None).unwrap().unwrap();
        // Two frames back to back: the first declares 10,000 bytes, the
        // whole inflates to 20,000.
        let mut doubled = honest.clone();
        doubled.extend_from_slice(&honest);
        assert!(decode(Codec::Zstd, &doubled, 1 << 20, &none()).is_err());
        assert!(content_id(ObjectKind::Blob, Codec::Zstd, &doubled, 1 << 20, &none()).is_err());
        // Cut short.
        let cut = &honest[..honest.len() - 3];
        assert!(decode(Codec::Zstd, cut, 1 << 20, &none()).is_err());
        assert!(content_id(ObjectKind::Blob, Codec::Zstd, cut, 1 << 20, &none()).is_err());
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
        let payload = compress(&content, DEFAULT_LEVEL, None).unwrap().unwrap();
        let id = ObjectId::compute(ObjectKind::Blob, &content);
        for at in (0..payload.len()).step_by(7) {
            let mut damaged = payload.clone();
            damaged[at] ^= 0x20;
            if let Ok((found, _)) =
                content_id(ObjectKind::Blob, Codec::Zstd, &damaged, 1 << 20, &none())
            {
                assert_ne!(found, id, "flip at {at} went unnoticed");
            }
        }
    }

    fn tree_like(seed: u64) -> Vec<u8> {
        (0..12)
            .flat_map(|entry| {
                let mut line =
                    format!("100644 src/module_{}/file_{entry}.rs\0", seed % 7).into_bytes();
                line.extend((0..32u8).map(|i| {
                    (seed as u8)
                        .wrapping_mul(31)
                        .wrapping_add(i.wrapping_mul(entry as u8))
                }));
                line
            })
            .collect()
    }

    fn trained() -> Dictionary {
        let samples: Vec<Vec<u8>> = (0..400).map(tree_like).collect();
        train(&samples, 16 << 10).expect("trains")
    }

    #[test]
    fn a_dictionary_shrinks_small_objects_and_is_needed_to_read_them() {
        let dictionary = trained().for_compressing(DEFAULT_LEVEL).expect("prepares");
        let content = tree_like(1000);
        let alone = compress(&content, DEFAULT_LEVEL, None).unwrap();
        let with = compress(&content, DEFAULT_LEVEL, Some(&dictionary))
            .unwrap()
            .expect("worth it with a dictionary");
        assert!(
            alone.as_ref().is_none_or(|alone| with.len() < alone.len()),
            "{} vs {:?}",
            with.len(),
            alone.map(|a| a.len())
        );
        assert_eq!(frame_dictionary(&with), Some(dictionary.id()));

        let id = ObjectId::compute(ObjectKind::Tree, &content);
        assert_eq!(
            decode(Codec::Zstd, &with, 1 << 20, &none()).map(|_| ()),
            Err(CodecError::UnknownDictionary(dictionary.id()))
        );
        assert_eq!(
            content_id(ObjectKind::Tree, Codec::Zstd, &with, 1 << 20, &none()).map(|_| ()),
            Err(CodecError::UnknownDictionary(dictionary.id()))
        );
        let mut held = Dictionaries::default();
        assert_eq!(held.insert(Arc::new(trained())), Ok(true));
        let decoded = decode(Codec::Zstd, &with, 1 << 20, &held).expect("decodes");
        assert_eq!(decoded.as_ref(), content.as_slice());
        let (found, len) =
            content_id(ObjectKind::Tree, Codec::Zstd, &with, 1 << 20, &held).expect("id");
        assert_eq!((found, len), (id, content.len() as u64));
        // The context forgets the dictionary: a plain frame still decodes.
        let plain = compress(&source_like(5000), DEFAULT_LEVEL, None)
            .unwrap()
            .unwrap();
        assert!(decode(Codec::Zstd, &plain, 1 << 20, &none()).is_ok());
        assert!(content_id(ObjectKind::Blob, Codec::Zstd, &plain, 1 << 20, &none()).is_ok());
    }

    #[test]
    fn dictionaries_are_added_never_replaced() {
        let mut held = Dictionaries::default();
        let dictionary = trained();
        let id = dictionary.id();
        assert_eq!(held.insert(Arc::new(dictionary)), Ok(true));
        assert_eq!(
            held.insert(Arc::new(trained())),
            Ok(false),
            "same bytes again"
        );
        assert_eq!(held.ids(), vec![id]);
        // Other bytes under the same id: refused.
        let mut bytes = trained().bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        if let Ok(other) = Dictionary::new(bytes) {
            assert_eq!(
                held.insert(Arc::new(other)),
                Err(CodecError::DictionaryConflict(id))
            );
        }
        assert!(matches!(
            Dictionary::new(b"not a dictionary".to_vec()),
            Err(CodecError::BadDictionary(_))
        ));
    }

    #[test]
    fn hashing_a_piece_at_a_time_gives_the_same_id_and_the_same_refusals() {
        let content = source_like(300_000);
        let id = ObjectId::compute(ObjectKind::Blob, &content);
        let payload = compress(&content, DEFAULT_LEVEL, None).unwrap().unwrap();
        for (codec, bytes) in [(Codec::Raw, &content), (Codec::Zstd, &payload)] {
            let mut hashing = ContentHashing::new(ObjectKind::Blob, codec, bytes, 1 << 20, &none())
                .expect("starts");
            let mut steps = 0;
            let found = loop {
                steps += 1;
                if let Some(found) = hashing.step(64 << 10).expect("step") {
                    break found;
                }
            };
            assert_eq!(found, (id, content.len() as u64));
            assert!(steps >= 4, "{codec:?} took {steps} steps");
        }
        // A bomb is refused before the first step; a liar within steps.
        assert!(matches!(
            ContentHashing::new(ObjectKind::Blob, Codec::Zstd, &payload, 1000, &none()),
            Err(CodecError::TooLarge { .. })
        ));
        let mut doubled = payload.clone();
        doubled.extend_from_slice(&payload);
        let mut hashing =
            ContentHashing::new(ObjectKind::Blob, Codec::Zstd, &doubled, 1 << 20, &none()).unwrap();
        let refused = loop {
            match hashing.step(64 << 10) {
                Ok(None) => continue,
                Ok(Some(_)) => break false,
                Err(_) => break true,
            }
        };
        assert!(refused);
    }
}
