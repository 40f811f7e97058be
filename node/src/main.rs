//! `stratum-node`: see `stratum_node::cli` (the program lives in the library
//! so `stratum-bench --embedded` can run the same node).

// mimalloc, not the system allocator: each shard thread allocates and frees
// every request's buffers, and glibc's arenas kept returning memory to the
// kernel and faulting it back in. Server bench (README, "Benchmarks"): 4-8%
// less CPU per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stratum_node::cli::main()
}
