//! `stratum-node`: the thread-per-core storage server.
//!
//! Not built yet (issue #4). Until then this binary says so and exits
//! with status 69 (EX_UNAVAILABLE) rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "stratum-node: not built yet (the thread-per-core storage server: issue #4).\n\
         This build has the shared foundation only (stratum-wire: object ids, the wire\n\
         protocol, placement); see README.md for what works today."
    );
    ExitCode::from(69)
}
