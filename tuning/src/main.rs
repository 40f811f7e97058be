//! `stratum-tune`: host checks, iotune and recommendations.
//!
//! Not built yet (issue #7). Until then this binary says so and exits
//! with status 69 (EX_UNAVAILABLE) rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "stratum-tune: not built yet (host checks, iotune and recommendations: issue #7).\n\
         This build has the shared foundation only (stratum-wire: object ids, the wire\n\
         protocol, placement); see README.md for what works today."
    );
    ExitCode::from(69)
}
