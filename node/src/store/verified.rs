//! Object content proven to hash to its id.
//!
//! Hashing is the costly part of a put (SHA-256 of the Git encoding, about
//! 0.85 µs per KiB here: 1.2 GB/s with SHA-NI). A [`Verified`] is made
//! once, where the bytes enter the node (a client's put, a replica write, a
//! read-repair copy), and is carried through coordination, forwarding to the
//! owning core and the group commit, which trust the type instead of
//! hashing again. Its fields
//! are private and its only constructor hashes, so no path can skip the
//! check: a value of this type *is* the proof.

use bytes::Bytes;
use stratum_wire::{ObjectId, ObjectKind};

use super::error::{Result, StoreError};

/// Cloning shares the bytes (a refcount): a coordinator hands the same
/// proven content to its store and to every replica it sends it to.
#[derive(Debug, Clone)]
pub struct Verified {
    id: ObjectId,
    kind: ObjectKind,
    content: Bytes,
}

impl Verified {
    /// Hashes `content` as an object of `kind` and keeps it only if the
    /// result is `id`.
    pub fn check(id: ObjectId, kind: ObjectKind, content: Vec<u8>) -> Result<Self> {
        yield_to_io_workers(content.len());
        if !id.verify(kind, &content) {
            return Err(StoreError::HashMismatch { id });
        }
        Ok(Self {
            id,
            kind,
            content: Bytes::from(content),
        })
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }

    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The content, shared (a refcount, not a copy).
    pub fn content_bytes(&self) -> Bytes {
        self.content.clone()
    }

    pub fn into_parts(self) -> (ObjectId, ObjectKind, Bytes) {
        (self.id, self.kind, self.content)
    }
}

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
/// `group_commit` (figures: ARCHITECTURE.md, "glommio notes").
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
        assert_eq!(verified.content(), b"hello\n");

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
}
