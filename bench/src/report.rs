//! What a run measured: per operation kind, an HDR histogram of latencies
//! (microseconds, 3 significant digits), counts, bytes and errors by type;
//! and the data errors that fail a run whatever its throughput.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use stratum_client::{ClientError, TrafficStats};

/// Highest latency a histogram tracks (larger values are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Data errors kept verbatim (the rest are only counted).
const KEPT_DATA_ERRORS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Put,
    Get,
    BatchGet,
    Verify,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::BatchGet => "batch_get",
            Self::Verify => "verify",
        }
    }
}

/// The error label a failed operation is counted under.
pub fn error_label(err: &ClientError) -> &'static str {
    match err {
        ClientError::NotFound { .. } => "not_found",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Unavailable { .. } => "unavailable",
        ClientError::Rejected { .. } => "rejected",
        ClientError::Corrupt { .. } => "corrupt",
        ClientError::Protocol { .. } => "protocol",
        ClientError::TooLarge { .. } => "too_large",
        ClientError::Topology(_) => "topology",
        ClientError::Config(_) => "config",
        ClientError::Closed => "closed",
    }
}

#[derive(Debug, Clone)]
pub struct KindStats {
    pub latency_us: Histogram<u64>,
    pub ops: u64,
    pub bytes: u64,
    pub errors: BTreeMap<&'static str, u64>,
}

impl KindStats {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
            ops: 0,
            bytes: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One worker's measurements; merged at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub kinds: BTreeMap<OpKind, KindStats>,
    pub data_errors: Vec<String>,
    pub data_error_count: u64,
}

impl Recorder {
    fn kind(&mut self, kind: OpKind) -> &mut KindStats {
        self.kinds.entry(kind).or_insert_with(KindStats::new)
    }

    pub fn ok(&mut self, kind: OpKind, latency: Duration, bytes: u64) {
        let stats = self.kind(kind);
        stats.ops += 1;
        stats.bytes += bytes;
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let _ = stats.latency_us.record(us);
    }

    pub fn error(&mut self, kind: OpKind, label: &'static str) {
        *self.kind(kind).errors.entry(label).or_default() += 1;
    }

    /// Something wrong with the data itself (an acknowledged object missing
    /// or different): the run fails.
    pub fn data_error(&mut self, what: String) {
        self.data_error_count += 1;
        if self.data_errors.len() < KEPT_DATA_ERRORS {
            self.data_errors.push(what);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (kind, theirs) in other.kinds {
            let ours = self.kind(kind);
            ours.ops += theirs.ops;
            ours.bytes += theirs.bytes;
            let _ = ours.latency_us.add(&theirs.latency_us);
            for (label, count) in theirs.errors {
                *ours.errors.entry(label).or_default() += count;
            }
        }
        self.data_error_count += other.data_error_count;
        for error in other.data_errors {
            if self.data_errors.len() < KEPT_DATA_ERRORS {
                self.data_errors.push(error);
            }
        }
    }

    pub fn total_ops(&self) -> u64 {
        self.kinds.values().map(|stats| stats.ops).sum()
    }
}

/// A finished run: what was measured over how long.
pub struct Report {
    pub measured: Duration,
    pub recorder: Recorder,
    /// Object bytes the client sent and received from the warm-up on:
    /// logical (content) and on the wire (payloads, compressed or not).
    pub traffic: TrafficStats,
}

/// `after - before`, field by field.
pub fn traffic_between(before: TrafficStats, after: TrafficStats) -> TrafficStats {
    TrafficStats {
        content_bytes_sent: after.content_bytes_sent - before.content_bytes_sent,
        payload_bytes_sent: after.payload_bytes_sent - before.payload_bytes_sent,
        content_bytes_received: after.content_bytes_received - before.content_bytes_received,
        payload_bytes_received: after.payload_bytes_received - before.payload_bytes_received,
    }
}

/// Wire bytes over logical bytes (1 when nothing moved).
fn wire_ratio(logical: u64, wire: u64) -> f64 {
    if logical == 0 {
        1.0
    } else {
        wire as f64 / logical as f64
    }
}

fn percentile(hist: &Histogram<u64>, q: f64) -> u64 {
    if hist.is_empty() {
        0
    } else {
        hist.value_at_quantile(q)
    }
}

impl Report {
    fn per_sec(&self, count: u64) -> f64 {
        count as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// One object keyed by operation kind (see the README for the fields).
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (kind, stats) in &self.recorder.kinds {
            let h = &stats.latency_us;
            out.insert(
                kind.name().to_owned(),
                json!({
                    "ops": stats.ops,
                    "ops_per_sec": self.per_sec(stats.ops),
                    "bytes_per_sec": self.per_sec(stats.bytes),
                    "errors": stats.error_count(),
                    "errors_by_type": stats.errors,
                    "p50_us": percentile(h, 0.50),
                    "p90_us": percentile(h, 0.90),
                    "p99_us": percentile(h, 0.99),
                    "p999_us": percentile(h, 0.999),
                    "max_us": h.max(),
                }),
            );
        }
        out.insert(
            "run".into(),
            json!({
                "measured_secs": self.measured.as_secs_f64(),
                "data_errors": self.recorder.data_error_count,
                "data_error_examples": self.recorder.data_errors,
            }),
        );
        let t = &self.traffic;
        out.insert(
            "traffic".into(),
            json!({
                "logical_bytes_sent": t.content_bytes_sent,
                "wire_bytes_sent": t.payload_bytes_sent,
                "sent_ratio": wire_ratio(t.content_bytes_sent, t.payload_bytes_sent),
                "logical_bytes_received": t.content_bytes_received,
                "wire_bytes_received": t.payload_bytes_received,
                "received_ratio": wire_ratio(t.content_bytes_received, t.payload_bytes_received),
            }),
        );
        Value::Object(out)
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "measured {:.1} s\n{:<10} {:>10} {:>11} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
            self.measured.as_secs_f64(),
            "op",
            "ops",
            "ops/s",
            "MB/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9",
            "max µs",
            "errors"
        );
        for (kind, stats) in &self.recorder.kinds {
            let h = &stats.latency_us;
            text.push_str(&format!(
                "{:<10} {:>10} {:>11.0} {:>10.2} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
                kind.name(),
                stats.ops,
                self.per_sec(stats.ops),
                self.per_sec(stats.bytes) / 1e6,
                percentile(h, 0.50),
                percentile(h, 0.90),
                percentile(h, 0.99),
                percentile(h, 0.999),
                h.max(),
                stats.error_count()
            ));
            for (label, count) in &stats.errors {
                text.push_str(&format!("           error {label}: {count}\n"));
            }
        }
        let t = &self.traffic;
        for (direction, logical, wire) in [
            ("sent", t.content_bytes_sent, t.payload_bytes_sent),
            (
                "received",
                t.content_bytes_received,
                t.payload_bytes_received,
            ),
        ] {
            if logical > 0 {
                text.push_str(&format!(
                    "object bytes {direction}: {:.1} MB logical, {:.1} MB on the wire ({:.2})\n",
                    logical as f64 / 1e6,
                    wire as f64 / 1e6,
                    wire_ratio(logical, wire)
                ));
            }
        }
        if self.recorder.data_error_count > 0 {
            text.push_str(&format!(
                "DATA ERRORS: {} (the run fails)\n",
                self.recorder.data_error_count
            ));
            for error in &self.recorder.data_errors {
                text.push_str(&format!("  {error}\n"));
            }
        }
        text
    }

