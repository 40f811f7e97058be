//! Replication: every core coordinates the writes for the objects it owns.
//!
//! - [`quorum`]: a client's put or delete → local write plus replicate to
//!   the other replicas in parallel; acknowledged at the write quorum.
//! - [`peer_link`]: one core's connection to one core of another node.
//! - [`dial`]: connect and handshake as a node.
//! - [`hint_log`]: the on-disk format of hints (writes a replica missed).
//! - [`handoff`]: queues hints durably and replays them once the peer is
//!   back.
//! - [`read_repair`]: a replica that lacks an object a client asked for
//!   copies it from another replica.
//! - [`rebalance`]: after a topology change, copies of objects this node
//!   no longer replicates go to their replicas, then are dropped here.
//! - [`anti_entropy`]: each core compares what its shard holds with what
//!   its peers' shards hold for the same ranges, and copies what it lacks.
//! - [`transfer`]: what one repair or rebalancing exchange may carry.
//! - [`shard`]: the narrow handle replication has on its core ([`Shard`]);
//!   replication never imports the server.
//!
//! Everything here is owned by one core (`Rc`, `RefCell`); a core's links
//! are its own and no other thread touches them.

pub mod anti_entropy;
pub mod dial;
pub mod handoff;
pub mod hint_log;
pub mod peer_link;
pub mod quorum;
pub mod read_repair;
pub mod rebalance;
pub mod shard;
pub mod transfer;

pub use shard::Shard;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use glommio::sync::Gate;
use stratum_wire::placement::Placement;
use stratum_wire::ObjectId;

use crate::config::NodeConfig;
use crate::net::stream::Network;
use dial::LinkSettings;
use handoff::Handoff;
use peer_link::{PeerLink, PeerSnapshot};

pub use crate::clock::within;

/// What replication counts on one core.
#[derive(Debug, Clone, Default)]
pub struct ReplicationStats {
    /// Client writes acknowledged at the write quorum.
    pub quorum_acked: u64,
    /// ... of which some replica failed (a hint was queued for it).
    pub quorum_partial: u64,
    /// Client writes refused `Unavailable`: fewer than the quorum
    /// reachable, or fewer durable acknowledgements than the quorum.
    pub quorum_unavailable: u64,
    pub hints_queued: u64,
    /// Hints not kept: the queue was full, or writing them failed.
    pub hints_dropped: u64,
    pub hints_replayed: u64,
    pub read_repairs: u64,
    pub read_repair_failures: u64,
    /// Replicate requests from a coordinator on another topology epoch.
    pub replicate_epoch_mismatches: u64,
    /// Anti-entropy: ranges whose digests were compared with a peer's.
    pub repair_ranges_compared: u64,
    /// Objects anti-entropy copied here from a peer.
    pub repair_objects_fetched: u64,
    /// Object bytes anti-entropy copied here.
    pub repair_bytes_fetched: u64,
    /// Deletes anti-entropy learned from a peer and applied here.
    pub repair_tombstones_applied: u64,
    /// Passes (one per peer shard) that ended in an error.
    pub repair_failures: u64,
    /// Bytes anti-entropy exchanged with peers, both ways, objects included.
    pub repair_wire_bytes: u64,
    /// Passes finished (each over every peer shard).
    pub repair_passes: u64,
    /// Peer shards whose last comparison found nothing this shard lacked.
    pub repair_peers_in_sync: u64,
    /// Peer shards this core compares with.
    pub repair_peers: u64,
    /// Copies held here of objects this node no longer replicates (after a
    /// topology change), still to hand off. Zero on a leaving node means it
    /// may be stopped.
    pub rebalance_backlog: u64,
    /// Copies dropped here after `write_quorum` current replicas held them.
    pub rebalance_handed_off: u64,
    /// Copies sent to a current replica that lacked them.
    pub rebalance_sent: u64,
    /// Copies dropped because a current replica had deleted the object.
    pub rebalance_stale: u64,
}

/// One core's replication state.
pub struct Replicator {
    pub settings: Rc<LinkSettings>,
    links: RefCell<HashMap<(u32, u16), Rc<PeerLink>>>,
    pub handoff: Handoff,
    /// Ids being repaired now (one repair per id at a time).
    repairing: RefCell<HashSet<ObjectId>>,
    pub stats: RefCell<ReplicationStats>,
    /// Replica writes and repairs still running after their client was
    /// answered; shutdown waits for them.
    pub background: Gate,
    /// The placement this core routes by (swapped on a topology reload).
    placement: RefCell<Rc<Placement>>,
    /// Placements this core routed by before, newest first (at most
    /// [`PREVIOUS_PLACEMENTS`]): where objects may still sit while a move
    /// runs, for reads that miss on the new replicas.
    previous: RefCell<Vec<Rc<Placement>>>,
    /// A permit here starts an anti-entropy pass at once (`repair`).
    repair_now: glommio::sync::Semaphore,
}

