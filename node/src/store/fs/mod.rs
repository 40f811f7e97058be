//! The seam below the store: every byte the store reads or writes, and every
//! `fdatasync`, goes through these traits. Production uses [`dma::DmaFs`]
//! (glommio, io_uring, O_DIRECT); tests substitute an in-memory disk that
//! injects faults (torn writes, power loss, EIO, short and misdirected
//! reads). There is no fault flag in shipped code: the double lives in tests.
//!
//! Futures are not `Send`: a store lives on exactly one core.
#![allow(async_fn_in_trait)]

pub mod dma;

use std::io;
use std::path::Path;

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
}
