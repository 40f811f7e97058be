//! One client (or peer node) connection on its core: the handshake, then a
//! reader that turns frames into request tasks and a writer that sends their
//! replies.
//!
//! The socket is split by duplicating its descriptor: the reader and the
//! writer each own a glommio stream, so neither waits on the other.
//!
//! Bounds, all per connection: `max_in_flight_per_connection` request tasks
//! (the reader stops reading at the limit, and TCP pushes back on the
//! client), the outbox budget for unsent replies, the frame decoder's limits
//! for one request, and the idle, frame and write timeouts.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use glommio::sync::Semaphore;
use stratum_wire::message::{ErrorCode, ErrorReply};
use stratum_wire::{Codec, CodecError, FrameEncoder, FrameError, FrameLimits, Message};

use super::core::Core;
use super::handshake::{self, HandshakeError, Peer};
use super::metrics::{ConnEvent, OpKind, Outcome};
use super::request;
use crate::net::frame_reader::{FrameReader, ReadError};
use crate::net::outbox::{Closed, Outbox};
use crate::net::stream::BoxStream;
use crate::shard::ops::OpError;
use crate::store::fs::uring::UringFs;
use crate::store::fs::StoreFs;
use crate::store::StoredObject;

/// What request tasks share: where replies go and how they are framed.
pub struct Conn<F: StoreFs + 'static = UringFs> {
    pub core: Rc<Core<F>>,
    pub peer: Peer,
    pub peer_addr: String,
    outbox: Outbox,
    encoder: RefCell<FrameEncoder>,
}

impl<F: StoreFs + 'static> Conn<F> {
    /// Queues a reply frame (waits while the outbox is over budget).
    pub async fn reply(
        &self,
        request_id: u64,
        message: &Message,
        payload: &[u8],
    ) -> Result<(), Closed> {
        self.reply_as(request_id, message, payload, Codec::Raw)
            .await
    }

    /// How `object` goes to this peer: as stored when the peer accepts its
    /// codec, else inflated (a client or node of the previous release).
    pub fn wire_form<'a>(
        &self,
        object: &'a StoredObject,
    ) -> Result<(Codec, Cow<'a, [u8]>), CodecError> {
        if self.peer.accepts_payload(object.codec, &object.payload) {
            return Ok((object.codec, Cow::Borrowed(&object.payload)));
        }
        let dictionaries = self.core.store.dictionary_set();
        let content = object.content(&dictionaries)?.into_owned();
        Ok((Codec::Raw, Cow::Owned(content)))
    }

    /// [`Conn::reply`] with a payload in `codec`.
    pub async fn reply_as(
        &self,
        request_id: u64,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> Result<(), Closed> {
        let mut head = Vec::with_capacity(128);
        let encoded = self
            .encoder
            .borrow_mut()
            .encode_head_as(&mut head, request_id, message, payload, codec);
        if let Err(err) = encoded {
            // Only a bug can get here (limits are ours, kinds are fixed).
            tracing::error!(shard = self.core.shard_id, error = %err, kind = %message.kind(), "cannot encode reply");
            return Err(Closed);
        }
        self.outbox.push(&head, payload).await
    }

    /// Queues a reply frame only if that needs no waiting; `false` when the
    /// outbox is over budget (or closed) and nothing was queued.
    pub fn try_reply(&self, request_id: u64, message: &Message, payload: &[u8]) -> bool {
        self.try_reply_as(request_id, message, payload, Codec::Raw)
    }

    /// [`Conn::try_reply`] with a payload in `codec`.
    pub fn try_reply_as(
        &self,
        request_id: u64,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> bool {
        let mut head = Vec::with_capacity(128);
        let encoded = self
            .encoder
            .borrow_mut()
            .encode_head_as(&mut head, request_id, message, payload, codec);
        encoded.is_ok() && self.outbox.try_push(&head, payload)
    }

    pub async fn error(&self, request_id: u64, err: &OpError) -> Result<(), Closed> {
        let mut reply = ErrorReply::new(err.code, err.detail.clone(), self.core.topology_epoch());
        reply.replicas = err.replicas.clone();
        self.reply(request_id, &Message::Error(reply), &[]).await
    }
}

/// Serves a connection until the peer closes it, it misbehaves, or the node
/// drains. In-flight requests always finish (and are answered) first.
pub async fn serve<F: StoreFs + 'static>(
    core: Rc<Core<F>>,
    mut stream: BoxStream,
    peer_addr: String,
) {
    let shard = core.shard_id;
    let writer_stream = match stream.try_clone() {
        Ok(writer) => writer,
        Err(err) => {
            tracing::warn!(shard, peer = %peer_addr, error = %err, "cannot split connection; closing");
            return;
        }
    };
    let limits = &core.config.limits;
    let frame_limits = core.config.frame_limits();
    // Until the peer has said who it is (and proved the secret, when there
    // is one), it may send only small handshake frames, within a deadline.
    let mut reader = FrameReader::new(
        FrameLimits::HANDSHAKE,
        core.buffered.clone(),
        limits.idle_timeout,
        limits.frame_timeout,
    );
    let mut encoder = FrameEncoder::new(frame_limits);
    let handshake = handshake::run(&core, &mut *stream, &mut reader, &mut encoder);
    let deadline = async {
        crate::clock::sleep(limits.handshake_timeout).await;
        Err(HandshakeError::Deadline(limits.handshake_timeout))
    };
    let peer = match futures_lite::future::or(handshake, deadline).await {
        Ok(peer) => {
            reader.set_limits(frame_limits);
            // A put over this node's object limit (but within the protocol's
            // default) is read through without being stored and answered
            // `too_large`; the connection stays up.
            reader.skip_oversize_payloads(FrameLimits::DEFAULT_MAX_PAYLOAD_LEN);
            peer
        }
        Err(HandshakeError::Closed) => return,
        Err(err) => {
            core.metrics
                .borrow_mut()
                .connection(ConnEvent::HandshakeFailed);
            if let Some(held_back) = core.log_limit.admit("handshake failed") {
                tracing::warn!(shard, peer = %peer_addr, error = %err, held_back, "handshake failed; closing");
            }
            stream.shut_down();
            return;
        }
    };
    tracing::debug!(shard, peer = %peer_addr, role = ?peer.role, agent = %peer.agent, "connection ready");

    let conn = Rc::new(Conn {
        core: Rc::clone(&core),
        peer,
        peer_addr,
        outbox: Outbox::new(),
        encoder: RefCell::new(encoder),
    });
    let writer = glommio::spawn_local(write_loop(Rc::clone(&conn), writer_stream));
    let max_in_flight = u64::from(limits.max_in_flight_per_connection);
    let permits = Rc::new(Semaphore::new(max_in_flight));

    let ended = loop {
        let frame = match reader.next_frame(&mut *stream, core.wait_shutdown()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(ReadError::Frame(FrameError::PayloadSkipped {
                request_id,
                kind,
                len,
                max,
            })) => {
                let detail =
                    format!("{kind} of {len} bytes exceeds this node's max_object_bytes of {max}");
                core.metrics.borrow_mut().request(
                    OpKind::Put,
                    Outcome::Rejected,
                    std::time::Duration::ZERO,
                );
                let _ = conn
                    .error(request_id, &OpError::new(ErrorCode::TooLarge, detail))
                    .await;
                continue;
            }
            Err(err) => break Some(err),
        };
        if request::answer_inline(&conn, &frame) {
            continue;
        }
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break None;
        };
        let admission = core.admit(frame.payload().len() as u64);
        let conn = Rc::clone(&conn);
        glommio::spawn_local(async move {
            let _permit = permit;
            request::handle(conn, frame, admission).await;
        })
        .detach();
    };

    if let Some(err) = ended {
        let event = match &err {
            ReadError::Frame(_) => ConnEvent::Malformed,
            ReadError::Idle(_) => ConnEvent::IdleTimeout,
            ReadError::SlowFrame(_) => ConnEvent::SlowPeer,
            ReadError::Io(_) => ConnEvent::Closed,
        };
        if event != ConnEvent::Closed {
            core.metrics.borrow_mut().connection(event);
        }
        if let Some(held_back) = core.log_limit.admit("closing connection") {
            tracing::warn!(shard, peer = %conn.peer_addr, error = %err, held_back, "closing connection");
        }
        if let ReadError::Frame(frame_err) = &err {
            // The stream is out of sync; say why (request id 0: the frame's
            // own id cannot be trusted) and close.
            let code = match frame_err {
                stratum_wire::FrameError::UnsupportedVersion { .. } => {
                    ErrorCode::UnsupportedVersion
                }
                stratum_wire::FrameError::PayloadTooLarge { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::BadRequest,
            };
            let _ = conn.error(0, &OpError::new(code, err.to_string())).await;
        }
    }
    // Let in-flight requests finish and their replies go out, then close.
    let _ = permits.acquire(max_in_flight).await;
    conn.outbox.close();
    writer.await;
    stream.shut_down();
}

