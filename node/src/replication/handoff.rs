//! Hinted handoff: writes a replica missed are queued here, made durable in
//! this core's hint files (`hint_log`), and replayed to the replica once it
//! answers again, at a bounded rate.
//!
//! Memory is bounded: at most `max_queued_hint_bytes` wait to be written;
//! past that a hint is dropped and counted (the write it belongs to already
//! has its quorum; read repair can still heal that replica). Appends and the
//! truncation of a fully replayed file are serialized by one lock, so a hint
//! queued during a replay is never truncated away unreplayed. A replay that
//! stops halfway (peer gone again) resumes from the last record
//! acknowledged; across a restart it resumes from the durable progress mark
//! (`hint_log`), saved every 250 ms and after every page while a replay
//! runs, when it pauses, and right after every replayed delete. Replaying a
//! put twice is harmless (objects are immutable); replaying a delete twice
//! is not once the object was put again since, which is why a delete's mark
//! is saved at once. Only a crash between a delete's acknowledgement and
//! that save can replay it again.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use stratum_wire::placement::shard_of;
use stratum_wire::Codec;

use super::hint_log::{self, Hint, HintOp};
use super::shard::Shard;
use super::{quorum, ReplicationStats};

/// How often each core looks for hints to replay.
const REPLAY_TICK: Duration = Duration::from_millis(500);
/// Bytes read from a hint file at a time during replay.
const REPLAY_PAGE_BYTES: u64 = 1 << 20;
/// How often replay progress is made durable while a replay runs (besides
/// after every page, every delete and every pause): what a restart may
/// replay again is at most this long a stretch of puts.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Default, Clone, Copy)]
struct FileState {
    /// Durable length.
    len: u64,
    /// Offset up to which every record was replayed (acknowledged).
    replayed: u64,
    records: u64,
    replayed_records: u64,
}

pub struct Handoff {
    dir: PathBuf,
    queue_tx: flume::Sender<(u32, Vec<u8>)>,
    queue_rx: flume::Receiver<(u32, Vec<u8>)>,
    queued_bytes: Cell<u64>,
    max_queued: u64,
    files: RefCell<BTreeMap<u32, FileState>>,
    /// Appends vs. truncation of a replayed file.
    file_lock: Semaphore,
    /// Nodes whose hints were reported stranded (warned about once).
    stranded_reported: RefCell<BTreeSet<u32>>,
}

impl Handoff {
    /// Opens the hint files in `dir` (cutting damaged tails, see
    /// `hint_log::open`).
    pub async fn open(dir: PathBuf, max_queued: u64) -> io::Result<Self> {
        let scan_dir = dir.clone();
        let found = crate::offload::run(move || hint_log::open(&scan_dir)).await?;
        let mut files = BTreeMap::new();
        for file in found {
            if file.cut_bytes > 0 {
                tracing::warn!(dir = %dir.display(), node = file.node, cut_bytes = file.cut_bytes, "hint file had a damaged tail; cut it off");
            }
            if file.progress_ignored {
                tracing::warn!(dir = %dir.display(), node = file.node, "hint replay mark damaged or off a record boundary; replaying the file from its start");
            }
            if file.records > file.replayed_records {
                tracing::info!(
                    node = file.node,
                    hints = file.records - file.replayed_records,
                    already_replayed = file.replayed_records,
                    "hints to replay"
                );
            }
            files.insert(
                file.node,
                FileState {
                    len: file.len,
                    replayed: file.replayed,
                    records: file.records,
                    replayed_records: file.replayed_records,
                },
            );
        }
        let (queue_tx, queue_rx) = flume::unbounded();
        Ok(Self {
            dir,
            queue_tx,
            queue_rx,
            queued_bytes: Cell::new(0),
            max_queued,
            files: RefCell::new(files),
            file_lock: Semaphore::new(1),
            stranded_reported: RefCell::new(BTreeSet::new()),
        })
    }

    /// Queues a hint for `node` (written by [`write_loop`]); drops it when
    /// the queue is full.
    pub fn queue(&self, stats: &RefCell<ReplicationStats>, node: u32, hint: &Hint) {
        let record = hint.encode();
        let len = record.len() as u64;
        if self.queued_bytes.get() + len > self.max_queued {
            stats.borrow_mut().hints_dropped += 1;
            tracing::warn!(node, id = %hint.id, queued = self.queued_bytes.get(), "hint queue full; dropping a hint (the write has its quorum)");
            return;
        }
        self.queued_bytes.set(self.queued_bytes.get() + len);
        stats.borrow_mut().hints_queued += 1;
        let _ = self.queue_tx.send((node, record));
    }

    /// Hints not yet replayed, split in two: those for nodes in the
    /// topology (queued or in files; they will be replayed) and those in
    /// files of nodes that left it (stranded: never replayed, kept for an
    /// operator).
    pub fn pending(&self, in_topology: impl Fn(u32) -> bool) -> (u64, u64) {
        let (pending, stranded) = count_unreplayed(&self.files.borrow(), in_topology);
        (pending + self.queue_rx.len() as u64, stranded)
    }