/// How many earlier topologies a core remembers for reads during a move.
pub const PREVIOUS_PLACEMENTS: usize = 4;

impl Replicator {
    pub fn new(config: &NodeConfig, handoff: Handoff, network: Rc<dyn Network>) -> Self {
        let settings = LinkSettings {
            node_id: config.node_id,
            secret: config.secret.clone(),
            frame_limits: config.frame_limits(),
            connect_timeout: config.replication.connect_timeout,
            request_timeout: config.replication.request_timeout,
            ping_interval: config.replication.ping_interval,
            epoch: Cell::new(config.topology.epoch()),
            epoch_mismatches: Cell::new(0),
            network,
        };
        Self {
            settings: Rc::new(settings),
            links: RefCell::new(HashMap::new()),
            handoff,
            repairing: RefCell::new(HashSet::new()),
            stats: RefCell::new(ReplicationStats::default()),
            background: Gate::new(),
            placement: RefCell::new(Rc::new(Placement::new(config.topology.clone()))),
            previous: RefCell::new(Vec::new()),
            repair_now: glommio::sync::Semaphore::new(0),
        }
    }

    pub fn placement(&self) -> Rc<Placement> {
        Rc::clone(&self.placement.borrow())
    }

    /// Routes by `placement` from now on. Links to nodes that left, or whose
    /// address changed, are closed.
    pub fn set_placement(&self, placement: Placement) {
        let epoch = placement.topology().epoch();
        self.links.borrow_mut().retain(|(node, shard), link| {
            let keep = placement
                .node(*node)
                .and_then(|spec| spec.shard_address(*shard))
                .is_some_and(|address| address == link.address);
            if !keep {
                link.close();
            }
            keep
        });
        self.settings.epoch.set(epoch);
        let old = std::mem::replace(&mut *self.placement.borrow_mut(), Rc::new(placement));
        let mut previous = self.previous.borrow_mut();
        previous.insert(0, old);
        previous.truncate(PREVIOUS_PLACEMENTS);
    }

    /// Starts an anti-entropy pass now (a pass already asked for is not
    /// asked for twice).
    pub fn request_repair(&self) {
        if self.repair_now.available() == 0 {
            self.repair_now.signal(1);
        }
    }

    /// Resolves when a pass is asked for by [`Replicator::request_repair`].
    pub async fn repair_requested(&self) {
        let _ = self.repair_now.acquire(1).await;
    }

    /// Earlier placements, newest first (see [`Replicator::set_placement`]).
    pub fn previous_placements(&self) -> Vec<Rc<Placement>> {
        self.previous.borrow().clone()
    }

    /// Where `node`'s shard `shard` listens: by the current topology, else
    /// by the newest earlier one that names the node (a node that left).
    fn address_of(&self, node: u32, shard: u16) -> Option<String> {
        std::iter::once(self.placement())
            .chain(self.previous_placements())
            .find_map(|placement| placement.node(node)?.shard_address(shard))
    }

    /// The link to `node`'s shard `shard` (created on first use), or `None`
    /// if neither the topology nor an earlier one names that node.
    pub fn link(&self, node: u32, shard: u16) -> Option<Rc<PeerLink>> {
        if let Some(link) = self.links.borrow().get(&(node, shard)) {
            return Some(Rc::clone(link));
        }
        let address = self.address_of(node, shard)?;
        let link = PeerLink::new(node, shard, address, Rc::clone(&self.settings));
        self.links
            .borrow_mut()
            .insert((node, shard), Rc::clone(&link));
        Some(link)
    }

    pub fn peer_snapshots(&self) -> Vec<PeerSnapshot> {
        let mut peers: Vec<PeerSnapshot> = self
            .links
            .borrow()
            .values()
            .map(|link| link.snapshot())
            .collect();
        peers.sort_by_key(|peer| (peer.node_id, peer.shard));
        peers
    }

    /// Closes every link (the core is stopping).
    pub fn close_links(&self) {
        for link in self.links.borrow().values() {
            link.close();
        }
    }

    /// Marks `id` as being repaired; `false` if it already is, or if too
    /// many repairs run already.
    fn start_repair(&self, id: ObjectId) -> bool {
        let mut repairing = self.repairing.borrow_mut();
        repairing.len() < read_repair::MAX_CONCURRENT && repairing.insert(id)
    }

    fn end_repair(&self, id: &ObjectId) {
        self.repairing.borrow_mut().remove(id);
    }
}
