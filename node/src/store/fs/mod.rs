//! The seam below the store: every byte the store reads or writes, and every
//! `fdatasync`, goes through these traits. Production uses [`uring::UringFs`]
//! (the shard's own io_uring ring, O_DIRECT); [`dma::DmaFs`] (glommio's DMA
//! files) is the engine it replaced, kept as a baseline for benchmarks and
//! the tuning tool; tests substitute an in-memory disk that
//! injects faults (torn writes, power loss, EIO, short and misdirected
//! reads). There is no fault flag in shipped code: the double lives in tests.
//!
//! Futures are not `Send`: a store lives on exactly one core.
#![allow(async_fn_in_trait)]

pub mod device;
pub mod dma;
mod posix;
pub mod ring;
pub mod uring;

use std::io;
use std::path::Path;

/// How a batch's writes become durable.
///
/// `Dsync` is the default: measured on this project's reference VM (server
/// bench, kernel-traced), it takes one I/O and one trip through the
/// executor's reactor per batch instead of two, and on an NVMe drive with a
/// volatile write cache the kernel turns it into FUA writes with no separate
/// cache flush. `Fdatasync` is the classic write-then-sync pair, for a device
/// or file system where O_DSYNC turns out slower (PostgreSQL offers the same
/// choice as `wal_sync_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMethod {
    /// Segment files are opened `O_DSYNC`: a write completes only once its
    /// bytes (and what is needed to read them back) are on stable storage.
    #[default]
    Dsync,
    /// Plain writes, then one `fdatasync` per batch.
    Fdatasync,
}

impl SyncMethod {
    /// The names accepted in configuration.
    pub const NAMES: &'static str = "\"dsync\" or \"fdatasync\"";

    pub fn name(self) -> &'static str {
        match self {
            Self::Dsync => "dsync",
            Self::Fdatasync => "fdatasync",
        }
    }
}

impl std::str::FromStr for SyncMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "dsync" => Ok(Self::Dsync),
            "fdatasync" => Ok(Self::Fdatasync),
            other => Err(format!(
                "unknown sync method {other:?}: expected {}",
                Self::NAMES
            )),
        }
    }
}

/// A buffer suitable for a direct write (aligned, from the I/O allocator).
pub trait WriteBuf {
    fn as_mut_bytes(&mut self) -> &mut [u8];
    fn as_bytes(&self) -> &[u8];
}

/// One open file.
pub trait StoreFile {
    type Buf: WriteBuf + 'static;
    type ReadBuf: AsRef<[u8]>;

    /// Offsets and lengths of writes must be multiples of this.
    fn alignment(&self) -> usize;
    /// Allocates a write buffer of `len` bytes (a multiple of
    /// [`StoreFile::alignment`]). Its contents are unspecified: the caller
    /// writes every byte before the buffer goes to disk.
    fn alloc(&self, len: usize) -> Self::Buf;
    /// Writes all of `buf` at `offset` (aligned). Returns bytes written.
    async fn write_at(&self, buf: Self::Buf, offset: u64) -> io::Result<usize>;
    /// Writes every buffer at its offset, all in flight at once, and
    /// returns once none is in flight any more, even after a failure. A
    /// short write is an error.
    async fn write_all_at(&self, writes: Vec<(Self::Buf, u64)>) -> io::Result<()> {
        let writes = writes.into_iter().map(|(buf, offset)| {
            let len = buf.as_bytes().len();
            let write = self.write_at(buf, offset);
            async move {
                match write.await {
                    Ok(written) if written == len => Ok(()),
                    Ok(written) => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write: {written} of {len}"),
                    )),
                    Err(err) => Err(err),
                }
            }
        });
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }
    /// True when a `write_at` that returned `Ok` is already durable (the
    /// file was opened write-through, [`SyncMethod::Dsync`]): a batch then
    /// needs no `fdatasync` of its own. Truncation and other metadata
    /// changes still need one.
    fn writes_are_durable(&self) -> bool;
    /// Reads `len` bytes at any `offset`; the implementation does the
    /// alignment and splits large reads. May return fewer bytes at end of file.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Self::ReadBuf>;
    async fn fdatasync(&self) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn close(self) -> io::Result<()>;
}

/// The directory operations the store needs.
pub trait StoreFs {
    type File: StoreFile + 'static;
    /// A whole file mapped (or read) into memory.
    type Mapped: AsRef<[u8]>;

    /// Largest single I/O the device takes; bigger ones are split.
    fn max_io(&self) -> usize;

    /// Opens read-write, creating the file if `create`.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes created, renamed and removed entries of `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Writes a small file whole and durably (write, fdatasync, rename into
    /// place, sync the directory), for superblocks and checkpoints.
    async fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    async fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Maps a file read-only (used for index checkpoints).
    async fn map_file(&self, path: &Path) -> io::Result<Self::Mapped>;
    /// Bytes an unprivileged writer may still allocate on the file system
    /// holding `dir` (a read-only shard resumes once there is room again).
    async fn free_bytes(&self, dir: &Path) -> io::Result<u64>;
    /// Operations in flight so long that the device or the I/O engine has
    /// likely wedged (0 when healthy, or when the engine cannot tell).
    fn stalled_ops(&self) -> u64 {
        0
    }
}
