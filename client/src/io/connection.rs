//! One connection to one shard of one node, owned by one I/O thread.
//!
//! Life: `Idle` → `Connecting` → `Handshaking` → `Ready`, and on a failed
//! connect or handshake → `Backoff` (requests fail at once until it ends,
//! so a dead peer costs one connect attempt per backoff period, not one per
//! request). A connection that breaks while `Ready` fails the requests in
//! flight and reconnects at once if more are waiting.
//!
//! Many requests are in flight at a time (bounded); answers are matched by
//! request id, in whatever order the node sends them.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use stratum_wire::auth::{random_nonce, ClusterSecret};
use stratum_wire::handshake::{self, accepts_payload, Connector, Greeting, Next};
use stratum_wire::message::{ArchivedErrorCode, ErrorCode, GetDictionary, PeerRole};
use stratum_wire::{
    Codec, Frame, FrameDecoder, FrameEncoder, FrameLimits, Message, MessageKind, MessageRef,
};

use super::event_loop::TICK;
use super::{Event, Outgoing, PeerInfo};
use crate::dictionaries::ClientDictionaries;
use crate::error::{AttemptError, Peer};
use crate::traffic::Traffic;

/// Most bytes queued for the socket at a time; further requests wait in
/// `queued` (unencoded into the socket buffer) until it drains.
const OUT_LIMIT: usize = 8 << 20;

/// What every connection of a thread is configured with.
#[derive(Clone)]
pub(super) struct Settings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_backoff: Duration,
    pub max_reconnect_backoff: Duration,
    pub max_in_flight: usize,
    pub max_queued: usize,
    pub secret: Option<ClusterSecret>,
    pub agent: String,
    pub limits: FrameLimits,
    /// The client's dictionaries: filled from every node's handshake.
    pub dictionaries: Arc<ClientDictionaries>,
    /// Object bytes sent, before and after compression.
    pub traffic: Arc<Traffic>,
}

enum State {
    Idle,
    Connecting {
        deadline: Instant,
    },
    Handshaking {
        deadline: Instant,
        step: HandshakeStep,
    },
    Ready,
    Backoff {
        until: Instant,
        error: AttemptError,
    },
}

enum HandshakeStep {
    /// Hello, then the proof of the cluster secret if the node asks for
    /// it ([`Connector`]); `request_id` is the frame last sent.
    Connecting {
        connector: Connector,
        request_id: u64,
    },
    /// The dictionaries the node named that the client lacks: (request id,
    /// dictionary id) of each `get_dictionary` sent.
    DictionariesAsked { pending: Vec<(u64, u32)> },
}

/// A piece of output: a frame head encoded by the caller (moved here, not
/// copied) or a shared payload.
enum Chunk {
    Head { bytes: Vec<u8>, written: usize },
    Payload(Bytes),
}

impl Chunk {
    fn remaining(&self) -> &[u8] {
        match self {
            Chunk::Head { bytes, written } => &bytes[*written..],
            Chunk::Payload(bytes) => bytes,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Head { written, .. } => *written += n,
            Chunk::Payload(bytes) => bytes.advance(n),
        }
    }
}

/// How a request goes to the node at the other end.
enum Fit {
    /// As encoded.
    AsIs,
    /// Its raw form: the node does not accept the payload's codec.
    Raw,
    /// Not at all: the content exceeds the node's maximum object size.
    TooLarge(u64),
}

struct Pending {
    reply: flume::Sender<Event>,
    streaming: bool,
    deadline: Instant,
    timeout: Duration,
}

pub(super) struct Connection {
    pub peer: Peer,
    token: Token,
    state: State,
    stream: Option<TcpStream>,
    interest: Option<Interest>,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    out: VecDeque<Chunk>,
    out_bytes: usize,
    queued: VecDeque<Outgoing>,
    in_flight: HashMap<u64, Pending, ahash::RandomState>,
    info: Option<PeerInfo>,
    /// Dictionaries the node holds, and the one it asks clients to use.
    node_dictionaries: Vec<u32>,
    node_dictionary: u32,
    /// Consecutive failed connects (sets the backoff).
    failures: u32,
    /// When the peer last sent us a byte (dead-connection detection).
    last_heard: Instant,
    /// Handshake frames take ids from this private counter's high range so
    /// they never collide with the pool's request ids.
    next_control_id: u64,
}

