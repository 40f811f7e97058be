//! Object ids: the SHA-256 of a Git object's canonical encoding.
//!
//! A Git object of type `T` with content `C` is hashed as
//! `"<T> <len(C)>\0" || C`. With SHA-256 this is exactly the object id a Git
//! repository in `objectFormat = sha256` gives the same object, so ids are
//! interchangeable with Git's own.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Length of an object id in bytes.
pub const OBJECT_ID_LEN: usize = 32;
/// Length of an object id printed as hex.
pub const OBJECT_ID_HEX_LEN: usize = 2 * OBJECT_ID_LEN;

/// The four Git object types. The discriminants are part of the wire and disk
/// formats and must never be renumbered.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[repr(u8)]
pub enum ObjectKind {
    Blob = 1,
    Tree = 2,
    Commit = 3,
    Tag = 4,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 4] = [Self::Blob, Self::Tree, Self::Commit, Self::Tag];

    /// The type name Git writes in the object header.
    pub fn git_name(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Tree => "tree",
            Self::Commit => "commit",
            Self::Tag => "tag",
        }
    }

    /// Inverse of [`ObjectKind::git_name`].
    pub fn from_git_name(name: &str) -> Result<Self, ObjectIdError> {
        match name {
            "blob" => Ok(Self::Blob),
            "tree" => Ok(Self::Tree),
            "commit" => Ok(Self::Commit),
            "tag" => Ok(Self::Tag),
            other => Err(ObjectIdError::UnknownKind(other.to_owned())),
        }
    }

    /// The on-disk / on-wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(byte: u8) -> Result<Self, ObjectIdError> {
        match byte {
            1 => Ok(Self::Blob),
            2 => Ok(Self::Tree),
            3 => Ok(Self::Commit),
            4 => Ok(Self::Tag),
            other => Err(ObjectIdError::UnknownKindByte(other)),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.git_name())
    }
}

impl From<ArchivedObjectKind> for ObjectKind {
    fn from(kind: ArchivedObjectKind) -> Self {
        match kind {
            ArchivedObjectKind::Blob => Self::Blob,
            ArchivedObjectKind::Tree => Self::Tree,
            ArchivedObjectKind::Commit => Self::Commit,
            ArchivedObjectKind::Tag => Self::Tag,
        }
    }
}

/// Why an object id or kind could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectIdError {
    #[error("object id must be {OBJECT_ID_HEX_LEN} hex characters, got {0}")]
    WrongHexLength(usize),
    #[error("object id has a non-hex character {character:?} at position {index}")]
    InvalidHexCharacter { character: char, index: usize },
    #[error("object id must be {OBJECT_ID_LEN} bytes, got {0}")]
    WrongByteLength(usize),
    #[error("unknown git object type {0:?} (expected blob, tree, commit or tag)")]
    UnknownKind(String),
    #[error("unknown git object type byte {0}")]
    UnknownKindByte(u8),
}

/// A 32-byte SHA-256 object id.
///
/// Ordering is bytewise, which is also the order of the printed hex.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Hash))]
pub struct ObjectId([u8; OBJECT_ID_LEN]);

impl ArchivedObjectId {
    /// The id, copied out of an archive (32 bytes; no allocation).
    pub fn get(&self) -> ObjectId {
        ObjectId(self.0)
    }
}

