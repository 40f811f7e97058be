//! Per-shard counters and latency histograms, and their Prometheus text
//! rendering.
//!
//! Each core owns its [`ShardMetrics`] outright (plain integers, no atomics:
//! nothing else touches them). The admin endpoint asks every core for a
//! [`MetricsSnapshot`] by message and renders them together.

use std::fmt::Write;
use std::time::Duration;

use crate::net::latency::{LatencyHistogram, LATENCY_BUCKETS_US};
use crate::replication::peer_link::PeerSnapshot;
use crate::replication::ReplicationStats;
use crate::store::{StoreStats, WriteMode};

/// Request kinds with their own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Put,
    Get,
    Has,
    Delete,
    BatchGet,
    Stats,
    Ping,
    Topology,
    List,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        Self::Put,
        Self::Get,
        Self::Has,
        Self::Delete,
        Self::BatchGet,
        Self::Stats,
        Self::Ping,
        Self::Topology,
        Self::List,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Has => "has",
            Self::Delete => "delete",
            Self::BatchGet => "batch_get",
            Self::Stats => "stats",
            Self::Ping => "ping",
            Self::Topology => "topology",
            Self::List => "list",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NotFound,
    /// Refused at once because the shard was at a limit.
    Busy,
    /// The request itself was wrong (hash mismatch, too large, ...).
    Rejected,
    /// The store failed it (I/O error, corruption, read-only, failed stop).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Ok,
        Self::NotFound,
        Self::Busy,
        Self::Rejected,
        Self::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Busy => "busy",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }
}

/// Connection-level events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    Accepted,
    /// Refused at accept: the shard was at its connection limit.
    Refused,
    Closed,
    /// Closed because a frame failed its checks.
    Malformed,
    /// Closed because the handshake or authentication failed.
    HandshakeFailed,
    /// Closed after idling past the idle timeout.
    IdleTimeout,
    /// Closed because a frame arrived too slowly, or the peer stopped
    /// reading replies.
    SlowPeer,
}

impl ConnEvent {
    pub const ALL: [ConnEvent; 7] = [
        Self::Accepted,
        Self::Refused,
        Self::Closed,
        Self::Malformed,
        Self::HandshakeFailed,
        Self::IdleTimeout,
        Self::SlowPeer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Closed => "closed",
            Self::Malformed => "malformed",
            Self::HandshakeFailed => "handshake_failed",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowPeer => "slow_peer",
        }
    }
}

/// What one core counts. Only its core touches it.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    requests: [[u64; Outcome::ALL.len()]; OpKind::ALL.len()],
    latency: [LatencyHistogram; OpKind::ALL.len()],
    connections: [u64; ConnEvent::ALL.len()],
    /// Object bytes received in puts and sent in gets.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Requests that reached this core for an object another core owns
    /// (forwarded there): a client routing badly shows up here.
    pub misrouted: u64,
    /// Requests other cores forwarded here.
    pub forwarded_in: u64,
    pub open_connections: u64,
}

impl ShardMetrics {
    pub fn request(&mut self, kind: OpKind, outcome: Outcome, elapsed: Duration) {
        self.requests[kind as usize][outcome as usize] += 1;
        self.latency[kind as usize].record(elapsed);
    }

    pub fn connection(&mut self, event: ConnEvent) {
        self.connections[event as usize] += 1;
    }

    pub fn requests(&self, kind: OpKind, outcome: Outcome) -> u64 {
        self.requests[kind as usize][outcome as usize]
    }

    pub fn connections(&self, event: ConnEvent) -> u64 {
        self.connections[event as usize]
    }

    pub fn latency(&self, kind: OpKind) -> &LatencyHistogram {
        &self.latency[kind as usize]
    }
}

/// One core's state at one instant, sent to whoever asked (admin endpoint,
/// `stats` requests).
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub shard_id: u16,
    pub metrics: ShardMetrics,
    pub store: StoreStats,
    pub write_mode: WriteMode,
    pub in_flight: u64,
    pub buffered_bytes: u64,
    pub replication: ReplicationStats,
    /// This core's links to other nodes' cores.
    pub peers: Vec<PeerSnapshot>,
    pub hints_pending: u64,
    /// Hints in files of nodes no longer in the topology (never replayed).
    pub hints_stranded: u64,
    /// Deleted ids the shard's holdings remember.
    pub tombstones: u64,
    /// Peer handshakes that found another topology epoch.
    pub epoch_mismatches: u64,
    pub topology_epoch: u64,
}

