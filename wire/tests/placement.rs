//! Placement properties client and node both rely on.

use stratum_wire::placement::ring::HashRing;
use stratum_wire::placement::{shard_of, NodeSpec, Placement, Topology, VNODES_PER_NODE};
use stratum_wire::{ObjectId, ObjectKind};

fn ids(count: u32) -> impl Iterator<Item = ObjectId> {
    (0..count).map(|i| ObjectId::compute(ObjectKind::Blob, &i.to_le_bytes()))
}

fn busiest_over_mean(ring: &HashRing) -> f64 {
    let shares = ring.primary_shares();
    let mean = 1.0 / shares.len() as f64;
    shares.iter().map(|(_, share)| *share).fold(0.0, f64::max) / mean
}

#[test]
fn busiest_node_owns_at_most_1_25x_the_mean_share_for_3_to_100_nodes() {
    let mut worst = (0usize, 0.0f64);
    for nodes in 3..=100u32 {
        // Both dense ids and ids as an operator might assign them.
        for node_ids in [
            (1..=nodes).collect::<Vec<u32>>(),
            (1..=nodes).map(|n| n * 1000 + 17).collect(),
        ] {
            let ring = HashRing::new(&node_ids, VNODES_PER_NODE, 3);
            let ratio = busiest_over_mean(&ring);
            assert!(
                ratio <= 1.25,
                "{nodes} nodes: busiest owns {ratio:.3}x the mean share"
            );
            if ratio > worst.1 {
                worst = (nodes as usize, ratio);
            }
        }
    }
    println!("worst busiest/mean: {:.3} at {} nodes", worst.1, worst.0);
}

#[test]
fn sampled_objects_agree_with_exact_shares() {
    // The exact arc computation and actual lookups must tell the same story.
    let node_ids: Vec<u32> = (1..=10).collect();
    let ring = HashRing::new(&node_ids, VNODES_PER_NODE, 3);
    let mut counts = std::collections::BTreeMap::<u32, u32>::new();
    let samples = 200_000;
    for id in ids(samples) {
        *counts.entry(ring.primary(&id)).or_default() += 1;
    }
    for (node, share) in ring.primary_shares() {
        let sampled = f64::from(counts[&node]) / f64::from(samples);
        assert!(
            (sampled - share).abs() < 0.01,
            "node {node}: {sampled} vs {share}"
        );
    }
}

#[test]
fn adding_a_node_moves_about_one_in_n_plus_one_and_only_to_the_new_node() {
    for n in [3u32, 5, 10, 30, 99] {
        let before_ids: Vec<u32> = (1..=n).collect();
        let mut after_ids = before_ids.clone();
        after_ids.push(n + 1);
        let before = HashRing::new(&before_ids, VNODES_PER_NODE, 3);
        let after = HashRing::new(&after_ids, VNODES_PER_NODE, 3);
        let samples = 100_000;
        let mut moved = 0u32;
        for id in ids(samples) {
            let old = before.replicas(&id);
            let new = after.replicas(&id);
            if old[0] != new[0] {
                moved += 1;
                assert_eq!(new[0], n + 1, "a primary moved to an old node");
            }
            // Replica sets change only by the new node taking one place;
            // nothing moves between old nodes.
            if old != new {
                assert!(new.contains(&(n + 1)), "set changed without the new node");
                for node in new.iter().filter(|node| **node != n + 1) {
                    assert!(old.contains(node), "{node} joined {old:?} -> {new:?}");
                }
            }
        }
        let fraction = f64::from(moved) / f64::from(samples);
        let expected = 1.0 / f64::from(n + 1);
        assert!(
            (fraction / expected - 1.0).abs() < 0.25,
            "{n}->{} nodes: {fraction:.4} of objects moved, expected about {expected:.4}",
            n + 1
        );
    }
}

#[test]
fn replica_sets_never_repeat_a_node() {
    for (nodes, rf) in [(3u32, 3usize), (4, 3), (10, 3), (10, 5), (50, 3), (2, 3)] {
        let node_ids: Vec<u32> = (1..=nodes).collect();
        let ring = HashRing::new(&node_ids, VNODES_PER_NODE, rf);
        for id in ids(20_000) {
            let set = ring.replicas(&id);
            assert_eq!(set.len(), rf.min(nodes as usize));
            let mut sorted = set.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), set.len(), "{set:?} repeats a node");
        }
    }
}

