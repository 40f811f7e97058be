//! The ring's ownership and wake-up promises, on a pipe: a read of an empty
//! pipe stays in flight until a test thread writes, so each test decides
//! exactly when the kernel completes the I/O.

use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Request, Ring};

/// The ends of a new pipe: (read, write).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors the call returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Writes `bytes` into the pipe after `delay`, from another thread.
fn write_later(fd: OwnedFd, bytes: &'static [u8], delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut &file, bytes).expect("write pipe");
    })
}

/// Runs `test` on a fresh glommio executor; fails (instead of hanging) if
/// it does not finish within `limit`.
fn on_executor<T: Send + 'static>(
    limit: Duration,
    test: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("executor");
        let _ = done_tx.send(executor.run(test()));
    });
    done_rx
        .recv_timeout(limit)
        .expect("the executor did not finish: a completion was never seen")
}

#[test]
fn a_parked_core_wakes_when_its_io_completes() {
    let (elapsed, bytes) = on_executor(Duration::from_secs(20), || {
        Box::pin(async {
            let ring = Ring::new(64 << 10).expect("ring");
            let (read_end, write_end) = pipe();
            let file = ring.adopt(read_end);
            let buf = ring.buffer(8, 512);
            let started = Instant::now();
            let mut completions = ring.submit(&file, [Request::Read { buf, offset: 0 }]);
            // Nothing else runs on this executor: it parks until the wake.
            let writer = write_later(write_end, b"stratum!", Duration::from_millis(300));
            let (got, buf) = completions.pop().expect("one").await.expect("read");
            let elapsed = started.elapsed();
            writer.join().expect("writer");
            let buf = buf.expect("buffer back");
            (elapsed, buf.as_bytes()[..got].to_vec())
        })
    });
    assert_eq!(bytes, b"stratum!");
    assert!(
        elapsed >= Duration::from_millis(250),
        "read finished before the write: {elapsed:?}"
    );
}

#[test]
fn a_dropped_read_keeps_its_buffer_until_the_kernel_lets_go() {
    on_executor(Duration::from_secs(20), || {
        Box::pin(async {
            let ring = Ring::new(64 << 10).expect("ring");
            let (read_end, write_end) = pipe();
            let file = ring.adopt(read_end);
            let buf = ring.buffer(4096, 512);
            let in_flight_ptr = buf.as_ptr();
            let completions = ring.submit(&file, [Request::Read { buf, offset: 0 }]);
            drop(completions);
            let stats = ring.stats();
            assert_eq!((stats.in_flight, stats.abandoned), (1, 1));
            // The abandoned read's page is still the kernel's: never lent again.
            let other = ring.buffer(4096, 512);
            assert_ne!(other.as_ptr(), in_flight_ptr);
            assert_eq!(ring.pool.pages_in_use(), 2);
            drop(other);
            // The kernel finishes the read into the buffer the ring kept.
            write_later(write_end, b"late", Duration::ZERO)
                .join()
                .expect("writer");
            let deadline = Instant::now() + Duration::from_secs(10);
            while ring.stats().in_flight > 0 {
                assert!(
                    Instant::now() < deadline,
                    "the abandoned read never completed"
                );
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(ring.pool.pages_in_use(), 0, "freed once the kernel let go");
        })
    });
}

#[test]
fn dropping_the_ring_waits_for_io_in_flight() {
    let waited = on_executor(Duration::from_secs(40), || {
        Box::pin(async {
            let ring = Ring::new(64 << 10).expect("ring");
            let (read_end, write_end) = pipe();
            let file = ring.adopt(read_end);
            let buf = ring.buffer(4096, 512);
            drop(ring.submit(&file, [Request::Read { buf, offset: 0 }]));
            drop(file);
            let writer = write_later(write_end, b"x", Duration::from_millis(300));
            let started = Instant::now();
            assert_eq!(Rc::strong_count(&ring), 1, "the test holds the last handle");
            drop(ring);
            let waited = started.elapsed();
            writer.join().expect("writer");
            waited
        })
    });
    assert!(
        waited >= Duration::from_millis(250),
        "the ring closed under the kernel: {waited:?}"
    );
}

#[test]
fn a_stalled_operation_is_reported_and_so_is_its_end() {
    on_executor(Duration::from_secs(20), || {
        Box::pin(async {
            let ring = Ring::new(0).expect("ring");
            let (read_end, write_end) = pipe();
            let file = ring.adopt(read_end);
            let buf = ring.buffer(16, 512);
            let mut completions = ring.submit(&file, [Request::Read { buf, offset: 0 }]);
            glommio::timer::sleep(Duration::from_millis(20)).await;
            ring.watch(Duration::from_millis(10));
            assert_eq!(ring.stalled(), 1);
            write_later(write_end, b"ok", Duration::ZERO)
                .join()
                .expect("writer");
            completions.pop().expect("one").await.expect("read");
            ring.watch(Duration::from_millis(10));
            assert_eq!(ring.stalled(), 0);
        })
    });
}

#[test]
fn writes_and_reads_round_trip_through_a_file() {
    on_executor(Duration::from_secs(20), || {
        Box::pin(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let ring = Ring::new(64 << 10).expect("ring");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join("f"))
                .expect("open");
            let file = ring.adopt(OwnedFd::from(file));
            // One from the registered pool, one too big for it (heap).
            let mut small = ring.buffer(4096, 512);
            small.as_mut_bytes().fill(7);
            let mut big = ring.buffer(128 << 10, 512);
            big.as_mut_bytes().fill(9);
            assert!(small.fixed_index().is_some() == ring.stats().fixed_buffers);
            assert!(big.fixed_index().is_none());
            let writes = ring.submit(
                &file,
                [
                    Request::Write {
                        buf: small,
                        offset: 0,
                    },
                    Request::Write {
                        buf: big,
                        offset: 4096,
                    },
                    Request::Fdatasync,
                ],
            );
            for write in writes {
                write.await.expect("write");
            }
            let reads = ring.submit(
                &file,
                [
                    Request::Read {
                        buf: ring.buffer(4096, 512),
                        offset: 0,
                    },
                    Request::Read {
                        buf: ring.buffer(4096, 512),
                        offset: 128 << 10,
                    },
                ],
            );
            let mut got = Vec::new();
            for read in reads {
                let (len, buf) = read.await.expect("read");
                got.push(buf.expect("buffer").as_bytes()[..len].to_vec());
            }
            assert_eq!(got[0], vec![7; 4096]);
            assert_eq!(got[1], vec![9; 4096]);
        })
    });
}
