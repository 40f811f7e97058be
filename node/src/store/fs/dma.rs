//! The production seam: glommio DMA files (io_uring, O_DIRECT).
//!
//! Two glommio traps are handled here or by the store's open order:
//! - Reads larger than the device's `max_sectors_kb` fail, so [`DmaFs`]
//!   splits them ([`detect_max_io`]).
//! - glommio probes polled I/O support by reading offset 0 of the first DMA
//!   file opened on a device; an empty file makes the probe wrongly succeed
//!   and every later read fail with EOPNOTSUPP. The store therefore always
//!   opens its (non-empty) superblock first; see `superblock.rs`.
//!
//! Directory operations (remove, rename, fsync of a directory) are rare
//! metadata calls and use std::fs directly.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{StoreFile, StoreFs, SyncMethod, WriteBuf};

/// Used when the device's limit cannot be read: the smallest limit common
/// on Linux block devices.
pub const FALLBACK_MAX_IO: usize = 128 * 1024;

/// The largest single I/O the block device under `dir` accepts, from
/// `/sys/dev/block/MAJ:MIN/queue/max_sectors_kb` (the parent device's for a
/// partition). `dir` need not exist yet: its nearest existing ancestor is on
/// the same device.
pub fn detect_max_io(dir: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Some(meta) = dir
        .ancestors()
        .find_map(|path| std::fs::metadata(path).ok())
    else {
        return FALLBACK_MAX_IO;
    };
    let dev = meta.dev();
    let (major, minor) = (libc_major(dev), libc_minor(dev));
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    for candidate in [
        base.join("queue/max_sectors_kb"),
        base.join("../queue/max_sectors_kb"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            if let Ok(kb) = text.trim().parse::<usize>() {
                // Keep it a multiple of 4 KiB so split reads stay aligned.
                return ((kb * 1024) / 4096).max(1) * 4096;
            }
        }
    }
    FALLBACK_MAX_IO
}

// Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

/// write, fdatasync, rename into place, fsync the directory.
fn write_atomic_blocking(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

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
        Self::new(detect_max_io(dir))
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

    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        // Checkpoints run to tens of megabytes: write and sync them on
        // glommio's blocking-thread pool, so the shard's core keeps serving
        // requests meanwhile.
        let (path, contents) = (path.to_owned(), contents.to_vec());
        glommio::executor()
            .spawn_blocking(move || write_atomic_blocking(&path, &contents))
            .await
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    async fn free_bytes(&self, dir: &Path) -> io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: `path` is a valid C string for the call, and `stat` is a
        // plain struct the call fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    async fn map_file(&self, path: &Path) -> io::Result<Self::Mapped> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the mapped files (index checkpoints) are only ever replaced
        // by an atomic rename of a new file, never modified in place, so the
        // mapping cannot change under us.
        unsafe { memmap2::Mmap::map(&file) }
    }
}