impl Connection {
    pub fn new(peer: Peer, token: Token, settings: &Settings) -> Self {
        Self {
            peer,
            token,
            state: State::Idle,
            stream: None,
            interest: None,
            decoder: FrameDecoder::new(settings.limits),
            encoder: FrameEncoder::new(settings.limits),
            out: VecDeque::new(),
            out_bytes: 0,
            queued: VecDeque::new(),
            in_flight: HashMap::default(),
            info: None,
            node_dictionaries: Vec::new(),
            node_dictionary: 0,
            failures: 0,
            last_heard: Instant::now(),
            next_control_id: u64::MAX / 2,
        }
    }

    /// Answers this connection waits for.
    pub fn answers_due(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the loop must wake up for this connection's timers.
    pub fn has_timers(&self) -> bool {
        !self.in_flight.is_empty()
            || matches!(
                self.state,
                State::Connecting { .. } | State::Handshaking { .. }
            )
    }

    pub fn submit(&mut self, registry: &Registry, outgoing: Outgoing, settings: &Settings) {
        let now = Instant::now();
        if let State::Backoff { until, error } = &self.state {
            if now < *until {
                let _ = outgoing.reply.send(Event::Failed {
                    request_id: outgoing.request_id,
                    error: error.clone(),
                });
                return;
            }
            self.state = State::Idle;
        }
        if self.queued.len() >= settings.max_queued {
            let _ = outgoing.reply.send(Event::Failed {
                request_id: outgoing.request_id,
                error: AttemptError::Overloaded,
            });
            return;
        }
        self.queued.push_back(outgoing);
        match self.state {
            State::Idle => self.connect(registry, settings),
            // Onto the output queue only: the loop flushes once after taking
            // every waiting command, so a burst of requests costs one write.
            State::Ready => self.pump(settings),
            _ => {}
        }
    }

    fn connect(&mut self, registry: &Registry, settings: &Settings) {
        let address = match self
            .peer
            .address
            .to_socket_addrs()
            .map(|mut addrs| addrs.next())
        {
            Ok(Some(address)) => address,
            Ok(None) => {
                let err = std::io::Error::new(ErrorKind::NotFound, "address resolves to nothing");
                return self.fail_connect(registry, connect_error(err), settings);
            }
            Err(err) => return self.fail_connect(registry, connect_error(err), settings),
        };
        let mut stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            Err(err) => return self.fail_connect(registry, connect_error(err), settings),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = registry.register(&mut stream, self.token, interest) {
            return self.fail_connect(registry, connect_error(err), settings);
        }
        tracing::debug!(peer = %self.peer, "connecting");
        self.stream = Some(stream);
        self.interest = Some(interest);
        self.decoder = FrameDecoder::new(settings.limits);
        self.state = State::Connecting {
            deadline: Instant::now() + settings.connect_timeout,
        };
    }

    /// Socket readiness.
    pub fn on_ready(&mut self, registry: &Registry, settings: &Settings, scratch: &mut [u8]) {
        if let State::Connecting { deadline } = self.state {
            let Some(stream) = self.stream.as_ref() else {
                return;
            };
            match stream.take_error() {
                Ok(Some(err)) | Err(err) => {
                    return self.fail_connect(registry, connect_error(err), settings)
                }
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::NotConnected => return,
                Err(err) => return self.fail_connect(registry, connect_error(err), settings),
            }
            let _ = stream.set_nodelay(true);
            let nonce = match random_nonce() {
                Ok(nonce) => nonce,
                Err(err) => return self.fail_connect(registry, connect_error(err), settings),
            };
            let hello = handshake::hello(PeerRole::Client, None, 0, settings.agent.clone(), nonce);
            let (connector, hello) = Connector::start(hello, settings.secret.clone());
            self.handshake_send(deadline, connector, &hello);
        }
        self.read(registry, settings, scratch);
        self.flush(registry, settings);
    }

    fn read(&mut self, registry: &Registry, settings: &Settings, scratch: &mut [u8]) {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let n = match stream.read(scratch) {
                Ok(0) => return self.lost(registry, "closed by the node".into(), settings),
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return self.lost(registry, err.to_string(), settings),
            };
            self.last_heard = Instant::now();
            let mut input = &scratch[..n];
            while !input.is_empty() {
                match self.decoder.decode(&mut input) {
                    Ok(Some(frame)) => {
                        self.on_frame(registry, frame, settings);
                        if self.stream.is_none() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        let error = AttemptError::protocol(&err);
                        tracing::warn!(peer = %self.peer, error = %err, "bad frame from node; closing");
                        return self.fail_all(registry, error);
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, registry: &Registry, frame: Frame, settings: &Settings) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Handshaking { deadline, step } => {
                self.on_handshake_frame(registry, frame, deadline, step, settings)
            }
            State::Ready => {
                self.state = State::Ready;
                self.on_answer(frame);
                self.pump(settings);
            }
            other => self.state = other,
        }
    }

    fn on_handshake_frame(
        &mut self,
        registry: &Registry,
        frame: Frame,
        deadline: Instant,
        step: HandshakeStep,
        settings: &Settings,
    ) {
        match step {
            HandshakeStep::Connecting {
                mut connector,
                request_id,
            } if frame.request_id() == request_id => match connector.receive(frame.message()) {
                Ok(Next::Send(message)) => self.handshake_send(deadline, connector, &message),
                Ok(Next::Done(greeting)) => {
                    self.greeted(&greeting);
                    self.fetch_dictionaries(deadline, settings);
                }
                Err(err) => {
                    let error = if err.is_unauthorized() {
                        AttemptError::Unauthorized(err.to_string())
                    } else {
                        AttemptError::Handshake(err.to_string())
                    };
                    self.fail_connect(registry, error, settings)
                }
            },
            step => self.on_dictionary_frame(registry, frame, deadline, step, settings),
        }
    }

    /// Sends the connector's next message and waits for its answer.
    fn handshake_send(&mut self, deadline: Instant, connector: Connector, message: &Message) {
        let request_id = self.control_frame(message);
        self.state = State::Handshaking {
            deadline,
            step: HandshakeStep::Connecting {
                connector,
                request_id,
            },
        };
    }

    /// What the node said of itself, kept for routing and for what may be
    /// sent to it.
    fn greeted(&mut self, greeting: &Greeting) {
        self.info = Some(PeerInfo {
            node_id: greeting.node_id,
            shard_id: greeting.shard_id,
            shard_count: greeting.shard_count,
            topology_epoch: greeting.topology_epoch,
            codecs: greeting.codecs,
            max_object_bytes: greeting.max_object_bytes,
        });
        self.node_dictionaries = greeting.dictionaries.clone();
        self.node_dictionary = greeting.dictionary;
    }

    /// The handshake's client-side last step: the dictionaries asked for.
    fn on_dictionary_frame(
        &mut self,
        registry: &Registry,
        frame: Frame,
        deadline: Instant,
        step: HandshakeStep,
        settings: &Settings,
    ) {
        if let MessageRef::Error(err) = frame.message() {
            let reason = format!("{:?}: {}", err.code, err.detail);
            let error = if err.code == ArchivedErrorCode::Unauthorized {
                AttemptError::Unauthorized(reason)
            } else {
                AttemptError::Handshake(reason)
            };
            return self.fail_connect(registry, error, settings);
        }
        match (step, frame.message()) {
            (
                HandshakeStep::DictionariesAsked { mut pending },
                MessageRef::DictionaryBytes(reply),
            ) if pending.iter().any(|(request, id)| {
                *request == frame.request_id() && *id == reply.id.to_native()
            }) =>
            {
                let id = reply.id.to_native();
                if let Err(err) = settings.dictionaries.add(id, frame.payload().to_vec()) {
                    let reason = format!("dictionary {id:#010x} from the node: {err}");
                    return self.fail_connect(registry, AttemptError::Handshake(reason), settings);
                }
                pending.retain(|(request, _)| *request != frame.request_id());
                if pending.is_empty() {
                    return self.serve_with_dictionaries(settings);
                }
                self.state = State::Handshaking {
                    deadline,
                    step: HandshakeStep::DictionariesAsked { pending },
                };
            }
            (_, other) => {
                let reason = format!("{} during the handshake", other.kind().name());
                self.fail_connect(registry, AttemptError::Handshake(reason), settings)
            }
        }
    }

    /// The handshake's last step: fetch the dictionaries the node named
    /// that the client lacks (so everything the node sends can be
    /// inflated), then serve.
    fn fetch_dictionaries(&mut self, deadline: Instant, settings: &Settings) {
        let mut wanted = self.node_dictionaries.clone();
        wanted.push(self.node_dictionary);
        wanted.sort_unstable();
        wanted.dedup();
        let missing = settings.dictionaries.missing(&wanted);
        if missing.is_empty() {
            return self.serve_with_dictionaries(settings);
        }
        let pending = missing
            .into_iter()
            .map(|id| {
                let request = self.control_frame(&Message::GetDictionary(GetDictionary { id }));
                (request, id)
            })
            .collect();
        self.state = State::Handshaking {
            deadline,
            step: HandshakeStep::DictionariesAsked { pending },
        };
    }

    fn serve_with_dictionaries(&mut self, settings: &Settings) {
        if self.node_dictionary != 0 {
            settings
                .dictionaries
                .use_for_compressing(self.node_dictionary);
        }
        self.ready(settings);
    }

    fn ready(&mut self, settings: &Settings) {
        tracing::debug!(peer = %self.peer, info = ?self.info, "connected");
        self.state = State::Ready;
        self.failures = 0;
        self.pump(settings);
    }

    fn on_answer(&mut self, frame: Frame) {
        let request_id = frame.request_id();
        let Some(pending) = self.in_flight.get(&request_id) else {
            // Its request timed out already; the late answer is dropped.
            return;
        };
        let last = !pending.streaming
            || matches!(frame.kind(), MessageKind::BatchEnd | MessageKind::Error);
        let Some(peer) = self.info else {
            return;
        };
        let delivered = pending.reply.send(Event::Frame { frame, peer }).is_ok();
        if last || !delivered {
            self.in_flight.remove(&request_id);
        } else if let Some(pending) = self.in_flight.get_mut(&request_id) {
            // A stream that is still producing is not timing out.
            pending.deadline = Instant::now() + pending.timeout;
        }
    }

    /// Moves queued requests into flight (onto the output queue) while
    /// there is room; the caller flushes.
    fn pump(&mut self, settings: &Settings) {
        let now = Instant::now();
        while self.in_flight.len() < settings.max_in_flight && self.out_bytes < OUT_LIMIT {
            let Some(outgoing) = self.queued.pop_front() else {
                break;
            };
            if outgoing.reply.is_disconnected() && !outgoing.detached {
                continue; // the caller gave up
            }
            let fit = self.fit(outgoing.codec, &outgoing.payload, outgoing.content_len);
            let (head, payload) = match fit {
                Fit::AsIs => (outgoing.head, outgoing.payload),
                Fit::Raw => match outgoing.raw {
                    Some(raw) => raw,
                    None => (outgoing.head, outgoing.payload),
                },
                Fit::TooLarge(max) => {
                    let detail = format!(
                        "an object of {} bytes exceeds this node's max_object_bytes of {max} (said in its handshake); not sent",
                        outgoing.content_len
                    );
                    let _ = outgoing.reply.send(Event::Failed {
                        request_id: outgoing.request_id,
                        error: AttemptError::Node {
                            code: ErrorCode::TooLarge,
                            detail,
                        },
                    });
                    continue;
                }
            };
            if outgoing.content_len > 0 {
                settings
                    .traffic
                    .sent(outgoing.content_len, payload.len() as u64);
            }
            self.out_bytes += head.len() + payload.len();
            self.out.push_back(Chunk::Head {
                bytes: head,
                written: 0,
            });
            if !payload.is_empty() {
                self.out.push_back(Chunk::Payload(payload));
            }
            self.in_flight.insert(
                outgoing.request_id,
                Pending {
                    reply: outgoing.reply,
                    streaming: outgoing.streaming,
                    deadline: now + outgoing.timeout,
                    timeout: outgoing.timeout,
                },
            );
        }
    }

    /// How a request fits the node at the other end, by what it said in
    /// its handshake.
    fn fit(&self, codec: Codec, payload: &[u8], content_len: u64) -> Fit {
        let Some(info) = &self.info else {
            return Fit::AsIs;
        };
        if let Some(max) = info.max_object_bytes.filter(|max| content_len > *max) {
            return Fit::TooLarge(max);
        }
        if accepts_payload(info.codecs, &self.node_dictionaries, codec, payload) {
            Fit::AsIs
        } else {
            Fit::Raw
        }
    }

    /// Encodes a handshake frame straight into the output queue.
    fn control_frame(&mut self, message: &Message) -> u64 {
        self.next_control_id += 1;
        let mut head = Vec::new();
        if let Err(err) = self
            .encoder
            .encode(&mut head, self.next_control_id, message, &[])
        {
            // Our own small messages always encode; if not, the handshake
            // times out and reports it.
            tracing::error!(error = %err, "cannot encode a handshake frame");
        }
        self.out_bytes += head.len();
        self.out.push_back(Chunk::Head {
            bytes: head,
            written: 0,
        });
        self.next_control_id
    }

    /// Writes as much queued output as the socket takes.
    pub fn flush(&mut self, registry: &Registry, settings: &Settings) {
        if matches!(self.state, State::Connecting { .. }) {
            return;
        }
        while !self.out.is_empty() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let mut slices = [IoSlice::new(&[]); 64];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&self.out) {
                *slot = IoSlice::new(chunk.remaining());
                count += 1;
            }
            match stream.write_vectored(&slices[..count]) {
                Ok(0) => return self.lost(registry, "socket accepts no bytes".into(), settings),
                Ok(mut n) => {
                    self.out_bytes -= n;
                    while n > 0 {
                        let Some(front) = self.out.front_mut() else {
                            break;
                        };
                        let len = front.remaining().len();
                        if n >= len {
                            n -= len;
                            self.out.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return self.lost(registry, err.to_string(), settings),
            }
        }
        let wanted = if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self.interest != Some(wanted) {
            if let Some(stream) = self.stream.as_mut() {
                if let Err(err) = registry.reregister(stream, self.token, wanted) {
                    return self.lost(registry, err.to_string(), settings);
                }
                self.interest = Some(wanted);
            }
        }
    }

    /// Expires requests and connects that ran out of time; closes a
    /// connection whose peer has gone silent with requests pending.
    pub fn check_timers(&mut self, registry: &Registry, settings: &Settings, now: Instant) {
        match &self.state {
            State::Connecting { deadline } | State::Handshaking { deadline, .. }
                if now >= *deadline =>
            {
                let err = AttemptError::Timeout(settings.connect_timeout);
                return self.fail_connect(registry, err, settings);
            }
            _ => {}
        }
        let expired = self.expire(now);
        if expired && now.duration_since(self.last_heard) >= settings.request_timeout {
            // Closing for silence. A request due within the next tick would
            // time out there anyway (timers have tick resolution): it fails
            // as the timeout it is, not as a lost connection that a retry
            // would then wait out a second time.
            self.expire(now + TICK);
            let reason = format!(
                "no bytes from the node for {:?} with requests pending",
                now.duration_since(self.last_heard)
            );
            tracing::warn!(peer = %self.peer, "{reason}; closing the connection");
            self.lost(registry, reason, settings);
        }
    }

    /// Fails every request due by `by` with a timeout; true if any was.
    fn expire(&mut self, by: Instant) -> bool {
        let mut expired = false;
        self.in_flight.retain(|request_id, pending| {
            if by < pending.deadline {
                return true;
            }
            let _ = pending.reply.send(Event::Failed {
                request_id: *request_id,
                error: AttemptError::Timeout(pending.timeout),
            });
            expired = true;
            false
        });
        expired
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.interest = None;
        self.out.clear();
        self.out_bytes = 0;
    }

    /// A connect or handshake failed: everything waiting fails with `error`,
    /// and the peer is left alone for the backoff period.
    fn fail_connect(&mut self, registry: &Registry, error: AttemptError, settings: &Settings) {
        tracing::debug!(peer = %self.peer, %error, "connect failed");
        self.close(registry);
        self.failures = self.failures.saturating_add(1);
        let backoff = settings
            .reconnect_backoff
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(settings.max_reconnect_backoff);
        self.fail_waiting(&error);
        self.state = State::Backoff {
            until: Instant::now() + backoff,
            error,
        };
    }

    /// An established connection broke: requests in flight fail (the node
    /// may have carried them out); waiting ones get a fresh connection.
    fn lost(&mut self, registry: &Registry, reason: String, settings: &Settings) {
        tracing::debug!(peer = %self.peer, %reason, "connection lost");
        self.close(registry);
        let error = AttemptError::ConnectionLost(reason);
        for (request_id, pending) in self.in_flight.drain() {
            let _ = pending.reply.send(Event::Failed {
                request_id,
                error: error.clone(),
            });
        }
        self.state = State::Idle;
        if !self.queued.is_empty() {
            self.connect(registry, settings);
        }
    }

    /// The stream is unusable (protocol violation): fail everything.
    fn fail_all(&mut self, registry: &Registry, error: AttemptError) {
        self.close(registry);
        self.fail_waiting(&error);
        self.state = State::Idle;
    }

    fn fail_waiting(&mut self, error: &AttemptError) {
        for (request_id, pending) in self.in_flight.drain() {
            let _ = pending.reply.send(Event::Failed {
                request_id,
                error: error.clone(),
            });
        }
        for outgoing in self.queued.drain(..) {
            let _ = outgoing.reply.send(Event::Failed {
                request_id: outgoing.request_id,
                error: error.clone(),
            });
        }
    }

    /// The client is shutting down.
    pub fn shutdown(&mut self, registry: &Registry) {
        self.close(registry);
        self.fail_waiting(&AttemptError::Closed);
    }
}

fn connect_error(err: std::io::Error) -> AttemptError {
    AttemptError::Connect {
        source: Arc::new(err),
    }
}
