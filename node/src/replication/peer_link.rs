//! One core's connection to one core (shard) of another node.
//!
//! A link is owned by the core that created it and touched by no other
//! thread. It connects lazily, with at most one connect in flight: requests
//! that arrive while a connect is under way wait for it, and requests that
//! arrive while the link is backing off after a failure fail at once (the
//! coordinator then counts that replica as failed and writes a hint instead
//! of waiting). Requests are pipelined; replies are matched by request id.
//!
//! A live connection is pinged every `ping_interval`; a peer that does not
//! answer within two intervals is disconnected, so a hung node is noticed
//! even when no write is waiting on it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use stratum_wire::codec::Dictionaries;
use stratum_wire::handshake::accepts_payload;
use stratum_wire::message::{ErrorCode, Ping, ReplicaFailure};
use stratum_wire::{codec, Codec, Frame, FrameEncoder, Message, MessageRef};

use super::dial::{self, DialError, LinkSettings};
use super::within;
use crate::net::frame_reader::FrameReader;
use crate::net::latency::LatencyHistogram;
use crate::net::outbox::Outbox;
use crate::net::stream::{BoxStream, Closer};
use crate::store::record::MAX_CONTENT_LEN;

/// First pause after a failed connect; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a request to a peer got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("not reconnecting for another {wait:?} (last failure: {last})")]
    BackingOff { wait: Duration, last: String },
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("peer answered {code:?}: {detail}")]
    Node { code: ErrorCode, detail: String },
    #[error("peer answered with a {0} frame")]
    Unexpected(&'static str),
}

impl LinkError {
    /// The error code a client sees for this replica in an `Unavailable`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Node { code, .. } => *code,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Unexpected(_) => ErrorCode::Internal,
            _ => ErrorCode::Unavailable,
        }
    }

    pub fn to_failure(&self, node_id: u32) -> ReplicaFailure {
        ReplicaFailure {
            node_id,
            code: self.code(),
            detail: self.to_string(),
        }
    }
}

/// Connection state as metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Never connected (or idle since the topology changed).
    Idle = 0,
    Up = 1,
    /// Disconnected after a failure; reconnects after a backoff.
    Down = 2,
}

/// Per-peer counters, owned by the link's core.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub requests_ok: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub latency: LatencyHistogram,
}

/// A snapshot of one link, for metrics.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub node_id: u32,
    pub shard: u16,
    pub state: LinkState,
    pub stats: PeerStats,
}

enum State {
    Idle,
    Up(Rc<Session>),
    Down {
        retry_at: Instant,
        backoff: Duration,
        last: String,
    },
}

/// One live connection: the writer's queue and the replies awaited.
struct Session {
    /// Payload codecs the peer accepts (bit per codec number).
    codecs: u8,
    /// Dictionaries the peer said it holds.
    dictionaries: Vec<u32>,
    outbox: Outbox,
    encoder: RefCell<FrameEncoder>,
    pending: RefCell<HashMap<u64, flume::Sender<Frame>>>,
    next_id: Cell<u64>,
    /// Set once the session ended; why, for the requests that were waiting.
    ended: RefCell<Option<String>>,
    /// Shuts the connection down when the session is killed from outside
    /// the reader (missed pings).
    closer: Closer,
}

impl Session {
    fn end(&self, reason: String) {
        if self.ended.borrow().is_some() {
            return;
        }
        *self.ended.borrow_mut() = Some(reason);
        // Dropping the senders wakes every waiting request with "lost".
        self.pending.borrow_mut().clear();
        self.outbox.abort();
        // The reader's pending read returns.
        self.closer.close();
    }

    fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

pub struct PeerLink {
    pub node_id: u32,
    pub shard: u16,
    /// `host:port` of that shard.
    pub address: String,
    settings: Rc<LinkSettings>,
    state: RefCell<State>,
    /// One connect in flight.
    connecting: Semaphore,
    stats: RefCell<PeerStats>,
    me: Weak<PeerLink>,
}

impl PeerLink {
    pub fn new(node_id: u32, shard: u16, address: String, settings: Rc<LinkSettings>) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            node_id,
            shard,
            address,
            settings,
            state: RefCell::new(State::Idle),
            connecting: Semaphore::new(1),
            stats: RefCell::new(PeerStats::default()),
            me: me.clone(),
        })
    }

    pub fn snapshot(&self) -> PeerSnapshot {
        let state = match &*self.state.borrow() {
            State::Idle => LinkState::Idle,
            State::Up(session) if !session.is_ended() => LinkState::Up,
            State::Up(_) | State::Down { .. } => LinkState::Down,
        };
        PeerSnapshot {
            node_id: self.node_id,
            shard: self.shard,
            state,
            stats: self.stats.borrow().clone(),
        }
    }

    /// Disconnects (the topology moved this peer, or the core is closing).
    pub fn close(&self) {
        if let State::Up(session) = &*self.state.borrow() {
            session.end("link closed".into());
        }
        *self.state.borrow_mut() = State::Idle;
    }

    /// A live session, connecting first if there is none (one connect in
    /// flight; others wait for it). Fails at once while backing off.
    async fn session(&self) -> Result<Rc<Session>, LinkError> {
        loop {
            match &*self.state.borrow() {
                State::Up(session) if !session.is_ended() => return Ok(Rc::clone(session)),
                State::Down {
                    retry_at,
                    last,
                    backoff: _,
                } => {
                    let now = crate::clock::now();
                    if now < *retry_at {
                        return Err(LinkError::BackingOff {
                            wait: *retry_at - now,
                            last: last.clone(),
                        });
                    }
                }
                _ => {}
            }
            let Ok(permit) = self.connecting.try_acquire_permit(1) else {
                // Another request is connecting: wait for it, then look
                // again (it either connected or set a backoff).
                let _ = self.connecting.acquire(1).await;
                self.connecting.signal(1);
                continue;
            };
            let result = self.connect().await;
            drop(permit);
            return result;
        }
    }

    /// Ready to carry requests (connects if needed). The coordinator asks
    /// this of every replica before writing anything.
    pub async fn ready(&self) -> Result<(), LinkError> {
        self.session().await.map(|_| ())
    }

    async fn connect(&self) -> Result<Rc<Session>, LinkError> {
        let settings = &self.settings;
        let dialed = within(
            settings.connect_timeout,
            dial::dial(&self.address, self.node_id, self.shard, settings),
        )
        .await
        .unwrap_or(Err(DialError::Timeout(settings.connect_timeout)));
        let (stream, reader, greeting) = match dialed {
            Ok(connected) => connected,
            Err(err) => {
                self.stats.borrow_mut().connect_failures += 1;
                let backoff = match &*self.state.borrow() {
                    State::Down { backoff, .. } => (*backoff * 2).min(MAX_BACKOFF),
                    _ => MIN_BACKOFF,
                };
                tracing::debug!(peer = self.node_id, shard = self.shard, address = %self.address, error = %err, ?backoff, "cannot reach peer");
                *self.state.borrow_mut() = State::Down {
                    retry_at: crate::clock::now() + backoff,
                    backoff,
                    last: err.to_string(),
                };
                return Err(LinkError::Dial(err));
            }
        };
        let writer = match stream.try_clone() {
            Ok(writer) => writer,
            Err(err) => {
                let err = DialError::Io(err.to_string());
                *self.state.borrow_mut() = State::Down {
                    retry_at: crate::clock::now() + MIN_BACKOFF,
                    backoff: MIN_BACKOFF,
                    last: err.to_string(),
                };
                return Err(LinkError::Dial(err));
            }
        };
        let session = Rc::new(Session {
            codecs: greeting.codecs,
            dictionaries: greeting.dictionaries,
            outbox: Outbox::new(),
            encoder: RefCell::new(FrameEncoder::new(settings.frame_limits)),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            ended: RefCell::new(None),
            closer: stream.closer(),
        });
        self.stats.borrow_mut().connects += 1;
        tracing::info!(peer = self.node_id, shard = self.shard, address = %self.address, "peer link up");
        *self.state.borrow_mut() = State::Up(Rc::clone(&session));
        glommio::spawn_local(write_loop(
            Rc::clone(&session),
            writer,
            settings.request_timeout,
        ))
        .detach();
        glommio::spawn_local(read_loop(
            self.me.clone(),
            Rc::clone(&session),
            stream,
            reader,
        ))
        .detach();
        glommio::spawn_local(keepalive(self.me.clone(), Rc::downgrade(&session))).detach();
        Ok(session)
    }

    /// Sends one request and waits for its answer (an error reply becomes
    /// [`LinkError::Node`]).
    pub async fn call(&self, message: &Message, payload: &[u8]) -> Result<Frame, LinkError> {
        self.call_with_object(message, Codec::Raw, payload, &Dictionaries::default())
            .await
    }

    /// [`PeerLink::call`] for a request carrying an object's `payload` in
    /// `codec`: sent as it is to a peer that accepts the codec and holds the
    /// dictionary it names, inflated (with `dictionaries`) for one that does
    /// not (a peer of the previous release, or one without the dictionary).
    pub async fn call_with_object(
        &self,
        message: &Message,
        codec: Codec,
        payload: &[u8],
        dictionaries: &Dictionaries,
    ) -> Result<Frame, LinkError> {
        let timeout = self.settings.request_timeout;
        let result = self
            .call_within(message, (codec, payload, dictionaries), timeout)
            .await;
        let mut stats = self.stats.borrow_mut();
        match &result {
            Ok(_) => stats.requests_ok += 1,
            Err(LinkError::Timeout(_)) => stats.timeouts += 1,
            Err(_) => stats.errors += 1,
        }
        result
    }

    async fn call_within(
        &self,
        message: &Message,
        (codec, payload, dictionaries): (Codec, &[u8], &Dictionaries),
        timeout: Duration,
    ) -> Result<Frame, LinkError> {
        let started = crate::clock::now();
        let session = self.session().await?;
        let request_id = session.next_id.get();
        session.next_id.set(request_id + 1);
        let (codec, payload) =
            if accepts_payload(session.codecs, &session.dictionaries, codec, payload) {
                (codec, Cow::Borrowed(payload))
            } else {
                let content = codec::decode(codec, payload, MAX_CONTENT_LEN, dictionaries)
                    .map_err(|err| LinkError::Lost(format!("cannot inflate the payload: {err}")))?;
                (Codec::Raw, content)
            };
        let payload = payload.as_ref();
        let mut head = Vec::with_capacity(128);
        session
            .encoder
            .borrow_mut()
            .encode_head_as(&mut head, request_id, message, payload, codec)
            .map_err(|err| LinkError::Lost(format!("cannot encode request: {err}")))?;
        let (reply_tx, reply_rx) = flume::bounded(1);
        session.pending.borrow_mut().insert(request_id, reply_tx);
        let answer = within(timeout, async {
            if session.outbox.push(&head, payload).await.is_err() {
                return None;
            }
            reply_rx.recv_async().await.ok()
        })
        .await;
        let frame = match answer {
            None => {
                session.pending.borrow_mut().remove(&request_id);
                return Err(LinkError::Timeout(timeout));
            }
            Some(None) => {
                let reason = session
                    .ended
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "connection closed".into());
                return Err(LinkError::Lost(reason));
            }
            Some(Some(frame)) => frame,
        };
        self.stats
            .borrow_mut()
            .latency
            .record(crate::clock::since(started));
        if let MessageRef::Error(_) = frame.message() {
            return Err(match frame.to_message() {
                Ok(Message::Error(err)) => LinkError::Node {
                    code: err.code,
                    detail: err.detail,
                },
                _ => LinkError::Unexpected("undecodable error"),
            });
        }
        Ok(frame)
    }

    /// The session ended: back off before the next connect.
    fn session_ended(&self, session: &Rc<Session>, reason: &str) {
        let mut state = self.state.borrow_mut();
        if let State::Up(current) = &*state {
            if Rc::ptr_eq(current, session) {
                tracing::warn!(peer = self.node_id, shard = self.shard, address = %self.address, reason, "peer link down");
                *state = State::Down {
                    retry_at: crate::clock::now() + MIN_BACKOFF,
                    backoff: MIN_BACKOFF,
                    last: reason.to_owned(),
                };
            }
        }
    }
}

