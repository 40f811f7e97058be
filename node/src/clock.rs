//! Time, as the node's code sees it: `now()` and `sleep()`.
//!
//! A node runs on the real clock (glommio's timers, `Instant::now`). A
//! thread may install another [`Clock`] before it runs a node's tasks: the
//! cluster simulator installs virtual time, so timeouts, pings, backoffs
//! and maintenance ticks happen when the simulation says so, not when the
//! wall clock does. Every layer may use this module; it uses none.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A source of time for the tasks of one thread.
pub trait Clock {
    fn now(&self) -> Instant;
    /// Resolves once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>>;
}

thread_local! {
    static INSTALLED: RefCell<Option<Rc<dyn Clock>>> = const { RefCell::new(None) };
}

/// Makes `clock` this thread's time until [`uninstall`]; the thread's tasks
/// must not have started sleeping on another clock.
pub fn install(clock: Rc<dyn Clock>) {
    INSTALLED.with(|installed| *installed.borrow_mut() = Some(clock));
}

/// Back to the real clock.
pub fn uninstall() {
    INSTALLED.with(|installed| *installed.borrow_mut() = None);
}

fn installed() -> Option<Rc<dyn Clock>> {
    INSTALLED.with(|installed| installed.borrow().clone())
}

/// The current time on this thread's clock.
pub fn now() -> Instant {
    match installed() {
        Some(clock) => clock.now(),
        None => Instant::now(),
    }
}

/// Resolves once `duration` has passed on this thread's clock.
pub fn sleep(duration: Duration) -> Sleep {
    match installed() {
        Some(clock) => Sleep::Installed(clock.sleep(duration)),
        None => Sleep::Real(glommio::timer::Timer::new(duration)),
    }
}

/// What [`sleep`] returns: glommio's timer, unboxed, on the real clock.
pub enum Sleep {
    Real(glommio::timer::Timer),
    Installed(Pin<Box<dyn Future<Output = ()>>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Self::Real(timer) => Pin::new(timer).poll(cx).map(|_| ()),
            Self::Installed(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

/// `fut`'s output, or `None` if `limit` passes first on this thread's
/// clock.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(limit).await;
        None
    })
    .await
}

/// Time passed on this thread's clock since `earlier` (one of its `now()`s).
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}
