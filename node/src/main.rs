//! `stratum-node`: see `stratum_node::cli` (the program lives in the library
//! so `stratum-bench --embedded` can run the same node).

fn main() -> std::process::ExitCode {
    stratum_node::cli::main()
}
