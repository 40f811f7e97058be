//! One I/O thread's loop: take requests from the channel, drive sockets,
//! expire timers. Everything it touches is its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use stratum_wire::FrameLimits;

use super::connection::Connection;
pub(super) use super::connection::Settings;
use super::Command;
use crate::config::ClientConfig;
use crate::dictionaries::ClientDictionaries;
use crate::traffic::Traffic;

pub(super) const WAKER: Token = Token(usize::MAX);

/// With at least this many answers due, the next one is moments away: the
/// loop sleeps without asking senders to wake it, and takes their requests
/// when that answer wakes it. With fewer, a request could wait a whole
/// round trip, so senders wake the loop as usual.
pub(super) const MANY_ANSWERS_DUE: usize = 16;

/// The longest a loop sleeps with many answers due (a hung node must not
/// hold new requests back longer than this).
pub(super) const ANSWERS_DUE_WAKE: Duration = Duration::from_micros(100);

/// What the loop tells senders about its sleep (see `IoPool::send`).
pub(super) struct Signals {
    pub sleeping: Arc<AtomicBool>,
    pub answers_due: Arc<AtomicBool>,
}

/// How often timers are checked while anything is pending: the resolution
/// of request and connect timeouts.
pub(super) const TICK: Duration = Duration::from_millis(10);

impl Settings {
    pub fn from_config(
        config: &ClientConfig,
        dictionaries: Arc<ClientDictionaries>,
        traffic: Arc<Traffic>,
    ) -> Self {
        Self {
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            reconnect_backoff: config.reconnect_backoff,
            max_reconnect_backoff: config.max_reconnect_backoff,
            max_in_flight: config.max_in_flight_per_connection,
            max_queued: config.max_queued_per_connection,
            secret: config.secret.clone(),
            agent: config.agent.clone(),
            limits: FrameLimits {
                max_message_len: FrameLimits::DEFAULT_MAX_MESSAGE_LEN,
                max_payload_len: config.max_object_size,
            },
            dictionaries,
            traffic,
        }
    }
}

pub(super) fn run(
    mut poll: Poll,
    inbox: flume::Receiver<Command>,
    signals: Signals,
    settings: Settings,
) {
    // Indexed by route slot: the routes decided which connections are ours.
    let mut connections: Vec<Option<Connection>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut scratch = vec![0u8; 256 << 10];
    let mut next_tick = Instant::now() + TICK;
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        loop {
            match inbox.try_recv() {
                Ok(Command::Send(outgoing)) => {
                    let index = outgoing.route.slot();
                    if connections.len() <= index {
                        connections.resize_with(index + 1, || None);
                    }
                    let connection = connections[index].get_or_insert_with(|| {
                        Connection::new(outgoing.route.peer().clone(), Token(index), &settings)
                    });
                    connection.submit(poll.registry(), outgoing, &settings);
                    dirty.push(index);
                }
                Ok(Command::Shutdown) | Err(flume::TryRecvError::Disconnected) => {
                    for connection in connections.iter_mut().flatten() {
                        connection.shutdown(poll.registry());
                    }
                    return;
                }
                Err(flume::TryRecvError::Empty) => break,
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for index in dirty.drain(..) {
            if let Some(Some(connection)) = connections.get_mut(index) {
                connection.flush(poll.registry(), &settings);
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            for connection in connections.iter_mut().flatten() {
                connection.check_timers(poll.registry(), &settings, now);
            }
            next_tick = now + TICK;
        }
        // Many answers due: the loop wakes by itself (an answer, or within
        // ANSWERS_DUE_WAKE), so senders need not wake it. The flag is set
        // before `sleeping`, and the inbox checked after both: a request
        // queued before the check is seen now, one queued after it sees the
        // flags.
        let (due, any_timers) =
            connections
                .iter()
                .flatten()
                .fold((0, false), |(due, timers), connection| {
                    (
                        due + connection.answers_due(),
                        timers || connection.has_timers(),
                    )
                });
        let answers_due = due >= MANY_ANSWERS_DUE;
        signals.answers_due.store(answers_due, Ordering::SeqCst);
        signals.sleeping.store(true, Ordering::SeqCst);
        let timers = any_timers.then(|| next_tick.saturating_duration_since(now));
        let timeout = if !inbox.is_empty() {
            Some(Duration::ZERO)
        } else if answers_due {
            timers.map(|tick| tick.min(ANSWERS_DUE_WAKE))
        } else {
            timers
        };
        let polled = poll.poll(&mut events, timeout);
        signals.sleeping.store(false, Ordering::SeqCst);
        if let Err(err) = polled {
            if err.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %err, "I/O thread cannot poll; stopping it");
                for connection in connections.iter_mut().flatten() {
                    connection.shutdown(poll.registry());
                }
                return;
            }
        }
        for event in &events {
            if event.token() == WAKER {
                continue;
            }
            if let Some(Some(connection)) = connections.get_mut(event.token().0) {
                connection.on_ready(poll.registry(), &settings, &mut scratch);
            }
        }
    }
}
