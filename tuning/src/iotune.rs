//! `iotune`: measures the data directory's device with the node's own DMA
//! I/O (glommio, io_uring, O_DIRECT, through `stratum_node`'s `UringFs`, the shard's own ring the node uses) and
//! derives the I/O properties the node sizes itself from.
//!
//! Three measurements, within a time budget:
//! 1. sequential write bandwidth (the largest writes the device takes, two
//!    in flight, then one fdatasync);
//! 2. durable appends per second at several group-commit sizes, made
//!    durable as the node's group commit makes them under the chosen
//!    `store.sync_method` (writes through an `O_DSYNC` file, or writes then
//!    an fdatasync), with all of a group's writes in flight at once and the
//!    node's prepared-space rule for small groups;
//! 3. random 4 KiB read IOPS at several queue depths, over the file written
//!    in step 1.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use stratum_node::io_properties::{DurableAppend, IoProperties, RandomRead};
use stratum_node::store::fs::uring::UringFs;
use stratum_node::store::fs::{StoreFile, StoreFs, SyncMethod, WriteBuf};
use stratum_node::store::group_commit::{PREPARE_BELOW, PREPARE_STEP};

/// Group-commit sizes measured.
pub const GROUP_SIZES: [u64; 5] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
/// Read queue depths measured.
pub const READ_DEPTHS: [u32; 4] = [1, 4, 16, 64];
/// Random reads are 4 KiB, the node's typical small-object read.
const READ_SIZE: u64 = 4096;
/// Most the sequential phase writes.
const SEQ_LIMIT: u64 = 1 << 30;
/// Sequential writes in flight at once.
pub const SEQ_DEPTH: usize = 2;
/// Least the read file holds, so reads are not all in one device cache line.
const READ_FILE_MIN: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IotuneError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the measuring executor")]
    Executor(#[source] glommio::GlommioError<()>),
    #[error("budget of {0:?} is too small (at least 2 s)")]
    Budget(Duration),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IotuneError + 'a {
    move |source| IotuneError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// xorshift64: incompressible bytes (some virtual disks short-cut zeros).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let value = self.next().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }
}

/// Random bytes made once, copied into each write buffer at a moving
/// offset: every write carries different bytes, and generating them does not
/// slow the measurement down (a memcpy, not a random-number loop).
struct Pattern {
    bytes: Vec<u8>,
    turn: usize,
}

impl Pattern {
    const SLACK: usize = 64 << 10;

    fn new(max_write: usize) -> Self {
        let mut bytes = vec![0u8; max_write + Self::SLACK];
        Rng(0x5851_F42D_4C95_7F2D).fill(&mut bytes);
        Self { bytes, turn: 0 }
    }

    fn fill(&mut self, out: &mut [u8]) {
        self.turn = (self.turn + 4104) % Self::SLACK;
        out.copy_from_slice(&self.bytes[self.turn..self.turn + out.len()]);
    }
}

