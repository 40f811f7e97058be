//! The shard rule: which core of a node owns an object.

use crate::object_id::ObjectId;

/// The shard (0..shard_count) that owns `id` on a node with `shard_count`
/// shards.
///
/// Multiply-shift range reduction of the shard key (id bytes 8..16, which the
/// ring does not use): uniform for a uniform key, no division. A node's shard
/// count is fixed for the life of its data (the superblock refuses another),
/// so this needs no consistent hashing.
///
/// # Panics
/// If `shard_count` is 0; a validated [`Topology`](super::Topology) never
/// has such a node.
pub fn shard_of(id: &ObjectId, shard_count: u16) -> u16 {
    assert!(shard_count > 0, "a node has at least one shard");
    ((u128::from(id.shard_key()) * u128::from(shard_count)) >> 64) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_id::ObjectKind;

    #[test]
    fn one_shard_owns_everything() {
        for i in 0..100u32 {
            let id = ObjectId::compute(ObjectKind::Blob, &i.to_le_bytes());
            assert_eq!(shard_of(&id, 1), 0);
        }
    }

    #[test]
    fn extreme_keys_stay_in_range() {
        let mut max = [0u8; 32];
        max[8..16].copy_from_slice(&[0xff; 8]);
        let max = ObjectId::from_bytes(max);
        let min = ObjectId::from_bytes([0u8; 32]);
        for count in [1u16, 2, 3, 7, 64, u16::MAX] {
            assert_eq!(shard_of(&min, count), 0);
            assert_eq!(shard_of(&max, count), count - 1);
        }
    }
}