#[test]
fn the_same_id_always_maps_to_the_same_replicas_and_shard() {
    let topology = || {
        Topology::new(
            9,
            3,
            2,
            (1..=5)
                .map(|id| NodeSpec {
                    id,
                    address: format!("127.0.0.1:{}", 7000 + id * 10),
                    shards: id as u16,
                })
                .collect(),
        )
        .expect("valid")
    };
    // Two independently built placements (as a client and a node would).
    let first = Placement::new(topology());
    let second = Placement::new(topology());
    for id in ids(5_000) {
        let a: Vec<(u32, u16)> = first.replicas(&id).map(|r| (r.node.id, r.shard)).collect();
        let b: Vec<(u32, u16)> = second.replicas(&id).map(|r| (r.node.id, r.shard)).collect();
        assert_eq!(a, b);
        for (node_id, shard) in a {
            assert!(shard < node_id as u16);
            assert_eq!(shard, shard_of(&id, node_id as u16));
            assert!(first.is_replica(node_id, &id));
        }
    }
}

#[test]
fn node_order_in_the_file_does_not_matter() {
    let forward: Vec<u32> = (1..=7).collect();
    let backward: Vec<u32> = forward.iter().rev().copied().collect();
    let a = HashRing::new(&forward, VNODES_PER_NODE, 3);
    let b = HashRing::new(&backward, VNODES_PER_NODE, 3);
    for id in ids(10_000) {
        assert_eq!(a.replicas(&id), b.replicas(&id));
    }
}

#[test]
fn shards_share_a_node_evenly() {
    for shard_count in [2u16, 3, 8, 64] {
        let mut counts = vec![0u32; shard_count as usize];
        let samples = 100_000u32;
        for id in ids(samples) {
            counts[shard_of(&id, shard_count) as usize] += 1;
        }
        let mean = f64::from(samples) / f64::from(shard_count);
        for (shard, count) in counts.iter().enumerate() {
            let ratio = f64::from(*count) / mean;
            assert!(
                (0.9..1.1).contains(&ratio),
                "shard {shard}/{shard_count}: {ratio:.3}x mean"
            );
        }
    }
}

#[test]
fn shard_choice_is_independent_of_the_ring() {
    // Objects one node owns must still spread over all of its shards.
    let node_ids: Vec<u32> = (1..=4).collect();
    let ring = HashRing::new(&node_ids, VNODES_PER_NODE, 1);
    let mut counts = [0u32; 4];
    for id in ids(80_000).filter(|id| ring.primary(id) == 1) {
        counts[shard_of(&id, 4) as usize] += 1;
    }
    let total: u32 = counts.iter().sum();
    for count in counts {
        let ratio = f64::from(count) * 4.0 / f64::from(total);
        assert!((0.9..1.1).contains(&ratio), "{counts:?}");
    }
}

#[test]
fn arcs_cover_every_key_once_with_the_replica_set_of_their_keys() {
    let ring = HashRing::new(&[1, 2, 3, 4], 16, 3);
    let arcs = ring.arcs();
    assert_eq!(arcs.first().map(|a| a.0), Some(0));
    assert_eq!(arcs.last().map(|a| a.1), Some(u64::MAX));
    for pair in arcs.windows(2) {
        assert_eq!(pair[0].1 + 1, pair[1].0);
    }
    for (start, end, set) in &arcs {
        for key in [*start, *end, start + (end - start) / 2] {
            assert_eq!(ring.replicas_for_key(key), *set);
        }
    }
}

#[test]
fn shared_ranges_hold_exactly_the_keys_both_nodes_replicate() {
    let topology = stratum_wire::Topology::from_toml_str(
        "epoch = 1\nreplication_factor = 2\nwrite_quorum = 1\n\
         [[node]]\nid = 1\naddress = \"127.0.0.1:1000\"\nshards = 1\n\
         [[node]]\nid = 2\naddress = \"127.0.0.1:2000\"\nshards = 1\n\
         [[node]]\nid = 3\naddress = \"127.0.0.1:3000\"\nshards = 1\n",
    )
    .unwrap();
    let placement = stratum_wire::Placement::new(topology);
    let shared = placement.shared_ranges(1, 2);
    for n in 0..2000u64 {
        let key = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let both = placement.ring().replicas_for_key(key).contains(&1)
            && placement.ring().replicas_for_key(key).contains(&2);
        let inside = shared.iter().any(|(s, e)| *s <= key && key <= *e);
        assert_eq!(both, inside, "key {key:#x}");
    }
}
