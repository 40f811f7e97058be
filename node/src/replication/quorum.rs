//! Where a quorum is counted: a client's put or delete, coordinated by the
//! core that received it.
//!
//! 1. The object's replica set comes from the ring (`Placement`); this node
//!    may or may not be in it (a client with a stale topology still gets a
//!    correctly coordinated write).
//! 2. Gate: every remote replica's link must be ready (connected, or
//!    connectable now). If fewer than W replicas can take the write,
//!    nothing is written anywhere and the client gets `Unavailable` with
//!    what each replica said.
//! 3. Fan out: the local write and one `Replicate` (or `Delete`) per remote
//!    replica start together. The client is answered as soon as W replicas
//!    reported the write durable; the rest finish in the background.
//! 4. A replica that failed gets a durable hint (`handoff`) — but only when
//!    the write was acknowledged: an unacknowledged write is never spread
//!    further.

use std::rc::Rc;

use stratum_wire::codec::Dictionaries;
use stratum_wire::message::{Delete, ErrorCode, MessageRef, PutOutcome, ReplicaFailure, Replicate};
use stratum_wire::{Codec, Message, ObjectId, ObjectKind};

use super::hint_log::{Hint, HintOp};
use super::peer_link::{LinkError, PeerLink};
use super::shard::Shard;
use crate::shard::ops::{Done, Op, OpError};
use crate::store::Verified;

/// A client's write. A put's content was checked against its id where it
/// entered the node, once: replicas get the checked bytes, and this node's
/// store trusts the [`Verified`] instead of hashing them again.
pub enum Write {
    Put(Verified),
    Delete { id: ObjectId },
}

impl Write {
    fn id(&self) -> ObjectId {
        match self {
            Self::Put(object) => object.id(),
            Self::Delete { id } => *id,
        }
    }
}

/// An acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// Replicas that reported the write durable before the answer (≥ W).
    pub replicas: u8,
    /// Put: some replica stored it anew. Delete: some replica held it.
    pub changed: bool,
}

/// What one replica did with the write.
enum Target {
    Local,
    Remote(Rc<PeerLink>),
}

type ReplicaResult = (u32, Result<bool, ReplicaFailure>);