impl MetricsSnapshot {
    /// Flat name/value pairs, for the wire's `StatsReply`.
    pub fn entries(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for kind in OpKind::ALL {
            for outcome in Outcome::ALL {
                let value = self.metrics.requests(kind, outcome);
                if value > 0 {
                    out.push((
                        format!("requests.{}.{}", kind.name(), outcome.name()),
                        value,
                    ));
                }
            }
        }
        for event in ConnEvent::ALL {
            out.push((
                format!("connections.{}", event.name()),
                self.metrics.connections(event),
            ));
        }
        out.extend(
            CATALOGUE
                .iter()
                .map(|metric| (metric.stat.to_owned(), (metric.value)(self))),
        );
        out
    }
}

/// How a catalogue value is exported to Prometheus: not at all, as it is,
/// or (a count of microseconds) in seconds. Name, type, help.
#[derive(Clone, Copy)]
enum Prom {
    No,
    Plain(&'static str, &'static str, &'static str),
    Seconds(&'static str, &'static str, &'static str),
}

/// One number a shard reports: its name in the `stats` reply (what
/// `stratum stat` and older tools read), and its Prometheus form.
struct Metric {
    stat: &'static str,
    prom: Prom,
    value: fn(&MetricsSnapshot) -> u64,
}

/// Every per-shard number beyond the labelled families (requests,
/// latencies, connection events), written once for both renderings.
const CATALOGUE: &[Metric] = &[
    Metric {
        stat: "connections.open",
        prom: Prom::Plain("stratum_connections_open", "gauge", "Open connections."),
        value: |s| s.metrics.open_connections,
    },
    Metric {
        stat: "bytes_in",
        prom: Prom::Plain("stratum_object_bytes_received_total", "counter", "Object payload bytes received in puts and replicas, as sent (compressed or not)."),
        value: |s| s.metrics.bytes_in,
    },
    Metric {
        stat: "bytes_out",
        prom: Prom::Plain("stratum_object_bytes_sent_total", "counter", "Object payload bytes sent in replies, as sent (compressed or not)."),
        value: |s| s.metrics.bytes_out,
    },
    Metric {
        stat: "misrouted",
        prom: Prom::Plain("stratum_misrouted_requests_total", "counter", "Requests for objects another core owns, forwarded to it."),
        value: |s| s.metrics.misrouted,
    },
    Metric {
        stat: "forwarded_in",
        prom: Prom::Plain("stratum_forwarded_requests_total", "counter", "Requests other cores forwarded to this one."),
        value: |s| s.metrics.forwarded_in,
    },
    Metric {
        stat: "in_flight",
        prom: Prom::Plain("stratum_in_flight_requests", "gauge", "Requests being served."),
        value: |s| s.in_flight,
    },
    Metric {
        stat: "buffered_bytes",
        prom: Prom::Plain("stratum_buffered_request_bytes", "gauge", "Request body bytes held in memory."),
        value: |s| s.buffered_bytes,
    },
    Metric {
        stat: "store.objects",
        prom: Prom::Plain("stratum_store_objects", "gauge", "Objects stored."),
        value: |s| s.store.objects,
    },
    Metric {
        stat: "store.segments",
        prom: Prom::Plain("stratum_store_segments", "gauge", "Segment files."),
        value: |s| s.store.segments,
    },
    Metric {
        stat: "store.disk_bytes",
        prom: Prom::Plain("stratum_store_disk_bytes", "gauge", "Bytes in segment files."),
        value: |s| s.store.disk_bytes,
    },
    Metric {
        stat: "store.live_bytes",
        prom: Prom::Plain("stratum_store_live_bytes", "gauge", "Bytes of live records."),
        value: |s| s.store.live_bytes,
    },
    Metric {
        stat: "store.index_bytes",
        prom: Prom::Plain("stratum_store_index_bytes", "gauge", "Memory held by the index."),
        value: |s| s.store.index_bytes,
    },
    Metric {
        stat: "store.stalled_io_ops",
        prom: Prom::Plain("stratum_store_stalled_io_ops", "gauge", "Segment I/O operations in flight for 10 s or more: the device or the shard's ring has wedged. 0 when healthy."),
        value: |s| s.store.stalled_io_ops,
    },
    Metric {
        stat: "store.puts_stored",
        prom: Prom::Plain("stratum_store_puts_stored_total", "counter", "Puts that wrote a record."),
        value: |s| s.store.puts_stored,
    },
    Metric {
        stat: "store.put_content_bytes",
        prom: Prom::Plain("stratum_store_put_logical_bytes_total", "counter", "Content bytes (inflated) of the objects puts stored."),
        value: |s| s.store.put_content_bytes,
    },
    Metric {
        stat: "store.put_payload_bytes",
        prom: Prom::Plain("stratum_store_put_stored_bytes_total", "counter", "Bytes the records of those objects hold (compressed where the client compressed)."),
        value: |s| s.store.put_payload_bytes,
    },
    Metric {
        stat: "store.puts_deduplicated",
        prom: Prom::Plain("stratum_store_puts_deduplicated_total", "counter", "Puts of objects already held."),
        value: |s| s.store.puts_deduplicated,
    },
    Metric {
        stat: "store.deletes",
        prom: Prom::Plain("stratum_store_deletes_total", "counter", "Tombstones written."),
        value: |s| s.store.deletes,
    },
    Metric {
        stat: "store.group_commits",
        prom: Prom::Plain("stratum_group_commits_total", "counter", "Group commits (one write + one fdatasync each)."),
        value: |s| s.store.group_commits,
    },
    Metric {
        stat: "store.group_commit_records",
        prom: Prom::Plain("stratum_group_commit_records_total", "counter", "Records written by group commits; divided by stratum_group_commits_total it is the mean batch size."),
        value: |s| s.store.group_commit_records,
    },
    Metric {
        stat: "store.group_commit_write_micros",
        prom: Prom::Seconds("stratum_group_commit_write_seconds_total", "counter", "Time group commits spent writing batches."),
        value: |s| s.store.group_commit_write_micros,
    },
    Metric {
        stat: "store.group_commit_sync_micros",
        prom: Prom::Seconds("stratum_group_commit_sync_seconds_total", "counter", "Time group commits spent in fdatasync (none with store.sync_method dsync: its writes include the sync)."),
        value: |s| s.store.group_commit_sync_micros,
    },
    Metric {
        stat: "store.cache_hits",
        prom: Prom::Plain("stratum_cache_hits_total", "counter", "Object cache hits."),
        value: |s| s.store.cache_hits,
    },
    Metric {
        stat: "store.cache_misses",
        prom: Prom::Plain("stratum_cache_misses_total", "counter", "Object cache misses."),
        value: |s| s.store.cache_misses,
    },
    Metric {
        stat: "store.corrupt_reads",
        prom: Prom::Plain("stratum_corrupt_reads_total", "counter", "Reads that found a damaged record."),
        value: |s| s.store.corrupt_reads,
    },
    Metric {
        stat: "store.scrubs",
        prom: Prom::Plain("stratum_scrubs_total", "counter", "Completed scrub passes."),
        value: |s| s.store.scrubs,
    },
    Metric {
        stat: "store.scrub_findings",
        prom: Prom::Plain("stratum_scrub_findings_total", "counter", "Damaged records scrubs found."),
        value: |s| s.store.scrub_findings,
    },
    Metric {
        stat: "topology_epoch",
        prom: Prom::Plain("stratum_topology_epoch", "gauge", "The topology epoch this core routes by."),
        value: |s| s.topology_epoch,
    },
    Metric {
        stat: "replication.quorum_acked",
        prom: Prom::Plain("stratum_quorum_acked_total", "counter", "Client writes acknowledged at the write quorum."),
        value: |s| s.replication.quorum_acked,
    },
    Metric {
        stat: "replication.quorum_partial",
        prom: Prom::Plain("stratum_quorum_partial_total", "counter", "Acknowledged writes that some replica missed (a hint was queued)."),
        value: |s| s.replication.quorum_partial,
    },
    Metric {
        stat: "replication.quorum_unavailable",
        prom: Prom::Plain("stratum_quorum_unavailable_total", "counter", "Client writes refused: fewer than the write quorum reachable or durable."),
        value: |s| s.replication.quorum_unavailable,
    },
    Metric {
        stat: "replication.hints_queued",
        prom: Prom::No,
        value: |s| s.replication.hints_queued,
    },
    Metric {
        stat: "replication.hints_dropped",
        prom: Prom::Plain("stratum_hints_dropped_total", "counter", "Hints not kept (queue full or write failed)."),
        value: |s| s.replication.hints_dropped,
    },
    Metric {
        stat: "replication.hints_replayed",
        prom: Prom::Plain("stratum_hints_replayed_total", "counter", "Hints delivered to their replica."),
        value: |s| s.replication.hints_replayed,
    },
    Metric {
        stat: "replication.hints_pending",
        prom: Prom::Plain("stratum_hints_pending", "gauge", "Hints waiting to be replayed to their replica."),
        value: |s| s.hints_pending,
    },
    Metric {
        stat: "replication.hints_stranded",
        prom: Prom::Plain("stratum_hints_stranded", "gauge", "Hints for nodes no longer in the topology: kept on disk, never replayed."),
        value: |s| s.hints_stranded,
    },
    Metric {
        stat: "replication.read_repairs",
        prom: Prom::Plain("stratum_read_repairs_total", "counter", "Missing objects copied from another replica after a client read."),
        value: |s| s.replication.read_repairs,
    },
    Metric {
        stat: "replication.read_repair_failures",
        prom: Prom::No,
        value: |s| s.replication.read_repair_failures,
    },
    Metric {
        stat: "replication.epoch_mismatches",
        prom: Prom::Plain("stratum_peer_epoch_mismatches_total", "counter", "Peer handshakes and replicate requests on another topology epoch."),
        value: |s| s.epoch_mismatches + s.replication.replicate_epoch_mismatches,
    },
    Metric {
        stat: "repair.ranges_compared",
        prom: Prom::Plain("stratum_repair_ranges_compared_total", "counter", "Anti-entropy: ranges whose digests were compared with a peer's."),
        value: |s| s.replication.repair_ranges_compared,
    },
    Metric {
        stat: "repair.objects_fetched",
        prom: Prom::Plain("stratum_repair_objects_fetched_total", "counter", "Anti-entropy: objects copied here from a peer."),
        value: |s| s.replication.repair_objects_fetched,
    },
    Metric {
        stat: "repair.bytes_fetched",
        prom: Prom::Plain("stratum_repair_bytes_fetched_total", "counter", "Anti-entropy: object bytes copied here from a peer."),
        value: |s| s.replication.repair_bytes_fetched,
    },
    Metric {
        stat: "repair.tombstones_applied",
        prom: Prom::Plain("stratum_repair_tombstones_applied_total", "counter", "Anti-entropy: deletes learned from a peer and applied here."),
        value: |s| s.replication.repair_tombstones_applied,
    },
    Metric {
        stat: "repair.failures",
        prom: Prom::Plain("stratum_repair_failures_total", "counter", "Anti-entropy passes with a peer shard that ended in an error."),
        value: |s| s.replication.repair_failures,
    },
    Metric {
        stat: "repair.wire_bytes",
        prom: Prom::Plain("stratum_repair_wire_bytes_total", "counter", "Anti-entropy: bytes exchanged with peers, both ways, objects included."),
        value: |s| s.replication.repair_wire_bytes,
    },
    Metric {
        stat: "repair.passes",
        prom: Prom::Plain("stratum_repair_passes_total", "counter", "Anti-entropy passes finished (each over every peer shard)."),
        value: |s| s.replication.repair_passes,
    },
    Metric {
        stat: "repair.peers",
        prom: Prom::Plain("stratum_repair_peers", "gauge", "Peer shards this core compares with."),
        value: |s| s.replication.repair_peers,
    },
    Metric {
        stat: "repair.peers_in_sync",
        prom: Prom::Plain("stratum_repair_peers_in_sync", "gauge", "Peer shards whose last comparison found nothing this shard lacked."),
        value: |s| s.replication.repair_peers_in_sync,
    },
    Metric {
        stat: "store.tombstones",
        prom: Prom::Plain("stratum_store_tombstones", "gauge", "Deleted ids this shard remembers (they block repair from copying the object back)."),
        value: |s| s.tombstones,
    },
    Metric {
        stat: "rebalance.backlog",
        prom: Prom::Plain("stratum_rebalance_backlog", "gauge", "Copies held of objects this node no longer replicates, still to hand off (0 on a leaving node: safe to stop)."),
        value: |s| s.replication.rebalance_backlog,
    },
    Metric {
        stat: "rebalance.handed_off",
        prom: Prom::Plain("stratum_rebalance_handed_off_total", "counter", "Copies dropped after the write quorum of current replicas held them."),
        value: |s| s.replication.rebalance_handed_off,
    },
    Metric {
        stat: "rebalance.sent",
        prom: Prom::Plain("stratum_rebalance_sent_total", "counter", "Copies sent to a current replica that lacked them."),
        value: |s| s.replication.rebalance_sent,
    },
    Metric {
        stat: "rebalance.stale",
        prom: Prom::Plain("stratum_rebalance_stale_total", "counter", "Copies dropped because a current replica had deleted the object."),
        value: |s| s.replication.rebalance_stale,
    },
    Metric {
        stat: "store.writable",
        prom: Prom::Plain("stratum_shard_writable", "gauge", "1 if the shard takes writes, 0 if read-only or failed."),
        value: |s| u64::from(s.write_mode == WriteMode::Writable),
    },
];

/// Renders snapshots in the Prometheus text exposition format (0.0.4).
pub fn render_prometheus(node_id: u32, snapshots: &[MetricsSnapshot]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let labels = |shard: u16| format!("node=\"{node_id}\",shard=\"{shard}\"");

    header(
        &mut out,
        "stratum_requests_total",
        "counter",
        "Requests by kind and outcome.",
    );
    for snap in snapshots {
        for kind in OpKind::ALL {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "stratum_requests_total{{{},op=\"{}\",outcome=\"{}\"}} {}",
                    labels(snap.shard_id),
                    kind.name(),
                    outcome.name(),
                    snap.metrics.requests(kind, outcome)
                );
            }
        }
    }

