//! Request latency, in the cumulative-bucket shape Prometheus expects.
//! Served requests and peer-link round trips both record into it.

use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A cumulative-bucket histogram in the shape Prometheus expects.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    /// `buckets[i]` counts observations ≤ `LATENCY_BUCKETS_US[i]` and above
    /// the previous bound; the last slot is the overflow (+Inf).
    buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    count: u64,
    sum_us: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observations per bucket ([`LATENCY_BUCKETS_US`], then +Inf).
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// Sum of all observations, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
}
