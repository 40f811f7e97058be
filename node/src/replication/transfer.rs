//! What one repair or rebalancing exchange may carry, shared by
//! anti-entropy (which pulls) and rebalancing (which pushes).

/// Most ids in one `sync_list` reply.
pub const MAX_LIST: u32 = 4096;

/// The least an object costs against `repair_bytes_per_sec`, whatever its
/// size (the default 32 MiB/s then bounds repair at 8,192 objects per second
/// per core).
pub const OBJECT_COST: u64 = 4096;
