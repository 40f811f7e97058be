//! `stratum-bench`: load a Stratum cluster and measure it (see README.md,
//! "Benchmarking").
//!
//! Exit status: 0 when the run completed without data errors; 1 when an
//! acknowledged object was missing or different, or nothing succeeded;
//! 2 for a bad command line; 3 when the cluster could not be reached or
//! started.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stratum_bench::embedded::{Embedded, RUN_NODE_ENV};
use stratum_bench::report::Report;
use stratum_bench::run::{self, IdRecord, Settings, Workload};
use stratum_bench::workload::{Content, Popularity, SizeDist};
use stratum_client::{Client, ClientConfig, ObjectId, ObjectKind};

#[derive(Debug, Parser)]
#[command(
    name = "stratum-bench",
    version,
    about = "Load a Stratum cluster and measure it."
)]
struct Cli {
    /// A node of a running cluster (the rest is learned from it).
    #[arg(long, value_name = "ADDR", global = true, conflicts_with_all = ["topology", "embedded"])]
    node: Option<String>,
    /// The topology file of a running cluster.
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "embedded")]
    topology: Option<PathBuf>,
    /// Start N real nodes on 127.0.0.1 for this run (default 3:
    /// replication factor 3, write quorum 2) and stop them after.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "3", global = true)]
    embedded: Option<u32>,
    /// Shards per embedded node [default: 2, capped at the CPU count].
    #[arg(long, value_name = "N", global = true)]
    shards: Option<u16>,
    /// Run this node binary for --embedded instead of this program's own
    /// node mode.
    #[arg(long, value_name = "PATH", global = true)]
    node_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Puts of fresh objects.
    Put,
    /// Gets of preloaded objects.
    Get,
    /// Gets and puts, `--read-ratio` of them gets (the default workload).
    Mixed,
    /// Clone-like reads: batches of `--batch` preloaded ids via get_many.
    BatchGet,
    /// Puts of a real repository's objects (`--from-git REPO`).
    Replay,
    /// Read back every id of a `--record` file; fails if any is missing or
    /// wrong.
    Verify {
        file: PathBuf,
        /// Read from the `--node` node only (no failover): what that one
        /// node holds.
        #[arg(long)]
        direct: bool,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Object size: bytes (4096, 4k, 1m) or `git` (measured distribution).
    #[arg(long, default_value = "4k", global = true)]
    size: String,
    /// Object content: `random` (incompressible) or `text` (generated
    /// source code, compressing about as well as a repository's files).
    #[arg(long, default_value = "random", global = true)]
    content: String,
    /// zstd level the client compresses puts at (1-19), or `off`.
    #[arg(long, default_value = "3", global = true)]
    compression: String,
    /// Concurrent requesters (closed loop), or the most operations
    /// outstanding (open loop).
    #[arg(long, default_value_t = 32, global = true)]
    concurrency: usize,
    /// Open loop: operations per second, latencies measured from each
    /// operation's scheduled start.
    #[arg(long, value_name = "OPS", global = true)]
    rate: Option<f64>,
    /// Measured time after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    duration: Duration,
    /// Unmeasured time first.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    warmup: Duration,
    /// Stop after this many measured operations (or at --duration).
    #[arg(long, global = true)]
    ops: Option<u64>,
    /// Objects preloaded for reads.
    #[arg(long, default_value_t = 1000, global = true)]
    keys: usize,
    /// Key popularity for reads: uniform, zipf (s = 0.99) or zipf:S.
    #[arg(long, default_value = "uniform", global = true)]
    key_dist: String,
    /// Share of gets in `mixed`.
    #[arg(long, default_value_t = 0.9, global = true)]
    read_ratio: f64,
    /// Ids per batch in `batch-get`.
    #[arg(long, default_value_t = 100, global = true)]
    batch: usize,
    /// Repository whose objects `replay` puts.
    #[arg(long, value_name = "REPO", global = true)]
    from_git: Option<PathBuf>,
    /// Write the id of every acknowledged put to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    record: Option<PathBuf>,
    /// Compare every object read with what was written.
    #[arg(long, global = true)]
    verify: bool,
    /// Print the results as one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Draw the latency distribution to FILE (SVG).
    #[arg(long, value_name = "FILE", global = true)]
    plot: Option<PathBuf>,
    /// Seed for sizes, keys and contents.
    #[arg(long, default_value_t = 1, global = true)]
    seed: u64,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("stratum-bench: {message}");
    ExitCode::from(code)
}

