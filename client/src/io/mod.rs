//! The client's I/O threads.
//!
//! Thread-per-core on the client side too: each I/O thread runs one mio
//! event loop and owns the connections of the peers routed to it; nothing
//! about a connection is shared. Callers (any thread, any executor) hand a
//! request to the owning thread over a flume channel and wait on a flume
//! channel for the answer, so the client never needs the caller's runtime.
//!
//! - [`event_loop`]: the per-thread loop (poll, timers, commands).
//! - [`connection`]: one connection's life: connect, handshake, pipelined
//!   requests, timeouts, failure.
//! - [`route`]: which thread and slot a peer's connection has, fixed once.

mod connection;
mod event_loop;
mod route;

pub(crate) use route::Route;
use route::Routes;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use stratum_wire::{Codec, Frame};

use crate::config::ClientConfig;
use crate::dictionaries::ClientDictionaries;
use crate::error::{AttemptError, Peer};
use crate::traffic::Traffic;

/// What the node told us about itself in the handshake; travels with every
/// answer so the caller sees topology changes as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub node_id: u32,
    pub shard_id: u16,
    pub shard_count: u16,
    pub topology_epoch: u64,
    /// Payload codecs the node accepts and may send (bit per codec).
    pub codecs: u8,
    /// The node's maximum object size, if it said (revision 2 and later).
    pub max_object_bytes: Option<u64>,
}

/// One answer frame, or why there is none.
pub(crate) enum Event {
    Frame {
        frame: Frame,
        peer: PeerInfo,
    },
    Failed {
        request_id: u64,
        error: AttemptError,
    },
}

/// A request on its way to an I/O thread: an encoded frame head, the payload
/// sent right after it (shared, so a retry does not copy the object), and
/// where answers go.
pub(crate) struct Outgoing {
    pub route: Route,
    pub request_id: u64,
    pub head: Vec<u8>,
    pub payload: Bytes,
    /// The codec `payload` is in. A node that does not accept it is sent
    /// `raw` instead.
    pub codec: Codec,
    /// The same request with the content raw, when `payload` is compressed.
    pub raw: Option<(Vec<u8>, Bytes)>,
    /// Nobody waits for the answer (a report): sent even though `reply`
    /// has no receiver.
    pub detached: bool,
    /// Length of the object's content (0 when the request carries none),
    /// judged against the node's maximum object size before sending.
    pub content_len: u64,
    /// A batch-get: many answer frames until `BatchEnd` (or an error).
    pub streaming: bool,
    pub timeout: Duration,
    pub reply: flume::Sender<Event>,
}

enum Command {
    Send(Outgoing),
    Shutdown,
}

struct IoThread {
    commands: flume::Sender<Command>,
    /// Set by the loop just before it blocks in poll: only then does a
    /// sender pay for a wake-up syscall.
    sleeping: Arc<AtomicBool>,
    /// Set with `sleeping` when the loop sleeps with answers due: it wakes
    /// by itself (an answer, or [`event_loop::ANSWERS_DUE_WAKE`]) and takes
    /// new requests then, so a sender need not wake it (see `send`).
    answers_due: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    join: Option<JoinHandle<()>>,
}

/// The I/O threads of one client.
pub(crate) struct IoPool {
    threads: Vec<IoThread>,
    routes: Routes,
    next_request_id: AtomicU64,
}

impl IoPool {
    pub fn start(
        config: &ClientConfig,
        dictionaries: &Arc<ClientDictionaries>,
        traffic: &Arc<Traffic>,
    ) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(config.io_threads);
        for index in 0..config.io_threads {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), event_loop::WAKER)?);
            let sleeping = Arc::new(AtomicBool::new(false));
            let answers_due = Arc::new(AtomicBool::new(false));
            let (commands, inbox) = flume::unbounded();
            let settings = event_loop::Settings::from_config(
                config,
                Arc::clone(dictionaries),
                Arc::clone(traffic),
            );
            let signals = event_loop::Signals {
                sleeping: Arc::clone(&sleeping),
                answers_due: Arc::clone(&answers_due),
            };
            let join = std::thread::Builder::new()
                .name(format!("stratum-io-{index}"))
                .spawn(move || event_loop::run(poll, inbox, signals, settings))?;
            threads.push(IoThread {
                commands,
                sleeping,
                answers_due,
                waker,
                join: Some(join),
            });
        }
        Ok(Self {
            threads,
            routes: Routes::new(config.io_threads),
            next_request_id: AtomicU64::new(1),
        })
    }

    /// The route to `peer` (the same every time).
    pub fn route(&self, peer: &Peer) -> Route {
        self.routes.route(peer)
    }

    /// A fresh request id (unique across this client's connections).
    pub fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands `outgoing` to the thread that owns its peer's connection.
    pub fn send(&self, outgoing: Outgoing) {
        let thread = &self.threads[outgoing.route.thread()];
        if let Err(flume::SendError(Command::Send(outgoing))) =
            thread.commands.send(Command::Send(outgoing))
        {
            let _ = outgoing.reply.send(Event::Failed {
                request_id: outgoing.request_id,
                error: AttemptError::Closed,
            });
            return;
        }
        // A loop asleep with answers due wakes soon by itself and takes
        // this request then; waking it now would cost a syscall and, when
        // it shares a CPU with the caller, a context switch per request
        // (the scheduler runs the woken thread at once, it sends one
        // request and sleeps again: measured at 2–3 switches per get).
        if thread.sleeping.load(Ordering::SeqCst)
            && !thread.answers_due.load(Ordering::SeqCst)
            && thread.sleeping.swap(false, Ordering::SeqCst)
        {
            if let Err(err) = thread.waker.wake() {
                tracing::error!(error = %err, "cannot wake an I/O thread");
            }
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        for thread in &self.threads {
            let _ = thread.commands.send(Command::Shutdown);
            let _ = thread.waker.wake();
        }
        for thread in &mut self.threads {
            if let Some(join) = thread.join.take() {
                let _ = join.join();
            }
        }
    }
}
