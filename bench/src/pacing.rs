//! Open-loop pacing: when each operation is *meant* to start.
//!
//! An open-loop run issues operation `i` at `start + i / rate`, whether or
//! not earlier ones have finished. Its latency is measured from that
//! intended start, not from when a busy generator got around to sending it:
//! a stall then shows up in every operation it delayed (correcting for
//! coordinated omission) instead of in one.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    interval_nanos: f64,
}

impl Schedule {
    /// `rate` operations per second from `start`.
    pub fn new(start: Instant, rate: f64) -> Self {
        assert!(rate > 0.0, "rate must be positive");
        Self {
            start,
            interval_nanos: 1e9 / rate,
        }
    }

    /// When operation `index` is meant to start.
    pub fn intended(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos((index as f64 * self.interval_nanos) as u64)
    }

    /// Operations meant to have started by `now` (the next index to issue
    /// when catching up).
    pub fn due_by(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as f64;
        (elapsed / self.interval_nanos).floor() as u64 + 1
    }
}

/// The latency of an operation that was meant to start at `intended`,
/// actually started at `sent` and completed at `done`: from `intended`
/// (the coordinated-omission-corrected latency; never less than the
/// service time `done - sent`).
pub fn corrected_latency(intended: Instant, sent: Instant, done: Instant) -> Duration {
    let service = done.saturating_duration_since(sent);
    done.saturating_duration_since(intended).max(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_at_the_rate() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0);
        assert_eq!(schedule.intended(0), start);
        assert_eq!(schedule.intended(1) - start, Duration::from_millis(1));
        assert_eq!(schedule.intended(2500) - start, Duration::from_millis(2500));
        assert_eq!(schedule.due_by(start), 1);
        assert_eq!(schedule.due_by(start + Duration::from_micros(10_500)), 11);
        let fractional = Schedule::new(start, 3.0);
        assert_eq!(fractional.intended(3) - start, Duration::from_secs(1));
        assert_eq!(
            fractional.intended(1) - start,
            Duration::from_nanos(333_333_333)
        );
    }

    #[test]
    fn a_stall_is_charged_to_every_operation_it_delayed() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 100.0);
        // The generator stalls 1 s; operation 50 (due at 0.5 s) goes out at
        // 1 s and takes 1 ms.
        let sent = start + Duration::from_secs(1);
        let done = sent + Duration::from_millis(1);
        let latency = corrected_latency(schedule.intended(50), sent, done);
        assert_eq!(latency, Duration::from_millis(501));
        // On time, the latency is the service time.
        let on_time = schedule.intended(10);
        assert_eq!(
            corrected_latency(on_time, on_time, on_time + Duration::from_millis(2)),
            Duration::from_millis(2)
        );
    }
}
