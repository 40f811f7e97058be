//! How the node's allocator (mimalloc, set in `main.rs`) treats freed memory.
//!
//! mimalloc returns freed memory to the kernel a second after it is freed
//! (its v3 default). A shard that takes a 64 MiB put now and then faults
//! the next one's buffers back in, and the kernel zeroes every fresh page on
//! the shard's core, inside whatever call first touches it: growing a
//! frame's payload, copying a record into the ring's write buffer, reading
//! a record back. On this project's virtio test machine that held a core
//! for 150-200 ms per big put, with every small request on the core waiting
//! (docs/measurements/2026-12-07-per-core-ceiling.md). The node keeps freed
//! memory mapped instead and reuses it: after the first big puts its
//! resident size stays at its peak, which the shard's limits bound
//! (`max_buffered_bytes_per_shard`, the cache, the index).
//!
//! `MIMALLOC_PURGE_DELAY` in the environment still decides, for an operator
//! who prefers memory returned over latency.

use std::os::raw::{c_int, c_long};

// Links the mimalloc library into every binary of this crate (tests too),
// which `mi_option_*` below live in.
use mimalloc as _;

/// mimalloc's `mi_option_purge_delay` (the 16th option of `mimalloc.h`'s
/// `mi_option_e`): milliseconds before freed memory is returned to the
/// kernel; -1 never.
const PURGE_DELAY: c_int = 15;
/// Its default in the mimalloc v3 that `libmimalloc-sys` 0.1.49 builds,
/// which `purge_delay_option_is_the_one_we_mean` checks the index against
/// (no other option defaults to 1000).
#[cfg(test)]
const DEFAULT_PURGE_DELAY_MS: c_long = 1000;

extern "C" {
    // Both are in the mimalloc library that `libmimalloc-sys` (under the
    // `mimalloc` crate) builds and links.
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// Keeps freed memory for reuse unless the environment says otherwise.
/// Returns the purge delay now in force (milliseconds; -1: never).
pub fn keep_freed_memory() -> c_long {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's options are plain integers it reads on every
        // purge decision; setting one is safe at any time, from any thread.
        unsafe { mi_option_set(PURGE_DELAY, -1) };
    }
    purge_delay()
}

fn purge_delay() -> c_long {
    // SAFETY: reads an option's value; no preconditions.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numeric option is mimalloc's purge delay: it reads as its
    /// default before anything sets it, and -1 after. (A mimalloc upgrade
    /// that renumbers or re-defaults it fails here.)
    #[test]
    fn purge_delay_option_is_the_one_we_mean() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(purge_delay(), DEFAULT_PURGE_DELAY_MS);
        assert_eq!(keep_freed_memory(), -1);
    }
}
