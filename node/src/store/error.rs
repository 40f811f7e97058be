//! Why a store operation failed. Errors keep their cause; corruption is
//! described precisely enough to act on (which segment, which offset, why).

use std::io;
use std::path::PathBuf;

use stratum_wire::ObjectId;

/// A record failed one of its checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("bad record magic")]
    BadMagic,
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("unknown object kind byte {0}")]
    UnknownKind(u8),
    #[error("reserved bytes are not zero")]
    ReservedNotZero,
    #[error("record length {len} runs past the end of its segment")]
    LengthPastEnd { len: u64 },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("record holds object {found}, expected {expected}")]
    WrongObject { expected: ObjectId, found: ObjectId },
    #[error("content does not hash to the object id")]
    HashMismatch,
    #[error("compressed content cannot be inflated: {0}")]
    Codec(stratum_wire::CodecError),
    #[error("the index points at a tombstone, not an object")]
    NotAnObject,
    #[error("the record holds an object whose key does not match the index entry")]
    KeyMismatch,
    #[error("short read: {got} of {wanted} bytes")]
    ShortRead { got: usize, wanted: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object of {size} bytes exceeds the maximum object size of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("shard takes no writes: {reason}; reads still work")]
    ReadOnly { reason: String },
    #[error("shard failed stop for writes after {cause}; restart the node to recover from disk")]
    Failed { cause: String },
    #[error("{path}: shard was created as shard {found_id} of {found_count}, but is opened as shard {expected_id} of {expected_count}; refusing to misplace data")]
    ShardMismatch {
        path: PathBuf,
        found_id: u16,
        found_count: u16,
        expected_id: u16,
        expected_count: u16,
    },
    #[error("{path}: superblock is unreadable: {reason}")]
    BadSuperblock { path: PathBuf, reason: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("object {id} at segment {segment} offset {offset} is corrupt: {corruption}")]
    Corrupt {
        id: ObjectId,
        segment: u32,
        offset: u64,
        corruption: Corruption,
    },
    #[error("content does not hash to object id {id}")]
    HashMismatch { id: ObjectId },
    #[error("payload of object {id} cannot be decoded: {source}")]
    BadPayload {
        id: ObjectId,
        #[source]
        source: stratum_wire::CodecError,
    },
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
