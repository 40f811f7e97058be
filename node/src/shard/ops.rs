//! The store operations a request turns into, run on the core that owns the
//! object, and how their failures map to wire error codes.
//!
//! Ops and their results are `Send`, so a core that received a request for
//! another core's object can forward the op and get the result back by
//! message (see `mesh.rs`).

use stratum_wire::message::{ErrorCode, PutOutcome as WirePutOutcome, ReplicaFailure};
use stratum_wire::{CodecError, ObjectId};

use crate::store::fs::StoreFs;
use crate::store::{PutOutcome, ShardStore, StoreError, StoredObject, Verified};

/// One store operation.
#[derive(Debug)]
pub enum Op {
    /// Content already checked against its id where it entered the node.
    Put(Verified),
    /// A copy that is not a client's write (a replayed hint, a read
    /// repair's copy from another replica): stored unless this shard holds
    /// a tombstone for the id. The copy may be older than a delete that
    /// reached this replica first, and must not bring the object back; if
    /// it is a re-put after that delete instead, the replicas that took the
    /// re-put directly hold it as revived over the tombstone, and
    /// anti-entropy brings it here.
    PutUnlessDeleted(Verified),
    Get {
        id: ObjectId,
    },
    Has {
        id: ObjectId,
    },
    Delete {
        id: ObjectId,
    },
    /// A consumer found the served copy wrong: check it, quarantine it if
    /// damaged.
    Quarantine {
        id: ObjectId,
    },
}

/// A successful op's result. Object bytes are `Bytes`: shared with the
/// owning core's cache, and `Send`, so a result forwarded from another core
/// moves without a copy.
#[derive(Debug)]
pub enum Done {
    Put(WirePutOutcome),
    Get(Option<StoredObject>),
    Has(bool),
    Delete(bool),
    /// Whether the record was found damaged and unindexed.
    Quarantined(bool),
}

/// A failed op: the wire code and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub code: ErrorCode,
    pub detail: String,
    /// What each replica answered (for `Unavailable` from a coordinator).
    pub replicas: Vec<ReplicaFailure>,
}

impl OpError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            replicas: Vec::new(),
        }
    }
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        let code = match &err {
            StoreError::TooLarge { .. } => ErrorCode::TooLarge,
            StoreError::ReadOnly { .. } => ErrorCode::ReadOnly,
            StoreError::Failed { .. } => ErrorCode::ShardFailed,
            StoreError::HashMismatch { .. } => ErrorCode::HashMismatch,
            StoreError::BadPayload {
                source: CodecError::TooLarge { .. },
                ..
            } => ErrorCode::TooLarge,
            StoreError::BadPayload { .. } => ErrorCode::BadRequest,
            StoreError::Corrupt { .. } => ErrorCode::Corrupt,
            StoreError::WriterGone => ErrorCode::ShardFailed,
            StoreError::Io { .. }
            | StoreError::ShardMismatch { .. }
            | StoreError::BadSuperblock { .. }
            | StoreError::Config(_) => ErrorCode::Internal,
        };
        // Keep the whole cause chain in the detail: the client's operator
        // needs "which file, which errno", not just "internal".
        Self::new(code, crate::logging::error_chain(&err))
    }
}

/// A copy refused over a tombstone is answered as present: its sender (a
/// hint's replay) is done with it, and the object is deleted here.
fn wire_outcome(outcome: PutOutcome) -> WirePutOutcome {
    match outcome {
        PutOutcome::Stored => WirePutOutcome::Stored,
        PutOutcome::AlreadyPresent | PutOutcome::Deleted => WirePutOutcome::AlreadyPresent,
    }
}

/// Runs `op` against the store of the current core.
pub async fn execute<F: StoreFs + 'static>(store: &ShardStore<F>, op: Op) -> Result<Done, OpError> {
    Ok(match op {
        Op::Put(object) => Done::Put(wire_outcome(store.put_verified(object).await?)),
        Op::PutUnlessDeleted(object) => {
            Done::Put(wire_outcome(store.put_unless_deleted(object).await?))
        }
        Op::Get { id } => Done::Get(store.get(&id).await?),
        Op::Has { id } => Done::Has(store.has(&id).await?),
        Op::Delete { id } => Done::Delete(store.delete(id).await?),
        Op::Quarantine { id } => Done::Quarantined(store.quarantine_if_damaged(&id).await?),
    })
}
