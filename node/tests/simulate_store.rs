//! A deterministic simulation of one shard store over the fault-injecting
//! disk, checked against a model. Each seed draws a workload (concurrent
//! puts, deletes and gets on a small set of objects, checkpoints,
//! compactions, scrubs, clean restarts) and the disk's faults (crashes with
//! torn writes, EIO on writes, syncs and reads, misdirected reads, bit rot
//! in segments and in the index checkpoint), all from one generator. After every step the store must answer as the
//! model allows:
//!
//! - an acknowledged put is served, byte-identical, until a later delete;
//! - an acknowledged delete stays deleted, through crashes and restarts;
//! - nothing is ever served that does not hash to its id;
//! - no panic, no step hangs (each is bounded in time).
//!
//! Bit rot on a single copy may legitimately lose an object or bring back a
//! deleted one (its tombstone rotted), so a seed that rots checks only the
//! third rule after its first rot; the cluster's replicas repair the rest.
//!
//! ```text
//! cargo test -p stratum-node --test simulate_store             # the fixed seeds
//! STRATUM_SIM_SEED=123 cargo test -p stratum-node --test simulate_store -- --nocapture
//! scripts/simulate.sh --seeds 2000 [--first 1000]              # a long search
//! ```
//!
//! A seed replays the same workload and the same fault draws. Tasks of one
//! round interleave as glommio schedules them, which can vary with timing;
//! a failing seed has reproduced every time so far.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::object;
use common::sim_fs::{Chaos, Injected, Rng, SimFs};
use stratum_node::store::{ShardStore, StoreConfig, WriteMode};
use stratum_wire::ObjectId;

/// Rounds per seed.
const ROUNDS: usize = 160;
/// Distinct objects a seed works on (so ids are put, deleted, re-put).
const OBJECTS: u64 = 48;
/// A round that takes longer than this is a hang.
const ROUND_LIMIT: Duration = Duration::from_secs(20);

fn config() -> StoreConfig {
    let mut config = StoreConfig::new(0, 1);
    // Small segments and batches: rotations, compactions and multi-batch
    // rounds happen within a short run.
    config.segment_bytes = 192 << 10;
    config.max_batch_bytes = 24 << 10;
    config.max_object_bytes = 64 << 10;
    config.cache_bytes = 0; // every get reads the disk
    config
}

fn dir() -> PathBuf {
    PathBuf::from("/sim/shard-0")
}

/// What a get of an id may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Present,
    Absent,
    /// An operation on it failed: it may or may not have taken effect.
    Either,
}

/// One seed's object set, its model and its counters.
struct World {
    objects: Vec<(ObjectId, stratum_wire::ObjectKind, Vec<u8>)>,
    model: BTreeMap<usize, Expect>,
    /// Set at the first bit rot: from then on only "never wrong bytes".
    rotted: bool,
    ops: u64,
    restarts: u64,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Put,
    Delete,
    Get,
}

/// Figures of a whole run, for the report.
#[derive(Default)]
struct Totals {
    seeds: u64,
    ops: u64,
    restarts: u64,
    injected: Injected,
}

