//! Measures placement balance for several vnode counts:
//! `cargo run --release -p stratum-wire --example vnode_sweep`.
//! The busiest node's primary key share over the mean, worst over 3..=100
//! nodes, for dense ids (1..=n) and sparse ids (n*1000+17).
use stratum_wire::placement::ring::HashRing;

fn main() {
    for vnodes in [128u32, 256, 512, 1024] {
        let mut worst = (0u32, 0.0f64);
        let mut sum = 0.0;
        let mut cases = 0;
        let start = std::time::Instant::now();
        for nodes in 3..=100u32 {
            for node_ids in [
                (1..=nodes).collect::<Vec<u32>>(),
                (1..=nodes).map(|n| n * 1000 + 17).collect(),
            ] {
                let ring = HashRing::new(&node_ids, vnodes, 3);
                let shares = ring.primary_shares();
                let mean = 1.0 / shares.len() as f64;
                let ratio = shares.iter().map(|s| s.1).fold(0.0, f64::max) / mean;
                sum += ratio;
                cases += 1;
                if ratio > worst.1 {
                    worst = (nodes, ratio);
                }
            }
        }
        println!(
            "vnodes {vnodes:5}: worst busiest/mean {:.3} (at {} nodes), average {:.3}, {:.0} ms for all rings",
            worst.1,
            worst.0,
            sum / cases as f64,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
