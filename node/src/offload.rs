//! Blocking work off the core: the hint log's small file operations and
//! atomic whole-file writes run on glommio's blocking thread pool, so a
//! core never waits in a syscall for them.
//!
//! A thread may install another [`Offload`] before it runs a node's tasks.
//! The cluster simulator installs one that runs the work in place: its
//! nodes have no real disk to overlap with, and work finishing on another
//! thread at a wall-clock moment would make a seed replay differently.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Runs blocking jobs for the tasks of one thread.
pub trait Offload {
    /// Runs `job` to completion before returning.
    fn run_to_completion(&self, job: Box<dyn FnOnce() + Send>);
}

thread_local! {
    static INSTALLED: RefCell<Option<Rc<dyn Offload>>> = const { RefCell::new(None) };
}

/// Makes `offload` run this thread's blocking jobs until [`uninstall`].
pub fn install(offload: Rc<dyn Offload>) {
    INSTALLED.with(|installed| *installed.borrow_mut() = Some(offload));
}

/// Back to glommio's blocking pool.
pub fn uninstall() {
    INSTALLED.with(|installed| *installed.borrow_mut() = None);
}

/// Runs `job` off the core (see the module comment) and returns its result.
pub async fn run<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> R {
    let installed = INSTALLED.with(|installed| installed.borrow().clone());
    let Some(offload) = installed else {
        return glommio::executor().spawn_blocking(job).await;
    };
    let slot = Arc::new(Mutex::new(None));
    let filled = Arc::clone(&slot);
    offload.run_to_completion(Box::new(move || {
        let result = job();
        *filled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
    }));
    let result = slot
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    result.expect("an Offload runs each job to completion before it returns")
}