/// Sends queued replies; many frames go out in one write when they pile up.
async fn write_loop<F: StoreFs + 'static>(conn: Rc<Conn<F>>, mut stream: BoxStream) {
    let timeout = conn.core.config.limits.write_timeout;
    let _ = stream.set_write_timeout(timeout);
    let mut batch = Vec::new();
    while let Some(units) = conn.outbox.take(&mut batch).await {
        let written = stream.write_all(&batch).await;
        batch.clear();
        conn.outbox.sent(units);
        if let Err(err) = written {
            if err.kind() == std::io::ErrorKind::TimedOut {
                conn.core
                    .metrics
                    .borrow_mut()
                    .connection(ConnEvent::SlowPeer);
                tracing::warn!(shard = conn.core.shard_id, peer = %conn.peer_addr, ?timeout, "peer stopped reading replies; closing");
            } else {
                tracing::debug!(shard = conn.core.shard_id, peer = %conn.peer_addr, error = %err, "write failed; closing");
            }
            // Wake request tasks waiting for outbox room, and make the
            // reader's next read fail so the connection winds down.
            conn.outbox.abort();
            stream.shut_down();
            return;
        }
    }
}

/// Tells a connection over the limit why, then closes it.
pub async fn refuse<F: StoreFs + 'static>(core: Rc<Core<F>>, mut stream: BoxStream) {
    let reply = Message::Error(ErrorReply::new(
        ErrorCode::Busy,
        format!(
            "shard {} is at its limit of {} connections",
            core.shard_id, core.config.limits.max_connections
        ),
        core.topology_epoch(),
    ));
    let mut out = Vec::new();
    if FrameEncoder::new(core.config.frame_limits())
        .encode(&mut out, 0, &reply, &[])
        .is_ok()
    {
        let _ = stream.set_write_timeout(std::time::Duration::from_secs(1));
        let _ = stream.write_all(&out).await;
    }
    stream.shut_down();
}
