//! The consistent-hash ring.
//!
//! Each node is placed at [`VNODES_PER_NODE`] points on a 64-bit ring; a
//! point's position is the first 8 bytes (big-endian) of
//! `SHA-256("stratum-ring-v1" || node_id as u32 LE || vnode as u32 LE)`.
//! SHA-256 rather than a fast hash because these positions are a format:
//! every client and node, on every platform and version, must compute the
//! same ring forever, and the ring is built once per topology.
//!
//! An object with ring key `k` (its id's bytes 0..8) belongs to the first
//! point at or after `k` (wrapping), and its replica set is the first
//! `replication_factor` distinct nodes met walking clockwise from there.
//! Replica sets are precomputed per point, so a lookup is one binary search.

use sha2::{Digest, Sha256};

use crate::object_id::ObjectId;

/// Virtual nodes per node. Part of the placement format: changing it moves
/// data. Chosen by measurement (`cargo run --release -p stratum-wire
/// --example vnode_sweep`): worst busiest-node share over the mean, across
/// 3..=100 nodes, is 1.287x at 128 vnodes, 1.240x at 256, 1.164x at 512 and
/// 1.108x at 1024. 512 is the smallest count with a clear margin under the
/// 1.25x bound; a 100-node ring is then 51,200 points (~1 MB with replica
/// sets), built in about 5 ms, and a lookup is one binary search.
pub const VNODES_PER_NODE: u32 = 512;

const RING_DOMAIN: &[u8] = b"stratum-ring-v1";

/// The ring: sorted points, each with its precomputed replica set.
#[derive(Debug, Clone)]
pub struct HashRing {
    /// Sorted ring positions.
    positions: Vec<u64>,
    /// `replicas[i * width .. (i + 1) * width]`: the replica set (node ids)
    /// of objects that land on point `i`.
    replicas: Vec<u32>,
    /// The same sets as positions in the `node_ids` slice the ring was built
    /// from, so callers index their node table instead of hashing ids.
    replica_slots: Vec<u16>,
    /// Replica set size: min(replication factor, node count).
    width: usize,
}

impl HashRing {
    /// Builds the ring. Node ids must be distinct (a validated topology
    /// guarantees it). With fewer nodes than `replication_factor`, replica
    /// sets hold every node.
    ///
    /// # Panics
    /// If `node_ids` is empty or `replication_factor` is 0.
    pub fn new(node_ids: &[u32], vnodes_per_node: u32, replication_factor: usize) -> Self {
        assert!(!node_ids.is_empty(), "a ring needs at least one node");
        assert!(
            replication_factor > 0,
            "replication factor must be positive"
        );
        assert!(vnodes_per_node > 0, "a node needs at least one vnode");
        assert!(
            node_ids.len() <= usize::from(u16::MAX),
            "node slots are u16"
        );
        let mut points: Vec<(u64, u32, u16)> = node_ids
            .iter()
            .enumerate()
            .flat_map(|(slot, node)| {
                (0..vnodes_per_node)
                    .map(move |vnode| (vnode_position(*node, vnode), *node, slot as u16))
            })
            .collect();
        // Ties (astronomically rare) are broken by node id, so every process
        // orders them the same way.
        points.sort_unstable();

        let width = replication_factor.min(node_ids.len());
        let mut replicas = Vec::with_capacity(points.len() * width);
        let mut replica_slots = Vec::with_capacity(points.len() * width);
        for start in 0..points.len() {
            let set_start = replicas.len();
            let mut step = 0;
            while replicas.len() - set_start < width {
                let (_, node, slot) = points[(start + step) % points.len()];
                if !replicas[set_start..].contains(&node) {
                    replicas.push(node);
                    replica_slots.push(slot);
                }
                step += 1;
            }
        }
        Self {
            positions: points.iter().map(|(position, _, _)| *position).collect(),
            replicas,
            replica_slots,
            width,
        }
    }

    /// The replica set of an object: distinct node ids, in ring order.
    pub fn replicas(&self, id: &ObjectId) -> &[u32] {
        self.replicas_for_key(id.ring_key())
    }

    /// The replica set of a raw ring key.
    pub fn replicas_for_key(&self, key: u64) -> &[u32] {
        let point = self.point_for_key(key);
        &self.replicas[point * self.width..(point + 1) * self.width]
    }

