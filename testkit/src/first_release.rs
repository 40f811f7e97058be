//! A stand-in for a node of the first release (protocol revision 1), for
//! mixed-version tests: it answers `hello` with a revision-1 `hello_ack`,
//! stores raw puts and replicas in memory after checking their ids, serves
//! gets raw, and — as the first release's decoder did — refuses any frame
//! whose flags byte is not zero. Such a frame is recorded as a violation:
//! a newer peer sent it something it cannot read.
//!
//! Only the kinds a client or a coordinating node sends for objects are
//! answered (`put`, `replicate`, `get`, `has`, `ping`); anything else gets
//! a `bad_request` error.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use stratum_wire::message::{
    ErrorCode, ErrorReply, GetOk, HasResult, HelloAck, Pong, PutAck, PutOutcome, ReplicateAck,
};
use stratum_wire::{
    Frame, FrameDecoder, FrameEncoder, FrameLimits, Message, MessageRef, ObjectId, ObjectKind,
};

#[derive(Default)]
struct State {
    objects: HashMap<ObjectId, (ObjectKind, Vec<u8>)>,
    violations: Vec<String>,
    frames: u64,
}

pub struct FirstReleaseNode {
    pub addr: SocketAddr,
    node_id: u32,
    epoch: u64,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FirstReleaseNode {
    /// Listens on 127.0.0.1 (a free port) as node `node_id` of a one-shard
    /// node routing by `epoch`.
    pub fn start(node_id: u32, epoch: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || accept(listener, node_id, epoch, state, stop))
        };
        Self {
            addr,
            node_id,
            epoch,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The content stored for `id`, if any.
    pub fn object(&self, id: &ObjectId) -> Option<(ObjectKind, Vec<u8>)> {
        self.lock().objects.get(id).cloned()
    }

    /// Frames a first-release node could not have read.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Frames received after the handshakes.
    pub fn frames(&self) -> u64 {
        self.lock().frames
    }

    /// Stores an object as if it had been put here.
    pub fn insert(&self, kind: ObjectKind, content: Vec<u8>) -> ObjectId {
        let id = ObjectId::compute(kind, &content);
        self.lock().objects.insert(id, (kind, content));
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FirstReleaseNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(
    listener: TcpListener,
    node_id: u32,
    epoch: u64,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                std::thread::spawn(move || serve(stream, node_id, epoch, state, stop));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(
    mut stream: TcpStream,
    node_id: u32,
    epoch: u64,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_nodelay(true);
    let limits = FrameLimits::default();
    let mut decoder = FrameDecoder::new(limits);
    let mut encoder = FrameEncoder::new(limits);
    let mut buf = vec![0u8; 1 << 16];
    let mut greeted = false;
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            let frame = match decoder.decode(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            if frame.header().flags != 0 {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.violations.push(format!(
                    "{} frame with flags {:#04x}",
                    frame.kind().name(),
                    frame.header().flags
                ));
                return; // what the first release did: close the connection
            }
            let (reply, payload) = if greeted {
                answer(&frame, epoch, &state)
            } else {
                greeted = true;
                let ack = Message::HelloAck(HelloAck {
                    protocol_version: 1,
                    node_id,
                    shard_id: 0,
                    shard_count: 1,
                    topology_epoch: epoch,
                    auth_challenge: None,
                });
                (ack, Vec::new())
            };
            let mut out = Vec::new();
            if encoder
                .encode(&mut out, frame.request_id(), &reply, &payload)
                .is_err()
                || stream.write_all(&out).is_err()
            {
                return;
            }
        }
    }
}

fn answer(frame: &Frame, epoch: u64, state: &Mutex<State>) -> (Message, Vec<u8>) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.frames += 1;
    let error = |code, detail: &str| Message::Error(ErrorReply::new(code, detail, epoch));
    let mut store = |id: ObjectId, kind: ObjectKind| {
        if !id.verify(kind, frame.payload()) {
            return Err(error(
                ErrorCode::HashMismatch,
                "content does not hash to id",
            ));
        }
        let fresh = state
            .objects
            .insert(id, (kind, frame.payload().to_vec()))
            .is_none();
        Ok(if fresh {
            PutOutcome::Stored
        } else {
            PutOutcome::AlreadyPresent
        })
    };
    let reply = match frame.message() {
        MessageRef::Put(put) => {
            let id = put.id.get();
            match store(id, ObjectKind::from(put.kind)) {
                Ok(outcome) => Message::PutAck(PutAck {
                    id,
                    outcome,
                    durable_replicas: 1,
                }),
                Err(reply) => reply,
            }
        }
        MessageRef::Replicate(replicate) => {
            let id = replicate.id.get();
            match store(id, ObjectKind::from(replicate.kind)) {
                Ok(outcome) => Message::ReplicateAck(ReplicateAck { id, outcome }),
                Err(reply) => reply,
            }
        }
        MessageRef::Get(get) => {
            let id = get.id.get();
            return match state.objects.get(&id) {
                Some((kind, content)) => {
                    (Message::GetOk(GetOk { id, kind: *kind }), content.clone())
                }
                None => (error(ErrorCode::NotFound, "not stored here"), Vec::new()),
            };
        }
        MessageRef::Has(has) => {
            let id = has.id.get();
            Message::HasResult(HasResult {
                id,
                present: state.objects.contains_key(&id),
            })
        }
        MessageRef::Ping(ping) => Message::Pong(Pong {
            nonce: ping.nonce.to_native(),
        }),
        other => error(
            ErrorCode::BadRequest,
            &format!("{} is not answered by this stand-in", other.kind().name()),
        ),
    };
    (reply, Vec::new())
}