impl fmt::Debug for ArchivedObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl ObjectId {
    pub const fn from_bytes(bytes: [u8; OBJECT_ID_LEN]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, ObjectIdError> {
        let array: [u8; OBJECT_ID_LEN] = bytes
            .try_into()
            .map_err(|_| ObjectIdError::WrongByteLength(bytes.len()))?;
        Ok(Self(array))
    }

    pub const fn as_bytes(&self) -> &[u8; OBJECT_ID_LEN] {
        &self.0
    }

    pub const fn to_bytes(self) -> [u8; OBJECT_ID_LEN] {
        self.0
    }

    /// The id of a Git object of `kind` with `content`.
    pub fn compute(kind: ObjectKind, content: &[u8]) -> Self {
        let mut hasher = ObjectHasher::new(kind, content.len() as u64);
        hasher.update(content);
        hasher.finish()
    }

    /// Whether `content` of `kind` hashes to this id.
    pub fn verify(&self, kind: ObjectKind, content: &[u8]) -> bool {
        Self::compute(kind, content) == *self
    }

    /// Parses 64 hex characters. Upper-case digits are accepted (Git accepts
    /// them too); [`fmt::Display`] always prints lower case.
    pub fn from_hex(text: &str) -> Result<Self, ObjectIdError> {
        if text.len() != OBJECT_ID_HEX_LEN {
            return Err(ObjectIdError::WrongHexLength(text.len()));
        }
        let mut bytes = [0u8; OBJECT_ID_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|err| match err {
            hex::FromHexError::InvalidHexCharacter { c, index } => {
                ObjectIdError::InvalidHexCharacter {
                    character: c,
                    index,
                }
            }
            // Length was checked above, so only a multi-byte UTF-8 character
            // can get here (it makes the char count differ from the byte count).
            hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
                ObjectIdError::WrongHexLength(text.chars().count())
            }
        })?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Bits used to place the object on the ring (bytes 0..8, big-endian so
    /// that ring order matches id order).
    pub fn ring_key(&self) -> u64 {
        u64::from_be_bytes(self.prefix::<0>())
    }

    /// Bits used to pick the owning shard inside a node (bytes 8..16). They
    /// are independent of the ring bits, so the objects one node owns still
    /// spread evenly over its shards.
    pub fn shard_key(&self) -> u64 {
        u64::from_be_bytes(self.prefix::<8>())
    }

    fn prefix<const START: usize>(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.0[START..START + 8]);
        out
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; OBJECT_ID_HEX_LEN];
        // Cannot fail: the buffer is exactly twice the input.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ObjectIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

impl From<[u8; OBJECT_ID_LEN]> for ObjectId {
    fn from(bytes: [u8; OBJECT_ID_LEN]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for ObjectId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Incremental id computation, for content that arrives in pieces (a frame
/// payload read from a socket, a `git cat-file` stream).
pub struct ObjectHasher {
    inner: Sha256,
    expected_len: u64,
    seen: u64,
}

impl ObjectHasher {
    /// Starts hashing an object of `kind` whose content is `len` bytes long.
    pub fn new(kind: ObjectKind, len: u64) -> Self {
        let mut inner = Sha256::new();
        inner.update(kind.git_name().as_bytes());
        inner.update(b" ");
        inner.update(len.to_string().as_bytes());
        inner.update([0u8]);
        Self {
            inner,
            expected_len: len,
            seen: 0,
        }
    }

    pub fn update(&mut self, piece: &[u8]) {
        self.seen += piece.len() as u64;
        self.inner.update(piece);
    }

    /// The id. Debug builds assert that exactly the announced length was fed:
    /// a mismatch would produce an id no Git repository agrees with.
    pub fn finish(self) -> ObjectId {
        debug_assert_eq!(
            self.seen, self.expected_len,
            "ObjectHasher fed a different length than announced"
        );
        ObjectId(self.inner.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf 'hello\n' | git hash-object --object-format=sha256 --stdin`
    const HELLO_BLOB: &str = "2cf8d83d9ee29543b34a87727421fdecb7e3f3a183d337639025de576db9ebb4";
    // `git hash-object --object-format=sha256 -t blob /dev/null`
    const EMPTY_BLOB: &str = "473a0f4c3be8a93681a267e3b1e9a7dcda1185436fe141f7749120a303721813";

    #[test]
    fn matches_git_sha256_object_format() {
        assert_eq!(
            ObjectId::compute(ObjectKind::Blob, b"hello\n").to_string(),
            HELLO_BLOB
        );
        assert_eq!(
            ObjectId::compute(ObjectKind::Blob, b"").to_string(),
            EMPTY_BLOB
        );
    }

    #[test]
    fn kind_is_part_of_the_id() {
        let blob = ObjectId::compute(ObjectKind::Blob, b"x");
        let tree = ObjectId::compute(ObjectKind::Tree, b"x");
        assert_ne!(blob, tree);
        assert!(blob.verify(ObjectKind::Blob, b"x"));
        assert!(!blob.verify(ObjectKind::Tree, b"x"));
        assert!(!blob.verify(ObjectKind::Blob, b"y"));
    }

    #[test]
    fn incremental_hash_equals_one_shot() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut hasher = ObjectHasher::new(ObjectKind::Commit, content.len() as u64);
        for piece in content.chunks(777) {
            hasher.update(piece);
        }
        assert_eq!(
            hasher.finish(),
            ObjectId::compute(ObjectKind::Commit, &content)
        );
    }

    #[test]
    fn hex_round_trip_and_case() {
        let id: ObjectId = HELLO_BLOB.parse().expect("valid hex");
        assert_eq!(id.to_hex(), HELLO_BLOB);
        let upper: ObjectId = HELLO_BLOB.to_uppercase().parse().expect("upper hex");
        assert_eq!(upper, id);
        assert_eq!(format!("{upper}"), HELLO_BLOB);
    }

    #[test]
    fn malformed_hex_gives_typed_errors() {
        assert_eq!(
            "abc".parse::<ObjectId>(),
            Err(ObjectIdError::WrongHexLength(3))
        );
        assert_eq!(
            format!("{}0", HELLO_BLOB).parse::<ObjectId>(),
            Err(ObjectIdError::WrongHexLength(65))
        );
        let mut bad = HELLO_BLOB.to_string();
        bad.replace_range(10..11, "g");
        assert_eq!(
            bad.parse::<ObjectId>(),
            Err(ObjectIdError::InvalidHexCharacter {
                character: 'g',
                index: 10
            })
        );
        // 62 ASCII chars + one 2-byte char = 64 bytes but 63 characters.
        let sneaky = format!("{}é", &HELLO_BLOB[..62]);
        assert_eq!(sneaky.len(), 64);
        assert!(matches!(
            sneaky.parse::<ObjectId>(),
            Err(ObjectIdError::InvalidHexCharacter { .. } | ObjectIdError::WrongHexLength(_))
        ));
        assert_eq!(
            ObjectId::from_slice(&[0u8; 31]),
            Err(ObjectIdError::WrongByteLength(31))
        );
    }

    #[test]
    fn kind_names_and_bytes_round_trip() {
        for kind in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_git_name(kind.git_name()), Ok(kind));
            assert_eq!(ObjectKind::from_u8(kind.as_u8()), Ok(kind));
        }
        assert!(matches!(
            ObjectKind::from_git_name("blobby"),
            Err(ObjectIdError::UnknownKind(_))
        ));
        assert_eq!(
            ObjectKind::from_u8(0),
            Err(ObjectIdError::UnknownKindByte(0))
        );
    }
}
