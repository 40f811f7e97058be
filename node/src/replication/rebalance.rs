//! Rebalancing: after a topology change, a shard may hold copies of objects
//! whose replica sets no longer include this node (it was displaced by a new
//! node, or it is leaving). Each such copy is handed to the object's current
//! replicas, then dropped here.
//!
//! Copies go in batches of up to [`BATCH`], in ring order. For a batch, each
//! current replica shard involved is asked once what it holds of the
//! batch's key range (`sync_list`, split further if the answer is cut
//! short), so a tombstone is seen as well as a copy. Then, per object:
//!
//! - a replica that holds it: one confirmation;
//! - a replica that deleted it: this copy is stale; it is dropped and
//!   nothing is sent anywhere (a delete is never undone by a move);
//! - a replica that has neither is sent the copy (`put` as a node, stored
//!   there only, [`SEND_AT_ONCE`] in flight), and its acknowledgement, which
//!   comes only once durable, is a confirmation.
//!
//! Only once `write_quorum` replicas have confirmed is the local copy
//! dropped (a `dropped` record, not a delete; the batch's drops share group
//! commits). Until then every read that misses on the new replicas can still
//! find it here (`read_repair::fetch_moved`). A replica that does not answer
//! (down, or too old to know `sync_list`) confirms nothing: the copy stays,
//! and the next pass tries again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use stratum_wire::message::{Put, RingSpan, SyncList};
use stratum_wire::placement::Placement;
use stratum_wire::{Message, MessageRef, ObjectId};

use super::peer_link::PeerLink;
use super::shard::Shard;
use super::transfer::{MAX_LIST, OBJECT_COST};
use crate::store::holdings::RingRange;

/// Copies handed off per batch.
const BATCH: usize = 2048;
/// Copies sent to replicas at once.
const SEND_AT_ONCE: usize = 32;

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
    /// What the pacing counts: bytes sent, and [`COPY_COST`] for every copy
    /// looked at (asking and dropping cost the cluster work even when
    /// nothing is sent).
    paced: u64,
}

/// Bytes of pacing budget one copy costs, sent or not.
const COPY_COST: u64 = OBJECT_COST;

/// What one replica shard holds of a range.
struct Held {
    live: HashSet<ObjectId>,
    deleted: HashSet<ObjectId>,
}

/// Hands off every copy this shard holds for objects it no longer
/// replicates, at most `repair_bytes_per_sec`, until none is left or a
/// batch makes no progress.
pub async fn pass<S: Shard>(core: &Rc<S>) -> HandoffReport {
    let mut report = HandoffReport {
        backlog: displaced_count(core),
        ..HandoffReport::default()
    };
    core.replication().stats.borrow_mut().rebalance_backlog = report.backlog;
    let started = crate::clock::now();
    let mut after: Option<ObjectId> = None;
    while report.backlog > 0 {
        let placement = core.replication().placement();
        let me = core.config().node_id;
        let batch: Vec<ObjectId> = core
            .store()
            .holdings()
            .live_after(after)
            .filter(|id| !placement.is_replica(me, id))
            .take(BATCH)
            .copied()
            .collect();
        let Some(last) = batch.last().copied() else {
            break;
        };
        hand_off(core, &placement, &batch, &mut report, started).await;
        core.replication().stats.borrow_mut().rebalance_backlog = report
            .backlog
            .saturating_sub(report.handed_off + report.stale);
        // Batches that could not be placed (a replica down) are passed over,
        // so the ones after them still move; the next pass retries them.
        after = Some(last);
    }
    let left = displaced_count(core);
    let mut stats = core.replication().stats.borrow_mut();
    stats.rebalance_backlog = left;
    stats.rebalance_handed_off += report.handed_off;
    stats.rebalance_sent += report.sent;
    stats.rebalance_stale += report.stale;
    report
}

/// Copies held here of objects this node does not replicate now.
fn displaced_count<S: Shard>(core: &S) -> u64 {
    let placement = core.replication().placement();
    let me = core.config().node_id;
    core.store()
        .holdings()
        .live()
        .filter(|id| !placement.is_replica(me, id))
        .count() as u64
}