impl Totals {
    fn add(&mut self, world: &World, injected: &Injected) {
        self.seeds += 1;
        self.ops += world.ops;
        self.restarts += world.restarts;
        let total = &mut self.injected;
        total.crashes += injected.crashes;
        total.torn_blocks += injected.torn_blocks;
        total.write_eio += injected.write_eio;
        total.sync_eio += injected.sync_eio;
        total.read_eio += injected.read_eio;
        total.misdirected += injected.misdirected;
        total.bit_rot += injected.bit_rot;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// `STRATUM_SIM_SEED` runs one seed; else `STRATUM_SIM_SEEDS` seeds (default
/// 40) from `STRATUM_SIM_FIRST` (default 1).
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("STRATUM_SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("STRATUM_SIM_SEEDS").unwrap_or(40);
    let first = env_u64("STRATUM_SIM_FIRST").unwrap_or(1);
    (first..first + count).collect()
}

/// The fault odds of a seed: some seeds run clean, some only crash, most
/// draw everything.
fn chaos_for(rng: &mut Rng) -> Chaos {
    match rng.below(4) {
        0 => Chaos {
            crash: 0.004,
            ..Chaos::default()
        },
        1 => Chaos {
            crash: 0.003,
            write_eio: 0.003,
            sync_eio: 0.003,
            read_eio: 0.01,
            misdirect: 0.003,
        },
        // Misdirected reads are rare on real disks; scrub confirms damage
        // by reading the same bytes twice, which two misdirected reads into
        // the same zeroed space can fake (seed 4 at 3% odds found that:
        // docs/measurements/2026-12-07-simulator.md).
        2 => Chaos {
            read_eio: 0.03,
            misdirect: 0.005,
            ..Chaos::default()
        },
        _ => Chaos {
            crash: 0.002,
            write_eio: 0.002,
            read_eio: 0.005,
            misdirect: 0.002,
            ..Chaos::default()
        },
    }
}

#[test]
fn the_store_keeps_every_promise_under_random_faults() {
    let seeds = seeds();
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match run_seed(seed, None, None) {
            Ok((world_ops, world_restarts, injected)) => {
                let world = World {
                    objects: Vec::new(),
                    model: BTreeMap::new(),
                    rotted: false,
                    ops: world_ops,
                    restarts: world_restarts,
                };
                totals.add(&world, &injected);
            }
            Err(why) => failures.push(format!(
                "seed {seed}: {why}\n  replay: STRATUM_SIM_SEED={seed} cargo test -p stratum-node --test simulate_store -- --nocapture"
            )),
        }
    }
    let i = &totals.injected;
    println!(
        "simulated {} seeds: {} store operations, {} restarts; injected {} crashes ({} torn blocks), {} write EIO, {} sync EIO, {} read EIO, {} misdirected reads, {} bit flips",
        totals.seeds,
        totals.ops,
        totals.restarts,
        i.crashes,
        i.torn_blocks,
        i.write_eio,
        i.sync_eio,
        i.read_eio,
        i.misdirected,
        i.bit_rot
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs one seed on its own executor: `Ok((ops, restarts, faults))`, or
/// what the store did wrong. `odds` and `write_through` pin what the seed
/// would otherwise draw (the regression tests keep the conditions they
/// failed under).
fn run_seed(
    seed: u64,
    odds: Option<Chaos>,
    write_through: Option<bool>,
) -> Result<(u64, u64, Injected), String> {
    common::on_executor(move || async move {
        let mut rng = Rng(seed);
        // Both sync methods: files opened O_DSYNC (the default), or plain
        // writes and an fdatasync per batch. Drawn apart from the workload,
        // so a seed's workload does not depend on it.
        let write_through = write_through.unwrap_or_else(|| Rng(!seed).chance(0.5));
        let fs = if write_through {
            SimFs::write_through()
        } else {
            SimFs::new()
        };
        let drawn = chaos_for(&mut rng);
        let chaos = odds.unwrap_or(drawn);
        let rots = rng.chance(0.25);
        let mut world = World {
            objects: (0..OBJECTS)
                .map(|i| {
                    let len = match rng.below(10) {
                        0 => 8_000 + rng.below(40_000) as usize,
                        1..=3 => 1_000 + rng.below(4_000) as usize,
                        _ => 20 + rng.below(900) as usize,
                    };
                    object(seed.wrapping_mul(1_000_003).wrapping_add(i), len)
                })
                .collect(),
            model: (0..OBJECTS as usize).map(|i| (i, Expect::Absent)).collect(),
            rotted: false,
            ops: 0,
            restarts: 0,
        };
        let mut store = Rc::new(open(&fs).await?);
        fs.set_chaos(chaos.clone(), rng.next_u64());
        for round in 0..ROUNDS {
            let step = rng.below(100);
            let outcome = glommio::timer::timeout(ROUND_LIMIT, async {
                Ok(step_round(step, &store, &fs, &mut world, &mut rng, rots).await)
            })
            .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(format!("round {round} ({chaos:?}): {why}")),
                Err(_) => return Err(format!("round {round}: no answer within {ROUND_LIMIT:?}")),
            }
            let failed = fs.is_down() || store.write_mode() != WriteMode::Writable;
            if failed || step >= 95 {
                // A fail-stop shard (or a planned restart) restarts; a
                // machine that went down loses what was never durable.
                drop(Rc::try_unwrap(store).map_err(|_| "store still shared".to_owned())?);
                fs.crash(&mut rng);
                world.restarts += 1;
                if rng.chance(0.3) {
                    // A damaged checkpoint is ignored: the next open replays
                    // every segment. (Only a cache of the index: nothing is
                    // lost, so the model still holds in full.)
                    fs.rot(&mut rng, |path| path.ends_with("index.ckpt"));
                }
                // Recovery runs on a quiet disk: a fault there stops the
                // node from starting (the operator's restart is the retry).
                fs.set_chaos(Chaos::default(), 0);
                store = Rc::new(open(&fs).await?);
                fs.set_chaos(chaos.clone(), rng.next_u64());
            }
        }
        // The end: faults stop, power goes, and everything is checked.
        fs.set_chaos(Chaos::default(), 0);
        drop(Rc::try_unwrap(store).map_err(|_| "store still shared".to_owned())?);
        fs.crash(&mut rng);
        let store = open(&fs).await?;
        for index in 0..world.objects.len() {
            check_get(&store, &world, index, true).await?;
        }
        store.close().await.map_err(|err| format!("close: {err}"))?;
        Ok((world.ops, world.restarts, fs.injected()))
    })
}

async fn open(fs: &SimFs) -> Result<ShardStore<SimFs>, String> {
    ShardStore::open(fs.clone(), &dir(), config())
        .await
        .map(|(store, _)| store)
        .map_err(|err| format!("reopen failed: {err}"))
}

/// One step of the workload.
async fn step_round(
    step: u64,
    store: &Rc<ShardStore<SimFs>>,
    fs: &SimFs,
    world: &mut World,
    rng: &mut Rng,
    rots: bool,
) -> Result<(), String> {
    match step {
        0..=79 => ops_round(store, world, rng).await,
        80..=83 => {
            let _ = store.checkpoint().await;
            Ok(())
        }
        84..=87 => {
            let _ = store.compact(0.2).await;
            Ok(())
        }
        88..=90 => {
            let _ = store.scrub(1 << 40).await;
            Ok(())
        }
        91..=92 if rots => {
            let rotted = fs.rot(rng, |path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("seg-"))
            });
            world.rotted |= rotted.is_some();
            Ok(())
        }
        _ => {
            // A sweep of reads.
            for _ in 0..8 {
                let index = rng.below(world.objects.len() as u64) as usize;
                world.ops += 1;
                check_get(store, world, index, false).await?;
            }
            Ok(())
        }
    }
}