    header(
        &mut out,
        "stratum_request_duration_seconds",
        "histogram",
        "Time from a request's last byte arriving to its reply being queued.",
    );
    for snap in snapshots {
        for kind in OpKind::ALL {
            let hist = snap.metrics.latency(kind);
            let base = format!("{},op=\"{}\"", labels(snap.shard_id), kind.name());
            render_histogram(&mut out, "stratum_request_duration_seconds", &base, hist);
        }
    }

    header(
        &mut out,
        "stratum_connection_events_total",
        "counter",
        "Connection events by kind.",
    );
    for snap in snapshots {
        for event in ConnEvent::ALL {
            let _ = writeln!(
                out,
                "stratum_connection_events_total{{{},event=\"{}\"}} {}",
                labels(snap.shard_id),
                event.name(),
                snap.metrics.connections(event)
            );
        }
    }

    for metric in CATALOGUE {
        let (name, kind, help, scale) = match metric.prom {
            Prom::No => continue,
            Prom::Plain(name, kind, help) => (name, kind, help, 1.0),
            Prom::Seconds(name, kind, help) => (name, kind, help, 1e-6),
        };
        header(&mut out, name, kind, help);
        for snap in snapshots {
            let value = (metric.value)(snap) as f64 * scale;
            let _ = writeln!(out, "{name}{{{}}} {value}", labels(snap.shard_id));
        }
    }
    // Derived from two catalogue values.
    header(
        &mut out,
        "stratum_store_put_compression_ratio",
        "gauge",
        "Stored over logical bytes of the objects puts stored (1: nothing saved).",
    );
    for snap in snapshots {
        let store = &snap.store;
        let ratio = if store.put_content_bytes == 0 {
            1.0
        } else {
            store.put_payload_bytes as f64 / store.put_content_bytes as f64
        };
        let _ = writeln!(
            out,
            "stratum_store_put_compression_ratio{{{}}} {ratio}",
            labels(snap.shard_id)
        );
    }
    render_replication(&mut out, node_id, snapshots);
    out
}

