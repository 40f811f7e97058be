//! Virtual time for the cluster simulator: sleeps wait for the simulation
//! to move the clock, never for the wall clock.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use stratum_node::clock::Clock;

#[derive(Default)]
struct Timers {
    /// (deadline, sequence) → waker of the sleep waiting for it.
    waiting: BTreeMap<(Duration, u64), Option<Waker>>,
    next: u64,
}

/// A clock that moves only when [`VirtualClock::advance_to_next`] says so.
pub struct VirtualClock {
    base: Instant,
    now: Cell<Duration>,
    timers: RefCell<Timers>,
}

impl VirtualClock {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            base: Instant::now(),
            now: Cell::new(Duration::ZERO),
            timers: RefCell::new(Timers::default()),
        })
    }

    /// Time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now.get()
    }

    /// Moves to the earliest pending deadline (no further than `limit`) and
    /// wakes every sleep due by then; `false` if nothing waits before
    /// `limit`.
    pub fn advance_to_next(&self, limit: Duration) -> bool {
        let next = self.timers.borrow().waiting.keys().next().map(|key| key.0);
        match next {
            Some(deadline) if deadline <= limit => {
                self.advance_to(deadline.max(self.now.get()));
                true
            }
            _ => false,
        }
    }

    /// Moves to `to` and wakes every sleep due by then.
    pub fn advance_to(&self, to: Duration) {
        if to > self.now.get() {
            self.now.set(to);
        }
        let now = self.now.get();
        let mut timers = self.timers.borrow_mut();
        let later = timers.waiting.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut timers.waiting, later);
        drop(timers);
        for waker in due.into_values().flatten() {
            waker.wake();
        }
    }
}

struct Sleep {
    clock: Rc<VirtualClock>,
    key: (Duration, u64),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now.get() >= self.key.0 {
            return Poll::Ready(());
        }
        let mut timers = self.clock.timers.borrow_mut();
        timers.waiting.insert(self.key, Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.clock.timers.borrow_mut().waiting.remove(&self.key);
    }
}

/// The clock as the node's code sees it (through `stratum_node::clock`).
pub struct Installed(pub Rc<VirtualClock>);

impl Clock for Installed {
    fn now(&self) -> Instant {
        self.0.base + self.0.now.get()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        let clock = Rc::clone(&self.0);
        let deadline = clock.now.get() + duration;
        let key = {
            let mut timers = clock.timers.borrow_mut();
            timers.next += 1;
            let key = (deadline, timers.next);
            // Registered now, so the deadline counts before the first poll.
            timers.waiting.insert(key, None);
            key
        };
        Box::pin(Sleep { clock, key })
    }
}
