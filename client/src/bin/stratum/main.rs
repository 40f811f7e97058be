//! `stratum`: the operator's command for a Stratum cluster.
//!
//! Exit status: 0 done; 1 the object is not there (`get`, `has`, `delete`
//! of an absent id); 2 bad usage; 3 cluster unavailable or timed out;
//! 4 corrupt data detected; 5 request rejected by a node; 6 local failure
//! (a file, git); 78 bad configuration (topology, secret).

mod dictionary;
mod export;
mod git;
mod import;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stratum_client::{BlockingClient, ClientConfig, ClientError, ObjectId, ObjectKind};
use stratum_wire::auth::ClusterSecret;

#[derive(Parser)]
#[command(
    name = "stratum",
    version,
    about = "Store and fetch Git objects in a Stratum cluster"
)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Target {
    /// Any node of the cluster (`host:port` of a shard); the rest is learned
    /// from it [default: 127.0.0.1:7700, a local `stratum-node`].
    #[arg(long, global = true, conflicts_with = "topology")]
    node: Option<String>,
    /// The cluster's topology file (as the nodes use).
    #[arg(long, global = true)]
    topology: Option<PathBuf>,
    /// File holding the cluster secret, when the nodes require one.
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    /// Per-request timeout, in seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// zstd level objects are compressed at before they are sent (1-19),
    /// or `off`.
    #[arg(long, global = true, default_value = "3")]
    compression: String,
}

#[derive(Subcommand)]
enum Command {
    /// Store a file as an object; prints its id.
    Put {
        file: PathBuf,
        /// Git object kind.
        #[arg(long, default_value = "blob")]
        kind: String,
    },
    /// Write an object's content to stdout (or to --output).
    Get {
        id: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Whether the cluster holds an object (exit 0: yes, 1: no).
    Has { id: String },
    /// Delete an object (exit 1 if it was not there).
    Delete { id: String },
    /// Cluster and per-node status: objects, repair and rebalance progress.
    Stat,
    /// Start an anti-entropy pass on every shard of every node now.
    Repair,
    /// Store every object of a local Git repository (SHA-1 or SHA-256).
    ImportGit {
        repo: PathBuf,
        /// Puts in flight at a time.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Write the Stratum id of every imported object to FILE (one per
        /// line), e.g. for `export-git --ids`.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Train a zstd dictionary, or install one on every node.
    #[command(subcommand)]
    Dictionary(DictionaryCommand),
    /// Write every stored object into a Git repository (created if absent).
    ExportGit {
        dir: PathBuf,
        /// Object format of a repository created here; an existing
        /// repository's own format is always used.
        #[arg(long, default_value = "sha1", value_parser = ["sha1", "sha256"])]
        object_format: String,
        /// Export only the ids listed in FILE (one per line) instead of
        /// everything stored. Needed when the cluster holds objects of
        /// repositories with different object formats: a SHA-1 tree names
        /// its entries by SHA-1 and cannot be valid in a SHA-256 repository.
        #[arg(long)]
        ids: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DictionaryCommand {
    /// Train a dictionary on the objects of local Git repositories (no
    /// cluster needed).
    Train {
        #[arg(required = true)]
        repos: Vec<PathBuf>,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
        /// Its largest size.
        #[arg(long, default_value_t = 112_640)]
        max_bytes: usize,
    },
    /// Store a dictionary on every shard of every node, and have clients
    /// compress with it.
    Install {
        file: PathBuf,
        /// Store it without asking clients to use it yet.
        #[arg(long)]
        not_current: bool,
    },
}

/// A failure of the command, with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Local(String),
    #[error("{0}")]
    Usage(String),
    /// Already reported on stderr; only the status remains.
    #[error("{message}")]
    Exit { message: String, code: u8 },
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            Self::Client(err) => match err {
                ClientError::NotFound { .. } => 1,
                ClientError::Timeout { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Closed => 3,
                ClientError::Corrupt { .. } => 4,
                ClientError::Rejected { .. } | ClientError::TooLarge { .. } => 5,
                ClientError::Protocol { .. } => 3,
                ClientError::Topology(_) | ClientError::Config(_) => 78,
            },
            Self::Config(_) => 78,
            Self::Local(_) => 6,
            Self::Usage(_) => 2,
            Self::Exit { code, .. } => *code,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("stratum: {err}");
            ExitCode::from(err.code())
        }
    }
}

fn connect(target: &Target) -> Result<BlockingClient, CliError> {
    let mut config = match (&target.topology, &target.node) {
        (Some(path), _) => ClientConfig::topology_file(path),
        (None, Some(node)) => ClientConfig::seeds([node.clone()]),
        (None, None) => ClientConfig::seeds(["127.0.0.1:7700"]),
    };
    if !(target.timeout > 0.0 && target.timeout.is_finite()) {
        return Err(CliError::Usage(format!(
            "--timeout {} must be a positive number of seconds",
            target.timeout
        )));
    }
    config.request_timeout = Duration::from_secs_f64(target.timeout);
    config.compression_level = match target.compression.as_str() {
        "off" => None,
        level => Some(level.parse().map_err(|_| {
            CliError::Usage(format!(
                "--compression {level:?}: a zstd level (1-19) or off"
            ))
        })?),
    };
    if let Some(path) = &target.secret_file {
        let bytes = std::fs::read(path)
            .map_err(|err| CliError::Config(format!("secret file {}: {err}", path.display())))?;
        let secret = ClusterSecret::new(&bytes)
            .map_err(|err| CliError::Config(format!("secret file {}: {err}", path.display())))?;
        config.secret = Some(secret);
    }
    Ok(BlockingClient::connect(config)?)
}

fn parse_id(text: &str) -> Result<ObjectId, CliError> {
    ObjectId::from_hex(text.trim())
        .map_err(|err| CliError::Usage(format!("{text:?} is not an object id: {err}")))
}

fn run(cli: Cli) -> Result<u8, CliError> {
    if let Command::Dictionary(DictionaryCommand::Train {
        repos,
        output,
        max_bytes,
    }) = &cli.command
    {
        return dictionary::train(repos, output, *max_bytes);
    }
    let client = connect(&cli.target)?;
    match cli.command {
        Command::Put { file, kind } => {
            let kind = ObjectKind::from_git_name(&kind)
                .map_err(|err| CliError::Usage(format!("--kind {kind}: {err}")))?;
            let content = std::fs::read(&file)
                .map_err(|err| CliError::Local(format!("{}: {err}", file.display())))?;
            let receipt = client.put(kind, content)?;
            println!("{}", receipt.id);
            Ok(0)
        }
        Command::Get { id, output } => {
            let object = client.get(parse_id(&id)?)?;
            match output {
                Some(path) => std::fs::write(&path, &object.content)
                    .map_err(|err| CliError::Local(format!("{}: {err}", path.display())))?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&object.content)
                        .and_then(|()| stdout.flush())
                        .map_err(|err| CliError::Local(format!("stdout: {err}")))?;
                }
            }
            Ok(0)
        }
        Command::Has { id } => {
            let present = client.has(parse_id(&id)?)?;
            println!("{}", if present { "yes" } else { "no" });
            Ok(if present { 0 } else { 1 })
        }
        Command::Delete { id } => {
            let existed = client.delete(parse_id(&id)?)?;
            println!("{}", if existed { "deleted" } else { "not found" });
            Ok(if existed { 0 } else { 1 })
        }
        Command::Stat => stat(&client),
        Command::Dictionary(DictionaryCommand::Install { file, not_current }) => {
            dictionary::install(&client, &file, !not_current)
        }
        // Trained above, before connecting.
        Command::Dictionary(DictionaryCommand::Train { .. }) => Ok(0),
        Command::Repair => repair(&client),
        Command::ImportGit {
            repo,
            concurrency,
            record,
        } => import::import_git(&client, &repo, concurrency.max(1), record.as_deref()),
        Command::ExportGit {
            dir,
            object_format,
            ids,
        } => {
            let ids = match ids {
                Some(path) => Some(read_ids(&path)?),
                None => None,
            };
            export::export_git(&client, &dir, &object_format, ids)
        }
    }
}