/// One series per peer link (the per-core replication gauges are in the
/// main table).
fn render_replication(out: &mut String, node_id: u32, snapshots: &[MetricsSnapshot]) {
    let labels = |shard: u16| format!("node=\"{node_id}\",shard=\"{shard}\"");
    let peer = |snap: &MetricsSnapshot, p: &PeerSnapshot| {
        format!(
            "{},peer_node=\"{}\",peer_shard=\"{}\"",
            labels(snap.shard_id),
            p.node_id,
            p.shard
        )
    };
    header(
        out,
        "stratum_peer_link_state",
        "gauge",
        "Link to a peer core: 0 idle, 1 up, 2 down (backing off).",
    );
    for snap in snapshots {
        for p in &snap.peers {
            let _ = writeln!(
                out,
                "stratum_peer_link_state{{{}}} {}",
                peer(snap, p),
                p.state as u8
            );
        }
    }
    header(
        out,
        "stratum_peer_requests_total",
        "counter",
        "Requests to a peer core by result.",
    );
    for snap in snapshots {
        for p in &snap.peers {
            for (result, value) in [
                ("ok", p.stats.requests_ok),
                ("error", p.stats.errors),
                ("timeout", p.stats.timeouts),
            ] {
                let _ = writeln!(
                    out,
                    "stratum_peer_requests_total{{{},result=\"{result}\"}} {value}",
                    peer(snap, p)
                );
            }
        }
    }
    header(
        out,
        "stratum_peer_connects_total",
        "counter",
        "Connects to a peer core by result.",
    );
    for snap in snapshots {
        for p in &snap.peers {
            for (result, value) in [
                ("ok", p.stats.connects),
                ("failed", p.stats.connect_failures),
            ] {
                let _ = writeln!(
                    out,
                    "stratum_peer_connects_total{{{},result=\"{result}\"}} {value}",
                    peer(snap, p)
                );
            }
        }
    }
    header(
        out,
        "stratum_peer_request_duration_seconds",
        "histogram",
        "Round trips of requests to a peer core.",
    );
    for snap in snapshots {
        for p in &snap.peers {
            let base = peer(snap, p);
            let hist = &p.stats.latency;
            render_histogram(out, "stratum_peer_request_duration_seconds", &base, hist);
        }
    }
}

