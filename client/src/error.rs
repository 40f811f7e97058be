//! What can go wrong, typed, with causes kept.
//!
//! Two levels: [`AttemptError`] is what one request to one node produced
//! (the I/O threads and the node's answer); [`ClientError`] is what an
//! operation as a whole returns after failover and retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stratum_wire::message::ErrorCode;
use stratum_wire::{FrameError, ObjectId, TopologyError};

/// Where a request went: a node and one of its shards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub node_id: u32,
    pub shard: u16,
    /// `host:port` of that shard.
    pub address: String,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} shard {} ({})",
            self.node_id, self.shard, self.address
        )
    }
}

/// What one request to one peer produced when it did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// No connection: the connect failed (or failed recently: the client
    /// waits out a backoff before trying that peer again, instead of letting
    /// every request stampede a dead peer).
    #[error("cannot connect: {source}")]
    Connect {
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The cluster secret is missing or wrong (on either side): retrying
    /// cannot help.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke with the request in flight (the node may or
    /// may not have carried it out).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer sent bytes that are not our protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's answer was a well-formed frame of the wrong kind.
    #[error("unexpected answer: {0}")]
    UnexpectedReply(String),
    /// The node answered with an error.
    #[error("{code:?}: {detail}")]
    Node { code: ErrorCode, detail: String },
    /// The node does not hold the object.
    #[error("not found")]
    NotFound,
    /// The node sent bytes that do not hash to the id asked for.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// Too many requests queued on this client for that peer.
    #[error("client-side queue for this peer is full")]
    Overloaded,
    #[error("the client is shut down")]
    Closed,
}

impl AttemptError {
    pub(crate) fn protocol(err: &FrameError) -> Self {
        Self::Protocol(err.to_string())
    }

    /// Whether another replica, or the same one later, might succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Node { code, .. } => matches!(
                code,
                ErrorCode::Busy
                    | ErrorCode::Unavailable
                    | ErrorCode::Timeout
                    | ErrorCode::ShardFailed
                    | ErrorCode::ReadOnly
                    | ErrorCode::StaleTopology
                    | ErrorCode::Internal
                    | ErrorCode::Corrupt
            ),
            Self::Closed => false,
            _ => true,
        }
    }
}

/// One replica's part in a failed operation.
#[derive(Debug, Clone)]
pub struct ReplicaAttempt {
    pub peer: Peer,
    pub error: AttemptError,
}

impl fmt::Display for ReplicaAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.peer, self.error)
    }
}

fn list(attempts: &[ReplicaAttempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a client operation returns when it fails.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No replica holds the object (each one that answered said so).
    #[error("object {id} not found")]
    NotFound { id: ObjectId },
    /// The only replica did not answer in time.
    #[error("{peer} did not answer within {after:?}")]
    Timeout { peer: Peer, after: Duration },
    /// No replica could serve the request; what each said, in order tried.
    #[error("unavailable: {}", list(.attempts))]
    Unavailable { attempts: Vec<ReplicaAttempt> },
    /// The node refused the request and retrying cannot help (bad hash,
    /// object too large, unauthorized, ...).
    #[error("{peer} rejected the request: {code:?}: {detail}")]
    Rejected {
        peer: Peer,
        code: ErrorCode,
        detail: String,
    },
    /// Every copy that answered failed its integrity check.
    #[error("object {id} is corrupt: {}", list(.attempts))]
    Corrupt {
        id: ObjectId,
        attempts: Vec<ReplicaAttempt>,
    },
    /// A peer broke the protocol.
    #[error("protocol error with {peer}: {reason}")]
    Protocol { peer: Peer, reason: String },
    /// The object is larger than the cluster accepts (checked before
    /// anything is sent).
    #[error("object of {len} bytes exceeds the maximum object size of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    #[error("topology: {0}")]
    Topology(#[from] TopologyError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the client is shut down")]
    Closed,
}

impl ClientError {
    /// The error for an operation whose every attempt failed. One attempt's
    /// own error is passed through when it says more than "unavailable".
    pub(crate) fn from_attempts(id: Option<ObjectId>, attempts: Vec<ReplicaAttempt>) -> Self {
        if attempts.is_empty() {
            return Self::Unavailable { attempts };
        }
        if let Some(id) = id {
            if attempts
                .iter()
                .all(|attempt| matches!(attempt.error, AttemptError::NotFound))
            {
                return Self::NotFound { id };
            }
            // A node refusing its own damaged copy (`corrupt`) and a copy
            // that failed our hash check are both corruption.
            if attempts.iter().all(|attempt| {
                matches!(
                    attempt.error,
                    AttemptError::Corrupt(_)
                        | AttemptError::NotFound
                        | AttemptError::Node {
                            code: ErrorCode::Corrupt,
                            ..
                        }
                )
            }) {
                return Self::Corrupt { id, attempts };
            }
        }
        if let Some(AttemptError::Unauthorized(detail)) = attempts
            .iter()
            .all(|attempt| matches!(attempt.error, AttemptError::Unauthorized(_)))
            .then(|| &attempts[0].error)
        {
            return Self::Rejected {
                peer: attempts[0].peer.clone(),
                code: ErrorCode::Unauthorized,
                detail: detail.clone(),
            };
        }
        if attempts
            .iter()
            .all(|attempt| matches!(attempt.error, AttemptError::Closed))
        {
            return Self::Closed;
        }
        if let [only] = &attempts[..] {
            match &only.error {
                AttemptError::Timeout(after) => {
                    return Self::Timeout {
                        peer: only.peer.clone(),
                        after: *after,
                    }
                }
                AttemptError::Protocol(reason) | AttemptError::UnexpectedReply(reason) => {
                    return Self::Protocol {
                        peer: only.peer.clone(),
                        reason: reason.clone(),
                    }
                }
                _ => {}
            }
        }
        Self::Unavailable { attempts }
    }
}