// The same allocator as `stratum-node`: with `--embedded` this binary runs
// the nodes too (see `RUN_NODE_ENV`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if std::env::var_os(RUN_NODE_ENV).is_some() {
        return stratum_node::cli::main();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(3, format!("cannot start the runtime: {err}")),
    };
    runtime.block_on(bench(cli))
}

fn workload(cli: &Cli) -> Result<Workload, String> {
    let load = &cli.load;
    Ok(match cli.command.as_ref().unwrap_or(&Command::Mixed) {
        Command::Put => Workload::Put,
        Command::Get => Workload::Get,
        Command::Mixed => {
            if !(0.0..=1.0).contains(&load.read_ratio) {
                return Err("--read-ratio must be between 0 and 1".into());
            }
            Workload::Mixed {
                read_ratio: load.read_ratio,
            }
        }
        Command::BatchGet => {
            if load.batch == 0 {
                return Err("--batch must be at least 1".into());
            }
            Workload::BatchGet { batch: load.batch }
        }
        Command::Replay => {
            let repo = load
                .from_git
                .as_ref()
                .ok_or("replay needs --from-git REPO")?;
            Workload::Replay {
                objects: Arc::new(git_objects(repo)?),
            }
        }
        Command::Verify { .. } => unreachable!("verify is not a workload"),
    })
}

/// Every object of the repository at `repo`, in memory.
fn git_objects(repo: &std::path::Path) -> Result<Vec<(ObjectKind, Vec<u8>)>, String> {
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run git: {err}"))?;
    let stdout = child.stdout.take().ok_or("git's stdout is missing")?;
    let mut objects = Vec::new();
    let read = stratum_client::git_batch::read_batch(stdout, |object| {
        objects.push((object.kind, object.content));
        true
    });
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "git cat-file in {} failed: {}",
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    read.map_err(|err| format!("reading {}: {err}", repo.display()))?;
    if objects.is_empty() {
        return Err(format!("{} has no objects", repo.display()));
    }
    Ok(objects)
}

