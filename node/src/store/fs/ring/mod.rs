//! The shard's own io_uring ring for segment I/O.
//!
//! glommio 0.9 only queues an I/O; the request reaches the kernel at the
//! executor's next reactor turn. This ring submits a group commit's writes
//! or a read the moment they are formed: one `io_uring_enter` per batch.
//!
//! **Completions.** Every future of this ring reaps the completion queue
//! when it is polled (a peek at shared memory, no system call), so a busy
//! core sees its completions at task boundaries. A parked core must be
//! woken, and glommio 0.9 can wait only on its own sources: sockets, and
//! files it opens by path. An eventfd can be neither (reopening one through
//! `/proc/self/fd` fails with ENXIO). So each I/O carries a hard-linked
//! one-byte write into a socket pair, which the kernel performs once the
//! I/O completes, succeeded or not; its own completion is skipped. The
//! ring's waker task reads the other end through glommio, reaps, and wakes
//! the futures whose I/O finished.
//!
//! **Ownership.** An in-flight operation owns its buffer and its file for as
//! long as the kernel may touch them. A future dropped early leaves the
//! operation behind, marked abandoned; its buffer is freed when its
//! completion arrives. Dropping the ring waits for every operation still in
//! flight, and leaks (rather than frees) what the kernel never gave back.
//!
//! **Stalls.** A watchdog task reports, once, an operation in flight longer
//! than [`STALL_AFTER`] (a wedged device or ring), and reports its recovery.

pub mod buffers;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;

use buffers::{BufferPool, IoBuf};

/// Submission queue entries; the completion queue gets four times as many,
/// and the kernel keeps any overflow (IORING_FEAT_NODROP) until reaped.
const SQ_ENTRIES: u32 = 128;
/// Files the ring can register; more open segments than this fall back to
/// plain descriptors.
const FIXED_FILES: u32 = 1024;
/// `user_data` of the wake writes: never a slab key.
const WAKE: u64 = u64::MAX;
/// An operation in flight this long is reported as stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(10);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long dropping the ring waits for the kernel to finish.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// A file descriptor the ring's operations use, registered in the ring's
/// fixed-file table when there is room.
pub struct RingFd {
    fd: OwnedFd,
    fixed: Option<u32>,
    ring: Weak<Ring>,
}