    /// Writes `first` and everything queued after it, one fdatasync per
    /// target file.
    async fn flush(&self, stats: &RefCell<ReplicationStats>, first: Option<(u32, Vec<u8>)>) {
        let mut by_node: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for (node, record) in first.into_iter().chain(self.queue_rx.try_iter()) {
            self.queued_bytes
                .set(self.queued_bytes.get() - record.len() as u64);
            by_node.entry(node).or_default().push(record);
        }
        if by_node.is_empty() {
            return;
        }
        let Ok(_lock) = self.file_lock.acquire_permit(1).await else {
            return;
        };
        for (node, records) in by_node {
            let count = records.len() as u64;
            let dir = self.dir.clone();
            let appended =
                crate::offload::run(move || hint_log::append(&dir, node, &records)).await;
            match appended {
                Ok(len) => {
                    let mut files = self.files.borrow_mut();
                    let file = files.entry(node).or_default();
                    file.len = len;
                    file.records += count;
                }
                Err(err) => {
                    stats.borrow_mut().hints_dropped += count;
                    tracing::error!(node, hints = count, dir = %self.dir.display(), error = %err, "cannot write hints; they are lost (their writes have their quorum)");
                }
            }
        }
    }

    /// Writes whatever is queued (the core is closing).
    pub async fn flush_queued(&self, stats: &RefCell<ReplicationStats>) {
        self.flush(stats, None).await;
    }

    /// Makes `node`'s replay progress durable. A failure only costs a
    /// longer replay after a restart, so it is logged, not raised.
    async fn save_progress(&self, node: u32) {
        let Some(offset) = self.files.borrow().get(&node).map(|file| file.replayed) else {
            return;
        };
        let dir = self.dir.clone();
        let saved = crate::offload::run(move || hint_log::save_progress(&dir, node, offset)).await;
        if let Err(err) = saved {
            tracing::warn!(node, offset, dir = %self.dir.display(), error = %err, "cannot save hint replay progress; a restart will replay more");
        }
    }
}

/// Unreplayed hints in `files`: (of nodes in the topology, of the others).
fn count_unreplayed(
    files: &BTreeMap<u32, FileState>,
    in_topology: impl Fn(u32) -> bool,
) -> (u64, u64) {
    files
        .iter()
        .fold((0, 0), |(pending, stranded), (node, file)| {
            let left = file.records - file.replayed_records;
            if in_topology(*node) {
                (pending + left, stranded)
            } else {
                (pending, stranded + left)
            }
        })
}

/// Writes queued hints as they come.
pub async fn write_loop<S: Shard>(core: Rc<S>) {
    let handoff = &core.replication().handoff;
    while let Ok(first) = handoff.queue_rx.recv_async().await {
        handoff.flush(&core.replication().stats, Some(first)).await;
    }
}

/// Replays hints to their nodes, forever (cancelled at shutdown).
pub async fn replay_loop<S: Shard>(core: Rc<S>) {
    let mut pacer = Pacer::new(core.config().replication.hint_replay_per_sec);
    loop {
        crate::clock::sleep(REPLAY_TICK).await;
        let nodes: Vec<u32> = core
            .replication()
            .handoff
            .files
            .borrow()
            .iter()
            .filter(|(_, file)| file.replayed < file.len)
            .map(|(node, _)| *node)
            .collect();
        for node in nodes {
            replay_node(&core, node, &mut pacer).await;
        }
    }
}

/// Removes the hint file of `node`, which left the topology.
async fn retire<S: Shard>(core: &S, node: u32) {
    let handoff = &core.replication().handoff;
    let Ok(_lock) = handoff.file_lock.acquire_permit(1).await else {
        return;
    };
    let dir = handoff.dir.clone();
    let removed = crate::offload::run(move || hint_log::remove(&dir, node)).await;
    match removed {
        Ok(()) => {
            let dropped = handoff
                .files
                .borrow_mut()
                .remove(&node)
                .map_or(0, |file| file.records - file.replayed_records);
            tracing::info!(
                shard = core.shard_id(),
                node,
                hints = dropped,
                "hints for a node that left the topology are moot (anti-entropy re-replicates its objects); file removed"
            );
        }
        Err(err) => {
            tracing::error!(node, error = %err, "cannot remove the hint file of a node that left")
        }
    }
}