/// Ids from a file, one hex id per line (blank lines ignored).
fn read_ids(path: &std::path::Path) -> Result<Vec<ObjectId>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| CliError::Local(format!("{}: {err}", path.display())))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(number, line)| {
            ObjectId::from_hex(line)
                .map_err(|err| CliError::Usage(format!("{}:{}: {err}", path.display(), number + 1)))
        })
        .collect()
}

/// Says a node could not be reached; counts it.
fn report_unreachable(node_id: u32, address: &str, err: &dyn std::fmt::Display) -> u32 {
    println!("node {node_id} ({address}): unreachable: {err}");
    1
}

fn repair(client: &BlockingClient) -> Result<u8, CliError> {
    let mut unreachable = 0;
    for node in client.repair() {
        match node.result {
            Ok(shards) => println!(
                "node {} ({}): repair started on {shards} shard(s)",
                node.node_id, node.address
            ),
            Err(err) => unreachable += report_unreachable(node.node_id, &node.address, &err),
        }
    }
    Ok(if unreachable == 0 { 0 } else { 3 })
}

fn stat(client: &BlockingClient) -> Result<u8, CliError> {
    let topology = client.topology();
    println!(
        "cluster: epoch {}, {} node(s), replication factor {}, write quorum {}",
        topology.epoch(),
        topology.nodes().len(),
        topology.replication_factor(),
        topology.write_quorum()
    );
    let mut unreachable = 0;
    for node in client.stats() {
        match node.result {
            Ok(reply) => {
                let sum = |name: &str| -> u64 {
                    reply
                        .entries
                        .iter()
                        .filter(|entry| entry.name == name)
                        .map(|entry| entry.value)
                        .sum()
                };
                println!(
                    "node {} ({}): up, {} shard(s), epoch {}, {} objects, {} bytes on disk, {} misrouted requests",
                    node.node_id,
                    node.address,
                    reply.shard_count,
                    reply.topology_epoch,
                    sum("store.objects"),
                    sum("store.disk_bytes"),
                    sum("misrouted"),
                );
                let (peers, in_sync) = (sum("repair.peers"), sum("repair.peers_in_sync"));
                println!(
                    "  repair: {} ({in_sync} of {peers} peer shards agreed at the last pass), {} objects ({} bytes) fetched, {} deletes applied, {} tombstones held, {} failed passes",
                    if in_sync == peers { "in sync" } else { "repairing" },
                    sum("repair.objects_fetched"),
                    sum("repair.bytes_fetched"),
                    sum("repair.tombstones_applied"),
                    sum("store.tombstones"),
                    sum("repair.failures"),
                );
                println!(
                    "  rebalance: {} copies still to hand off, {} handed off, {} sent",
                    sum("rebalance.backlog"),
                    sum("rebalance.handed_off"),
                    sum("rebalance.sent"),
                );
            }
            Err(err) => unreachable += report_unreachable(node.node_id, &node.address, &err),
        }
    }
    Ok(if unreachable == 0 { 0 } else { 3 })
}
