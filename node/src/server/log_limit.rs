//! Repeated log lines, limited per core: the first line of a kind is
//! written, then at most one per [`WINDOW`], saying how many like it were
//! held back. A full disk refusing every put, or a flood of bad
//! connections, would otherwise write a line per request (seen: 715,465
//! lines, 181 MB, in 12 s, onto the disk that was full). The metrics keep
//! the exact totals.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most one line of a kind per this long.
pub const WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    held_back: u64,
}

/// One core's limiter (no locks: used from its own thread only).
#[derive(Debug, Default)]
pub struct LogLimiter {
    slots: RefCell<HashMap<&'static str, Slot>>,
}

impl LogLimiter {
    /// `Some(n)`: write this line of `kind`, and say `n` like it were held
    /// back since the last one written. `None`: hold it back.
    pub fn admit(&self, kind: &'static str) -> Option<u64> {
        self.admit_at(kind, crate::clock::now())
    }

    fn admit_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(kind) {
            Some(slot) if now.duration_since(slot.logged_at) < WINDOW => {
                slot.held_back += 1;
                None
            }
            Some(slot) => {
                let held_back = slot.held_back;
                *slot = Slot {
                    logged_at: now,
                    held_back: 0,
                };
                Some(held_back)
            }
            None => {
                slots.insert(
                    kind,
                    Slot {
                        logged_at: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_then_one_per_window_with_the_count_held_back() {
        let limiter = LogLimiter::default();
        let start = crate::clock::now();
        assert_eq!(limiter.admit_at("full", start), Some(0));
        for n in 1..1000u64 {
            assert_eq!(
                limiter.admit_at("full", start + Duration::from_millis(n)),
                None
            );
        }
        // Another kind is not held back by the first.
        assert_eq!(limiter.admit_at("slow", start), Some(0));
        assert_eq!(limiter.admit_at("full", start + WINDOW), Some(999));
        assert_eq!(limiter.admit_at("full", start + WINDOW * 3), Some(0));
    }
}