    /// The replica set as positions in the `node_ids` slice given to
    /// [`HashRing::new`].
    pub fn replica_slots(&self, id: &ObjectId) -> &[u16] {
        let point = self.point_for_key(id.ring_key());
        &self.replica_slots[point * self.width..(point + 1) * self.width]
    }

    /// The node that owns an object's key range (first of its replica set).
    pub fn primary(&self, id: &ObjectId) -> u32 {
        self.replicas(id)[0]
    }

    /// The ring's key ranges in key order, each closed `(start, end)` with
    /// the replica set of every key in it. Together they cover every key
    /// once (the wrap-around range of the first point comes in two pieces,
    /// one at each end).
    pub fn arcs(&self) -> Vec<(u64, u64, &[u32])> {
        let set = |point: usize| &self.replicas[point * self.width..(point + 1) * self.width];
        let mut arcs = Vec::with_capacity(self.positions.len() + 1);
        let mut start = 0u64;
        for (point, position) in self.positions.iter().enumerate() {
            if *position >= start {
                arcs.push((start, *position, set(point)));
            }
            match position.checked_add(1) {
                Some(next) => start = next,
                None => return arcs,
            }
        }
        arcs.push((start, u64::MAX, set(0)));
        arcs
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Replica set size.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The exact fraction of the 2^64 key space each node owns as primary,
    /// as `(node_id, fraction)` sorted by node id. For balance reports.
    pub fn primary_shares(&self) -> Vec<(u32, f64)> {
        let mut shares: std::collections::BTreeMap<u32, u128> = Default::default();
        let count = self.positions.len();
        for point in 0..count {
            // Point `point` owns the keys in (previous position, position].
            let previous = self.positions[(point + count - 1) % count];
            let arc = if count == 1 {
                1u128 << 64
            } else {
                u128::from(self.positions[point].wrapping_sub(previous))
            };
            *shares.entry(self.replicas[point * self.width]).or_default() += arc;
        }
        shares
            .into_iter()
            .map(|(node, arc)| (node, arc as f64 / (1u128 << 64) as f64))
            .collect()
    }

    fn point_for_key(&self, key: u64) -> usize {
        let point = self.positions.partition_point(|position| *position < key);
        if point == self.positions.len() {
            0
        } else {
            point
        }
    }
}

/// Ring position of one virtual node.
pub fn vnode_position(node_id: u32, vnode: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(RING_DOMAIN);
    hasher.update(node_id.to_le_bytes());
    hasher.update(vnode.to_le_bytes());
    let digest = hasher.finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_owns_everything() {
        let ring = HashRing::new(&[7], 4, 3);
        assert_eq!(ring.width(), 1);
        assert_eq!(ring.replicas_for_key(0), &[7]);
        assert_eq!(ring.replicas_for_key(u64::MAX), &[7]);
        let shares = ring.primary_shares();
        assert_eq!(shares.len(), 1);
        assert!((shares[0].1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn keys_past_the_last_point_wrap_to_the_first() {
        let ring = HashRing::new(&[1, 2, 3], 8, 1);
        let first_owner = ring.replicas_for_key(ring.positions[0])[0];
        assert_eq!(ring.replicas_for_key(u64::MAX)[0], first_owner);
        assert_eq!(ring.replicas_for_key(0)[0], first_owner);
    }

    #[test]
    fn shares_sum_to_one() {
        let ring = HashRing::new(&[1, 2, 3, 4, 5], VNODES_PER_NODE, 3);
        let total: f64 = ring.primary_shares().iter().map(|(_, share)| share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn vnode_positions_are_a_fixed_format() {
        // Pinned: a change here moves every object in every cluster.
        assert_eq!(vnode_position(1, 0), vnode_position(1, 0));
        assert_ne!(vnode_position(1, 0), vnode_position(1, 1));
        assert_ne!(vnode_position(1, 0), vnode_position(2, 0));
        let pinned = [vnode_position(1, 0), vnode_position(2, 255)];
        assert_eq!(pinned, PINNED_POSITIONS, "ring positions drifted");
    }

    // Computed independently: python3 hashlib.sha256(b'stratum-ring-v1' +
    // struct.pack('<II', node, vnode)), first 8 bytes big-endian.
    const PINNED_POSITIONS: [u64; 2] = [4701945778118077473, 16503379479528076965];
}