/// One batch (ids in ring order): ask, send, drop.
async fn hand_off<S: Shard>(
    core: &Rc<S>,
    placement: &Placement,
    batch: &[ObjectId],
    report: &mut HandoffReport,
    started: Instant,
) {
    let me = core.config().node_id;
    let quorum = usize::from(placement.topology().write_quorum());
    let mut by_target: BTreeMap<(u32, u16), Vec<ObjectId>> = BTreeMap::new();
    for id in batch {
        for replica in placement.replicas(id) {
            if replica.node.id != me {
                by_target
                    .entry((replica.node.id, replica.shard))
                    .or_default()
                    .push(*id);
            }
        }
    }
    let mut confirmed: HashMap<ObjectId, usize> = HashMap::new();
    let mut stale: HashSet<ObjectId> = HashSet::new();
    for ((node, shard), ids) in by_target {
        let Some(link) = core.replication().link(node, shard) else {
            continue;
        };
        let Some(held) = held_by(&link, &ids).await else {
            tracing::debug!(
                node,
                shard,
                "rebalance: replica did not answer; copies kept"
            );
            continue;
        };
        let mut to_send = Vec::new();
        for id in ids {
            if held.deleted.contains(&id) {
                stale.insert(id);
            } else if held.live.contains(&id) {
                *confirmed.entry(id).or_default() += 1;
            } else {
                to_send.push(id);
            }
        }
        for chunk in to_send.chunks(SEND_AT_ONCE) {
            let sent =
                futures_util::future::join_all(chunk.iter().map(|id| send(core, &link, *id))).await;
            for (id, bytes) in chunk.iter().zip(sent) {
                if let Some(bytes) = bytes {
                    *confirmed.entry(*id).or_default() += 1;
                    report.sent += 1;
                    report.bytes += bytes;
                    report.paced += bytes.saturating_sub(COPY_COST);
                }
            }
            pace(core, report.paced, started).await;
        }
    }
    let done: Vec<(ObjectId, bool)> = batch
        .iter()
        .filter_map(|id| {
            if stale.contains(id) {
                Some((*id, true))
            } else if confirmed.get(id).copied().unwrap_or(0) >= quorum {
                Some((*id, false))
            } else {
                None
            }
        })
        .collect();
    let dropped =
        futures_util::future::join_all(done.iter().map(|(id, _)| core.store().drop_copy(*id)))
            .await;
    report.paced += batch.len() as u64 * COPY_COST;
    pace(core, report.paced, started).await;
    for ((id, was_stale), result) in done.iter().zip(dropped) {
        match result {
            Ok(_) if *was_stale => report.stale += 1,
            Ok(_) => report.handed_off += 1,
            Err(err) => {
                tracing::warn!(shard = core.shard_id(), %id, error = %err, "cannot drop a handed-off copy")
            }
        }
    }
}

/// What the replica shard behind `link` holds of the key range `ids` span
/// (ids in ring order), asked with `sync_list` and split while the answer is
/// cut short. `None` if it does not answer.
async fn held_by(link: &PeerLink, ids: &[ObjectId]) -> Option<Held> {
    let (first, last) = (ids.first()?, ids.last()?);
    let mut held = Held {
        live: HashSet::new(),
        deleted: HashSet::new(),
    };
    let mut ranges = vec![RingRange {
        start: first.ring_key(),
        end: last.ring_key(),
    }];
    while let Some(range) = ranges.pop() {
        let query = Message::SyncList(SyncList {
            // The whole range, whatever shard rule the asker has.
            requester_shards: 1,
            requester_shard: 0,
            range: RingSpan {
                start: range.start,
                end: range.end,
            },
            max: MAX_LIST,
        });
        let frame = link.call(&query, &[]).await.ok()?;
        let Ok(Message::SyncListReply(listing)) = frame.to_message() else {
            return None;
        };
        if listing.truncated && range.start != range.end {
            ranges.extend(range.split(2));
            continue;
        }
        held.live.extend(listing.live);
        held.deleted
            .extend(listing.deleted.iter().map(|deleted| deleted.id));
    }
    Some(held)
}

/// Sends this shard's copy of `id`; its size once the replica has it
/// durably.
async fn send<S: Shard>(core: &S, link: &PeerLink, id: ObjectId) -> Option<u64> {
    let object = match core.store().get(&id).await {
        Ok(Some(object)) => object,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(%id, error = %err, "rebalance: cannot read the copy to hand off");
            return None;
        }
    };
    let put = Message::Put(Put {
        id,
        kind: object.kind,
    });
    match link
        .call_with_object(
            &put,
            object.codec,
            &object.payload,
            &core.store().dictionary_set(),
        )
        .await
    {
        Ok(frame) if matches!(frame.message(), MessageRef::PutAck(_)) => {
            Some(object.payload.len() as u64)
        }
        Ok(_) => None,
        Err(err) => {
            tracing::debug!(%id, error = %err, "rebalance: replica refused the copy");
            None
        }
    }
}

/// Holds hand-off work to `repair_bytes_per_sec` (see [`COPY_COST`]).
async fn pace<S: Shard>(core: &S, bytes: u64, started: Instant) {
    let rate = core.config().replication.repair_bytes_per_sec.max(1);
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    let elapsed = crate::clock::since(started);
    if due > elapsed + Duration::from_millis(1) {
        crate::clock::sleep(due - elapsed).await;
    }
}