    /// Draws the latency distribution (latency against percentile, on a
    /// "number of nines" axis) as SVG, one line per operation kind.
    pub fn plot(&self, path: &Path) -> Result<(), String> {
        use plotters::prelude::*;
        let series: Vec<(&'static str, Vec<(f64, f64)>)> = self
            .recorder
            .kinds
            .iter()
            .filter(|(_, stats)| !stats.latency_us.is_empty())
            .map(|(kind, stats)| {
                let points = (0..=40)
                    .map(|step| {
                        let nines = f64::from(step) / 10.0; // 0 .. 4 nines
                        let q = 1.0 - 10f64.powf(-nines);
                        (nines, stats.latency_us.value_at_quantile(q) as f64 / 1000.0)
                    })
                    .collect();
                (kind.name(), points)
            })
            .collect();
        let max_ms = series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, ms)| *ms))
            .fold(0.001, f64::max);
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("stratum-bench latency by percentile", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..4f64, 0f64..max_ms * 1.05)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("percentile (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| err(&e))?;
        let colors = [&BLUE, &RED, &GREEN, &MAGENTA];
        for (index, (name, points)) in series.into_iter().enumerate() {
            let color = colors[index % colors.len()];
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_recorders_report_percentiles_throughput_and_errors() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for us in 1..=900 {
            a.ok(OpKind::Get, Duration::from_micros(us), 100);
        }
        for us in 901..=1000 {
            b.ok(OpKind::Get, Duration::from_micros(us), 100);
        }
        b.error(OpKind::Get, "timeout");
        b.data_error("x missing".into());
        a.merge(b);
        let report = Report {
            measured: Duration::from_secs(2),
            recorder: a,
            traffic: TrafficStats {
                content_bytes_sent: 4000,
                payload_bytes_sent: 1000,
                ..TrafficStats::default()
            },
        };
        let json = report.to_json();
        let get = &json["get"];
        assert_eq!(get["ops"], 1000);
        assert_eq!(get["ops_per_sec"], 500.0);
        assert_eq!(get["bytes_per_sec"], 50_000.0);
        assert_eq!(get["errors"], 1);
        assert_eq!(get["errors_by_type"]["timeout"], 1);
        assert_eq!(get["p50_us"], 500);
        assert_eq!(get["p99_us"], 990);
        assert_eq!(get["max_us"], 1000);
        assert_eq!(json["run"]["data_errors"], 1);
        assert_eq!(json["traffic"]["sent_ratio"], 0.25);
        assert!(report
            .summary()
            .contains("object bytes sent: 0.0 MB logical"));
        assert!(report.summary().contains("DATA ERRORS: 1"));

        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("latency.svg");
        report.plot(&svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("get"));
    }
}
