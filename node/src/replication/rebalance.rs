//! Rebalancing: after a topology change, a shard may hold copies of objects
//! whose replica sets no longer include this node (it was displaced by a new
//! node, or it is leaving the cluster). Each such copy is handed to the
//! object's current replicas, then dropped here.
//!
//! For one object, in replica-set order, each current replica's owning
//! shard is asked what it holds of the id (`sync_list` over the id's single
//! ring key, so a tombstone is seen too):
//!
//! - it holds the object: one confirmation;
//! - it deleted the object: this copy is stale; it is dropped and nothing
//!   is sent anywhere (a delete is never undone by a move);
//! - neither: the copy is sent (`put` as a node, stored there only) and its
//!   acknowledgement, which comes only once durable, is a confirmation.
//!
//! Only once `write_quorum` replicas have confirmed is the local copy
//! dropped (a `dropped` record, not a delete). Until then every read that
//! misses on the new replicas can still find it here (`read_repair`'s
//! fallback to earlier placements). A peer that does not answer (down, or
//! too old to know `sync_list`) confirms nothing: the copy stays, and the
//! next pass tries again.

use std::rc::Rc;
use std::time::{Duration, Instant};

use stratum_wire::message::{Put, RingSpan, SyncList};
use stratum_wire::placement::Placement;
use stratum_wire::{Message, MessageRef, ObjectId};

use crate::server::core::Core;

/// Objects handed off per batch (the holdings are scanned once per batch).
const BATCH: usize = 256;

/// What one hand-off pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandoffReport {
    /// Copies held here that this node no longer replicates, at the start.
    pub backlog: u64,
    /// Copies dropped after `write_quorum` replicas confirmed them.
    pub handed_off: u64,
    /// Copies sent to a replica that lacked them.
    pub sent: u64,
    pub bytes: u64,
    /// Copies dropped because a replica had deleted the object.
    pub stale: u64,
}

/// What the replicas said of one object.
enum Verdict {
    Confirmed(usize),
    Deleted,
}

/// Hands off every copy this shard holds for objects it no longer
/// replicates, at most `repair_bytes_per_sec`, until none is left or a
/// batch makes no progress.
pub async fn pass(core: &Rc<Core>) -> HandoffReport {
    let mut report = HandoffReport::default();
    let started = Instant::now();
    loop {
        let placement = core.replication.placement();
        let me = core.config.node_id;
        let (backlog, batch) = {
            let holdings = core.store.holdings();
            let mut displaced = holdings.live().filter(|id| !placement.is_replica(me, id));
            let batch: Vec<ObjectId> = displaced.by_ref().take(BATCH).copied().collect();
            (batch.len() as u64 + displaced.count() as u64, batch)
        };
        if report.backlog == 0 {
            report.backlog = backlog;
        }
        core.replication.stats.borrow_mut().rebalance_backlog = backlog;
        if batch.is_empty() {
            break;
        }
        let before = report.handed_off + report.stale;
        for id in batch {
            hand_off(core, &placement, id, &mut report).await;
            pace(core, report.bytes, started).await;
        }
        if report.handed_off + report.stale == before {
            break; // nobody confirmed anything: try again next pass
        }
    }
    let mut stats = core.replication.stats.borrow_mut();
    stats.rebalance_handed_off += report.handed_off;
    stats.rebalance_sent += report.sent;
    stats.rebalance_stale += report.stale;
    report
}

async fn hand_off(
    core: &Rc<Core>,
    placement: &Placement,
    id: ObjectId,
    report: &mut HandoffReport,
) {
    let quorum = usize::from(placement.topology().write_quorum());
    match place(core, placement, id, quorum, report).await {
        Verdict::Confirmed(confirmed) if confirmed >= quorum => {
            if drop_copy(core, id).await {
                report.handed_off += 1;
            }
        }
        Verdict::Confirmed(_) => {}
        Verdict::Deleted => {
            if drop_copy(core, id).await {
                report.stale += 1;
            }
        }
    }
}

async fn drop_copy(core: &Core, id: ObjectId) -> bool {
    match core.store.drop_copy(id).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(shard = core.shard_id, %id, error = %err, "cannot drop a handed-off copy");
            false
        }
    }
}

/// Asks the object's replicas, sending the copy to those that lack it,
/// until `quorum` confirmed it or one says it was deleted.
async fn place(
    core: &Rc<Core>,
    placement: &Placement,
    id: ObjectId,
    quorum: usize,
    report: &mut HandoffReport,
) -> Verdict {
    let me = core.config.node_id;
    let mut confirmed = 0;
    let targets: Vec<(u32, u16)> = placement
        .replicas(&id)
        .filter(|replica| replica.node.id != me)
        .map(|replica| (replica.node.id, replica.shard))
        .collect();
    for (node, shard) in targets {
        let Some(link) = core.replication.link(node, shard) else {
            continue;
        };
        let key = id.ring_key();
        let query = Message::SyncList(SyncList {
            requester_shards: 1,
            requester_shard: 0,
            range: RingSpan {
                start: key,
                end: key,
            },
            max: 64,
        });
        let listing = match link.call(&query, &[]).await {
            Ok(frame) => match frame.to_message() {
                Ok(Message::SyncListReply(listing)) => listing,
                _ => continue,
            },
            Err(err) => {
                tracing::debug!(%id, node, error = %err, "rebalance: replica did not answer");
                continue;
            }
        };
        if listing.deleted.iter().any(|deleted| deleted.id == id) {
            return Verdict::Deleted;
        }
        if listing.live.contains(&id) || send(core, &link, id, report).await {
            confirmed += 1;
            if confirmed >= quorum {
                break;
            }
        }
    }
    Verdict::Confirmed(confirmed)
}

/// Sends this shard's copy of `id`; true once the replica has it durably.
async fn send(
    core: &Core,
    link: &super::peer_link::PeerLink,
    id: ObjectId,
    report: &mut HandoffReport,
) -> bool {
    let object = match core.store.get(&id).await {
        Ok(Some(object)) => object,
        Ok(None) => return false,
        Err(err) => {
            tracing::warn!(%id, error = %err, "rebalance: cannot read the copy to hand off");
            return false;
        }
    };
    let put = Message::Put(Put {
        id,
        kind: object.kind,
    });
    match link.call(&put, &object.content).await {
        Ok(frame) if matches!(frame.message(), MessageRef::PutAck(_)) => {
            report.sent += 1;
            report.bytes += object.content.len() as u64;
            true
        }
        Ok(_) => false,
        Err(err) => {
            tracing::debug!(%id, error = %err, "rebalance: replica refused the copy");
            false
        }
    }
}

/// Holds hand-off traffic to `repair_bytes_per_sec`.
async fn pace(core: &Core, bytes: u64, started: Instant) {
    let rate = core.config.replication.repair_bytes_per_sec.max(1);
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    let elapsed = started.elapsed();
    if due > elapsed + Duration::from_millis(1) {
        glommio::timer::sleep(due - elapsed).await;
    }
}
