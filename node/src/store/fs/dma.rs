//! glommio DMA files (io_uring, O_DIRECT): the engine segment I/O ran on
//! before the shard's own ring (`uring.rs`), kept as a baseline for the
//! store bench and as a second implementation of the seam.
//!
//! Two glommio traps are handled here or by the store's open order:
//! - Reads larger than the device's `max_sectors_kb` fail, so [`DmaFs`]
//!   splits them ([`super::device::detect_max_io`]).
//! - glommio probes polled I/O support by reading offset 0 of the first DMA
//!   file opened on a device; an empty file makes the probe wrongly succeed
//!   and every later read fail with EOPNOTSUPP. The store therefore always
//!   opens its (non-empty) superblock first; see `superblock.rs`.
//!
//! Directory operations (remove, rename, fsync of a directory) are rare
//! metadata calls and use std::fs directly.

use std::io;
use std::path::Path;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{device, posix, StoreFile, StoreFs, SyncMethod, WriteBuf};

/// glommio DMA file system for one shard.
#[derive(Debug, Clone)]
pub struct DmaFs {
    max_io: usize,
    sync_method: SyncMethod,
}

impl DmaFs {
    pub fn new(max_io: usize) -> Self {
        Self {
            max_io: max_io.max(4096),
            sync_method: SyncMethod::default(),
        }
    }

    /// Files opened from now on make their writes durable this way.
    pub fn with_sync_method(mut self, sync_method: SyncMethod) -> Self {
        self.sync_method = sync_method;
        self
    }

    /// Sized for the device under `dir`.
    pub fn for_dir(dir: &Path) -> Self {
        Self::new(device::detect_max_io(dir))
    }

    pub fn max_io(&self) -> usize {
        self.max_io
    }
}

pub struct DmaStoreFile {
    file: DmaFile,
    max_io: usize,
    /// Opened `O_DSYNC`.
    write_through: bool,
}

pub struct DmaWriteBuf(DmaBuffer);

impl WriteBuf for DmaWriteBuf {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A read: glommio's buffer when one I/O sufficed, else the joined pieces.
pub enum DmaReadBuf {
    One(ReadResult),
    Joined(Vec<u8>),
}

impl AsRef<[u8]> for DmaReadBuf {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::One(result) => result,
            Self::Joined(bytes) => bytes,
        }
    }
}

fn to_io(err: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(err)
}

impl StoreFile for DmaStoreFile {
    type Buf = DmaWriteBuf;
    type ReadBuf = DmaReadBuf;

    fn alignment(&self) -> usize {
        self.file.alignment() as usize
    }

    fn alloc(&self, len: usize) -> Self::Buf {
        DmaWriteBuf(self.file.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: Self::Buf, offset: u64) -> io::Result<usize> {
        self.file.write_at(buf.0, offset).await.map_err(to_io)
    }

    fn writes_are_durable(&self) -> bool {
        self.write_through
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Self::ReadBuf> {
        let align = self.alignment() as u64;
        // glommio widens a read to alignment on both ends.
        if len as u64 + 2 * align <= self.max_io as u64 {
            return self
                .file
                .read_at(offset, len)
                .await
                .map(DmaReadBuf::One)
                .map_err(to_io);
        }
        let start = offset - offset % align;
        let end = offset + len as u64;
        let mut joined = Vec::with_capacity((end - start) as usize);
        let mut position = start;
        while position < end {
            let chunk = (self.max_io as u64).min(end - position);
            let chunk = chunk.div_ceil(align) * align;
            let piece = self
                .file
                .read_at_aligned(position, chunk as usize)
                .await
                .map_err(to_io)?;
            let got = piece.len();
            joined.extend_from_slice(&piece);
            if (got as u64) < chunk {
                break; // end of file
            }
            position += chunk;
        }
        let skip = (offset - start) as usize;
        joined.drain(..skip.min(joined.len()));
        joined.truncate(len);
        Ok(DmaReadBuf::Joined(joined))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(to_io)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(to_io)
    }
}

impl StoreFs for DmaFs {
    type File = DmaStoreFile;
    type Mapped = memmap2::Mmap;

    fn max_io(&self) -> usize {
        self.max_io
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .custom_flags(match self.sync_method {
                SyncMethod::Dsync => libc::O_DSYNC,
                SyncMethod::Fdatasync => 0,
            })
            .dma_open(path)
            .await
            .map_err(to_io)?;
        Ok(DmaStoreFile {
            file,
            max_io: self.max_io,
            write_through: self.sync_method == SyncMethod::Dsync,
        })
    }

    posix::directory_ops!();
}
