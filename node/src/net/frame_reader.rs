//! Reads frames off a connection, enforcing the idle and frame timeouts.
//!
//! The decoder (stratum-wire) judges every byte; this adds time: a peer that
//! sends nothing for `idle_timeout` is closed, and so is one that takes more
//! than `frame_timeout` to deliver a frame it has started (a slowloris cannot
//! hold a connection by trickling bytes).
//!
//! It also adds memory: the bytes of a frame still arriving are charged to
//! the shard's [`ByteBudget`], the same budget admitted requests are held
//! to, and a reader stops reading while other connections hold the budget.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

use super::stream::Stream;
use stratum_wire::{Frame, FrameDecoder, FrameError, FrameLimits};

/// Socket read size: large enough for many small frames per read.
const READ_CHUNK: usize = 64 << 10;
/// Socket read size until the limits grow past the handshake's: a peer that
/// has not said who it is costs a small buffer, not a large one.
const HANDSHAKE_READ_CHUNK: usize = 4 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("a frame took longer than {0:?} to arrive")]
    SlowFrame(Duration),
    #[error("read failed")]
    Io(#[source] io::Error),
}

/// A shard's budget of request bytes held in memory: frames still arriving
/// and the bodies of admitted requests. Shared by everything on one core.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    used: Rc<Cell<u64>>,
    limit: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            used: Rc::new(Cell::new(0)),
            limit,
        }
    }

    /// A budget no reader ever waits for.
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }

    /// Takes `bytes` if they fit under the limit.
    pub fn try_take(&self, bytes: u64) -> bool {
        let used = self.used.get();
        if used.saturating_add(bytes) > self.limit {
            return false;
        }
        self.used.set(used + bytes);
        true
    }

    /// Takes `bytes` whether or not they fit (a frame already buffered).
    fn take(&self, bytes: u64) {
        self.used.set(self.used.get() + bytes);
    }

    pub fn give_back(&self, bytes: u64) {
        debug_assert!(bytes <= self.used.get(), "budget released more than taken");
        self.used.set(self.used.get().saturating_sub(bytes));
    }

    /// Whether a reader holding `mine` may read `more`: always when nobody
    /// else holds anything (one frame of any allowed size must be able to
    /// arrive), else only within the limit.
    fn room_for(&self, mine: u64, more: u64) -> bool {
        let others = self.used.get() - mine;
        others == 0 || others.saturating_add(mine).saturating_add(more) <= self.limit
    }
}

/// The socket read size for frames under `limits`.
fn read_chunk(limits: &FrameLimits) -> usize {
    let frame = u64::from(limits.max_message_len) + u64::from(limits.max_payload_len);
    if frame <= HANDSHAKE_READ_CHUNK as u64 {
        HANDSHAKE_READ_CHUNK
    } else {
        READ_CHUNK
    }
}

/// How often a reader waiting for budget looks again.
const BUDGET_POLL: Duration = Duration::from_millis(2);

pub struct FrameReader {
    decoder: FrameDecoder,
    budget: ByteBudget,
    /// What this reader's frame in progress holds of the budget.
    charged: u64,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    frame_started: Option<Instant>,
    idle_timeout: Duration,
    frame_timeout: Duration,
}

impl FrameReader {
    pub fn new(
        limits: FrameLimits,
        budget: ByteBudget,
        idle_timeout: Duration,
        frame_timeout: Duration,
    ) -> Self {
        Self {
            decoder: FrameDecoder::new(limits),
            budget,
            charged: 0,
            buf: vec![0; read_chunk(&limits)],
            pos: 0,
            len: 0,
            frame_started: None,
            idle_timeout,
            frame_timeout,
        }
    }

    /// Limits for the frames after the current one (see
    /// [`FrameDecoder::set_limits`]).
    pub fn set_limits(&mut self, limits: FrameLimits) {
        let chunk = read_chunk(&limits);
        if chunk > self.buf.len() {
            // Bytes not yet decoded stay where they are.
            self.buf.resize(chunk, 0);
        }
        self.decoder.set_limits(limits);
    }

    /// See [`FrameDecoder::skip_oversize_payloads`].
    pub fn skip_oversize_payloads(&mut self, up_to: u32) {
        self.decoder.skip_oversize_payloads(up_to);
    }

    /// Brings this reader's charge to what its decoder holds now.
    fn recharge(&mut self) {
        let now = self.decoder.buffered_bytes() as u64;
        if now > self.charged {
            self.budget.take(now - self.charged);
        } else {
            self.budget.give_back(self.charged - now);
        }
        self.charged = now;
    }

    /// Waits until the shard's budget has room for another read, or fails
    /// as a slow frame once the frame in progress runs out of time.
    async fn wait_for_budget(&mut self) -> Result<(), ReadError> {
        while !self.budget.room_for(self.charged, READ_CHUNK as u64) {
            if let Some(started) = self.frame_started {
                if crate::clock::since(started) >= self.frame_timeout {
                    return Err(ReadError::SlowFrame(self.frame_timeout));
                }
            }
            crate::clock::sleep(BUDGET_POLL).await;
        }
        Ok(())
    }

    /// The next whole frame; `Ok(None)` at a clean end of stream, or when
    /// `stop` resolves first (shutdown) while no frame is in progress.
    pub async fn next_frame(
        &mut self,
        stream: &mut (impl Stream + ?Sized),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Frame>, ReadError> {
        let mut stop = std::pin::pin!(stop);
        loop {
            if self.pos < self.len {
                let mut input = &self.buf[self.pos..self.len];
                let before = input.len();
                let decoded = self.decoder.decode(&mut input);
                self.pos += before - input.len();
                self.recharge();
                if matches!(&decoded, Err(err) if !err.is_fatal()) {
                    self.frame_started = None;
                }
                if let Some(frame) = decoded? {
                    self.frame_started = None;
                    return Ok(Some(frame));
                }
                continue;
            }
            let timeout = if self.decoder.buffered_bytes() > 0 {
                let started = *self.frame_started.get_or_insert_with(crate::clock::now);
                let left = self
                    .frame_timeout
                    .saturating_sub(crate::clock::since(started));
                if left.is_zero() {
                    return Err(ReadError::SlowFrame(self.frame_timeout));
                }
                left
            } else {
                self.idle_timeout
            };
            self.wait_for_budget().await?;
            stream.set_read_timeout(timeout).map_err(ReadError::Io)?;
            let read =
                futures_lite::future::or(async { Some(stream.read(&mut self.buf).await) }, async {
                    stop.as_mut().await;
                    None
                })
                .await;
            let n = match read {
                None => return Ok(None),
                Some(Ok(n)) => n,
                Some(Err(err)) if err.kind() == io::ErrorKind::TimedOut => {
                    return Err(if self.decoder.buffered_bytes() > 0 {
                        ReadError::SlowFrame(self.frame_timeout)
                    } else {
                        ReadError::Idle(self.idle_timeout)
                    });
                }
                Some(Err(err)) => return Err(ReadError::Io(err)),
            };
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.pos = 0;
            self.len = n;
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}
