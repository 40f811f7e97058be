//! Facts of the block device under a data directory, read from sysfs.

use std::path::{Path, PathBuf};

/// Used when the device's limit cannot be read: the smallest limit common
/// on Linux block devices.
pub const FALLBACK_MAX_IO: usize = 128 * 1024;

/// The largest single I/O the block device under `dir` accepts, from
/// `queue/max_sectors_kb`. `dir` need not exist yet: its nearest existing
/// ancestor is on the same device.
pub fn detect_max_io(dir: &Path) -> usize {
    match queue_property(dir, "max_sectors_kb") {
        // Keep it a multiple of 4 KiB so split reads stay aligned.
        Some(kb) => ((kb * 1024) / 4096).max(1) * 4096,
        None => FALLBACK_MAX_IO,
    }
}

// Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

/// The device's logical block size: the alignment O_DIRECT needs for
/// offsets, lengths and buffers. At least 512.
pub fn detect_block_size(dir: &Path) -> usize {
    queue_property(dir, "logical_block_size")
        .map(|size| size.max(512))
        .unwrap_or(4096)
}

/// One number from the device's `queue/` directory in sysfs (the parent
/// device's for a partition).
fn queue_property(dir: &Path, name: &str) -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    let meta = dir
        .ancestors()
        .find_map(|path| std::fs::metadata(path).ok())?;
    let dev = meta.dev();
    let base = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc_major(dev),
        libc_minor(dev)
    ));
    [
        base.join("queue").join(name),
        base.join("..").join("queue").join(name),
    ]
    .iter()
    .find_map(|candidate| std::fs::read_to_string(candidate).ok()?.trim().parse().ok())
}
