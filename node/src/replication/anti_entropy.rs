//! Anti-entropy: each core makes its shard agree with the shards of its
//! peers that replicate the same objects, so copies lost to a wiped disk, a
//! dropped hint or a topology change come back without a client asking.
//!
//! A pass, on core `s` of node `A`, for every other node `B` and every shard
//! `t` of `B` that can share ids with `s`:
//!
//! 1. The shared ranges: the ring ranges whose replica sets hold both `A`
//!    and `B` (`Placement::shared_ranges`), restricted on each side to the
//!    ids that both shard rules send to `s` and `t`.
//! 2. Digests of those ranges, ours from our holdings and theirs by one
//!    `sync_digests` request on a connection of its own (an older peer that
//!    does not know the message closes it; only this pass fails).
//! 3. Equal digests: done with that range. A range that differs is split in
//!    16 and compared again, until it holds at most [`LEAF`] members on
//!    either side; then both sides' members are listed (`sync_list`). A
//!    range one side holds nothing of (a wiped or new node) is listed at
//!    once, in parts of about [`LIST_TARGET`] members.
//! 4. For each listed id: one `B` holds and we neither hold nor deleted is
//!    fetched (`batch_get` as a node, so `B` reads only its own store),
//!    verified against its id, and stored; one `B` deleted is deleted here too unless
//!    we put it again after a delete of our own (a revival).
//!
//! Pulling only: `B`'s own pass fetches what `B` lacks. Fetches are paced to
//! `repair_bytes_per_sec` per core, so repair never starves client traffic.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use stratum_wire::message::{
    ArchivedBatchStatus, BatchGet, ErrorCode, GetDictionary, RingSpan, SpanDigest, SyncDigests,
    SyncDigestsReply, SyncList, SyncListReply, TimedId,
};
use stratum_wire::placement::{shard_of, NodeSpec, Placement};
use stratum_wire::{Frame, FrameEncoder, Message, MessageRef, ObjectId, ObjectKind};

use super::dial::{dial, DialError};
use super::shard::Shard;
use super::transfer::{MAX_LIST, OBJECT_COST};
use crate::net::frame_reader::{FrameReader, ReadError};
use crate::net::stream::BoxStream;
use crate::shard::ops::OpError;
use crate::store::holdings::{Digest, Holdings, RingRange};
use crate::store::PutOutcome;