/// One histogram's `_bucket` (cumulative), `_sum` and `_count` samples.
fn render_histogram(out: &mut String, name: &str, base: &str, hist: &LatencyHistogram) {
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(hist.buckets().iter()) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{{base},le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{base},le=\"+Inf\"}} {}", hist.count());
    let _ = writeln!(out, "{name}_sum{{{base}}} {}", hist.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{base}}} {}", hist.count());
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_with_latencies() -> PeerSnapshot {
        let mut stats = crate::replication::peer_link::PeerStats::default();
        stats.latency.record(Duration::from_micros(80));
        stats.latency.record(Duration::from_secs(2));
        PeerSnapshot {
            node_id: 2,
            shard: 0,
            state: crate::replication::peer_link::LinkState::Up,
            stats,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_rendering() {
        let mut metrics = ShardMetrics::default();
        metrics.request(OpKind::Get, Outcome::Ok, Duration::from_micros(10));
        metrics.request(OpKind::Get, Outcome::Ok, Duration::from_micros(300));
        metrics.request(OpKind::Get, Outcome::NotFound, Duration::from_secs(60));
        let snap = MetricsSnapshot {
            shard_id: 1,
            metrics,
            store: StoreStats::default(),
            write_mode: WriteMode::Writable,
            in_flight: 0,
            buffered_bytes: 0,
            replication: ReplicationStats::default(),
            peers: vec![peer_with_latencies()],
            hints_pending: 3,
            hints_stranded: 5,
            tombstones: 0,
            epoch_mismatches: 0,
            topology_epoch: 2,
        };
        let text = render_prometheus(7, &[snap]);
        let line = |needle: &str| {
            text.lines()
                .find(|line| line.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .to_owned()
        };
        let base = "stratum_request_duration_seconds_bucket{node=\"7\",shard=\"1\",op=\"get\"";
        assert!(line(&format!("{base},le=\"0.000025\"}}")).ends_with(" 1"));
        assert!(line(&format!("{base},le=\"0.0005\"}}")).ends_with(" 2"));
        assert!(line(&format!("{base},le=\"5\"}}")).ends_with(" 2"));
        assert!(line(&format!("{base},le=\"+Inf\"}}")).ends_with(" 3"));
        let peer = "stratum_peer_request_duration_seconds_bucket{node=\"7\",shard=\"1\",peer_node=\"2\",peer_shard=\"0\"";
        assert!(line(&format!("{peer},le=\"0.0001\"}}")).ends_with(" 1"));
        assert!(line(&format!("{peer},le=\"+Inf\"}}")).ends_with(" 2"));
        assert!(line(
            "stratum_peer_link_state{node=\"7\",shard=\"1\",peer_node=\"2\",peer_shard=\"0\"}"
        )
        .ends_with(" 1"));
        assert!(line("stratum_hints_pending{node=\"7\",shard=\"1\"}").ends_with(" 3"));
        assert!(line("stratum_hints_stranded{node=\"7\",shard=\"1\"}").ends_with(" 5"));
        assert!(line(
            "stratum_requests_total{node=\"7\",shard=\"1\",op=\"get\",outcome=\"not_found\"}"
        )
        .ends_with(" 1"));
        // Every sample line is `name{labels} value`.
        for sample in text.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = sample.rsplit_once(' ').expect("value");
            assert!(value.parse::<f64>().is_ok(), "{sample}");
        }
    }
}
