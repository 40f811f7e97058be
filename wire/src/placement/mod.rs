//! Where an object lives.
//!
//! Two fixed rules, shared by client and node so they always agree:
//! 1. [`ring`]: the object's ring key (id bytes 0..8) picks its replica set,
//!    the first `replication_factor` distinct nodes clockwise on a
//!    consistent-hash ring with [`VNODES_PER_NODE`] virtual nodes per node.
//! 2. [`shard`]: inside each of those nodes, the shard key (id bytes 8..16)
//!    picks the owning shard (core).

pub mod ring;
pub mod shard;
pub mod topology;

pub use ring::{HashRing, VNODES_PER_NODE};
pub use shard::shard_of;
pub use topology::{NodeSpec, Topology, TopologyError};

use std::collections::HashMap;

use crate::object_id::ObjectId;

/// One copy of an object: which node, and which of its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica<'a> {
    pub node: &'a NodeSpec,
    pub shard: u16,
}

/// A validated topology with its ring built: answers "where does this object
/// live" without allocating.
#[derive(Debug, Clone)]
pub struct Placement {
    topology: Topology,
    ring: HashRing,
    node_index: HashMap<u32, usize>,
}

impl Placement {
    pub fn new(topology: Topology) -> Self {
        let node_ids: Vec<u32> = topology.nodes().iter().map(|node| node.id).collect();
        let ring = HashRing::new(
            &node_ids,
            VNODES_PER_NODE,
            usize::from(topology.replication_factor()),
        );
        let node_index = node_ids
            .iter()
            .enumerate()
            .map(|(index, id)| (*id, index))
            .collect();
        Self {
            topology,
            ring,
            node_index,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    pub fn node(&self, node_id: u32) -> Option<&NodeSpec> {
        self.node_index
            .get(&node_id)
            .map(|index| &self.topology.nodes()[*index])
    }

    /// Node ids of the object's replica set, in ring order (the first is the
    /// preferred coordinator).
    pub fn replica_node_ids(&self, id: &ObjectId) -> &[u32] {
        self.ring.replicas(id)
    }

    /// The object's replicas with the owning shard on each node.
    pub fn replicas<'a>(&'a self, id: &'a ObjectId) -> impl Iterator<Item = Replica<'a>> + 'a {
        let nodes = self.topology.nodes();
        self.ring.replica_slots(id).iter().map(move |slot| {
            let node = &nodes[usize::from(*slot)];
            Replica {
                node,
                shard: shard_of(id, node.shards),
            }
        })
    }

    /// Whether `node_id` holds a replica of the object.
    pub fn is_replica(&self, node_id: u32, id: &ObjectId) -> bool {
        self.ring.replicas(id).contains(&node_id)
    }

    /// The closed key ranges whose objects both nodes replicate, in key
    /// order, adjacent ranges merged: what two replicas must agree on.
    pub fn shared_ranges(&self, a: u32, b: u32) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (start, end, set) in self.ring.arcs() {
            if !(set.contains(&a) && set.contains(&b)) {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(start) => last.1 = end,
                _ => out.push((start, end)),
            }
        }
        out
    }
}