/// A range with at most this many members on either side is listed
/// instead of split further.
pub const LEAF: u32 = 128;
/// Most ranges in one `sync_digests` request (and digests in its reply).
pub const MAX_RANGES: usize = 4096;
/// Members aimed at per listing when one side of a range is empty (half
/// of [`super::transfer::MAX_LIST`], so uneven parts still fit).
const LIST_TARGET: u32 = 2048;
/// Most objects fetched by one `batch_get`.
const FETCH_BATCH: usize = 256;
/// How many parts a differing range is split into.
const FANOUT: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("cannot reach the peer")]
    Dial(#[from] DialError),
    #[error("peer connection failed")]
    Read(#[from] ReadError),
    #[error("peer connection failed")]
    Write(#[source] std::io::Error),
    #[error("peer closed the connection (a node older than anti-entropy closes on sync requests)")]
    Closed,
    #[error("peer answered {code:?}: {detail}")]
    Refused { code: ErrorCode, detail: String },
    #[error("peer answered with a {0} frame")]
    Unexpected(&'static str),
    #[error("peer sent {got} digests for {sent} ranges")]
    DigestCount { sent: usize, got: usize },
    #[error("peer sent object {id} that does not verify")]
    BadObject { id: ObjectId },
    #[error("local store refused the repair")]
    Store(#[source] crate::store::StoreError),
}

/// What one pass with one peer shard did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassReport {
    pub ranges_compared: u64,
    pub fetched: u64,
    pub bytes: u64,
    pub tombstones: u64,
    /// Bytes both ways on the pass's connection, objects included.
    pub wire_bytes: u64,
}

impl PassReport {
    fn in_sync(&self) -> bool {
        self.fetched == 0 && self.tombstones == 0
    }
}

fn span(range: RingRange) -> RingSpan {
    RingSpan {
        start: range.start,
        end: range.end,
    }
}

fn range(span: &RingSpan) -> RingRange {
    RingRange {
        start: span.start,
        end: span.end,
    }
}

fn wire_digest(digest: Digest) -> SpanDigest {
    SpanDigest {
        count: digest.count,
        xor: digest.xor,
    }
}

/// The asking shard's filter: ids its own shard rule sends to it.
fn owned_by(shards: u16, shard: u16) -> impl Fn(&ObjectId) -> bool {
    move |id| shard_of(id, shards) == shard
}

/// Answers a peer's `sync_digests` from this shard's holdings.
pub fn answer_digests(
    holdings: &Holdings,
    request: &SyncDigests,
) -> Result<SyncDigestsReply, OpError> {
    if request.ranges.len() > MAX_RANGES || request.requester_shards == 0 {
        return Err(OpError::new(
            ErrorCode::BadRequest,
            format!(
                "sync_digests takes 1 to {MAX_RANGES} ranges and a shard count above 0 ({} ranges, {} shards)",
                request.ranges.len(),
                request.requester_shards
            ),
        ));
    }
    let keep = owned_by(request.requester_shards, request.requester_shard);
    let digests = request
        .ranges
        .iter()
        .map(|span| wire_digest(holdings.digest(range(span), &keep)))
        .collect();
    Ok(SyncDigestsReply { digests })
}

/// Answers a peer's `sync_list` from this shard's holdings.
pub fn answer_list(holdings: &Holdings, request: &SyncList) -> SyncListReply {
    let keep = owned_by(request.requester_shards.max(1), request.requester_shard);
    let listing = holdings.list(
        range(&request.range),
        keep,
        request.max.min(MAX_LIST) as usize,
    );
    let timed = |list: Vec<(ObjectId, u64)>| -> Vec<TimedId> {
        list.into_iter()
            .map(|(id, at)| TimedId { id, at })
            .collect()
    };
    SyncListReply {
        live: listing.live,
        deleted: timed(listing.deleted),
        revived: timed(listing.revived),
        truncated: listing.truncated,
    }
}

/// Runs a pass every `repair_interval` (if set) and whenever one is asked
/// for (`repair`), until the core stops.
pub async fn run<S: Shard>(core: Rc<S>) {
    let interval = core.config().replication.repair_interval;
    loop {
        // The first pass too waits an interval: peers usually start together.
        let timer = async {
            match interval {
                Some(interval) => crate::clock::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        futures_lite::future::or(timer, core.replication().repair_requested()).await;
        pass(&core).await;
        let moved = super::rebalance::pass(&core).await;
        if moved.handed_off + moved.stale > 0 {
            tracing::info!(
                shard = core.shard_id(),
                handed_off = moved.handed_off,
                sent = moved.sent,
                stale = moved.stale,
                left = core.replication().stats.borrow().rebalance_backlog,
                "rebalance: handed copies to their current replicas"
            );
        }
    }
}

/// One pass against every peer shard this shard shares ranges with.
pub async fn pass<S: Shard>(core: &Rc<S>) {
    let placement = core.replication().placement();
    let me = core.config().node_id;
    let (my_shards, my_shard) = (core.config().shards, core.shard_id());
    let mut peers = 0;
    let mut in_sync = 0;
    for (node, shared) in
        other_nodes_with(&placement, me, |node| placement.shared_ranges(me, node.id))
    {
        for (address, peer) in peer_shards(node, my_shards, my_shard) {
            let shard = peer.shard;
            peers += 1;
            match with_peer(core, &address, peer, &shared).await {
                Ok(report) => {
                    if report.in_sync() {
                        in_sync += 1;
                    } else {
                        tracing::info!(
                            shard = my_shard,
                            peer_node = node.id,
                            peer_shard = shard,
                            fetched = report.fetched,
                            bytes = report.bytes,
                            tombstones = report.tombstones,
                            ranges = report.ranges_compared,
                            "anti-entropy repaired this shard from a peer"
                        );
                    }
                }
                Err(err) => {
                    core.replication().stats.borrow_mut().repair_failures += 1;
                    tracing::debug!(shard = my_shard, peer_node = node.id, peer_shard = shard, error = %err, "anti-entropy pass failed; retried next interval");
                }
            }
        }
    }
    pull_from_displaced(core).await;
    let mut stats = core.replication().stats.borrow_mut();
    stats.repair_peers = peers;
    stats.repair_peers_in_sync = in_sync;
    stats.repair_passes += 1;
}

/// After a topology change, a node that was a replica of a range and no
/// longer is still holds what it learned there until rebalancing has
/// handed its copies on, and its tombstones until the grace period ends.
/// A delete that only such a node holds (the new replicas missed it, or
/// lost it with a disk) would never reach the new replica set:
/// rebalancing hands off copies, not tombstones. So each pass also pulls,
/// for the ranges this shard replicates, from every other node of the
/// topology that does not replicate them; the usual rules order deletes
/// and copies by their times. A node that holds nothing there answers
/// with empty digests and costs one request.
async fn pull_from_displaced<S: Shard>(core: &Rc<S>) {
    let placement = core.replication().placement();
    let me = core.config().node_id;
    let (my_shards, my_shard) = (core.config().shards, core.shard_id());
    let mine = placement.shared_ranges(me, me);
    for (node, shared) in other_nodes_with(&placement, me, |node| {
        subtract(&mine, &placement.shared_ranges(me, node.id))
    }) {
        for (address, peer) in peer_shards(node, my_shards, my_shard) {
            let shard = peer.shard;
            match with_peer(core, &address, peer, &shared).await {
                Ok(report) if !report.in_sync() => tracing::info!(
                    shard = my_shard,
                    peer_node = node.id,
                    peer_shard = shard,
                    fetched = report.fetched,
                    tombstones = report.tombstones,
                    "anti-entropy repaired this shard from a node that no longer replicates its ranges"
                ),
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(shard = my_shard, peer_node = node.id, peer_shard = shard, error = %err, "anti-entropy with a displaced replica failed")
                }
            }
        }
    }
}

/// Every node of the topology but `me`, with the ring ranges `ranges`
/// gives for it; nodes it gives none are left out.
fn other_nodes_with(
    placement: &Placement,
    me: u32,
    ranges: impl Fn(&NodeSpec) -> Vec<(u64, u64)>,
) -> Vec<(&NodeSpec, Vec<RingRange>)> {
    placement
        .topology()
        .nodes()
        .iter()
        .filter(|node| node.id != me)
        .filter_map(|node| {
            let shared: Vec<RingRange> = ranges(node)
                .into_iter()
                .map(|(start, end)| RingRange { start, end })
                .collect();
            (!shared.is_empty()).then_some((node, shared))
        })
        .collect()
}

/// The shards of `node` that can hold ids this shard holds, with their
/// addresses. With equal shard counts the same rule sends an id to the
/// same shard on both nodes: only shard `s` can share ids with `s`.
fn peer_shards(
    node: &NodeSpec,
    my_shards: u16,
    my_shard: u16,
) -> impl Iterator<Item = (String, Peer)> + '_ {
    (0..node.shards)
        .filter(move |shard| node.shards != my_shards || *shard == my_shard)
        .filter_map(move |shard| {
            let address = node.shard_address(shard)?;
            let peer = Peer {
                node: node.id,
                shards: node.shards,
                shard,
            };
            Some((address, peer))
        })
}

/// The parts of `a` not in `b` (both sorted lists of disjoint closed
/// ranges).
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(start, end) in a {
        let mut from = Some(start);
        for &(cut_start, cut_end) in b {
            let Some(at) = from else { break };
            if cut_end < at || cut_start > end {
                continue;
            }
            if cut_start > at {
                out.push((at, cut_start - 1));
            }
            from = cut_end.checked_add(1).filter(|next| *next <= end);
        }
        if let Some(at) = from {
            out.push((at, end));
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    node: u32,
    shards: u16,
    shard: u16,
}

/// A request-reply connection to one peer shard, for one pass.
struct Session {
    stream: BoxStream,
    reader: FrameReader,
    encoder: FrameEncoder,
    next_id: u64,
    out: Vec<u8>,
    /// Fetched bytes since `started`, held to `repair_bytes_per_sec`.
    paced: u64,
    started: Instant,
    /// Bytes sent and received on this connection (frames whole).
    wire_bytes: u64,
}

impl Session {
    async fn call(&mut self, message: &Message) -> Result<Frame, RepairError> {
        self.send(message).await?;
        self.recv().await
    }

    async fn send(&mut self, message: &Message) -> Result<(), RepairError> {
        self.next_id += 1;
        self.out.clear();
        self.encoder
            .encode(&mut self.out, self.next_id, message, &[])
            .map_err(|err| RepairError::Write(std::io::Error::other(err.to_string())))?;
        self.wire_bytes += self.out.len() as u64;
        self.stream
            .write_all(&self.out)
            .await
            .map_err(RepairError::Write)
    }

    /// The next frame; an `error` frame is returned as [`RepairError::Refused`].
    async fn recv(&mut self) -> Result<Frame, RepairError> {
        let frame = self
            .reader
            .next_frame(&mut *self.stream, std::future::pending())
            .await?
            .ok_or(RepairError::Closed)?;
        self.wire_bytes += frame.header().frame_len();
        if let MessageRef::Error(err) = frame.message() {
            let code = match frame.to_message() {
                Ok(Message::Error(reply)) => {
                    return Err(RepairError::Refused {
                        code: reply.code,
                        detail: reply.detail,
                    })
                }
                _ => ErrorCode::Internal,
            };
            return Err(RepairError::Refused {
                code,
                detail: err.detail.to_string(),
            });
        }
        Ok(frame)
    }
}

async fn with_peer<S: Shard>(
    core: &Rc<S>,
    address: &str,
    peer: Peer,
    shared: &[RingRange],
) -> Result<PassReport, RepairError> {
    let (stream, reader, greeting) =
        dial(address, peer.node, peer.shard, &core.replication().settings).await?;
    let mut session = Session {
        stream,
        reader,
        encoder: FrameEncoder::new(core.replication().settings.frame_limits),
        next_id: 0,
        out: Vec::new(),
        paced: 0,
        started: crate::clock::now(),
        wire_bytes: 0,
    };
    fetch_dictionaries(core, &mut session, &greeting.dictionaries).await?;
    let mut report = PassReport::default();
    let keep = owned_by(peer.shards, peer.shard);
    let mut pending: Vec<RingRange> = shared.to_vec();
    let mut to_list: Vec<RingRange> = Vec::new();
    while !pending.is_empty() || !to_list.is_empty() {
        if let Some(range) = to_list.pop() {
            if !reconcile(core, &mut session, range, &mut report).await? {
                to_list.extend(range.split(FANOUT));
            }
            continue;
        }
        let take = pending.len().min(MAX_RANGES);
        let batch: Vec<RingRange> = pending.drain(..take).collect();
        let theirs = their_digests(core, &mut session, &batch).await?;
        report.ranges_compared += batch.len() as u64;
        for (range, their) in batch.into_iter().zip(theirs) {
            let ours = core.store().holdings().digest(range, &keep);
            // Pulling only: a range the peer holds nothing of has nothing
            // to give (what it lacks, its own pass fetches).
            if ours == their || their.count == 0 {
                continue;
            }
            let (fewer, more) = (ours.count.min(their.count), ours.count.max(their.count));
            if more <= LEAF || range.start == range.end {
                to_list.push(range);
            } else if fewer == 0 {
                // One side holds nothing here (a wiped or new node): digests
                // of smaller ranges would only differ too, so the range is
                // listed at once, in parts that fit a listing.
                let parts = u64::from(more).div_ceil(u64::from(LIST_TARGET));
                to_list.extend(range.split(parts));
            } else {
                pending.extend(range.split(FANOUT));
            }
        }
    }
    report.wire_bytes = session.wire_bytes;
    let mut stats = core.replication().stats.borrow_mut();
    stats.repair_wire_bytes += report.wire_bytes;
    stats.repair_ranges_compared += report.ranges_compared;
    stats.repair_objects_fetched += report.fetched;
    stats.repair_bytes_fetched += report.bytes;
    stats.repair_tombstones_applied += report.tombstones;
    Ok(report)
}

async fn their_digests<S: Shard>(
    core: &S,
    session: &mut Session,
    ranges: &[RingRange],
) -> Result<Vec<Digest>, RepairError> {
    let request = Message::SyncDigests(SyncDigests {
        requester_shards: core.config().shards,
        requester_shard: core.shard_id(),
        ranges: ranges.iter().copied().map(span).collect(),
    });
    let frame = session.call(&request).await?;
    let Ok(Message::SyncDigestsReply(reply)) = frame.to_message() else {
        return Err(RepairError::Unexpected(frame.kind().name()));
    };
    if reply.digests.len() != ranges.len() {
        return Err(RepairError::DigestCount {
            sent: ranges.len(),
            got: reply.digests.len(),
        });
    }
    Ok(reply
        .digests
        .into_iter()
        .map(|digest| Digest {
            count: digest.count,
            xor: digest.xor,
        })
        .collect())
}

/// Lists `range` on the peer and takes what this shard lacks. `false` if
/// the listing was cut short (the caller splits the range).
async fn reconcile<S: Shard>(
    core: &Rc<S>,
    session: &mut Session,
    range: RingRange,
    report: &mut PassReport,
) -> Result<bool, RepairError> {
    let request = Message::SyncList(SyncList {
        requester_shards: core.config().shards,
        requester_shard: core.shard_id(),
        range: span(range),
        max: MAX_LIST,
    });
    let frame = session.call(&request).await?;
    let Ok(Message::SyncListReply(listing)) = frame.to_message() else {
        return Err(RepairError::Unexpected(frame.kind().name()));
    };
    if listing.truncated && range.start != range.end {
        return Ok(false);
    }
    let (deletes, wanted) = decide(&core.store().holdings(), &listing);
    // Ids wanted over a tombstone here: re-puts this shard missed, stored
    // over it. Every other fetched copy is stored only if no delete has
    // reached this shard since the decision.
    let revivals: HashSet<ObjectId> = {
        let holdings = core.store().holdings();
        wanted
            .iter()
            .filter(|id| holdings.is_deleted(id))
            .copied()
            .collect()
    };
    for deleted in deletes {
        tracing::debug!(shard = core.shard_id(), id = %deleted.id, at = deleted.at, "anti-entropy: applying a peer's delete");
        core.store()
            .delete_at(deleted.id, deleted.at)
            .await
            .map_err(RepairError::Store)?;
        report.tombstones += 1;
    }
    for chunk in wanted.chunks(FETCH_BATCH) {
        fetch(core, session, chunk, &revivals, report).await?;
    }
    Ok(true)
}

/// How far apart two nodes' clocks may put the same delete. Tombstones
/// learned by repair keep the peer's time, so only a delete's first copies
/// (taken by each replica from the coordinator, on their own clocks) differ.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// What this shard does with a peer's listing of one range: the deletes to
/// apply (with the peer's time) and the ids to fetch.
///
/// - A peer's delete is applied unless this shard deleted the object too,
///   or put it again after a delete that was (within the clock skew) not
///   older than the peer's: a re-put after a delete must not be undone by
///   that same delete.
/// - A peer's object is fetched if this shard neither holds it nor deleted
///   it, or if the peer put it again after a delete at least as late as
///   this shard's (within the skew): the re-put this shard missed.
pub fn decide(holdings: &Holdings, listing: &SyncListReply) -> (Vec<TimedId>, Vec<ObjectId>) {
    let mut deletes = Vec::new();
    for deleted in &listing.deleted {
        let apply = match holdings.revived_over(&deleted.id) {
            _ if holdings.is_deleted(&deleted.id) => false,
            Some(over) => deleted.at > over + CLOCK_SKEW_SECS,
            None => true,
        };
        if apply {
            deletes.push(*deleted);
        }
    }
    let revived_at = |id: &ObjectId| {
        listing
            .revived
            .iter()
            .find(|revived| revived.id == *id)
            .map(|revived| revived.at)
    };
    let wanted = listing
        .live
        .iter()
        .filter(|id| {
            if holdings.is_live(id) {
                return false;
            }
            match (holdings.deleted_at(id), revived_at(id)) {
                (None, _) => true,
                (Some(ours), Some(theirs)) => ours <= theirs + CLOCK_SKEW_SECS,
                (Some(_), None) => false,
            }
        })
        .copied()
        .collect();
    (deletes, wanted)
}

/// Installs on this shard every dictionary the peer holds and it lacks,
/// before any object: the peer sends objects as it stores them, and a
/// refilled shard then stores them compressed as well.
async fn fetch_dictionaries<S: Shard>(
    core: &S,
    session: &mut Session,
    theirs: &[u32],
) -> Result<(), RepairError> {
    let missing: Vec<u32> = {
        let held = core.store().dictionary_set();
        theirs
            .iter()
            .copied()
            .filter(|id| !held.contains(*id))
            .collect()
    };
    for id in missing {
        session
            .send(&Message::GetDictionary(GetDictionary { id }))
            .await?;
        let mut frame = session.recv().await?;
        if !matches!(frame.message(), MessageRef::DictionaryBytes(reply) if reply.id == id) {
            return Err(RepairError::Unexpected(frame.kind().name()));
        }
        core.store()
            .install_dictionary(frame.take_payload(), false)
            .await
            .map_err(RepairError::Store)?;
        tracing::info!(
            shard = core.shard_id(),
            id = format_args!("{id:#010x}"),
            "dictionary copied from a peer"
        );
    }
    Ok(())
}

/// Copies `ids` from the peer with one `batch_get` (as a node: the peer
/// reads its own store only): each object is verified against its id, and
/// they are stored together (one group commit, not one per object). An id
/// the peer no longer has (deleted or lost since it listed it) is skipped.
async fn fetch<S: Shard>(
    core: &S,
    session: &mut Session,
    ids: &[ObjectId],
    revivals: &HashSet<ObjectId>,
    report: &mut PassReport,
) -> Result<(), RepairError> {
    session
        .send(&Message::BatchGet(BatchGet { ids: ids.to_vec() }))
        .await?;
    let mut objects = Vec::with_capacity(ids.len());
    loop {
        let mut frame = session.recv().await?;
        let (id, kind) = match frame.message() {
            MessageRef::BatchEnd(_) => break,
            MessageRef::BatchItem(item) => match &item.status {
                ArchivedBatchStatus::Found(kind) => (item.id.get(), ObjectKind::from(*kind)),
                _ => continue,
            },
            _ => return Err(RepairError::Unexpected(frame.kind().name())),
        };
        if !ids.contains(&id) {
            return Err(RepairError::Unexpected("batch_item of an id not asked for"));
        }
        let bytes = frame.payload().len() as u64;
        objects.push(
            core.store()
                .verify_payload(id, kind, frame.codec(), frame.take_payload())
                .await
                .map_err(|_| RepairError::BadObject { id })?,
        );
        report.bytes += bytes;
        // Small objects cost the peer a read and this shard a write each:
        // paced as at least OBJECT_COST bytes, so a refill of tiny objects
        // is not an unbounded stream of requests.
        session.paced += bytes.max(OBJECT_COST);
    }
    let stored = futures_util::future::join_all(objects.into_iter().map(|object| {
        let store = core.store();
        async move {
            if revivals.contains(&object.id()) {
                store.put_verified(object).await
            } else {
                store.put_unless_deleted(object).await
            }
        }
    }))
    .await;
    for result in stored {
        if result.map_err(RepairError::Store)? != PutOutcome::Deleted {
            report.fetched += 1;
        }
    }
    let rate = core.config().replication.repair_bytes_per_sec.max(1);
    let due = Duration::from_secs_f64(session.paced as f64 / rate as f64);
    let elapsed = crate::clock::since(session.started);
    if due > elapsed + Duration::from_millis(1) {
        crate::clock::sleep(due - elapsed).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_subtract_to_what_the_cut_leaves() {
        let a = [(0, 10), (20, 30), (40, u64::MAX)];
        let b = [(5, 25), (28, 45)];
        assert_eq!(super::subtract(&a, &b), [(0, 4), (26, 27), (46, u64::MAX)]);
        assert_eq!(super::subtract(&a, &[]), a);
        assert!(super::subtract(&a, &[(0, u64::MAX)]).is_empty());
        assert!(super::subtract(&[(7, 7)], &[(7, 7)]).is_empty());
    }

    use super::*;

    fn id(byte: u8) -> ObjectId {
        ObjectId::from_bytes([byte; 32])
    }

    fn timed(byte: u8, at: u64) -> TimedId {
        TimedId { id: id(byte), at }
    }

    fn listing(live: &[u8], deleted: &[(u8, u64)], revived: &[(u8, u64)]) -> SyncListReply {
        SyncListReply {
            live: live.iter().map(|byte| id(*byte)).collect(),
            deleted: deleted.iter().map(|(byte, at)| timed(*byte, *at)).collect(),
            revived: revived.iter().map(|(byte, at)| timed(*byte, *at)).collect(),
            truncated: false,
        }
    }

    #[test]
    fn missing_objects_are_fetched_and_missed_deletes_applied() {
        let mut ours = Holdings::new();
        ours.record_put(id(1)); // we hold 1; the peer deleted it while we were down
        ours.record_put(id(3)); // both hold 3
        let theirs = listing(&[2, 3], &[(1, 1000), (4, 1000)], &[]);
        let (deletes, wanted) = decide(&ours, &theirs);
        assert_eq!(deletes, [timed(1, 1000), timed(4, 1000)]);
        assert_eq!(wanted, [id(2)]);
    }

    #[test]
    fn a_delete_blocks_an_older_copy_but_not_a_re_put_after_it() {
        let mut ours = Holdings::new();
        ours.record_delete(id(1), 1000);
        ours.record_delete(id(2), 1000);
        // 1: the peer still holds a copy from before the delete.
        // 2: the peer holds a re-put made after that same delete.
        let theirs = listing(&[1, 2], &[], &[(2, 1000)]);
        let (deletes, wanted) = decide(&ours, &theirs);
        assert!(deletes.is_empty());
        assert_eq!(wanted, [id(2)]);
        // A delete of ours well after the peer's revival wins.
        let mut later = Holdings::new();
        later.record_delete(id(2), 1000 + CLOCK_SKEW_SECS + 1);
        assert!(!decide(&later, &theirs).1.contains(&id(2)));
    }

    #[test]
    fn a_re_put_is_not_undone_by_the_delete_it_overrode_but_is_by_a_later_one() {
        let mut ours = Holdings::new();
        ours.record_delete(id(1), 1000);
        ours.record_put(id(1)); // revived over the delete at 1000
                                // The peer missed the re-put: its tombstone, on its own clock.
        let (deletes, _) = decide(&ours, &listing(&[], &[(1, 1010)], &[]));
        assert!(deletes.is_empty());
        // A second delete, long after the re-put, is applied.
        let (deletes, _) = decide(&ours, &listing(&[], &[(1, 5000)], &[]));
        assert_eq!(deletes, [timed(1, 5000)]);
    }
}
