//! `stratum-tune check | iotune | recommend`.
//!
//! Exit status: `check` 0 when everything is OK, 1 with a WARN, 2 with a
//! FAIL; `iotune` and `recommend` 0 on success, 1 on failure; 64 for a bad
//! command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stratum_node::io_properties;
use stratum_node::store::fs::SyncMethod;
use stratum_tune::checks::{self, Plan};
use stratum_tune::facts::Facts;
use stratum_tune::{iotune, recommend};

#[derive(Debug, Parser)]
#[command(
    name = "stratum-tune",
    version,
    about = "Know the host, measure the disk, tune the node."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Shards the node will run [default: one per online CPU].
    #[arg(long)]
    shards: Option<u16>,
    /// Memory each shard locks for io_uring (the node's store.io_memory_bytes).
    #[arg(long, default_value_t = 512 << 10)]
    io_memory_bytes: u64,
    /// Connections per shard (the node's max_connections).
    #[arg(long, default_value_t = 1024)]
    max_connections: u32,
}

impl PlanArgs {
    fn plan(&self) -> Plan {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Plan {
            shards: self
                .shards
                .unwrap_or(cpus.min(usize::from(u16::MAX)) as u16),
            io_memory_bytes: self.io_memory_bytes,
            max_connections: self.max_connections,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the kernel, io_uring, limits, the data dir's device, CPUs and VM
    /// settings; every WARN and FAIL says how to fix it.
    Check {
        /// The node's data directory (its device is examined).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Measure the data dir's device with the node's DMA I/O and write the
    /// I/O properties file the node reads.
    Iotune {
        #[arg(long)]
        data_dir: PathBuf,
        /// Seconds to spend measuring.
        #[arg(long, default_value_t = 30)]
        budget_secs: u64,
        /// Where to write the properties [default: DATA_DIR/io-properties.toml].
        #[arg(long)]
        out: Option<PathBuf>,
        /// How the durable appends are made durable: the node's
        /// `store.sync_method` ("dsync" or "fdatasync").
        #[arg(long, default_value = "dsync")]
        sync_method: SyncMethod,
    },
    /// Print the sysctl settings, limits and systemd unit that fit this host.
    Recommend {
        #[command(flatten)]
        plan: PlanArgs,
        /// stratum-node binary for the unit.
        #[arg(long, default_value = "/usr/local/bin/stratum-node")]
        binary: String,
        /// Node config file for the unit.
        #[arg(long, default_value = "/etc/stratum/node.toml")]
        config: String,
        /// Write the sysctl file and the unit (nothing is changed without it).
        #[arg(long)]
        apply: bool,
        #[arg(long, default_value = recommend::SYSCTL_PATH)]
        sysctl_file: PathBuf,
        #[arg(long, default_value = recommend::UNIT_PATH)]
        unit_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 64 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check {
            data_dir,
            json,
            plan,
        } => check(data_dir, json, &plan.plan()),
        Command::Iotune {
            data_dir,
            budget_secs,
            out,
            sync_method,
        } => run_iotune(data_dir, budget_secs, out, sync_method),
        Command::Recommend {
            plan,
            binary,
            config,
            apply,
            sysctl_file,
            unit_file,
        } => run_recommend(
            &plan.plan(),
            &binary,
            &config,
            apply,
            &sysctl_file,
            &unit_file,
        ),
    }
}

fn check(data_dir: Option<PathBuf>, json: bool, plan: &Plan) -> ExitCode {
    let facts = Facts::live(data_dir.as_deref());
    let findings = checks::evaluate(&facts, plan);
    let worst = checks::worst(&findings);
    if json {
        let doc = serde_json::json!({ "worst": worst, "findings": findings, "facts": facts });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for finding in &findings {
            println!(
                "{:<5} {:<22} {}",
                finding.level.label(),
                finding.check,
                finding.detail
            );
            if let Some(fix) = &finding.fix {
                println!("{:<5} {:<22} fix: {fix}", "", "");
            }
        }
        println!("worst: {}", worst.label());
    }
    ExitCode::from(worst.exit_code())
}

fn run_iotune(
    data_dir: PathBuf,
    budget_secs: u64,
    out: Option<PathBuf>,
    sync_method: SyncMethod,
) -> ExitCode {
    if let Err(err) = std::fs::create_dir_all(&data_dir) {
        eprintln!("stratum-tune: cannot create {}: {err}", data_dir.display());
        return ExitCode::from(1);
    }
    let out = out.unwrap_or_else(|| data_dir.join(io_properties::FILE_NAME));
    eprintln!(
        "iotune: measuring {} for about {budget_secs} s (durable appends: sync method {})",
        data_dir.display(),
        sync_method.name()
    );
    let started = std::time::Instant::now();
    let budget = Duration::from_secs(budget_secs);
    let properties = match iotune::run(&data_dir, budget, sync_method, |line| {
        eprintln!("iotune: {line}")
    }) {
        Ok(properties) => properties,
        Err(err) => {
            eprintln!(
                "stratum-tune: iotune failed: {}",
                stratum_node::logging::error_chain(&err)
            );
            return ExitCode::from(1);
        }
    };
    println!(
        "device {} (logical block {} B, max I/O {} KiB), measured in {:.1} s",
        properties.device,
        properties.logical_block_size,
        properties.max_io_bytes >> 10,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("{:<34} {:>12} {:>12}", "measure", "per second", "MB/s");
    println!(
        "{:<34} {:>12} {:>12.0}",
        "sequential write",
        "-",
        properties.seq_write_bytes_per_sec / 1e6
    );
    for append in &properties.durable_append {
        println!(
            "{:<34} {:>12.0} {:>12.0}",
            format!(
                "durable appends ({}), {} KiB groups",
                properties.sync_method.name(),
                append.group_bytes >> 10
            ),
            append.appends_per_sec,
            append.bytes_per_sec() / 1e6
        );
    }
    for read in &properties.random_read {
        println!(
            "{:<34} {:>12.0} {:>12.0}",
            format!("random 4 KiB reads, depth {}", read.depth),
            read.iops,
            read.iops * 4096.0 / 1e6
        );
    }
    println!();
    println!(
        "node settings: max_batch_bytes = {} (group-commit size, for store.sync_method = \"{}\"), read_parallelism = {}",
        properties.max_batch_bytes,
        properties.sync_method.name(),
        properties.read_parallelism
    );
    let text = format!(
        "# Written by stratum-tune iotune for {}; stratum-node reads it at startup.\n{}",
        properties.device,
        properties.to_toml()
    );
    if let Err(err) = std::fs::write(&out, text) {
        eprintln!("stratum-tune: cannot write {}: {err}", out.display());
        return ExitCode::from(1);
    }
    println!("wrote {}", out.display());
    ExitCode::SUCCESS
}

fn run_recommend(
    plan: &Plan,
    binary: &str,
    config: &str,
    apply: bool,
    sysctl_file: &std::path::Path,
    unit_file: &std::path::Path,
) -> ExitCode {
    let cpus = stratum_tune::host::Host::live()
        .read("/sys/devices/system/cpu/online")
        .and_then(|text| stratum_tune::parse::cpu_list(&text))
        .unwrap_or_else(|| (0..usize::from(plan.shards)).collect());
    let rec = recommend::recommend(plan, &cpus, binary, config);
    println!("# ---- {} ----\n{}", sysctl_file.display(), rec.sysctl);
    println!("# ---- limits ----\n{}", rec.limits);
    println!("# ---- {} ----\n{}", unit_file.display(), rec.unit);
    if !apply {
        println!("# nothing was changed; rerun with --apply to write the two files");
        return ExitCode::SUCCESS;
    }
    for (path, text) in [(sysctl_file, &rec.sysctl), (unit_file, &rec.unit)] {
        if let Err(err) = std::fs::write(path, text) {
            eprintln!("stratum-tune: cannot write {}: {err}", path.display());
            return ExitCode::from(1);
        }
        println!("# wrote {}", path.display());
    }
    println!("# now run: sysctl --system && systemctl daemon-reload");
    ExitCode::SUCCESS
}