async fn bench(cli: Cli) -> ExitCode {
    let size = match SizeDist::parse(&cli.load.size) {
        Ok(size) => size,
        Err(err) => return fail(2, format!("--size: {err}")),
    };
    let content = match Content::parse(&cli.load.content) {
        Ok(content) => content,
        Err(err) => return fail(2, format!("--content: {err}")),
    };
    let compression_level = match cli.load.compression.as_str() {
        "off" => None,
        level => match level.parse::<i32>() {
            Ok(level) => Some(level),
            Err(_) => return fail(2, "--compression: a zstd level (1-19) or off"),
        },
    };
    let popularity = match Popularity::parse(&cli.load.key_dist) {
        Ok(popularity) => popularity,
        Err(err) => return fail(2, format!("--key-dist: {err}")),
    };
    if cli
        .load
        .rate
        .is_some_and(|rate| !rate.is_finite() || rate <= 0.0)
    {
        return fail(2, "--rate must be positive");
    }
    let verifying = matches!(cli.command, Some(Command::Verify { .. }));
    let workload = if verifying {
        None
    } else {
        match workload(&cli) {
            Ok(workload) => Some(workload),
            Err(err) => return fail(2, err),
        }
    };

    // The cluster: embedded (ours for this run), or the one named.
    let embedded_nodes = match (&cli.node, &cli.topology, cli.embedded) {
        (None, None, None) => Some(3),
        (_, _, embedded) => embedded,
    };
    let mut embedded = None;
    let config = if let Some(nodes) = embedded_nodes {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
        let shards = cli.shards.unwrap_or(2).min(cpus).max(1);
        let started = tokio::task::spawn_blocking({
            let node_bin = cli.node_bin.clone();
            move || Embedded::start(nodes, shards, node_bin.as_deref())
        })
        .await;
        let cluster = match started {
            Ok(Ok(cluster)) => cluster,
            Ok(Err(err)) => return fail(3, format!("cannot start the embedded cluster: {err}")),
            Err(err) => return fail(3, err),
        };
        eprintln!(
            "stratum-bench: embedded cluster: {} nodes x {shards} shards on 127.0.0.1, replication factor {}, write quorum {}",
            cluster.nodes, cluster.replication_factor, cluster.write_quorum
        );
        let config = ClientConfig::topology_file(&cluster.topology);
        embedded = Some(cluster);
        config
    } else if let Some(topology) = &cli.topology {
        ClientConfig::topology_file(topology)
    } else {
        ClientConfig::seeds(cli.node.iter().cloned())
    };
    let mut config = config;
    config.compression_level = compression_level;
    let client = match Client::connect(config).await {
        Ok(client) => client,
        Err(err) => return fail(3, format!("cannot reach the cluster: {err}")),
    };
    let progress = !cli.load.json;

    let report = if let Some(Command::Verify { file, direct }) = &cli.command {
        let ids = match read_ids(file) {
            Ok(ids) => ids,
            Err(err) => return fail(2, err),
        };
        let direct_node = if *direct {
            let Some(address) = &cli.node else {
                return fail(
                    2,
                    "verify --direct needs --node ADDR (the node to read from)",
                );
            };
            match client
                .topology()
                .nodes()
                .iter()
                .find(|node| &node.address == address)
            {
                Some(node) => Some(node.id),
                None => {
                    return fail(
                        2,
                        format!("{address} is not a node address in the cluster's topology"),
                    )
                }
            }
        } else {
            None
        };
        eprintln!("stratum-bench: verifying {} ids", ids.len());
        run::verify(client, ids, direct_node, cli.load.concurrency, progress).await
    } else {
        let record = match &cli.load.record {
            Some(path) => match IdRecord::create(path) {
                Ok(record) => Some(Arc::new(record)),
                Err(err) => return fail(2, err),
            },
            None => None,
        };
        let settings = Settings {
            workload: workload.unwrap_or(Workload::Put),
            size,
            content,
            popularity,
            keys: cli.load.keys,
            concurrency: cli.load.concurrency,
            rate: cli.load.rate,
            warmup: cli.load.warmup,
            duration: cli.load.duration,
            ops: cli.load.ops,
            verify: cli.load.verify,
            seed: cli.load.seed,
            progress,
        };
        eprintln!(
            "stratum-bench: {:?}, size {}, {} content, compression {}, {} {}, warm-up {:?}, then {:?}{}",
            settings.workload_name(),
            settings.size.describe(),
            settings.content.name(),
            cli.load.compression,
            settings.concurrency,
            if settings.rate.is_some() {
                "outstanding at most (open loop)"
            } else {
                "requesters (closed loop)"
            },
            settings.warmup,
            settings.duration,
            settings
                .ops
                .map_or(String::new(), |ops| format!(" or {ops} operations")),
        );
        let report = match run::run(client, settings, record.clone()).await {
            Ok(report) => report,
            Err(err) => return fail(3, err),
        };
        if let Some(record) = record {
            if let Err(err) = record.finish() {
                return fail(3, err);
            }
        }
        report
    };
    drop(embedded);
    finish(&cli, &report)
}

fn finish(cli: &Cli, report: &Report) -> ExitCode {
    if cli.load.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    if let Some(path) = &cli.load.plot {
        if let Err(err) = report.plot(path) {
            return fail(3, err);
        }
    }
    if report.recorder.data_error_count > 0 {
        return fail(
            1,
            format!(
                "{} data errors: the run fails",
                report.recorder.data_error_count
            ),
        );
    }
    if report.recorder.total_ops() == 0 {
        return fail(1, "no operation succeeded");
    }
    ExitCode::SUCCESS
}

fn read_ids(path: &std::path::Path) -> Result<Vec<ObjectId>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let id = ObjectId::from_hex(line)
            .map_err(|err| format!("{}:{}: {err}", path.display(), number + 1))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}