/// Coordinates `write` (see the module comment).
pub async fn coordinate<S: Shard>(core: &Rc<S>, write: Write) -> Result<Acked, OpError> {
    let me = core.config().node_id;
    let id = write.id();
    let placement = core.replication().placement();
    let replicas: Vec<(u32, u16)> = placement
        .replicas(&id)
        .map(|replica| (replica.node.id, replica.shard))
        .collect();
    let quorum = usize::from(placement.topology().write_quorum());
    let epoch = placement.topology().epoch();
    drop(placement);

    // A lone replica that is this node: nothing to coordinate.
    if replicas.len() == 1 && replicas[0].0 == me {
        return local(core, write).await.map(|changed| Acked {
            replicas: 1,
            changed,
        });
    }
    // Gate: who can take the write now.
    let mut failures: Vec<ReplicaFailure> = Vec::new();
    let mut targets: Vec<(u32, Target)> = Vec::new();
    let mut checks = Vec::new();
    for (node, shard) in &replicas {
        if *node == me {
            targets.push((me, Target::Local));
            continue;
        }
        match core.replication().link(*node, *shard) {
            Some(link) => checks.push((
                *node,
                Rc::clone(&link),
                glommio::spawn_local(async move { link.ready().await }),
            )),
            None => failures.push(ReplicaFailure {
                node_id: *node,
                code: ErrorCode::Internal,
                detail: "node missing from the topology".into(),
            }),
        }
    }
    for (node, link, check) in checks {
        match check.await {
            Ok(()) => targets.push((node, Target::Remote(link))),
            Err(err) => failures.push(err.to_failure(node)),
        }
    }
    if targets.len() < quorum {
        core.replication().stats.borrow_mut().quorum_unavailable += 1;
        let mut err = OpError::new(
            ErrorCode::Unavailable,
            format!(
                "only {} of {} replicas of {id} can be reached and the write quorum is {quorum}; nothing was written",
                targets.len(),
                replicas.len()
            ),
        );
        err.replicas = failures;
        return Err(err);
    }

    // Fan out.
    let (object, is_put) = match write {
        Write::Put(object) => (Some(Rc::new(object)), true),
        Write::Delete { .. } => (None, false),
    };
    let (results_tx, results) = flume::unbounded::<ReplicaResult>();
    let fanned = targets.len();
    for (node, target) in targets {
        let task_tx = results_tx.clone();
        let task_core = Rc::clone(core);
        let object = object.clone();
        let task = async move {
            let (core, results_tx) = (task_core, task_tx);
            let result = match target {
                Target::Local => {
                    // The clone shares the bytes and keeps the proof: no
                    // copy, no second hash.
                    let write = match &object {
                        Some(object) => Write::Put(Verified::clone(object)),
                        None => Write::Delete { id },
                    };
                    local(&core, write).await.map_err(|err| ReplicaFailure {
                        node_id: node,
                        code: err.code,
                        detail: err.detail,
                    })
                }
                Target::Remote(link) => {
                    let put = object
                        .as_deref()
                        .map(|o| (o.kind(), o.codec(), o.payload()));
                    let dictionaries = core.store().dictionary_set();
                    remote(&link, me, epoch, id, put, false, &dictionaries)
                        .await
                        .map_err(|err| err.to_failure(node))
                }
            };
            let _ = results_tx.send((node, result));
        };
        // The gate refuses new tasks only while the core shuts down; then the
        // write runs inline rather than being lost.
        match core.replication().background.spawn(task) {
            Ok(handle) => {
                handle.detach();
            }
            Err(_) => {
                let _ = results_tx.send((
                    node,
                    Err(ReplicaFailure {
                        node_id: node,
                        code: ErrorCode::Unavailable,
                        detail: "the coordinator is shutting down".into(),
                    }),
                ));
            }
        };
    }
    drop(results_tx);

    let (mut acks, mut changed, mut answered) = (0usize, false, 0usize);
    // Each replica counts once: one answer per node asked.
    let mut answered_nodes: Vec<u32> = Vec::with_capacity(fanned);
    let mut failed_nodes: Vec<u32> = Vec::new();
    let gate_failed: Vec<u32> = failures.iter().map(|failure| failure.node_id).collect();
    while acks < quorum && acks + (fanned - answered) >= quorum {
        let Ok((node, result)) = results.recv_async().await else {
            break;
        };
        answered += 1;
        debug_assert!(
            !answered_nodes.contains(&node),
            "node {node} answered twice for one write of {id}"
        );
        answered_nodes.push(node);
        match result {
            Ok(did_change) => {
                acks += 1;
                changed |= did_change;
            }
            Err(failure) => {
                failed_nodes.push(node);
                failures.push(failure);
            }
        }
    }
    let acked = acks >= quorum;
    debug_assert!(
        acks <= answered && answered <= fanned,
        "{acks} acks of {answered} answers of {fanned} asked"
    );

    // The stragglers finish in the background; hints for every replica that
    // missed an acknowledged write.
    let finisher_core = Rc::clone(core);
    let finisher = async move {
        let core = finisher_core;
        let mut missed: Vec<u32> = gate_failed;
        missed.extend(failed_nodes);
        while let Ok((node, result)) = results.recv_async().await {
            if let Err(failure) = result {
                tracing::debug!(%id, node, code = ?failure.code, detail = %failure.detail, "replica failed after the answer");
                missed.push(node);
            }
        }
        if !acked {
            return;
        }
        if !missed.is_empty() {
            core.replication().stats.borrow_mut().quorum_partial += 1;
        }
        for node in missed {
            if node == me {
                // Our own shard refused it: read repair will copy it back.
                continue;
            }
            // Hint files hold raw content: a hint is rare, and its replay
            // then suits a peer of any release.
            let dictionaries = core.store().dictionary_set();
            let op = match object
                .as_deref()
                .map(|o| (o.kind(), o.content(&dictionaries)))
            {
                Some((kind, Ok(content))) => HintOp::Put {
                    kind,
                    content: content.into_owned(),
                },
                Some((_, Err(err))) => {
                    tracing::error!(%id, node, error = %err, "cannot inflate a verified payload for its hint; repair will copy it");
                    continue;
                }
                None => HintOp::Delete,
            };
            core.replication()
                .handoff
                .queue(&core.replication().stats, node, &Hint { id, op });
        }
    };
    if let Ok(handle) = core.replication().background.spawn(finisher) {
        handle.detach();
    }

    if acked {
        core.replication().stats.borrow_mut().quorum_acked += 1;
        Ok(Acked {
            replicas: u8::try_from(acks).unwrap_or(u8::MAX),
            changed,
        })
    } else {
        core.replication().stats.borrow_mut().quorum_unavailable += 1;
        let what = if is_put { "put" } else { "delete" };
        let mut err = OpError::new(
            ErrorCode::Unavailable,
            format!(
                "{what} of {id}: {acks} of {} replicas made it durable and the write quorum is {quorum}; not acknowledged",
                replicas.len()
            ),
        );
        err.replicas = failures;
        Err(err)
    }
}

/// The write on this node only (its owning core: here, or forwarded);
/// whether it changed anything. Also how a node-role write is applied.
pub(crate) async fn local<S: Shard>(core: &Rc<S>, write: Write) -> Result<bool, OpError> {
    let (id, op) = match write {
        Write::Put(object) => (object.id(), Op::Put(object)),
        Write::Delete { id } => (id, Op::Delete { id }),
    };
    match core.run_op(&id, op).await? {
        Done::Put(outcome) => Ok(outcome == PutOutcome::Stored),
        Done::Delete(existed) => Ok(existed),
        _ => Err(OpError::new(
            ErrorCode::Internal,
            "internal error: mismatched operation result",
        )),
    }
}

/// The write on a remote replica (`hinted`: a replayed hint). Returns
/// whether it changed anything there.
pub(crate) async fn remote(
    link: &PeerLink,
    me: u32,
    epoch: u64,
    id: ObjectId,
    put: Option<(ObjectKind, Codec, &[u8])>,
    hinted: bool,
    dictionaries: &Dictionaries,
) -> Result<bool, LinkError> {
    let frame = match put {
        Some((kind, codec, payload)) => {
            let message = Message::Replicate(Replicate {
                id,
                kind,
                coordinator: me,
                topology_epoch: epoch,
                hinted,
            });
            link.call_with_object(&message, codec, payload, dictionaries)
                .await?
        }
        None => link.call(&Message::Delete(Delete { id }), &[]).await?,
    };
    match frame.message() {
        MessageRef::ReplicateAck(ack) if ack.id.get() == id => {
            Ok(ack.outcome == stratum_wire::message::ArchivedPutOutcome::Stored)
        }
        MessageRef::DeleteAck(ack) if ack.id.get() == id => Ok(ack.existed),
        other => Err(LinkError::Unexpected(other.kind().name())),
    }
}
