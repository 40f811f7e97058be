//! When to try again, and how long to wait first.
//!
//! Every operation of the protocol is safe to repeat: objects are immutable
//! and named by their content, so a repeated put stores nothing new, a
//! repeated get or has reads again, and a repeated delete writes another
//! tombstone (only its `existed` answer may differ). What a retry must not
//! do is turn a definite answer into a guess: a rejection (bad hash, too
//! large, unauthorized) is final, and a timeout is not retried in a new
//! round (the other replicas were already tried; waiting again would only
//! multiply the caller's latency).

use std::time::Duration;

use stratum_wire::message::ErrorCode;

use crate::error::AttemptError;

/// The node's answer settles the request: retrying elsewhere cannot help.
pub(crate) fn is_rejection(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::HashMismatch
            | ErrorCode::TooLarge
            | ErrorCode::Unauthorized
            | ErrorCode::BadRequest
            | ErrorCode::UnsupportedVersion
    )
}

/// A new round over the replicas, after a pause, may succeed.
pub(crate) fn round_may_help(error: &AttemptError) -> bool {
    match error {
        AttemptError::Node { code, .. } => matches!(
            code,
            ErrorCode::Busy
                | ErrorCode::Unavailable
                | ErrorCode::Internal
                | ErrorCode::StaleTopology
        ),
        AttemptError::ConnectionLost(_) | AttemptError::Overloaded => true,
        _ => false,
    }
}

/// Pause before retry round `round` (1-based): exponential from `base`,
/// with full jitter so clients that failed together do not return together.
pub(crate) fn backoff(base: Duration, round: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << round.min(10));
    let random = getrandom::u64().unwrap_or(0x9E37_79B9_7F4A_7C15);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// A runtime-independent sleep: the client must not assume tokio (or any
/// executor) in its caller.
pub(crate) async fn sleep(duration: Duration) {
    futures_timer::Delay::new(duration).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_jitter_band() {
        let base = Duration::from_millis(20);
        for round in 1..6 {
            let ceiling = base * (1 << round);
            for _ in 0..100 {
                let pause = backoff(base, round);
                assert!(
                    pause >= ceiling / 2 && pause <= ceiling,
                    "{pause:?} for round {round}"
                );
            }
        }
    }

    #[test]
    fn rejections_are_final_and_busy_is_retried() {
        assert!(is_rejection(ErrorCode::HashMismatch));
        assert!(!is_rejection(ErrorCode::Busy));
        let busy = AttemptError::Node {
            code: ErrorCode::Busy,
            detail: String::new(),
        };
        assert!(round_may_help(&busy));
        assert!(!round_may_help(&AttemptError::Timeout(
            Duration::from_secs(1)
        )));
        assert!(!round_may_help(&AttemptError::NotFound));
    }
}