impl RingFd {
    fn target(&self) -> Target {
        match self.fixed {
            Some(index) => Target::Fixed(index),
            None => Target::Fd(self.fd.as_raw_fd()),
        }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for RingFd {
    fn drop(&mut self) {
        // Every operation holds an `Rc` to its file, so none is in flight.
        if let (Some(index), Some(ring)) = (self.fixed, self.ring.upgrade()) {
            ring.unregister_file(index);
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Fixed(u32),
    Fd(RawFd),
}

/// One operation to submit.
pub enum Request {
    Write { buf: IoBuf, offset: u64 },
    Read { buf: IoBuf, offset: u64 },
    Fdatasync,
}

enum State {
    Waiting(Option<Waker>),
    Done(i32),
    /// Its future was dropped; the completion frees it.
    Abandoned,
}

struct Op {
    state: State,
    /// Kept alive until the completion: the kernel reads or fills it.
    buf: Option<IoBuf>,
    _file: Rc<RingFd>,
    submitted: Instant,
}

struct Inner {
    uring: IoUring,
    ops: Slab<Op>,
    free_files: Vec<u32>,
}

/// A shard's ring. Not `Send`: it lives on its shard's core.
pub struct Ring {
    inner: RefCell<Inner>,
    pool: Rc<BufferPool>,
    /// The socket end the kernel writes a byte into when an I/O completes.
    wake_tx: OwnedFd,
    /// Its slot in the fixed-file table (`None`: files could not be
    /// registered; then the plain descriptor is used).
    wake_fixed: Option<u32>,
    skip_wake_cqe: bool,
    /// Stalled operations the watchdog last reported (0: none).
    stalled: Cell<usize>,
    woken: RefCell<Vec<Waker>>,
}

/// What the ring is doing, for stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingStats {
    pub in_flight: usize,
    pub abandoned: usize,
    pub oldest: Option<Duration>,
    pub fixed_buffers: bool,
}

impl Ring {
    /// Sets up a ring with `pool_bytes` of registered buffers, and spawns
    /// its waker and watchdog tasks on the current glommio executor.
    pub fn new(pool_bytes: usize) -> io::Result<Rc<Self>> {
        let uring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .build(SQ_ENTRIES)?;
        let skip_wake_cqe = uring.params().is_feature_skip_cqe_on_success();
        let pool = BufferPool::new(pool_bytes);
        register_pool(&uring, &pool);
        let (wake_tx, wake_rx) = std::os::unix::net::UnixStream::pair()?;
        // The kernel's wake write must never wait: a full socket already
        // holds plenty of unread wakes.
        wake_tx.set_nonblocking(true)?;
        // The wake socket takes the last fixed slot: a linked write looks
        // its file up when it runs, after its I/O, and a plain descriptor
        // could by then be closed (the ring dropped) and reused elsewhere.
        // A registered file lives as long as the ring.
        let (free_files, wake_fixed) = match uring.submitter().register_files_sparse(FIXED_FILES) {
            Ok(()) => {
                let slot = FIXED_FILES - 1;
                let wake_fixed = uring
                    .submitter()
                    .register_files_update(slot, &[wake_tx.as_raw_fd()])
                    .is_ok()
                    .then_some(slot);
                ((0..slot).rev().collect(), wake_fixed)
            }
            Err(err) => {
                tracing::warn!(error = %err, "segment ring: cannot register files; using plain descriptors");
                (Vec::new(), None)
            }
        };
        let ring = Rc::new(Self {
            inner: RefCell::new(Inner {
                uring,
                ops: Slab::with_capacity(SQ_ENTRIES as usize),
                free_files,
            }),
            pool,
            wake_tx: OwnedFd::from(wake_tx),
            wake_fixed,
            skip_wake_cqe,
            stalled: Cell::new(0),
            woken: RefCell::new(Vec::new()),
        });
        // SAFETY: `wake_rx` is an open socket this call gives away.
        let wake_rx = unsafe { glommio::net::UnixStream::from_raw_fd(wake_rx.into_raw_fd()) };
        glommio::spawn_local(wake_on_completions(Rc::downgrade(&ring), wake_rx)).detach();
        glommio::spawn_local(watch_for_stalls(Rc::downgrade(&ring))).detach();
        Ok(ring)
    }

    /// An aligned buffer, from the registered pool when it has room.
    pub fn buffer(&self, len: usize, align: usize) -> IoBuf {
        IoBuf::new(&self.pool, len, align)
    }

    /// Takes ownership of `fd` for this ring's operations.
    pub fn adopt(self: &Rc<Self>, fd: OwnedFd) -> Rc<RingFd> {
        let fixed = self.register_file(fd.as_raw_fd());
        Rc::new(RingFd {
            fd,
            fixed,
            ring: Rc::downgrade(self),
        })
    }

    fn register_file(&self, fd: RawFd) -> Option<u32> {
        let mut inner = self.inner.borrow_mut();
        let index = inner.free_files.pop()?;
        match inner.uring.submitter().register_files_update(index, &[fd]) {
            Ok(_) => Some(index),
            Err(err) => {
                tracing::debug!(error = %err, "segment ring: file not registered");
                inner.free_files.push(index);
                None
            }
        }
    }

    fn unregister_file(&self, index: u32) {
        let mut inner = self.inner.borrow_mut();
        match inner.uring.submitter().register_files_update(index, &[-1]) {
            Ok(_) => inner.free_files.push(index),
            // The slot stays taken: better a smaller table than a stale file.
            Err(err) => tracing::warn!(error = %err, "segment ring: cannot unregister a file"),
        }
    }

    /// Submits `requests` on `file` with one system call, and returns one
    /// future per request, in order.
    pub fn submit(
        self: &Rc<Self>,
        file: &Rc<RingFd>,
        requests: impl IntoIterator<Item = Request>,
    ) -> Vec<Completion> {
        let mut inner = self.inner.borrow_mut();
        let mut completions = Vec::new();
        for request in requests {
            let (entry, buf) = self.entry_for(file.target(), request);
            let key = inner.ops.insert(Op {
                state: State::Waiting(None),
                buf,
                _file: Rc::clone(file),
                submitted: Instant::now(),
            });
            let entry = entry
                .user_data(key as u64)
                .flags(squeue::Flags::IO_HARDLINK);
            let wake = self.wake_entry();
            push_pair(&mut inner, entry, wake);
            completions.push(Completion {
                ring: Rc::clone(self),
                key,
                finished: false,
            });
        }
        enter(&inner.uring);
        completions
    }

    fn entry_for(&self, target: Target, request: Request) -> (squeue::Entry, Option<IoBuf>) {
        macro_rules! on {
            ($op:expr) => {
                match target {
                    Target::Fixed(index) => $op(types::Fixed(index)),
                    Target::Fd(fd) => $op(types::Fd(fd)),
                }
            };
        }
        match request {
            Request::Write { buf, offset } => {
                let (ptr, len) = (buf.as_ptr(), io_len(buf.len()));
                let entry = match buf.fixed_index() {
                    Some(index) => on!(|fd| opcode::WriteFixed::new(fd, ptr, len, index)
                        .offset(offset)
                        .build()),
                    None => on!(|fd| opcode::Write::new(fd, ptr, len).offset(offset).build()),
                };
                (entry, Some(buf))
            }
            Request::Read { mut buf, offset } => {
                let (ptr, len) = (buf.as_mut_ptr(), io_len(buf.len()));
                let entry = match buf.fixed_index() {
                    Some(index) => on!(|fd| opcode::ReadFixed::new(fd, ptr, len, index)
                        .offset(offset)
                        .build()),
                    None => on!(|fd| opcode::Read::new(fd, ptr, len).offset(offset).build()),
                };
                (entry, Some(buf))
            }
            Request::Fdatasync => (
                on!(|fd| opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()),
                None,
            ),
        }
    }

    fn wake_entry(&self) -> squeue::Entry {
        static BYTE: u8 = 1;
        let entry = match self.wake_fixed {
            Some(slot) => opcode::Write::new(types::Fixed(slot), &BYTE, 1).build(),
            None => opcode::Write::new(types::Fd(self.wake_tx.as_raw_fd()), &BYTE, 1).build(),
        }
        .user_data(WAKE);
        if self.skip_wake_cqe {
            entry.flags(squeue::Flags::SKIP_SUCCESS)
        } else {
            entry
        }
    }

    /// Moves every posted completion to its operation and wakes its future.
    /// Cheap when there is nothing to reap: a load of the queue's tail.
    pub fn reap(&self) {
        // Operations are freed and futures woken outside the borrow: freeing
        // may drop a file (which unregisters itself), and a waker may run
        // code that submits.
        let mut freed = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            let Inner { uring, ops, .. } = &mut *inner;
            let mut woken = self.woken.borrow_mut();
            for cqe in uring.completion() {
                if cqe.user_data() == WAKE {
                    continue;
                }
                let key = cqe.user_data() as usize;
                let Some(op) = ops.get_mut(key) else {
                    debug_assert!(false, "completion for unknown operation {key}");
                    continue;
                };
                match std::mem::replace(&mut op.state, State::Done(cqe.result())) {
                    State::Waiting(waker) => woken.extend(waker),
                    // The buffer is the kernel's no longer: free it now.
                    State::Abandoned => freed.push(ops.remove(key)),
                    State::Done(_) => debug_assert!(false, "operation {key} completed twice"),
                }
            }
        }
        drop(freed);
        let woken = std::mem::take(&mut *self.woken.borrow_mut());
        for waker in woken {
            waker.wake();
        }
    }

    pub fn stats(&self) -> RingStats {
        let inner = self.inner.borrow();
        RingStats {
            in_flight: inner.ops.len(),
            abandoned: inner
                .ops
                .iter()
                .filter(|(_, op)| matches!(op.state, State::Abandoned))
                .count(),
            oldest: inner
                .ops
                .iter()
                .filter(|(_, op)| !matches!(op.state, State::Done(_)))
                .map(|(_, op)| op.submitted.elapsed())
                .max(),
            fixed_buffers: self.pool.is_registered(),
        }
    }

    /// The result of a finished operation, or `None` after registering
    /// `waker` for it.
    fn poll_op(&self, key: usize, waker: &Waker) -> Option<(i32, Option<IoBuf>)> {
        let (result, op) = {
            let mut inner = self.inner.borrow_mut();
            let op = inner.ops.get_mut(key)?;
            match &mut op.state {
                State::Done(result) => {
                    let result = *result;
                    (result, inner.ops.remove(key))
                }
                State::Waiting(slot) => {
                    if !slot.as_ref().is_some_and(|known| known.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                    return None;
                }
                State::Abandoned => unreachable!("a live future's operation is never abandoned"),
            }
        };
        // The borrow is released: dropping the op may drop its file.
        let Op { buf, .. } = op;
        Some((result, buf))
    }

    fn abandon(&self, key: usize) {
        let freed = {
            let mut inner = self.inner.borrow_mut();
            let Some(op) = inner.ops.get_mut(key) else {
                return;
            };
            if matches!(op.state, State::Done(_)) {
                Some(inner.ops.remove(key))
            } else {
                op.state = State::Abandoned;
                None
            }
        };
        drop(freed);
    }

    /// Reports stalls (operations in flight `stall_after` or longer) once,
    /// and their end.
    fn watch(&self, stall_after: Duration) {
        let now = Instant::now();
        let inner = self.inner.borrow();
        let stalled: Vec<Duration> = inner
            .ops
            .iter()
            .filter(|(_, op)| !matches!(op.state, State::Done(_)))
            .map(|(_, op)| now - op.submitted)
            .filter(|age| *age >= stall_after)
            .collect();
        let before = self.stalled.replace(stalled.len());
        if !stalled.is_empty() && before == 0 {
            tracing::error!(
                stalled = stalled.len(),
                oldest_ms = stalled.iter().max().map_or(0, Duration::as_millis) as u64,
                in_flight = inner.ops.len(),
                "segment I/O stalled: the device or the ring is not completing requests"
            );
        } else if stalled.is_empty() && before > 0 {
            tracing::warn!(in_flight = inner.ops.len(), "segment I/O completes again");
        }
    }

    /// Operations in flight past [`STALL_AFTER`] at the watchdog's last look.
    pub fn stalled(&self) -> usize {
        self.stalled.get()
    }
}

impl Drop for Ring {
    /// Waits for the kernel to finish every operation in flight (all are
    /// abandoned by now: a live future holds the ring). What it never
    /// finishes is leaked, never freed under the kernel.
    fn drop(&mut self) {
        let deadline = Instant::now() + DRAIN_FOR;
        let inner = self.inner.get_mut();
        while !inner.ops.is_empty() && Instant::now() < deadline {
            let wait = types::Timespec::new().sec(1);
            let args = types::SubmitArgs::new().timespec(&wait);
            if let Err(err) = inner.uring.submitter().submit_with_args(1, &args) {
                if !matches!(
                    err.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) {
                    tracing::error!(error = %err, "segment ring: cannot wait for in-flight I/O");
                    break;
                }
            }
            let Inner { uring, ops, .. } = inner;
            for cqe in uring.completion() {
                if cqe.user_data() != WAKE {
                    ops.try_remove(cqe.user_data() as usize);
                }
            }
        }
        if !inner.ops.is_empty() {
            tracing::error!(
                in_flight = inner.ops.len(),
                "segment ring closed with I/O still in flight; its buffers are leaked"
            );
            for op in inner.ops.drain() {
                std::mem::forget(op.buf);
            }
            // The pool may still be the kernel's too.
            std::mem::forget(Rc::clone(&self.pool));
        }
    }
}

/// The future of one submitted operation: the kernel's result (bytes
/// moved, or a negative errno) and the buffer, back.
pub struct Completion {
    ring: Rc<Ring>,
    key: usize,
    finished: bool,
}

impl Future for Completion {
    type Output = io::Result<(usize, Option<IoBuf>)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.finished, "a completion is polled after it finished");
        self.ring.reap();
        match self.ring.poll_op(self.key, cx.waker()) {
            None => Poll::Pending,
            Some((result, buf)) => {
                self.finished = true;
                Poll::Ready(if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok((result as usize, buf))
                })
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.finished {
            self.ring.abandon(self.key);
        }
    }
}

fn io_len(len: usize) -> u32 {
    u32::try_from(len).expect("single I/Os are split at the device's limit, far below 4 GiB")
}

/// Registers the pool's region, when the memlock budget allows.
fn register_pool(uring: &IoUring, pool: &BufferPool) {
    let iovec = pool.iovec();
    // SAFETY: the region stays allocated while registered: the ring holds
    // the pool, and its `Drop` leaks the pool if the kernel might still use it.
    match unsafe { uring.submitter().register_buffers(&[iovec]) } {
        Ok(()) => pool.set_registered(0),
        Err(err) => tracing::warn!(
            error = %err,
            bytes = iovec.iov_len,
            "segment ring: cannot register its buffers (memlock limit?); I/O uses unregistered buffers"
        ),
    }
}

/// Pushes an I/O and its linked wake write, making room first if needed.
fn push_pair(inner: &mut Inner, entry: squeue::Entry, wake: squeue::Entry) {
    loop {
        let mut sq = inner.uring.submission();
        if sq.capacity() - sq.len() >= 2 {
            // SAFETY: the buffers and file the entries name are owned by the
            // operation's slab entry (the wake byte is static) until the
            // completion is reaped or the ring is dropped.
            unsafe {
                sq.push(&entry).expect("room was checked");
                sq.push(&wake).expect("room was checked");
            }
            return;
        }
        drop(sq);
        enter(&inner.uring);
    }
}

/// One `io_uring_enter`: hands the queued entries to the kernel.
fn enter(uring: &IoUring) {
    loop {
        match uring.submit() {
            Ok(_) => return,
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR)) => continue,
            // The completion queue is full: the kernel takes new entries
            // once completions are reaped, which the waker task does.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                tracing::debug!(error = %err, "segment ring busy; entries stay queued");
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, "segment ring: submit failed; entries stay queued");
                return;
            }
        }
    }
}

/// Reads the wake socket through glommio and reaps. Ends when the ring is
/// gone (its drop closes the socket's other end).
async fn wake_on_completions(ring: Weak<Ring>, mut socket: glommio::net::UnixStream) {
    use futures_lite::AsyncReadExt;
    let mut bytes = [0u8; 512];
    loop {
        let read = socket.read(&mut bytes).await;
        let Some(ring) = ring.upgrade() else {
            return;
        };
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "segment ring: wake socket failed");
                return;
            }
        }
        ring.reap();
        // Entries left queued by a busy ring go in now.
        if !ring.inner.borrow_mut().uring.submission().is_empty() {
            enter(&ring.inner.borrow().uring);
        }
    }
}

async fn watch_for_stalls(ring: Weak<Ring>) {
    loop {
        glommio::timer::sleep(WATCH_EVERY).await;
        let Some(ring) = ring.upgrade() else {
            return;
        };
        ring.watch(STALL_AFTER);
    }
}
