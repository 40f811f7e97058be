//! `stratum-node`: serves this node's shards until SIGTERM or SIGINT, then
//! drains, makes everything durable, checkpoints and exits 0. SIGHUP
//! re-reads the topology file (a higher epoch is rolled out to every core;
//! an invalid file is refused with a logged reason and changes nothing).
//!
//! Exit status: 0 after a clean shutdown; 1 when it could not start or did
//! not stop cleanly; 2 for an invalid command line; 78 (EX_CONFIG) for an
//! invalid configuration.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Flags, NodeConfig};
use crate::liveness;
use crate::server::{admin, Node};

/// The whole `stratum-node` program: parses the process's arguments, runs
/// the node until a signal stops it. (A library function so that
/// `stratum-bench --embedded` can run the very same node in the processes
/// it starts.)
pub fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match NodeConfig::resolve(flags) {
        Ok(config) => Arc::new(config),
        Err(err) => {
            eprintln!("stratum-node: {}", crate::logging::error_chain(&err));
            return ExitCode::from(78);
        }
    };
    crate::logging::init(config.log_format);
    let purge_delay_ms = crate::allocator::keep_freed_memory();
    // Registered before any core starts, so a signal during startup is not
    // lost (it is acted on once startup finishes).
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!(error = %err, "cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        node_id = config.node_id,
        shards = config.shards,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        topology_epoch = config.topology.epoch(),
        auth = config.secret.is_some(),
        io_properties = %config
            .io_properties
            .as_ref()
            .map_or("defaults (no iotune file)".to_owned(), |path| path.display().to_string()),
        max_batch_bytes = config.max_batch_bytes,
        read_parallelism = config.read_parallelism,
        allocator_purge_delay_ms = purge_delay_ms,
        "starting"
    );
    if let Some(measured) = config
        .io_properties_sync_method
        .filter(|measured| *measured != config.sync_method)
    {
        tracing::warn!(
            measured_with = measured.name(),
            sync_method = config.sync_method.name(),
            max_batch_bytes = config.max_batch_bytes,
            "the I/O properties were measured with another sync method, so max_batch_bytes may not suit this one; re-run `stratum-tune iotune --sync-method {}`",
            config.sync_method.name()
        );
    }
    if config.topology.nodes().len() > 1 {
        // Alone, a node has no peer to resurrect anything from.
        if let Err(err) = liveness::check(&config.data_dir, config.replication.tombstone_grace) {
            tracing::error!(error = %err, "cannot start");
            return ExitCode::from(1);
        }
    }
    let mut node = match Node::start(Arc::clone(&config)) {
        Ok(node) => node,
        Err(err) => {
            tracing::error!(error = %crate::logging::error_chain(&err), "cannot start");
            return ExitCode::from(1);
        }
    };
    if let Err(err) = liveness::mark(&config.data_dir) {
        tracing::error!(error = %crate::logging::error_chain(&err), "cannot start");
        node.shutdown();
        return ExitCode::from(1);
    }
    if let Some(addr) = config.admin {
        match admin::start(addr, node.mesh().clone(), config.node_id) {
            Ok(bound) => tracing::info!(admin = %bound, "admin endpoint: /metrics, /health"),
            Err(err) => {
                tracing::error!(admin = %addr, error = %err, "cannot start the admin endpoint (use --admin off to run without)");
                node.shutdown();
                return ExitCode::from(1);
            }
        }
    }
    let alive_dir = config.data_dir.clone();
    let marker = std::thread::Builder::new().name("alive".into()).spawn(move || loop {
        std::thread::sleep(liveness::INTERVAL);
        if let Err(err) = liveness::mark(&alive_dir) {
            tracing::warn!(error = %crate::logging::error_chain(&err), "liveness mark not updated");
        }
    });
    if let Err(err) = marker {
        tracing::warn!(error = %err, "cannot start the liveness marker; the mark stays at the start time");
    }
    let last_port = u32::from(config.listen.port()) + u32::from(config.shards) - 1;
    tracing::info!(listen = %config.listen, last_port, "serving");

    let mut signal = SIGTERM;
    for received in signals.forever() {
        if received != SIGHUP {
            signal = received;
            break;
        }
        match node.reload_topology() {
            Ok(Some(epoch)) => tracing::info!(epoch, "topology reloaded"),
            Ok(None) => tracing::info!("topology file unchanged"),
            Err(err) => tracing::error!(
                error = %crate::logging::error_chain(&err),
                "topology reload refused; keeping the current one"
            ),
        }
    }
    tracing::info!(
        signal,
        "shutting down: draining connections, then checkpointing"
    );
    // A second signal means "now": exit without the clean shutdown (every
    // acknowledged write is already durable; the next start replays).
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().find(|signal| *signal != SIGHUP) {
            eprintln!("stratum-node: signal {signal} during shutdown; exiting at once");
            std::process::exit(130);
        }
    });
    if node.shutdown() {
        tracing::info!("stopped cleanly");
        ExitCode::SUCCESS
    } else {
        tracing::error!("stopped, but not cleanly (see above)");
        ExitCode::from(1)
    }
}