async fn write_loop(session: Rc<Session>, mut stream: BoxStream, timeout: Duration) {
    use futures_lite::AsyncWriteExt;
    let _ = stream.set_write_timeout(timeout);
    let mut batch = Vec::new();
    while let Some(units) = session.outbox.take(&mut batch).await {
        let written = stream.write_all(&batch).await;
        batch.clear();
        session.outbox.sent(units);
        if let Err(err) = written {
            session.end(format!("write failed: {err}"));
            break;
        }
    }
    stream.shut_down();
}

async fn read_loop(
    link: Weak<PeerLink>,
    session: Rc<Session>,
    mut stream: BoxStream,
    mut reader: FrameReader,
) {
    let reason = loop {
        match reader
            .next_frame(&mut *stream, std::future::pending())
            .await
        {
            Ok(Some(frame)) => {
                let waiting = session.pending.borrow_mut().remove(&frame.request_id());
                // A reply nobody waits for any more (it timed out) is dropped.
                if let Some(waiting) = waiting {
                    let _ = waiting.send(frame);
                }
            }
            Ok(None) => break "peer closed the connection".to_owned(),
            Err(err) => break format!("read failed: {err}"),
        }
    };
    session.end(reason.clone());
    if let Some(link) = link.upgrade() {
        link.session_ended(&session, &reason);
    }
    stream.shut_down();
}

/// Pings the session while it lives; ends it when a ping goes unanswered
/// for two intervals.
async fn keepalive(link: Weak<PeerLink>, session: Weak<Session>) {
    let mut nonce = 0u64;
    loop {
        let Some(interval) = link.upgrade().map(|link| link.settings.ping_interval) else {
            return;
        };
        crate::clock::sleep(interval).await;
        let (Some(link), Some(session)) = (link.upgrade(), session.upgrade()) else {
            return;
        };
        if session.is_ended() {
            return;
        }
        nonce += 1;
        let ping = Message::Ping(Ping { nonce });
        match link
            .call_within(
                &ping,
                (Codec::Raw, &[], &Dictionaries::default()),
                interval * 2,
            )
            .await
        {
            Ok(_) => {}
            Err(LinkError::Timeout(_)) => {
                let reason = format!("no pong within {:?}", interval * 2);
                session.end(reason.clone());
                link.session_ended(&session, &reason);
                return;
            }
            Err(_) => return,
        }
    }
}