/// Replays `node`'s file until it is done or the node fails again.
async fn replay_node<S: Shard>(core: &Rc<S>, node: u32, pacer: &mut Pacer) {
    let handoff = &core.replication().handoff;
    let path = hint_log::path_of(&handoff.dir, node);
    let placement = core.replication().placement();
    let Some(shards) = placement.node(node).map(|spec| spec.shards) else {
        // The node left the topology. With anti-entropy on, its hints are
        // moot: every write they carry has its quorum, and the current
        // replicas converge by repair and rebalancing.
        if core.config().replication.repair_interval.is_some() {
            drop(placement);
            retire(core, node).await;
            return;
        }
        // Without it, they stay on disk for an operator (counted as
        // stranded), said once per node.
        if handoff.stranded_reported.borrow_mut().insert(node) {
            let stranded = handoff
                .files
                .borrow()
                .get(&node)
                .map_or(0, |file| file.records - file.replayed_records);
            tracing::warn!(
                node,
                hints = stranded,
                file = %path.display(),
                epoch = placement.topology().epoch(),
                "hints for a node that left the topology are not replayed; remove the file (node stopped) once its objects are re-replicated"
            );
        }
        return;
    };
    handoff.stranded_reported.borrow_mut().remove(&node);
    let epoch = placement.topology().epoch();
    drop(placement);
    let me = core.config().node_id;
    let mut saved_at = crate::clock::now();
    loop {
        let Some(state) = handoff.files.borrow().get(&node).copied() else {
            return;
        };
        if state.replayed >= state.len {
            break;
        }
        let read_path = path.clone();
        let page = crate::offload::run(move || {
            hint_log::read_from(&read_path, state.replayed, REPLAY_PAGE_BYTES)
        })
        .await;
        let page = match page {
            Ok(page) if !page.is_empty() => page,
            Ok(_) => {
                tracing::error!(
                    node,
                    offset = state.replayed,
                    "hint file ends early; skipping the rest"
                );
                if let Some(file) = handoff.files.borrow_mut().get_mut(&node) {
                    file.replayed = file.len;
                    file.replayed_records = file.records;
                }
                break;
            }
            Err(err) => {
                tracing::error!(node, error = %err, "cannot read hints; retrying later");
                return;
            }
        };
        for (hint, after) in page {
            let Some(link) = core.replication().link(node, shard_of(&hint.id, shards)) else {
                handoff.save_progress(node).await;
                return;
            };
            let put = match &hint.op {
                HintOp::Put { kind, content } => Some((*kind, Codec::Raw, content.as_slice())),
                HintOp::Delete => None,
            };
            if let Err(err) =
                quorum::remote(&link, me, epoch, hint.id, put, true, &Default::default()).await
            {
                tracing::debug!(node, error = %err, "hint replay paused: the peer is not taking writes");
                handoff.save_progress(node).await;
                return;
            }
            if let Some(file) = handoff.files.borrow_mut().get_mut(&node) {
                // The mark only moves forward, and never past the file: a
                // mark beyond a hint would skip it for good.
                debug_assert!(
                    after > file.replayed && after <= file.len,
                    "hint replay mark of node {node} would move from {} to {after} (file {} bytes)",
                    file.replayed,
                    file.len
                );
                file.replayed = after;
                file.replayed_records += 1;
            }
            core.replication().stats.borrow_mut().hints_replayed += 1;
            if put.is_none() || crate::clock::since(saved_at) >= PROGRESS_EVERY {
                handoff.save_progress(node).await;
                saved_at = crate::clock::now();
            }
            pacer.pace().await;
        }
        handoff.save_progress(node).await;
    }
    // Everything replayed: empty the file unless a hint was appended since.
    let Ok(_lock) = handoff.file_lock.acquire_permit(1).await else {
        return;
    };
    let done = handoff
        .files
        .borrow()
        .get(&node)
        .is_some_and(|file| file.replayed >= file.len);
    if !done {
        return;
    }
    let dir = handoff.dir.clone();
    let truncated = crate::offload::run(move || hint_log::truncate(&dir, node)).await;
    match truncated {
        Ok(()) => {
            handoff
                .files
                .borrow_mut()
                .insert(node, FileState::default());
            tracing::info!(node, "hinted handoff complete");
        }
        Err(err) => tracing::error!(node, error = %err, "cannot empty a replayed hint file"),
    }
}

/// At most `per_sec` replays per second, in 100 ms windows.
struct Pacer {
    per_window: u64,
    window_start: Instant,
    in_window: u64,
}

impl Pacer {
    const WINDOW: Duration = Duration::from_millis(100);

    fn new(per_sec: u64) -> Self {
        Self {
            per_window: (per_sec / 10).max(1),
            window_start: crate::clock::now(),
            in_window: 0,
        }
    }

    async fn pace(&mut self) {
        self.in_window += 1;
        if self.in_window < self.per_window {
            return;
        }
        let elapsed = crate::clock::since(self.window_start);
        if elapsed < Self::WINDOW {
            crate::clock::sleep(Self::WINDOW - elapsed).await;
        }
        self.window_start = crate::clock::now();
        self.in_window = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_of_nodes_outside_the_topology_count_as_stranded() {
        let file = |records, replayed_records| FileState {
            len: 0,
            replayed: 0,
            records,
            replayed_records,
        };
        let files = BTreeMap::from([(2, file(10, 4)), (3, file(7, 0)), (9, file(5, 5))]);
        assert_eq!(count_unreplayed(&files, |_| true), (13, 0));
        assert_eq!(count_unreplayed(&files, |node| node != 3), (6, 7));
        assert_eq!(count_unreplayed(&files, |_| false), (0, 13));
    }
}
