//! Object content proven to hash to its id.
//!
//! Hashing is the costly part of a put (SHA-256 of the Git encoding, about
//! 0.85 µs per KiB here: 1.2 GB/s with SHA-NI). A [`Verified`] is made
//! once, where the bytes enter the node (a client's put, a replica write, a
//! read-repair copy), and is carried through coordination, forwarding to the
//! owning core and the group commit, which trust the type instead of
//! hashing again. Its fields are private and its only constructors hash, so
//! no path can skip the check: a value of this type *is* the proof.
//!
//! The bytes it carries are the payload as it arrived: compressed content
//! stays compressed (the node stores and serves it so), and the proof is of
//! the inflated content, hashed as it streams out of the decoder.

use std::borrow::Cow;

use bytes::Bytes;
use stratum_wire::codec::Dictionaries;
use stratum_wire::{codec, Codec, ObjectId, ObjectKind};

/// For raw content, which needs no dictionary.
static NO_DICTIONARIES: std::sync::LazyLock<Dictionaries> =
    std::sync::LazyLock::new(Dictionaries::default);

use super::error::{Result, StoreError};

/// Cloning shares the bytes (a refcount): a coordinator hands the same
/// proven payload to its store and to every replica it sends it to.
#[derive(Debug, Clone)]
pub struct Verified {
    id: ObjectId,
    kind: ObjectKind,
    codec: Codec,
    payload: Bytes,
    content_len: u64,
}

impl Verified {
    /// Hashes `content` as an object of `kind` and keeps it only if the
    /// result is `id`.
    pub fn check(id: ObjectId, kind: ObjectKind, content: Vec<u8>) -> Result<Self> {
        Self::check_payload(id, kind, Codec::Raw, content, u64::MAX, &NO_DICTIONARIES)
    }

    /// Like [`Verified::check`] for a payload in `codec`, whose content may
    /// be at most `max_content` bytes: a payload declaring more is refused
    /// before anything is inflated (a decompression bomb costs nothing). A
    /// payload compressed with a dictionary needs it in `dictionaries`.
    pub fn check_payload(
        id: ObjectId,
        kind: ObjectKind,
        codec: Codec,
        payload: Vec<u8>,
        max_content: u64,
        dictionaries: &Dictionaries,
    ) -> Result<Self> {
        let declared = codec::content_len(codec, &payload, max_content)
            .map_err(|source| StoreError::BadPayload { id, source })?;
        yield_to_io_workers(declared as usize);
        let (found, content_len) =
            codec::content_id(kind, codec, &payload, max_content, dictionaries)
                .map_err(|source| StoreError::BadPayload { id, source })?;
        Self::proven(id, found, kind, codec, payload, content_len)
    }

    /// The proof, if the content's hash `found` is `id`.
    fn proven(
        id: ObjectId,
        found: ObjectId,
        kind: ObjectKind,
        codec: Codec,
        payload: Vec<u8>,
        content_len: u64,
    ) -> Result<Self> {
        if found != id {
            return Err(StoreError::HashMismatch { id });
        }
        Ok(Self {
            id,
            kind,
            codec,
            payload: Bytes::from(payload),
            content_len,
        })
    }

    /// [`Verified::check_payload`] that gives the core away between steps
    /// of [`HASH_STEP`] bytes when the content is large: hashing 64 MiB
    /// takes about 55 ms, which the core's other requests should not wait
    /// out.
    pub async fn check_payload_yielding(
        id: ObjectId,
        kind: ObjectKind,
        codec: Codec,
        payload: Vec<u8>,
        max_content: u64,
        dictionaries: &Dictionaries,
    ) -> Result<Self> {
        let bad = |source| StoreError::BadPayload { id, source };
        let declared = codec::content_len(codec, &payload, max_content).map_err(bad)?;
        if declared < YIELD_ABOVE {
            return Self::check_payload(id, kind, codec, payload, max_content, dictionaries);
        }
        yield_to_io_workers(declared as usize);
        let mut hashing =
            codec::ContentHashing::new(kind, codec, &payload, max_content, dictionaries)
                .map_err(bad)?;
        let (found, content_len) = loop {
            if let Some(done) = hashing.step(HASH_STEP).map_err(bad)? {
                break done;
            }
            // A timer, not a plain yield: glommio 0.9 polls its reactor
            // (the sockets of the core's other requests) only once the run
            // queue drains or a timer fires, and a task that only yields
            // keeps the queue from draining.
            crate::clock::sleep(std::time::Duration::from_micros(1)).await;
        };
        drop(hashing);
        Self::proven(id, found, kind, codec, payload, content_len)
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }

    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The bytes as they travel and rest (compressed when `codec` says so).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, shared (a refcount, not a copy).
    pub fn payload_bytes(&self) -> Bytes {
        self.payload.clone()
    }

