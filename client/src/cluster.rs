//! The client's view of the cluster: the topology it routes by, and where
//! each object's replicas are (computed by the same `stratum-wire` placement
//! code the nodes run, so client and node always agree).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use stratum_wire::message::TopologyReply;
use stratum_wire::placement::NodeSpec;
use stratum_wire::{ObjectId, Placement, Topology, TopologyError};

use crate::error::Peer;
use crate::io::{IoPool, Route};

/// One topology, ready to route by: the placement, and a route for every
/// shard of every node, made once when the topology is installed.
pub(crate) struct Routing {
    placement: Placement,
    /// Node id → one route per shard.
    shards: HashMap<u32, Vec<Route>, ahash::RandomState>,
}

impl Routing {
    fn new(topology: Topology, io: &IoPool) -> Self {
        let shards = topology
            .nodes()
            .iter()
            .map(|node| {
                let peers = shard_peers(node);
                // A topology is validated (every shard's port fits), so this
                // holds; if not, the node gets no routes rather than
                // shifted ones.
                let routes = if peers.len() == usize::from(node.shards) {
                    peers.iter().map(|peer| io.route(peer)).collect()
                } else {
                    tracing::error!(node = node.id, address = %node.address, "a shard of this node has no address; not routing to it");
                    Vec::new()
                };
                (node.id, routes)
            })
            .collect();
        Self {
            placement: Placement::new(topology),
            shards,
        }
    }

    pub fn topology(&self) -> &Topology {
        self.placement.topology()
    }

    /// The object's replicas, each at its owning shard, preferred first.
    pub fn replicas<'a>(&'a self, id: &'a ObjectId) -> impl Iterator<Item = &'a Route> + 'a {
        self.placement.replicas(id).filter_map(|replica| {
            self.shards
                .get(&replica.node.id)?
                .get(usize::from(replica.shard))
        })
    }

    /// Shard `shard` of node `node_id`.
    pub fn shard(&self, node_id: u32, shard: u16) -> Option<&Route> {
        self.shards.get(&node_id)?.get(usize::from(shard))
    }
}

/// Holds the current routing; swapped whole when the topology changes.
pub(crate) struct ClusterView {
    current: RwLock<Arc<Routing>>,
    /// The installed topology's epoch, readable without the lock (every
    /// request checks it).
    epoch: AtomicU64,
}

impl ClusterView {
    pub fn new(topology: Topology, io: &IoPool) -> Self {
        Self {
            epoch: AtomicU64::new(topology.epoch()),
            current: RwLock::new(Arc::new(Routing::new(topology, io))),
        }
    }

    pub fn routing(&self) -> Arc<Routing> {
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc:
        // the value inside is still whole.
        Arc::clone(&self.current.read().unwrap_or_else(|err| err.into_inner()))
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Installs `topology` if it is newer than the current one.
    pub fn install(&self, topology: Topology, io: &IoPool) -> bool {
        let mut current = self.current.write().unwrap_or_else(|err| err.into_inner());
        if topology.epoch() <= current.topology().epoch() {
            return false;
        }
        tracing::info!(
            from = current.topology().epoch(),
            to = topology.epoch(),
            nodes = topology.nodes().len(),
            "topology refreshed"
        );
        self.epoch.store(topology.epoch(), Ordering::Release);
        *current = Arc::new(Routing::new(topology, io));
        true
    }
}

/// Shard 0 of a node (where node-wide requests go).
pub(crate) fn node_peer(node: &NodeSpec) -> Peer {
    Peer {
        node_id: node.id,
        shard: 0,
        address: node.address.clone(),
    }
}

/// Every shard of a node.
pub(crate) fn shard_peers(node: &NodeSpec) -> Vec<Peer> {
    (0..node.shards)
        .filter_map(|shard| {
            Some(Peer {
                node_id: node.id,
                shard,
                address: node.shard_address(shard)?,
            })
        })
        .collect()
}

/// A topology received from a node, validated like a topology file.
pub(crate) fn topology_from_reply(reply: TopologyReply) -> Result<Topology, TopologyError> {
    Topology::new(
        reply.epoch,
        reply.replication_factor,
        reply.write_quorum,
        reply
            .nodes
            .into_iter()
            .map(|node| NodeSpec {
                id: node.id,
                address: node.address,
                shards: node.shards,
            })
            .collect(),
    )
}
