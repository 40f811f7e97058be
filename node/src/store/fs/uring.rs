//! The production seam: segment files on the shard's own io_uring ring
//! ([`super::ring`]), opened `O_DIRECT`.
//!
//! A batch's writes go to the kernel together, with one system call, the
//! moment the batch is formed; so do the pieces of a read larger than the
//! device's `max_sectors_kb`. Directory operations are rare metadata calls
//! and use std::fs directly (`posix.rs`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;

use super::ring::buffers::IoBuf;
use super::ring::{Completion, Request, Ring, RingFd, RingStats};
use super::{device, posix, StoreFile, StoreFs, SyncMethod, WriteBuf};

/// One shard's segment files, on one ring. Create it on the shard's core.
#[derive(Clone)]
pub struct UringFs {
    ring: Rc<Ring>,
    max_io: usize,
    block_size: usize,
    sync_method: SyncMethod,
}

impl UringFs {
    /// A ring with `registered_bytes` of registered buffers, sized for the
    /// device under `dir`. Must run on a glommio executor: the ring's waker
    /// and watchdog are tasks there.
    pub fn for_dir(dir: &Path, registered_bytes: usize) -> io::Result<Self> {
        Ok(Self {
            ring: Ring::new(registered_bytes)?,
            max_io: device::detect_max_io(dir).max(4096),
            block_size: device::detect_block_size(dir),
            sync_method: SyncMethod::default(),
        })
    }

    /// Files opened from now on make their writes durable this way.
    pub fn with_sync_method(mut self, sync_method: SyncMethod) -> Self {
        self.sync_method = sync_method;
        self
    }

    /// Splits I/O at `max_io` bytes (at least 4 KiB) instead of the
    /// device's limit.
    pub fn with_max_io(mut self, max_io: usize) -> Self {
        self.max_io = max_io.max(4096);
        self
    }

    pub fn ring_stats(&self) -> RingStats {
        self.ring.stats()
    }
}

pub struct UringFile {
    ring: Rc<Ring>,
    fd: Rc<RingFd>,
    block_size: usize,
    max_io: usize,
    /// Opened `O_DSYNC`.
    write_through: bool,
}

pub struct UringWriteBuf(IoBuf);

impl WriteBuf for UringWriteBuf {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self.0.as_mut_bytes()
    }
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A read: the aligned buffer of one I/O and the asked-for range in it, or
/// the joined pieces of a split read.
pub enum UringReadBuf {
    One {
        buf: IoBuf,
        start: usize,
        end: usize,
    },
    Joined(Vec<u8>),
}

impl AsRef<[u8]> for UringReadBuf {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::One { buf, start, end } => &buf.as_bytes()[*start..*end],
            Self::Joined(bytes) => bytes,
        }
    }
}

/// Awaits every completion, even after one fails: none may still be in
/// flight when the caller gives up on the batch.
async fn all(completions: Vec<Completion>) -> Vec<io::Result<(usize, Option<IoBuf>)>> {
    futures_util::future::join_all(completions).await
}

impl UringFile {
    fn split(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, usize)> + '_ {
        let step = self.max_io as u64;
        (start..end)
            .step_by(self.max_io)
            .map(move |at| (at, step.min(end - at) as usize))
    }
}

impl StoreFile for UringFile {
    type Buf = UringWriteBuf;
    type ReadBuf = UringReadBuf;

    fn alignment(&self) -> usize {
        self.block_size
    }

    fn alloc(&self, len: usize) -> Self::Buf {
        UringWriteBuf(self.ring.buffer(len, self.block_size))
    }

    async fn write_at(&self, buf: Self::Buf, offset: u64) -> io::Result<usize> {
        let completion = self
            .ring
            .submit(&self.fd, [Request::Write { buf: buf.0, offset }]);
        let mut results = all(completion).await;
        results
            .pop()
            .expect("one request, one result")
            .map(|(written, _)| written)
    }

    async fn write_all_at(&self, writes: Vec<(Self::Buf, u64)>) -> io::Result<()> {
        let lens: Vec<usize> = writes.iter().map(|(buf, _)| buf.0.len()).collect();
        let requests = writes
            .into_iter()
            .map(|(buf, offset)| Request::Write { buf: buf.0, offset });
        let results = all(self.ring.submit(&self.fd, requests)).await;
        for (result, len) in results.into_iter().zip(lens) {
            let (written, _) = result?;
            if written != len {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {written} of {len}"),
                ));
            }
        }
        Ok(())
    }

    fn writes_are_durable(&self) -> bool {
        self.write_through
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Self::ReadBuf> {
        let align = self.block_size as u64;
        let start = offset - offset % align;
        let end = (offset + len as u64).div_ceil(align) * align;
        let skip = (offset - start) as usize;
        let requests: Vec<Request> = self
            .split(start, end)
            .map(|(at, piece)| Request::Read {
                buf: self.ring.buffer(piece, self.block_size),
                offset: at,
            })
            .collect();
        let pieces = requests.len();
        let mut results = all(self.ring.submit(&self.fd, requests)).await;
        if pieces == 1 {
            let (got, buf) = results.pop().expect("one request, one result")?;
            let buf = buf.expect("a read gives its buffer back");
            let end = got.min(skip + len).max(skip);
            return Ok(UringReadBuf::One {
                buf,
                start: skip,
                end,
            });
        }
        let mut joined = Vec::with_capacity((end - start) as usize);
        for result in results {
            let (got, buf) = result?;
            let buf = buf.expect("a read gives its buffer back");
            joined.extend_from_slice(&buf.as_bytes()[..got]);
            if got < buf.len() {
                break; // end of file
            }
        }
        joined.drain(..skip.min(joined.len()));
        joined.truncate(len);
        Ok(UringReadBuf::Joined(joined))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let mut results = all(self.ring.submit(&self.fd, [Request::Fdatasync])).await;
        results.pop().expect("one request, one result").map(drop)
    }

    async fn size(&self) -> io::Result<u64> {
        // SAFETY: `stat` is a plain struct the call fills in, for an open fd.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(self.fd.raw(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.st_size as u64)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length past off_t"))?;
        // SAFETY: a plain system call on an open fd.
        if unsafe { libc::ftruncate(self.fd.raw(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        // The descriptor closes when its last in-flight operation (if an
        // abandoned one is still running) lets go of it.
        Ok(())
    }
}

impl StoreFs for UringFs {
    type File = UringFile;
    type Mapped = memmap2::Mmap;

    fn max_io(&self) -> usize {
        self.max_io
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        let sync = match self.sync_method {
            SyncMethod::Dsync => libc::O_DSYNC,
            SyncMethod::Fdatasync => 0,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o644)
            .custom_flags(libc::O_DIRECT | sync)
            .open(path)?;
        let fd = OwnedFd::from(file);
        debug_assert!(fd.as_raw_fd() >= 0);
        Ok(UringFile {
            fd: self.ring.adopt(fd),
            ring: Rc::clone(&self.ring),
            block_size: self.block_size,
            max_io: self.max_io,
            write_through: self.sync_method == SyncMethod::Dsync,
        })
    }

    posix::directory_ops!();

    fn stalled_ops(&self) -> u64 {
        self.ring.stalled() as u64
    }
}
