//! An in-memory disk behind the store's `StoreFs` seam, with the faults real
//! disks have. Each file keeps two images: `volatile` (what reads see: the
//! page cache) and `durable` (what survives power loss: only what an
//! fdatasync covered). A new file's directory entry is durable only after
//! `sync_dir`. A disk made with [`SimFs::write_through`] models files opened
//! `O_DSYNC`: a write that returns `Ok` is durable at once.
//!
//! It also enforces O_DIRECT's rules: a write whose offset or length is not
//! a multiple of the block size fails with EINVAL, as it would on a device.
//!
//! Beside the hand-set [`Faults`], a disk can run under [`Chaos`]: faults
//! drawn from a seeded generator, at given odds, per operation (the
//! deterministic simulator in `simulate_store.rs` drives it).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use stratum_node::store::fs::{StoreFile, StoreFs, WriteBuf};

pub const BLOCK: usize = 512;

#[derive(Default, Debug, Clone)]
pub struct Faults {
    /// The next fdatasync fails with EIO (and syncs nothing).
    pub fdatasync_eio: bool,
    /// Every write fails with this errno (e.g. ENOSPC = 28, EIO = 5).
    pub write_errno: Option<i32>,
    /// The next write reaches the media only in its first N bytes, then the
    /// power goes: the prefix is durable, the write returns EIO.
    pub torn_write: Option<usize>,
    /// Reads fail with EIO.
    pub read_eio: bool,
    /// Reads return only half the bytes asked for.
    pub short_reads: bool,
    /// Reads return the bytes of another block (shifted by this many bytes).
    pub misdirect_reads: Option<u64>,
    /// Removing a file fails with EIO (a crash before an unlink, in effect).
    pub remove_eio: bool,
    /// The file system is full: a write that would grow a file fails with
    /// ENOSPC (a write inside it succeeds: its blocks are allocated), and
    /// `free_bytes` reports 0.
    pub no_space: bool,
}

/// A small, fast, seedable generator (splitmix64): the same seed draws the
/// same faults.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Odds of each fault per operation, drawn from one seeded generator.
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// A write (or a sync) brings the machine down: part of the write's
    /// blocks reach the media, then every call fails with EIO until the
    /// test calls [`SimFs::crash`].
    pub crash: f64,
    /// A write fails with EIO (nothing written).
    pub write_eio: f64,
    /// An fdatasync fails with EIO (nothing synced).
    pub sync_eio: f64,
    /// A read fails with EIO.
    pub read_eio: f64,
    /// A read returns the bytes of another place in the file.
    pub misdirect: f64,
}

/// Faults injected under [`Chaos`], by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injected {
    pub crashes: u64,
    pub torn_blocks: u64,
    pub write_eio: u64,
    pub sync_eio: u64,
    pub read_eio: u64,
    pub misdirected: u64,
    pub bit_rot: u64,
}

#[derive(Default)]
struct FileData {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    entry_durable: bool,
}

#[derive(Default)]
struct Disk {
    files: BTreeMap<PathBuf, FileData>,
    faults: Faults,
    fdatasyncs: u64,
    write_through: bool,
    chaos: Option<(Chaos, Rng)>,
    /// The simulated machine is down: every call fails until `crash`.
    down: bool,
    /// Calls made (the cluster simulator's sign of progress).
    ops: u64,
    /// Reads, writes and syncs each wait up to this long, drawn from its
    /// own generator (see [`SimFs::set_latency`]).
    latency: Option<(std::time::Duration, Rng)>,
    /// Bumped by [`SimFs::fence`]: handles and files of an older
    /// generation (a crashed node's leftover tasks) fail every call.
    generation: u64,
    injected: Injected,
}

impl Disk {
    /// Whether a fault of odds `odds(chaos)` strikes now.
    fn strikes(&mut self, odds: impl Fn(&Chaos) -> f64) -> bool {
        match &mut self.chaos {
            Some((chaos, rng)) => {
                let p = odds(chaos);
                p > 0.0 && rng.chance(p)
            }
            None => false,
        }
    }

    fn draw(&mut self, n: u64) -> u64 {
        match &mut self.chaos {
            Some((_, rng)) => rng.below(n),
            None => 0,
        }
    }
}

/// A shared handle: clones see the same disk.
#[derive(Clone, Default)]
pub struct SimFs {
    disk: Rc<RefCell<Disk>>,
    generation: u64,
}

