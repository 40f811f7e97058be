//! A connection's outgoing bytes: request tasks append whole frames, one
//! writer task sends them, many frames per `write` when replies pile up.
//!
//! Bounded in bytes: a task appending past the budget waits until the writer
//! has sent enough. A peer that stops reading therefore stops its own
//! requests (their tasks wait here, holding their in-flight permits, so the
//! connection stops reading too), and the writer's timeout disconnects it.
//! Its memory never grows past the budget plus one frame.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use glommio::sync::Semaphore;

/// Bytes queued per connection before appenders wait.
pub const OUTBOX_BUDGET: u64 = 4 << 20;

#[derive(Default)]
struct State {
    queued: Vec<u8>,
    /// Budget units held by the bytes in `queued`.
    units: u64,
    closed: bool,
    writer: Option<Waker>,
}

pub struct Outbox {
    state: RefCell<State>,
    budget: Semaphore,
}

/// The outbox was closed (the connection is going away).
#[derive(Debug)]
pub struct Closed;

impl Outbox {
    pub fn new() -> Self {
        Self {
            state: RefCell::new(State::default()),
            budget: Semaphore::new(OUTBOX_BUDGET),
        }
    }

    /// Appends one frame given as its head and payload.
    pub async fn push(&self, head: &[u8], payload: &[u8]) -> Result<(), Closed> {
        let len = (head.len() + payload.len()) as u64;
        // A frame larger than the whole budget takes all of it: it waits for
        // the queue to empty and then goes alone.
        let units = len.min(OUTBOX_BUDGET);
        self.budget.acquire(units).await.map_err(|_| Closed)?;
        let mut state = self.state.borrow_mut();
        if state.closed {
            drop(state);
            self.budget.signal(units);
            return Err(Closed);
        }
        state.queued.extend_from_slice(head);
        state.queued.extend_from_slice(payload);
        state.units += units;
        if let Some(writer) = state.writer.take() {
            writer.wake();
        }
        Ok(())
    }

    /// Appends one frame if the budget has room now; `false` otherwise
    /// (the caller takes the waiting path).
    pub fn try_push(&self, head: &[u8], payload: &[u8]) -> bool {
        let units = ((head.len() + payload.len()) as u64).min(OUTBOX_BUDGET);
        if !matches!(self.budget.try_acquire(units), Ok(true)) {
            return false;
        }
        let mut state = self.state.borrow_mut();
        if state.closed {
            drop(state);
            self.budget.signal(units);
            return false;
        }
        state.queued.extend_from_slice(head);
        state.queued.extend_from_slice(payload);
        state.units += units;
        if let Some(writer) = state.writer.take() {
            writer.wake();
        }
        true
    }

    /// Waits until bytes are queued, then swaps them into `into` (which must
    /// be empty; its capacity is reused). Returns the budget units to give
    /// back with [`Outbox::sent`] once written, or `None` once the outbox is
    /// closed and empty.
    pub async fn take(&self, into: &mut Vec<u8>) -> Option<u64> {
        debug_assert!(into.is_empty());
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if !state.queued.is_empty() {
                std::mem::swap(&mut state.queued, into);
                return Poll::Ready(Some(std::mem::take(&mut state.units)));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Returns budget for bytes the writer has sent.
    pub fn sent(&self, units: u64) {
        self.budget.signal(units);
    }

    /// No more frames: the writer sends what is queued, then stops.
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        if let Some(writer) = state.writer.take() {
            writer.wake();
        }
    }

    /// The writer failed: wake every waiting appender with `Closed`.
    pub fn abort(&self) {
        self.close();
        self.budget.close();
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}
