//! `stratum-bench`: the load generator (see README.md, "Benchmarking").
//!
//! - [`workload`]: object sizes, key popularity, deterministic objects.
//! - [`pacing`]: open-loop schedules and coordinated-omission correction.
//! - [`report`]: HDR histograms per operation kind, JSON, summary, plot.
//! - [`embedded`]: `--embedded N` real node processes on loopback.
//! - [`run`]: the workloads themselves, closed or open loop, and `verify`.

pub mod embedded;
pub mod pacing;
pub mod report;
pub mod run;
pub mod workload;
