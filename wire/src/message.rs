//! Every message of protocol version 1.
//!
//! A frame carries exactly one message struct, archived with rkyv on its own
//! (the frame header's kind byte says which), plus an optional raw payload
//! (object bytes) that travels outside the archive so it is never copied
//! through rkyv. Which kinds may carry a payload is fixed by
//! [`MessageKind::carries_payload`]. The catalogue itself — kind numbers and
//! the [`Message`] / [`MessageRef`] enums — is in [`crate::catalogue`].
//!
//! Rules that keep the format safe and stable:
//! - No message is recursive (bytecheck validation stays bounded).
//! - Variants and fields are only ever appended in a new protocol version;
//!   [`MessageKind`] numbers are never reused.
//! - Object ids travel as [`ObjectId`] (32 raw bytes).

use rkyv::{Archive, Deserialize, Serialize};

use crate::object_id::{ObjectId, ObjectKind};

pub use crate::catalogue::{Message, MessageKind, MessageRef};

/// The revision of the message catalogue this build speaks, sent in
/// [`Hello::protocol_version`] (the frame header's version, which covers
/// only the framing, stays 1).
///
/// - 1: the first release.
/// - 2: payload codecs (frame header flags), and [`Welcome`] instead of
///   [`HelloAck`], which tells the connector the node's limits.
///
/// Both sides use the lower of the two revisions: a revision-1 node answers
/// a revision-2 hello with a [`HelloAck`] saying 1, and is then sent raw
/// payloads only.
pub const PROTOCOL_REVISION: u16 = 2;

/// The first revision with payload codecs and [`Welcome`].
pub const REVISION_CODECS: u16 = 2;

/// Who opened a connection.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[repr(u8)]
pub enum PeerRole {
    /// A frontend linking `stratum-client`, or an operator tool.
    Client = 1,
    /// Another node (replication, forwarding).
    Node = 2,
}

/// First frame on every connection, sent by the side that connected.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Hello {
    /// Highest protocol version the sender speaks.
    pub protocol_version: u16,
    pub role: PeerRole,
    /// The sender's node id when `role` is `Node`.
    pub node_id: Option<u32>,
    /// The topology epoch the sender routes by (0: none yet).
    pub topology_epoch: u64,
    /// Free text for logs ("stratum-client/0.1.0"); bounded by the frame's
    /// message limit like everything else.
    pub agent: String,
    /// Random nonce the node must MAC in [`AuthOk`], so the client knows the
    /// node holds the cluster secret too (mutual authentication).
    pub auth_nonce: [u8; 32],
}

/// The node's answer to [`Hello`]: what a client needs to route directly.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct HelloAck {
    pub protocol_version: u16,
    pub node_id: u32,
    /// The shard (core) this connection is served by.
    pub shard_id: u16,
    pub shard_count: u16,
    pub topology_epoch: u64,
    /// Present when the cluster has a secret: the client must answer with
    /// [`AuthProof`] before any other request.
    pub auth_challenge: Option<[u8; 32]>,
}

/// Revision 2's answer to [`Hello`]: everything in [`HelloAck`], plus what
/// the node accepts.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Welcome {
    /// The revision both sides now speak: the lower of the two.
    pub protocol_version: u16,
    pub node_id: u32,
    pub shard_id: u16,
    pub shard_count: u16,
    pub topology_epoch: u64,
    pub auth_challenge: Option<[u8; 32]>,
    /// The node's maximum object size (content bytes): a client refuses a
    /// larger put itself instead of sending it.
    pub max_object_bytes: u64,
    /// Payload codecs the node accepts and may send, one bit per
    /// [`crate::codec::Codec`] number (bit 0, raw, is always set).
    pub codecs: u8,
    /// Ids of the zstd dictionaries the node holds: a payload compressed
    /// with another is sent to it inflated.
    pub dictionaries: Vec<u32>,
    /// The dictionary clients should compress with (0: none). A client
    /// fetches it with [`GetDictionary`].
    pub dictionary: u32,
}

impl Welcome {
    /// Whether the node accepts and may send payloads in `codec`.
    pub fn accepts(codecs: u8, codec: crate::codec::Codec) -> bool {
        codecs & (1 << codec.as_u8()) != 0
    }
}

/// Proof of the cluster secret: a MAC of the challenge (the secret itself is
/// never sent). Answered by [`AuthOk`] or an `Unauthorized` error.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct AuthProof {
    pub mac: [u8; 32],
}

