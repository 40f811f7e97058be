//! Reads frames off a connection, enforcing the idle and frame timeouts.
//!
//! The decoder (stratum-wire) judges every byte; this adds time: a peer that
//! sends nothing for `idle_timeout` is closed, and so is one that takes more
//! than `frame_timeout` to deliver a frame it has started (a slowloris cannot
//! hold a connection by trickling bytes).

use std::io;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use stratum_wire::{Frame, FrameDecoder, FrameError, FrameLimits};

/// Socket read size: large enough for many small frames per read.
const READ_CHUNK: usize = 64 << 10;

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

pub struct FrameReader {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    frame_started: Option<Instant>,
    idle_timeout: Duration,
    frame_timeout: Duration,
}

impl FrameReader {
    pub fn new(limits: FrameLimits, idle_timeout: Duration, frame_timeout: Duration) -> Self {
        Self {
            decoder: FrameDecoder::new(limits),
            buf: vec![0; READ_CHUNK],
            pos: 0,
            len: 0,
            frame_started: None,
            idle_timeout,
            frame_timeout,
        }
    }

    /// The next whole frame; `Ok(None)` at a clean end of stream, or when
    /// `stop` resolves first (shutdown) while no frame is in progress.
    pub async fn next_frame(
        &mut self,
        stream: &mut TcpStream,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Frame>, ReadError> {
        let mut stop = std::pin::pin!(stop);
        loop {
            if self.pos < self.len {
                let mut input = &self.buf[self.pos..self.len];
                let before = input.len();
                let decoded = self.decoder.decode(&mut input);
                self.pos += before - input.len();
                if let Some(frame) = decoded? {
                    self.frame_started = None;
                    return Ok(Some(frame));
                }
                continue;
            }
            let timeout = if self.decoder.buffered_bytes() > 0 {
                let started = *self.frame_started.get_or_insert_with(Instant::now);
                let left = self.frame_timeout.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(ReadError::SlowFrame(self.frame_timeout));
                }
                left
            } else {
                self.idle_timeout
            };
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|err| ReadError::Io(io::Error::other(err.to_string())))?;
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