impl SimFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk whose files are opened write-through (`O_DSYNC`).
    pub fn write_through() -> Self {
        let fs = Self::default();
        fs.disk.borrow_mut().write_through = true;
        fs
    }

    pub fn set_faults(&self, faults: Faults) {
        self.disk.borrow_mut().faults = faults;
    }

    /// Draws faults from now on at these odds, from a generator seeded with
    /// `seed`.
    pub fn set_chaos(&self, chaos: Chaos, seed: u64) {
        self.disk.borrow_mut().chaos = Some((chaos, Rng(seed)));
    }

    /// Every read, write and sync first waits a time drawn up to `max`, on
    /// the thread's clock (`stratum_node::clock`: virtual in the cluster
    /// simulator). From a generator of its own, so the faults drawn stay
    /// the same.
    pub fn set_latency(&self, max: std::time::Duration, seed: u64) {
        self.disk.borrow_mut().latency = Some((max, Rng(seed)));
    }

    /// No more latency: calls complete at once.
    pub fn clear_latency(&self) {
        self.disk.borrow_mut().latency = None;
    }

    pub fn injected(&self) -> Injected {
        self.disk.borrow().injected.clone()
    }

    /// Cuts off every handle and file opened so far: from now on they fail
    /// every call with EIO. A crashed node's tasks may outlive it in the
    /// cluster simulator; this keeps them off the disk its restart uses
    /// (through [`SimFs::handle`]).
    pub fn fence(&self) {
        self.disk.borrow_mut().generation += 1;
    }

    /// A handle of the current generation (see [`SimFs::fence`]).
    pub fn handle(&self) -> Self {
        Self {
            disk: Rc::clone(&self.disk),
            generation: self.disk.borrow().generation,
        }
    }

    /// The machine went down during a write (see [`Chaos::crash`]).
    pub fn is_down(&self) -> bool {
        self.disk.borrow().down
    }

    /// Power loss with torn writes: every file keeps its durable image, and
    /// each block written since its last sync independently did or did not
    /// reach the media. Files whose directory entry was never synced go.
    pub fn crash(&self, rng: &mut Rng) {
        let mut disk = self.disk.borrow_mut();
        disk.files.retain(|_, file| file.entry_durable);
        let mut torn = 0;
        for file in disk.files.values_mut() {
            let len = file.volatile.len();
            let mut media = file.durable.clone();
            media.resize(len.max(media.len()), 0);
            for start in (0..len).step_by(BLOCK) {
                let end = (start + BLOCK).min(len);
                if media[start..end] != file.volatile[start..end] && rng.chance(0.5) {
                    media[start..end].copy_from_slice(&file.volatile[start..end]);
                    torn += 1;
                }
            }
            file.durable = media.clone();
            file.volatile = media;
        }
        disk.injected.torn_blocks += torn;
        disk.faults = Faults::default();
        disk.down = false;
    }

    /// Flips one random bit of one random file's contents (bit rot), in
    /// both images. Returns the file.
    pub fn rot(&self, rng: &mut Rng, within: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let mut disk = self.disk.borrow_mut();
        let candidates: Vec<PathBuf> = disk
            .files
            .iter()
            .filter(|(path, file)| within(path) && !file.volatile.is_empty())
            .map(|(path, _)| path.clone())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let path = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let file = disk.files.get_mut(&path).expect("listed");
        let offset = rng.below(file.volatile.len() as u64) as usize;
        let bit = rng.below(8) as u8;
        file.volatile[offset] ^= 1 << bit;
        if offset < file.durable.len() {
            file.durable[offset] ^= 1 << bit;
        }
        disk.injected.bit_rot += 1;
        Some(path)
    }

    /// Calls made on this disk so far.
    pub fn ops(&self) -> u64 {
        self.disk.borrow().ops
    }

    pub fn fdatasyncs(&self) -> u64 {
        self.disk.borrow().fdatasyncs
    }

    /// Power loss: every file reverts to its durable image; files whose
    /// directory entry was never synced disappear.
    pub fn power_loss(&self) {
        let mut disk = self.disk.borrow_mut();
        disk.files.retain(|_, file| file.entry_durable);
        for file in disk.files.values_mut() {
            file.volatile = file.durable.clone();
        }
        disk.faults = Faults::default();
        disk.down = false;
    }

    /// A new disk holding what this one would after a power loss now: only
    /// durable files, each at its durable image. This disk is untouched.
    pub fn durable_copy(&self) -> SimFs {
        let disk = self.disk.borrow();
        let copy = SimFs::new();
        {
            let mut copied = copy.disk.borrow_mut();
            copied.write_through = disk.write_through;
            for (path, file) in disk.files.iter().filter(|(_, file)| file.entry_durable) {
                copied.files.insert(
                    path.clone(),
                    FileData {
                        volatile: file.durable.clone(),
                        durable: file.durable.clone(),
                        entry_durable: true,
                    },
                );
            }
        }
        copy
    }

    /// Flips one bit of a file, in both images (media corruption).
    pub fn flip_bit(&self, path: &Path, offset: usize, bit: u8) {
        let mut disk = self.disk.borrow_mut();
        let file = disk.files.get_mut(path).expect("file exists");
        file.volatile[offset] ^= 1 << bit;
        if offset < file.durable.len() {
            file.durable[offset] ^= 1 << bit;
        }
    }

    /// Overwrites bytes of a file, in both images (a bug that wrote wrong
    /// bytes: unlike a flipped bit, it can come with a matching checksum).
    pub fn overwrite(&self, path: &Path, offset: usize, bytes: &[u8]) {
        let mut disk = self.disk.borrow_mut();
        let file = disk.files.get_mut(path).expect("file exists");
        file.volatile[offset..offset + bytes.len()].copy_from_slice(bytes);
        if offset + bytes.len() <= file.durable.len() {
            file.durable[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    pub fn file_len(&self, path: &Path) -> usize {
        self.disk
            .borrow()
            .files
            .get(path)
            .map_or(0, |file| file.volatile.len())
    }

    /// `len` bytes of the file's current (volatile) contents at `offset`.
    pub fn read_range(&self, path: &Path, offset: usize, len: usize) -> Vec<u8> {
        let disk = self.disk.borrow();
        let bytes = &disk.files.get(path).expect("file").volatile;
        bytes[offset.min(bytes.len())..(offset + len).min(bytes.len())].to_vec()
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.disk.borrow().files.keys().cloned().collect()
    }
}

pub struct SimFile {
    disk: Rc<RefCell<Disk>>,
    path: PathBuf,
    generation: u64,
}

impl SimFile {
    /// The device's latency, if the disk has one (see
    /// [`SimFs::set_latency`]). Taken before the call looks at the disk:
    /// a crash while it waits fails the call, as on a device.
    async fn delay(&self) {
        let wait = {
            let mut disk = self.disk.borrow_mut();
            disk.latency.as_mut().map(|(max, rng)| {
                let micros = max.as_micros().max(1) as u64;
                std::time::Duration::from_micros(rng.below(micros))
            })
        };
        if let Some(wait) = wait.filter(|wait| !wait.is_zero()) {
            stratum_node::clock::sleep(wait).await;
        }
    }
}

pub struct SimBuf(Vec<u8>);

impl WriteBuf for SimBuf {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl StoreFile for SimFile {
    type Buf = SimBuf;
    type ReadBuf = Vec<u8>;

    fn alignment(&self) -> usize {
        BLOCK
    }

    fn alloc(&self, len: usize) -> Self::Buf {
        // Dirty on purpose: a DMA allocator hands out reused memory, and the
        // store must write every byte it sends to disk.
        SimBuf(vec![0xA5; len])
    }

    async fn write_at(&self, buf: Self::Buf, offset: u64) -> io::Result<usize> {
        self.delay().await;
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if offset % BLOCK as u64 != 0 || buf.0.len() % BLOCK != 0 {
            return Err(errno(22)); // EINVAL, as O_DIRECT would
        }
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        if disk.strikes(|chaos| chaos.crash) {
            // Some of this write's blocks reach the page cache (and maybe
            // the media, decided by `crash`); then the machine is down.
            let blocks = buf.0.len() / BLOCK;
            let reached = disk.draw(blocks as u64 + 1) as usize * BLOCK;
            disk.injected.crashes += 1;
            disk.down = true;
            let file = disk.files.get_mut(&self.path).ok_or_else(|| errno(2))?;
            let start = offset as usize;
            if file.volatile.len() < start + reached {
                file.volatile.resize(start + reached, 0);
            }
            file.volatile[start..start + reached].copy_from_slice(&buf.0[..reached]);
            return Err(errno(5));
        }
        if disk.strikes(|chaos| chaos.write_eio) {
            disk.injected.write_eio += 1;
            return Err(errno(5));
        }
        if let Some(code) = disk.faults.write_errno {
            return Err(errno(code));
        }
        let torn = disk.faults.torn_write.take();
        let write_through = disk.write_through;
        let no_space = disk.faults.no_space;
        let file = disk.files.get_mut(&self.path).ok_or_else(|| errno(2))?;
        if no_space && offset as usize + buf.0.len() > file.volatile.len() {
            return Err(errno(28));
        }
        let bytes = match torn {
            Some(prefix) => &buf.0[..prefix.min(buf.0.len())],
            None => &buf.0[..],
        };
        let start = offset as usize;
        if file.volatile.len() < start + bytes.len() {
            file.volatile.resize(start + bytes.len(), 0);
        }
        file.volatile[start..start + bytes.len()].copy_from_slice(bytes);
        if torn.is_some() {
            // The prefix reached the media; then the power went.
            file.durable = file.volatile.clone();
            return Err(errno(5));
        }
        if write_through {
            // Only this write's range: earlier writes of a file are durable
            // already, and nothing else is written to it behind our back.
            let end = start + bytes.len();
            if file.durable.len() < end {
                file.durable.resize(end, 0);
            }
            file.durable[start..end].copy_from_slice(bytes);
        }
        Ok(buf.0.len())
    }

    fn writes_are_durable(&self) -> bool {
        self.disk.borrow().write_through
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Self::ReadBuf> {
        self.delay().await;
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.faults.read_eio || disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        if disk.strikes(|chaos| chaos.read_eio) {
            disk.injected.read_eio += 1;
            return Err(errno(5));
        }
        let misdirect = if disk.strikes(|chaos| chaos.misdirect) {
            disk.injected.misdirected += 1;
            Some(BLOCK as u64 * (1 + disk.draw(64)))
        } else {
            disk.faults.misdirect_reads
        };
        let file = disk.files.get(&self.path).ok_or_else(|| errno(2))?;
        let offset = match misdirect {
            Some(shift) => offset.wrapping_add(shift) % (file.volatile.len().max(1) as u64),
            None => offset,
        } as usize;
        let end = (offset + len).min(file.volatile.len());
        let mut out = file.volatile.get(offset..end).unwrap_or(&[]).to_vec();
        if disk.faults.short_reads {
            out.truncate(out.len() / 2);
        }
        Ok(out)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.delay().await;
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        disk.fdatasyncs += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        if disk.strikes(|chaos| chaos.crash) {
            disk.injected.crashes += 1;
            disk.down = true;
            return Err(errno(5));
        }
        if disk.strikes(|chaos| chaos.sync_eio) {
            disk.injected.sync_eio += 1;
            return Err(errno(5));
        }
        if disk.faults.fdatasync_eio {
            disk.faults.fdatasync_eio = false;
            return Err(errno(5));
        }
        let file = disk.files.get_mut(&self.path).ok_or_else(|| errno(2))?;
        file.durable = file.volatile.clone();
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        let disk = self.disk.borrow();
        Ok(disk
            .files
            .get(&self.path)
            .ok_or_else(|| errno(2))?
            .volatile
            .len() as u64)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        let file = disk.files.get_mut(&self.path).ok_or_else(|| errno(2))?;
        file.volatile.truncate(len as usize);
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl StoreFs for SimFs {
    type File = SimFile;
    type Mapped = Vec<u8>;

    fn max_io(&self) -> usize {
        64 * 1024
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        if !disk.files.contains_key(path) {
            if !create {
                return Err(errno(2));
            }
            if let Some(code) = disk.faults.write_errno {
                return Err(errno(code));
            }
            disk.files.insert(path.to_owned(), FileData::default());
        }
        Ok(SimFile {
            disk: Rc::clone(&self.disk),
            path: path.to_owned(),
            generation: self.generation,
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.faults.remove_eio || disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        disk.files.remove(path).map(|_| ()).ok_or_else(|| errno(2))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        let file = disk.files.remove(from).ok_or_else(|| errno(2))?;
        disk.files.insert(to.to_owned(), file);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        for (path, file) in disk.files.iter_mut() {
            if path.parent() == Some(dir) {
                file.entry_durable = true;
            }
        }
        Ok(())
    }

    async fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .disk
            .borrow()
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    async fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.ops += 1;
        if disk.down || disk.generation != self.generation {
            return Err(errno(5));
        }
        if disk.faults.no_space {
            return Err(errno(28));
        }
        disk.files.insert(
            path.to_owned(),
            FileData {
                volatile: contents.to_vec(),
                durable: contents.to_vec(),
                entry_durable: true,
            },
        );
        Ok(())
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.disk.borrow().files.contains_key(path))
    }

    async fn free_bytes(&self, _dir: &Path) -> io::Result<u64> {
        Ok(if self.disk.borrow().faults.no_space {
            0
        } else {
            1 << 40
        })
    }

    async fn map_file(&self, path: &Path) -> io::Result<Self::Mapped> {
        let disk = self.disk.borrow();
        Ok(disk
            .files
            .get(path)
            .ok_or_else(|| errno(2))?
            .volatile
            .clone())
    }
}