/// The node accepted the proof, and proves the secret in turn: a MAC of the
/// client's [`Hello::auth_nonce`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct AuthOk {
    pub mac: [u8; 32],
}

/// Store an object. Payload: the object's content (without Git header).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Put {
    pub id: ObjectId,
    pub kind: ObjectKind,
}

/// Whether a write changed anything.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[repr(u8)]
pub enum PutOutcome {
    /// Written and durable.
    Stored = 1,
    /// Already held durably; nothing written.
    AlreadyPresent = 2,
}

/// A put is durable on `durable_replicas` nodes (at least the write quorum).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PutAck {
    pub id: ObjectId,
    pub outcome: PutOutcome,
    pub durable_replicas: u8,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Get {
    pub id: ObjectId,
}

/// A found object. Payload: its content.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetOk {
    pub id: ObjectId,
    pub kind: ObjectKind,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Has {
    pub id: ObjectId,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct HasResult {
    pub id: ObjectId,
    pub present: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Delete {
    pub id: ObjectId,
}

/// The tombstone is durable. `existed` tells whether there was a live object.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DeleteAck {
    pub id: ObjectId,
    pub existed: bool,
}

/// Fetch many objects. Answered by one `BatchItem` per id, in any order, as
/// each is read, then one `BatchEnd`; all frames carry the request's id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BatchGet {
    pub ids: Vec<ObjectId>,
}

/// What happened to one id of a batch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum BatchStatus {
    /// Payload holds the content.
    Found(ObjectKind),
    NotFound,
    Failed(ErrorCode),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BatchItem {
    /// Position of `id` in the request's `ids`.
    pub index: u32,
    pub id: ObjectId,
    pub status: BatchStatus,
}

/// End of a batch's stream; counts let the receiver check it saw everything.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BatchEnd {
    pub found: u32,
    pub not_found: u32,
    pub failed: u32,
}

/// Node to node: store a replica. Payload: the object's content.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Replicate {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// Node that coordinates the put.
    pub coordinator: u32,
    /// The coordinator's topology epoch.
    pub topology_epoch: u64,
    /// A replay of a hinted handoff rather than a live put.
    pub hinted: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ReplicateAck {
    pub id: ObjectId,
    pub outcome: PutOutcome,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Ping {
    pub nonce: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Pong {
    pub nonce: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Stats {
    /// Ask for every shard of the node, not just the one answering.
    pub all_shards: bool,
}

/// One named counter or gauge.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StatEntry {
    pub name: String,
    pub shard_id: u16,
    pub value: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StatsReply {
    pub node_id: u32,
    pub shard_count: u16,
    pub topology_epoch: u64,
    pub entries: Vec<StatEntry>,
}

/// Ask a node for the topology it routes by (a client that was given only a
/// seed address, or that saw a newer epoch, learns the cluster this way).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetTopology {
    /// The asker's epoch (0: none), for the node's logs.
    pub known_epoch: u64,
}

/// One node of a [`TopologyReply`] (the topology file's `[[node]]`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct TopologyNode {
    pub id: u32,
    /// `host:port` of the node's shard 0.
    pub address: String,
    pub shards: u16,
}

/// The node's topology; the receiver validates it like a topology file.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct TopologyReply {
    pub epoch: u64,
    pub replication_factor: u8,
    pub write_quorum: u8,
    pub nodes: Vec<TopologyNode>,
}

/// List the ids the answering shard holds, in pages (for `export-git` and
/// verification tools). Ids come in ascending order of their index key;
/// `after` is the previous page's `next`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ListIds {
    pub after: Option<u64>,
    /// Most ids wanted; the node may send fewer (it caps pages) or slightly
    /// more (a page never splits ids that share a key).
    pub max_ids: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct IdList {
    pub ids: Vec<ObjectId>,
    /// Cursor for the next page; `None` when this was the last.
    pub next: Option<u64>,
}

/// A closed range of ring keys (`u64::from_be_bytes(id[0..8])`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RingSpan {
    pub start: u64,
    pub end: u64,
}

/// Anti-entropy, node to node: "give me your digests of these ranges".
/// The answering shard counts only ids that the asking shard owns too
/// (`shard_of(id, requester_shards) == requester_shard`), so two shards of
/// nodes with different shard counts compare exactly what they share.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SyncDigests {
    pub requester_shards: u16,
    pub requester_shard: u16,
    pub ranges: Vec<RingSpan>,
}