/// Runs every measurement in `dir` within about `budget`, reporting each
/// result through `progress` as it is known.
pub fn run(
    dir: &Path,
    budget: Duration,
    sync_method: SyncMethod,
    progress: impl Fn(&str) + Send + 'static,
) -> Result<IoProperties, IotuneError> {
    if budget < Duration::from_secs(2) {
        return Err(IotuneError::Budget(budget));
    }
    let work = dir.join(format!(".stratum-iotune-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(io("creating", &work))?;
    let device = device_name(dir);
    let logical_block_size = logical_block_size(dir);
    let work_in = work.clone();
    let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("iotune")
        .io_memory(512 << 10)
        .spawn(move || async move { measure(&work_in, budget, sync_method, &progress).await })
        .map_err(IotuneError::Executor)?
        .join()
        .map_err(IotuneError::Executor)
        .and_then(|inner| inner);
    let _ = std::fs::remove_dir_all(&work);
    let (max_io, seq, durable, reads) = result?;
    let (max_batch_bytes, read_parallelism) = IoProperties::recommend(&durable, &reads);
    Ok(IoProperties {
        device,
        logical_block_size,
        max_io_bytes: max_io as u64,
        seq_write_bytes_per_sec: seq,
        max_batch_bytes,
        read_parallelism,
        sync_method,
        durable_append: durable,
        random_read: reads,
    })
}

type Measured = (usize, f64, Vec<DurableAppend>, Vec<RandomRead>);

async fn measure(
    work: &Path,
    budget: Duration,
    sync_method: SyncMethod,
    progress: &impl Fn(&str),
) -> Result<Measured, IotuneError> {
    // Sequential bandwidth and reads use plain files (writes, then one
    // fdatasync at the end); the durable appends use the node's method.
    let ring = |sync| {
        UringFs::for_dir(work, 512 << 10)
            .map(|fs| fs.with_sync_method(sync))
            .map_err(io("setting up an io_uring ring for", work))
    };
    let fs = ring(SyncMethod::Fdatasync)?;
    let durable_fs = ring(sync_method)?;
    let max_io = fs.max_io();
    let seq_slice = budget / 5;
    let durable_slice = budget * 2 / 5 / GROUP_SIZES.len() as u32;
    let read_slice = budget * 2 / 5 / READ_DEPTHS.len() as u32;

    let seq_path = work.join("sequential");
    let (seq, written) = sequential(&fs, &seq_path, seq_slice).await?;
    progress(&format!(
        "sequential write: {:.0} MB/s ({} MiB in {} KiB writes)",
        seq / 1e6,
        written >> 20,
        max_io.min(4 << 20) >> 10
    ));

    let mut durable = Vec::new();
    for (n, group) in GROUP_SIZES.iter().enumerate() {
        let path = work.join(format!("durable-{n}"));
        let per_sec = durable_appends(&durable_fs, &path, *group, durable_slice).await?;
        let _ = std::fs::remove_file(&path);
        progress(&format!(
            "durable appends ({}), {:>4} KiB groups: {per_sec:>8.0}/s ({:.0} MB/s)",
            sync_method.name(),
            group >> 10,
            per_sec * *group as f64 / 1e6
        ));
        durable.push(DurableAppend {
            group_bytes: *group,
            appends_per_sec: per_sec,
        });
    }

    let mut reads = Vec::new();
    for depth in READ_DEPTHS {
        let iops = random_reads(&fs, &seq_path, depth, read_slice).await?;
        progress(&format!(
            "random 4 KiB reads, depth {depth:>2}: {iops:>8.0} IOPS"
        ));
        reads.push(RandomRead { depth, iops });
    }
    Ok((max_io, seq, durable, reads))
}

/// Largest-size writes back to back for `slice` (and at least
/// `READ_FILE_MIN`, which the read phase needs), then one fdatasync.
async fn sequential(fs: &UringFs, path: &Path, slice: Duration) -> Result<(f64, u64), IotuneError> {
    let file = Rc::new(fs.open(path, true).await.map_err(io("creating", path))?);
    // The device's largest I/O (max_sectors_kb), at most 4 MiB, two in
    // flight so the device never waits for the next buffer to be filled.
    let chunk = fs.max_io().min(4 << 20) as u64;
    let mut pattern = Pattern::new(chunk as usize);
    let started = Instant::now();
    let mut offset = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    while offset < SEQ_LIMIT && (started.elapsed() < slice || offset < READ_FILE_MIN) {
        let mut buf = file.alloc(chunk as usize);
        pattern.fill(buf.as_mut_bytes());
        let writer = Rc::clone(&file);
        in_flight.push_back(glommio::spawn_local(async move {
            writer.write_at(buf, offset).await
        }));
        offset += chunk;
        if in_flight.len() >= SEQ_DEPTH {
            if let Some(write) = in_flight.pop_front() {
                write.await.map_err(io("writing", path))?;
            }
        }
    }
    for write in in_flight {
        write.await.map_err(io("writing", path))?;
    }
    file.fdatasync().await.map_err(io("syncing", path))?;
    let rate = offset as f64 / started.elapsed().as_secs_f64();
    if let Ok(file) = Rc::try_unwrap(file) {
        file.close().await.map_err(io("closing", path))?;
    }
    Ok((rate, offset))
}

/// Durable appends of `group` bytes for `slice`, each as the node's group
/// commit makes one: the group's writes (and, for a small group that runs
/// past the prepared space, the next step of zeros) all in flight at once,
/// then an fdatasync unless the file's writes are durable themselves.
async fn durable_appends(
    fs: &UringFs,
    path: &Path,
    group: u64,
    slice: Duration,
) -> Result<f64, IotuneError> {
    let file = fs.open(path, true).await.map_err(io("creating", path))?;
    let align = file.alignment() as u64;
    let group = group.div_ceil(align) * align;
    let max_io = (fs.max_io() as u64 / align).max(1) * align;
    let mut pattern = Pattern::new(max_io.min(group) as usize);
    let started = Instant::now();
    let (mut offset, mut prepared, mut cycles) = (0u64, 0u64, 0u64);
    while started.elapsed() < slice {
        let mut writes = Vec::new();
        let mut done = 0;
        while done < group {
            let len = max_io.min(group - done);
            let mut buf = file.alloc(len as usize);
            pattern.fill(buf.as_mut_bytes());
            writes.push(file.write_at(buf, offset + done));
            done += len;
        }
        // The node's rule: a small group writes into zeros prepared ahead.
        if group < PREPARE_BELOW && offset + group > prepared {
            let mut zero = offset + group;
            prepared = zero + PREPARE_STEP;
            while zero < prepared {
                let len = max_io.min(prepared - zero);
                let mut buf = file.alloc(len as usize);
                buf.as_mut_bytes().fill(0);
                writes.push(file.write_at(buf, zero));
                zero += len;
            }
        }
        // Every write is awaited, even after a failure.
        for result in futures_util::future::join_all(writes).await {
            result.map_err(io("writing", path))?;
        }
        if !file.writes_are_durable() {
            file.fdatasync().await.map_err(io("syncing", path))?;
        }
        offset += group;
        cycles += 1;
    }
    let rate = cycles as f64 / started.elapsed().as_secs_f64();
    file.close().await.map_err(io("closing", path))?;
    Ok(rate)
}

/// `depth` tasks reading 4 KiB at random aligned offsets for `slice`.
async fn random_reads(
    fs: &UringFs,
    path: &Path,
    depth: u32,
    slice: Duration,
) -> Result<f64, IotuneError> {
    let file = Rc::new(fs.open(path, false).await.map_err(io("opening", path))?);
    let size = file.size().await.map_err(io("sizing", path))?;
    let blocks = (size / READ_SIZE).max(1);
    let done = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(None::<std::io::Error>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..depth {
        let (file, done, failed) = (Rc::clone(&file), Rc::clone(&done), Rc::clone(&failed));
        tasks.push(glommio::spawn_local(async move {
            let mut rng = Rng(0xA076_1D64_78BD_642F ^ u64::from(task + 1) << 32);
            while started.elapsed() < slice {
                let offset = (rng.next() % blocks) * READ_SIZE;
                match file.read_at(offset, READ_SIZE as usize).await {
                    Ok(_) => done.set(done.get() + 1),
                    Err(err) => {
                        failed.set(Some(err));
                        return;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    if let Some(err) = failed.take() {
        return Err(io("reading", path)(err));
    }
    Ok(done.get() as f64 / started.elapsed().as_secs_f64())
}

fn device_facts(dir: &Path) -> Option<crate::facts::DeviceFacts> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let mut facts = crate::facts::Facts::default();
    facts.add_device(
        &crate::host::Host::live(),
        libc::major(dev),
        libc::minor(dev),
    );
    facts.device
}

fn device_name(dir: &Path) -> String {
    device_facts(dir).map_or_else(|| "unknown".to_owned(), |device| device.name)
}

fn logical_block_size(dir: &Path) -> u32 {
    device_facts(dir)
        .and_then(|device| device.logical_block_size)
        .unwrap_or(512) as u32
}
