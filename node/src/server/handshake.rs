//! The first frames of every connection: `Hello` → `HelloAck`, and when the
//! cluster has a secret, `AuthProof` → `AuthOk` (see `stratum_wire::auth`).
//! Nothing else is served before the handshake completes.

use futures_lite::AsyncWriteExt;
use stratum_wire::auth::random_nonce;
use stratum_wire::frame::PROTOCOL_VERSION;
use stratum_wire::message::{
    AuthOk, ErrorCode, ErrorReply, HelloAck, PeerRole, Welcome, PROTOCOL_REVISION, REVISION_CODECS,
};
use stratum_wire::{handshake, Codec, Frame, FrameEncoder, Message, MessageRef};

use super::core::Core;
use crate::net::frame_reader::{FrameReader, ReadError};
use crate::net::stream::Stream;
use crate::store::fs::StoreFs;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("handshake not completed within {0:?} of connecting")]
    Deadline(std::time::Duration),
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("peer speaks protocol {0}; this node needs at least 1")]
    Version(u16),
    #[error("authentication failed: wrong cluster secret")]
    BadProof,
    #[error("cannot draw a random challenge")]
    Random(#[source] std::io::Error),
    #[error("cannot send handshake reply")]
    Write(#[source] std::io::Error),
}

/// Who is on the other end, once the handshake succeeded.
#[derive(Debug, Clone)]
pub struct Peer {
    pub role: PeerRole,
    pub agent: String,
    /// Payload codecs the peer accepts (bit per codec number): raw only for
    /// a peer of protocol revision 1.
    pub codecs: u8,
    /// The dictionaries named in the welcome it was sent: a revision-2
    /// connector holds or fetches those; payloads naming any other are
    /// sent to it inflated.
    pub dictionaries: Vec<u32>,
}

impl Peer {
    /// Whether `payload` (in `codec`) may be sent to this peer as it is.
    pub fn accepts_payload(&self, codec: Codec, payload: &[u8]) -> bool {
        handshake::accepts_payload(self.codecs, &self.dictionaries, codec, payload)
    }
}

/// Codecs this build accepts and sends, one bit per codec number.
pub const CODECS: u8 = (1 << Codec::Raw as u8) | (1 << Codec::Zstd as u8);

pub async fn run<F: StoreFs + 'static>(
    core: &Core<F>,
    stream: &mut dyn Stream,
    reader: &mut FrameReader,
    encoder: &mut FrameEncoder,
) -> Result<Peer, HandshakeError> {
    let frame = next_frame(
        core,
        stream,
        reader,
        encoder,
        ErrorCode::BadRequest,
        "the first frame must be hello",
    )
    .await?;
    let request_id = frame.request_id();
    let MessageRef::Hello(hello) = frame.message() else {
        let got = frame.kind().name();
        refuse(
            stream,
            encoder,
            request_id,
            core,
            ErrorCode::BadRequest,
            "the first frame must be hello",
        )
        .await;
        return Err(HandshakeError::Unexpected {
            expected: "hello",
            got,
        });
    };
    let version = hello.protocol_version.to_native();
    if version < 1 {
        refuse(
            stream,
            encoder,
            request_id,
            core,
            ErrorCode::UnsupportedVersion,
            "protocol version 0 does not exist",
        )
        .await;
        return Err(HandshakeError::Version(version));
    }
    let role = match hello.role {
        stratum_wire::message::ArchivedPeerRole::Client => PeerRole::Client,
        stratum_wire::message::ArchivedPeerRole::Node => PeerRole::Node,
    };
    let theirs = hello.topology_epoch.to_native();
    if role == PeerRole::Node && theirs != core.topology_epoch() {
        let settings = &core.replication.settings;
        settings
            .epoch_mismatches
            .set(settings.epoch_mismatches.get() + 1);
        tracing::warn!(
            shard = core.shard_id,
            peer_node = hello.node_id.as_ref().map(|id| id.to_native()),
            ours = core.topology_epoch(),
            theirs,
            "a peer node routes by another topology epoch: roll the same topology file out to every node"
        );
    }
    let revision = version.min(PROTOCOL_REVISION);
    let (dictionaries, current) = {
        let held = core.store.dictionaries();
        (held.dictionaries.ids(), held.current)
    };
    let peer = Peer {
        role,
        agent: hello.agent.as_str().chars().take(128).collect(),
        codecs: if revision >= REVISION_CODECS {
            CODECS
        } else {
            1 << Codec::Raw as u8
        },
        dictionaries: if revision >= REVISION_CODECS {
            dictionaries.clone()
        } else {
            Vec::new()
        },
    };
    let nonce = hello.auth_nonce;
    let challenge = match &core.config.secret {
        Some(_) => Some(random_nonce().map_err(HandshakeError::Random)?),
        None => None,
    };
    let ack = if revision >= REVISION_CODECS {
        Message::Welcome(Welcome {
            protocol_version: revision,
            node_id: core.config.node_id,
            shard_id: core.shard_id,
            shard_count: core.config.shards,
            topology_epoch: core.topology_epoch(),
            auth_challenge: challenge,
            max_object_bytes: core.config.limits.max_object_bytes,
            codecs: CODECS,
            dictionaries,
            dictionary: current,
        })
    } else {
        Message::HelloAck(HelloAck {
            protocol_version: PROTOCOL_VERSION,
            node_id: core.config.node_id,
            shard_id: core.shard_id,
            shard_count: core.config.shards,
            topology_epoch: core.topology_epoch(),
            auth_challenge: challenge,
        })
    };
    send(stream, encoder, request_id, &ack).await?;

    let (Some(secret), Some(challenge)) = (&core.config.secret, challenge) else {
        return Ok(peer);
    };
    let frame = next_frame(
        core,
        stream,
        reader,
        encoder,
        ErrorCode::Unauthorized,
        "this node requires authentication: send auth_proof after hello",
    )
    .await?;
    let request_id = frame.request_id();
    let MessageRef::AuthProof(proof) = frame.message() else {
        let got = frame.kind().name();
        refuse(
            stream,
            encoder,
            request_id,
            core,
            ErrorCode::Unauthorized,
            "this node requires authentication: send auth_proof after hello",
        )
        .await;
        return Err(HandshakeError::Unexpected {
            expected: "auth_proof",
            got,
        });
    };
    if !secret.verify_client(&challenge, &nonce, &proof.mac) {
        refuse(
            stream,
            encoder,
            request_id,
            core,
            ErrorCode::Unauthorized,
            "authentication failed",
        )
        .await;
        return Err(HandshakeError::BadProof);
    }
    let ok = Message::AuthOk(AuthOk {
        mac: secret.node_proof(&nonce, &challenge),
    });
    send(stream, encoder, request_id, &ok).await?;
    Ok(peer)
}