/// Count and XOR fingerprint of a range's live ids and tombstones.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SpanDigest {
    pub count: u32,
    pub xor: [u8; 16],
}

/// One digest per requested range, in request order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SyncDigestsReply {
    pub digests: Vec<SpanDigest>,
}

/// Anti-entropy: "list the ids you hold and the ones you deleted in this
/// range" (filtered as for [`SyncDigests`]), at most `max` of them.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SyncList {
    pub requester_shards: u16,
    pub requester_shard: u16,
    pub range: RingSpan,
    pub max: u32,
}

/// An id with a time (unix seconds, the sender's clock).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct TimedId {
    pub id: ObjectId,
    pub at: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SyncListReply {
    /// Ids held.
    pub live: Vec<ObjectId>,
    /// Ids deleted, with the time of the delete.
    pub deleted: Vec<TimedId>,
    /// The held ids that were put again after a delete, with that delete's
    /// time (a subset of `live`).
    pub revived: Vec<TimedId>,
    /// The range held more than `max`: ask for narrower ranges.
    pub truncated: bool,
}

/// Operator: start an anti-entropy pass now (on every shard of the node
/// with `all_shards`, else on the shard that receives it).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Repair {
    pub all_shards: bool,
}

/// The pass was started on `shards` shards (it runs in the background;
/// `stats` shows its progress).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RepairStarted {
    pub shards: u16,
}

/// Ask for a dictionary's bytes (revision 2).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetDictionary {
    pub id: u32,
}

/// A dictionary. Payload: its bytes (a zstd dictionary whose header
/// carries `id`); the receiver checks they do.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DictionaryBytes {
    pub id: u32,
}

/// Operator: store a dictionary durably on every shard of the node, and
/// (with `make_current`) tell clients to compress with it. Payload: its
/// bytes. Answered once every shard holds it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct InstallDictionary {
    pub id: u32,
    pub make_current: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DictionaryInstalled {
    pub id: u32,
    /// Shards that hold it now.
    pub shards: u16,
}

/// A consumer's report (revision 2): the object this node served under `id`
/// does not hash to it. The node checks its record and, if it is damaged,
/// quarantines it and copies a good one from a replica.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ReportCorrupt {
    pub id: ObjectId,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CorruptReported {
    pub id: ObjectId,
    /// The record was found damaged and taken out of service (a repair
    /// from a replica is under way).
    pub quarantined: bool,
}

/// Why a request failed. Numbers are stable across versions.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[repr(u8)]
pub enum ErrorCode {
    NotFound = 1,
    /// The shard is at its in-flight limit; retry later.
    Busy = 2,
    /// The payload does not hash to the id it was sent with.
    HashMismatch = 3,
    /// The object exceeds the node's maximum object size.
    TooLarge = 4,
    /// Authentication is required or failed.
    Unauthorized = 5,
    /// The sender routed by an older topology; `ErrorReply::topology_epoch`
    /// holds the node's.
    StaleTopology = 6,
    /// Fewer than the write quorum (or no replica, for reads) answered; see
    /// `ErrorReply::replicas`.
    Unavailable = 7,
    /// The shard takes no writes (disk full); reads still work.
    ReadOnly = 8,
    /// The shard failed stop after an I/O error it cannot recover from.
    ShardFailed = 9,
    /// The request was well-framed but made no sense (e.g. an empty batch).
    BadRequest = 10,
    UnsupportedVersion = 11,
    Timeout = 12,
    /// The stored bytes failed their checks; the object is quarantined.
    Corrupt = 13,
    Internal = 14,
}

/// What one replica answered, for `Unavailable`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ReplicaFailure {
    pub node_id: u32,
    pub code: ErrorCode,
    pub detail: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub detail: String,
    /// The answering node's topology epoch.
    pub topology_epoch: u64,
    /// Per-replica outcomes (only for `Unavailable`).
    pub replicas: Vec<ReplicaFailure>,
}

impl ErrorReply {
    /// An error with no per-replica detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>, topology_epoch: u64) -> Self {
        Self {
            code,
            detail: detail.into(),
            topology_epoch,
            replicas: Vec::new(),
        }
    }
}
