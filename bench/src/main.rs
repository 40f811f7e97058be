//! `stratum-bench`: the load generator and the --embedded demo.
//!
//! Not built yet (issue #6). Until then this binary says so and exits
//! with status 69 (EX_UNAVAILABLE) rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "stratum-bench: not built yet (the load generator and the --embedded demo: issue #6).\n\
         This build has the shared foundation only (stratum-wire: object ids, the wire\n\
         protocol, placement); see README.md for what works today."
    );
    ExitCode::from(69)
}