    /// Length of the content (inflated).
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// The content itself, inflated if compressed (for a peer or a hint
    /// file that takes raw content only).
    pub fn content(&self, dictionaries: &Dictionaries) -> Result<Cow<'_, [u8]>> {
        codec::decode(self.codec, &self.payload, self.content_len, dictionaries).map_err(|source| {
            StoreError::BadPayload {
                id: self.id,
                source,
            }
        })
    }

    pub fn into_parts(self) -> (ObjectId, ObjectKind, Codec, Bytes) {
        (self.id, self.kind, self.codec, self.payload)
    }
}

/// Content at least this large is hashed in steps, with the core given
/// away between them ([`Verified::check_payload_yielding`]).
pub const YIELD_ABOVE: u64 = 1 << 20;

/// Content hashed per step: about 0.9 ms of SHA-256 here.
pub const HASH_STEP: usize = 1 << 20;

/// Content at least this large is hashed only after [`yield_to_io_workers`].
const YIELD_BEFORE_HASH_BYTES: usize = 16 << 10;

/// Gives the CPU away for a moment before a long hash.
///
/// On ext4, an O_DIRECT write that allocates blocks (every batch that
/// appends) is handed by io_uring to an io-wq worker thread, and that
/// worker inherits the shard's pinned CPU. A shard busy hashing never
/// sleeps, so the worker would submit the batch's write only after the
/// hashing is done, serializing the two. One `sched_yield` per large object
/// (about a microsecond, against 13 µs of hashing for 16 KiB) lets it run
/// first. It pays off together with the deferred acknowledgements in
/// `group_commit` (figures: docs/measurements).
fn yield_to_io_workers(content_len: usize) {
    if content_len >= YIELD_BEFORE_HASH_BYTES {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_that_hashes_to_its_id_is_verified() {
        let content = b"hello\n".to_vec();
        let id = ObjectId::compute(ObjectKind::Blob, &content);
        let verified = Verified::check(id, ObjectKind::Blob, content.clone()).expect("verifies");
        assert_eq!(verified.id(), id);
        assert_eq!(verified.payload(), b"hello\n");

        // Same bytes under another kind hash differently.
        assert!(matches!(
            Verified::check(id, ObjectKind::Tree, content),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(matches!(
            Verified::check(id, ObjectKind::Blob, b"hellO\n".to_vec()),
            Err(StoreError::HashMismatch { id: refused }) if refused == id
        ));
    }

    #[test]
    fn a_compressed_payload_is_proven_by_its_inflated_content() {
        let content = b"tree of lines\n".repeat(400);
        let id = ObjectId::compute(ObjectKind::Tree, &content);
        let payload = codec::compress(&content, codec::DEFAULT_LEVEL, None)
            .expect("compresses")
            .expect("worth it");
        let verified = Verified::check_payload(
            id,
            ObjectKind::Tree,
            Codec::Zstd,
            payload.clone(),
            1 << 20,
            &NO_DICTIONARIES,
        )
        .expect("verifies");
        assert_eq!(verified.codec(), Codec::Zstd);
        assert_eq!(verified.content_len(), content.len() as u64);
        assert_eq!(
            verified
                .content(&NO_DICTIONARIES)
                .expect("inflates")
                .as_ref(),
            content.as_slice()
        );
        // Over the limit: refused as too large before inflating.
        assert!(matches!(
            Verified::check_payload(
                id,
                ObjectKind::Tree,
                Codec::Zstd,
                payload.clone(),
                100,
                &NO_DICTIONARIES
            ),
            Err(StoreError::BadPayload {
                source: stratum_wire::CodecError::TooLarge { .. },
                ..
            })
        ));
        // Another object's id: a hash mismatch.
        let other = ObjectId::compute(ObjectKind::Tree, b"other");
        assert!(matches!(
            Verified::check_payload(
                other,
                ObjectKind::Tree,
                Codec::Zstd,
                payload,
                1 << 20,
                &NO_DICTIONARIES
            ),
            Err(StoreError::HashMismatch { .. })
        ));
    }
}