/// Up to eight concurrent operations on distinct objects.
async fn ops_round(
    store: &Rc<ShardStore<SimFs>>,
    world: &mut World,
    rng: &mut Rng,
) -> Result<(), String> {
    let count = 1 + rng.below(8) as usize;
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < count {
        let index = rng.below(world.objects.len() as u64) as usize;
        if !chosen.contains(&index) {
            chosen.push(index);
        }
    }
    let mut tasks = Vec::new();
    for index in chosen {
        let action = match rng.below(100) {
            0..=54 => Action::Put,
            55..=74 => Action::Delete,
            _ => Action::Get,
        };
        let (id, kind, content) = world.objects[index].clone();
        let store = Rc::clone(store);
        tasks.push(glommio::spawn_local(async move {
            let outcome = match action {
                Action::Put => store.put(id, kind, content).await.map(|_| None),
                Action::Delete => store.delete(id).await.map(|_| None),
                Action::Get => store.get(&id).await.map(Some),
            };
            (index, action, outcome)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await);
    }
    for (index, action, outcome) in results {
        world.ops += 1;
        let before = world.model[&index];
        let after = match (action, outcome) {
            (Action::Put, Ok(_)) => Expect::Present,
            (Action::Delete, Ok(_)) => Expect::Absent,
            (Action::Put, Err(_)) if before == Expect::Present => Expect::Present,
            (Action::Delete, Err(_)) if before == Expect::Absent => Expect::Absent,
            (Action::Put | Action::Delete, Err(_)) => Expect::Either,
            (Action::Get, Ok(got)) => {
                judge(world, index, got.flatten(), false)?;
                before
            }
            (Action::Get, Err(_)) => before,
        };
        world.model.insert(index, after);
    }
    Ok(())
}

/// Reads one object and judges the answer. `strict`: faults have stopped,
/// so an error is a failure too.
async fn check_get(
    store: &ShardStore<SimFs>,
    world: &World,
    index: usize,
    strict: bool,
) -> Result<(), String> {
    let id = world.objects[index].0;
    match store.get(&id).await {
        Ok(got) => judge(world, index, got, strict),
        Err(err) if strict && !world.rotted => {
            Err(format!("{id}: get failed with faults off: {err}"))
        }
        Err(_) => Ok(()),
    }
}

fn judge(
    world: &World,
    index: usize,
    got: Option<stratum_node::store::StoredObject>,
    _strict: bool,
) -> Result<(), String> {
    let (id, kind, content) = &world.objects[index];
    let expect = world.model[&index];
    match got {
        Some(object) => {
            let bytes = object
                .content(&Default::default())
                .map_err(|err| format!("{id}: served a payload that does not inflate: {err}"))?;
            if object.kind != *kind || ObjectId::compute(object.kind, &bytes) != *id {
                return Err(format!("{id}: served bytes that do not hash to the id"));
            }
            debug_assert_eq!(&bytes[..], &content[..]);
            if expect == Expect::Absent && !world.rotted {
                return Err(format!("{id}: deleted (or never stored) but served"));
            }
        }
        None => {
            if expect == Expect::Present && !world.rotted {
                return Err(format!("{id}: acknowledged put lost"));
            }
        }
    }
    Ok(())
}

/// Found by this simulator at 3% misdirected reads (seed 26, in the
/// workload of its day): a delete looked its object up through a
/// misdirected read, took the other record it read for a key collision,
/// and wrote only a tombstone, leaving the live record indexed: the deleted
/// object was served. A wrong read is now an error. With that flaw put back,
/// today's workload fails at seeds 67, 91 and 96 under the same odds.
#[test]
fn regression_a_delete_through_a_misdirected_read() {
    let odds = Chaos {
        read_eio: 0.03,
        misdirect: 0.03,
        ..Chaos::default()
    };
    for seed in [67, 91, 96] {
        if let Err(why) = run_seed(seed, Some(odds.clone()), Some(true)) {
            panic!("seed {seed}: {why}");
        }
    }
}

/// Found by this simulator (seed 359): a bit flip in an indexed record made
/// replay fail when a later record of the same id looked it up, so the
/// shard refused to open at all. The damaged record is now unindexed
/// instead. With that flaw put back, seeds 359 and 1488 fail.
#[test]
fn regression_a_rotted_record_met_during_replay() {
    for seed in [359, 1488] {
        if let Err(why) = run_seed(seed, None, None) {
            panic!("seed {seed}: {why}");
        }
    }
}