/// The next handshake frame. A frame the handshake limits refuse (anything
/// with a payload or a large message: not a handshake frame) is answered
/// with `code` and `expected` before the connection closes.
async fn next_frame<F: StoreFs + 'static>(
    core: &Core<F>,
    stream: &mut dyn Stream,
    reader: &mut FrameReader,
    encoder: &mut FrameEncoder,
    code: ErrorCode,
    expected: &str,
) -> Result<Frame, HandshakeError> {
    match reader.next_frame(stream, std::future::pending()).await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(HandshakeError::Closed),
        Err(ReadError::Frame(err)) => {
            let detail = format!("{expected} ({err})");
            refuse(stream, encoder, 0, core, code, &detail).await;
            Err(ReadError::Frame(err).into())
        }
        Err(err) => Err(err.into()),
    }
}

async fn send(
    stream: &mut dyn Stream,
    encoder: &mut FrameEncoder,
    request_id: u64,
    message: &Message,
) -> Result<(), HandshakeError> {
    let mut out = Vec::new();
    encoder
        .encode(&mut out, request_id, message, &[])
        .map_err(|err| HandshakeError::Write(std::io::Error::other(err.to_string())))?;
    stream.write_all(&out).await.map_err(HandshakeError::Write)
}

/// Best effort: tell the peer why before closing.
async fn refuse<F: StoreFs + 'static>(
    stream: &mut dyn Stream,
    encoder: &mut FrameEncoder,
    request_id: u64,
    core: &Core<F>,
    code: ErrorCode,
    detail: &str,
) {
    let reply = Message::Error(ErrorReply::new(code, detail, core.topology_epoch()));
    let _ = send(stream, encoder, request_id, &reply).await;
}
