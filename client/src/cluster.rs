//! The client's view of the cluster: the topology it routes by, and where
//! each object's replicas are (computed by the same `stratum-wire` placement
//! code the nodes run, so client and node always agree).

use std::sync::{Arc, RwLock};

use stratum_wire::message::TopologyReply;
use stratum_wire::placement::NodeSpec;
use stratum_wire::{ObjectId, Placement, Topology, TopologyError};

use crate::error::Peer;

/// Holds the current placement; swapped whole when the topology changes.
pub(crate) struct ClusterView {
    current: RwLock<Arc<Placement>>,
}

impl ClusterView {
    pub fn new(topology: Topology) -> Self {
        Self {
            current: RwLock::new(Arc::new(Placement::new(topology))),
        }
    }

    pub fn placement(&self) -> Arc<Placement> {
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc:
        // the value inside is still whole.
        Arc::clone(&self.current.read().unwrap_or_else(|err| err.into_inner()))
    }

    pub fn epoch(&self) -> u64 {
        self.placement().topology().epoch()
    }

    /// Installs `topology` if it is newer than the current one.
    pub fn install(&self, topology: Topology) -> bool {
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
        *current = Arc::new(Placement::new(topology));
        true
    }
}

/// The object's replicas, each at its owning shard, preferred first.
pub(crate) fn replicas(placement: &Placement, id: &ObjectId) -> Vec<Peer> {
    placement
        .replicas(id)
        .filter_map(|replica| {
            Some(Peer {
                node_id: replica.node.id,
                shard: replica.shard,
                address: replica.node.shard_address(replica.shard)?,
            })
        })
        .collect()
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
