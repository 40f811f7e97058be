//! The connector's side of the handshake, without I/O: [`Connector`] says
//! what to send and reads what arrives, so the client, a node's peer links
//! and the test kit run the same protocol over their own sockets.
//!
//! 1. The connector sends `hello` (its highest revision and a nonce).
//! 2. A first-release node answers [`HelloAck`], a node of revision 2 or
//!    later [`Welcome`]; [`Greeting`] is what either says.
//! 3. If the greeting carries an auth challenge, the connector sends
//!    `auth_proof` (an HMAC of challenge and nonce under the cluster secret)
//!    and the node answers `auth_ok` with its own proof, which the connector
//!    checks: each side proves it holds the secret without sending it.
//!
//! Anything else, an `error` included, ends the handshake.
//!
//! [`HelloAck`]: crate::message::HelloAck

use crate::auth::ClusterSecret;
use crate::catalogue::{Message, MessageRef};
use crate::codec::Codec;
use crate::message::{AuthProof, ErrorCode, Hello, PeerRole, Welcome, PROTOCOL_REVISION};

/// What the node that answered a `hello` told the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The protocol revision both sides speak on this connection.
    pub revision: u16,
    pub node_id: u32,
    pub shard_id: u16,
    pub shard_count: u16,
    pub topology_epoch: u64,
    pub auth_challenge: Option<[u8; 32]>,
    /// The node's maximum object size; `None` from a first-release node,
    /// which does not say.
    pub max_object_bytes: Option<u64>,
    /// Codecs the node accepts and may send (bit per codec number).
    pub codecs: u8,
    /// Dictionaries the node holds (none from a first-release node).
    pub dictionaries: Vec<u32>,
    /// The dictionary the node asks clients to compress with (0: none).
    pub dictionary: u32,
}

impl Greeting {
    /// The greeting in `message`, if it is a `hello_ack` or a `welcome`.
    pub fn read(message: MessageRef<'_>) -> Option<Self> {
        Some(match message {
            MessageRef::HelloAck(ack) => Self {
                revision: ack.protocol_version.to_native().min(1),
                node_id: ack.node_id.to_native(),
                shard_id: ack.shard_id.to_native(),
                shard_count: ack.shard_count.to_native(),
                topology_epoch: ack.topology_epoch.to_native(),
                auth_challenge: ack.auth_challenge.as_ref().copied(),
                max_object_bytes: None,
                codecs: 1 << Codec::Raw.as_u8(),
                dictionaries: Vec::new(),
                dictionary: 0,
            },
            MessageRef::Welcome(welcome) => Self {
                revision: welcome.protocol_version.to_native().min(PROTOCOL_REVISION),
                node_id: welcome.node_id.to_native(),
                shard_id: welcome.shard_id.to_native(),
                shard_count: welcome.shard_count.to_native(),
                topology_epoch: welcome.topology_epoch.to_native(),
                auth_challenge: welcome.auth_challenge.as_ref().copied(),
                max_object_bytes: Some(welcome.max_object_bytes.to_native()),
                codecs: welcome.codecs | (1 << Codec::Raw.as_u8()),
                dictionaries: welcome
                    .dictionaries
                    .iter()
                    .map(|id| id.to_native())
                    .collect(),
                dictionary: welcome.dictionary.to_native(),
            },
            _ => return None,
        })
    }

    /// Whether payloads in `codec` may be sent to this node as they are.
    pub fn accepts(&self, codec: Codec) -> bool {
        Welcome::accepts(self.codecs, codec)
    }

    /// Whether `payload` (in `codec`) may be sent to this node as it is:
    /// the node accepts the codec and holds the dictionary it names.
    pub fn accepts_payload(&self, codec: Codec, payload: &[u8]) -> bool {
        accepts_payload(self.codecs, &self.dictionaries, codec, payload)
    }
}

/// The `hello` this build sends: the highest revision it speaks.
pub fn hello(
    role: PeerRole,
    node_id: Option<u32>,
    topology_epoch: u64,
    agent: String,
    auth_nonce: [u8; 32],
) -> Hello {
    Hello {
        protocol_version: PROTOCOL_REVISION,
        role,
        node_id,
        topology_epoch,
        agent,
        auth_nonce,
    }
}

/// Whether a peer that accepts `codecs` and holds `dictionaries` can read
/// `payload` (in `codec`) as it is.
pub fn accepts_payload(codecs: u8, dictionaries: &[u32], codec: Codec, payload: &[u8]) -> bool {
    if !Welcome::accepts(codecs, codec) {
        return false;
    }
    match (codec, crate::codec::frame_dictionary(payload)) {
        (Codec::Zstd, Some(id)) => dictionaries.contains(&id),
        _ => true,
    }
}

/// Why a handshake ended without a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The node answered with an error.
    #[error("refused by the node ({code:?}): {detail}")]
    Refused { code: ErrorCode, detail: String },
    /// The node asks for the cluster secret and this side has none.
    #[error("the node requires the cluster secret and none is configured")]
    SecretMissing,
    /// The node's `auth_ok` does not prove the secret: it holds another.
    #[error("the node could not prove the cluster secret")]
    WrongProof,
    #[error("expected {expected} during the handshake, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
}

impl HandshakeError {
    /// Whether the failure is about the cluster secret.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: ErrorCode::Unauthorized,
                ..
            } | Self::SecretMissing
                | Self::WrongProof
        )
    }
}

/// What the connector does next.
#[derive(Debug)]
pub enum Next {
    /// Send this message and feed the answer to [`Connector::receive`].
    Send(Message),
    /// The handshake is done: the node's greeting.
    Done(Greeting),
}

enum Step {
    HelloSent,
    ProofSent {
        greeting: Greeting,
        challenge: [u8; 32],
    },
    Finished,
}

/// The connector's handshake state machine.
pub struct Connector {
    nonce: [u8; 32],
    secret: Option<ClusterSecret>,
    step: Step,
}

impl Connector {
    /// Starts a handshake: returns the connector and the `hello` to send.
    /// `hello.auth_nonce` is the nonce the proofs are made over.
    pub fn start(hello: Hello, secret: Option<ClusterSecret>) -> (Self, Message) {
        let connector = Self {
            nonce: hello.auth_nonce,
            secret,
            step: Step::HelloSent,
        };
        (connector, Message::Hello(hello))
    }

    /// Reads the node's answer to what was last sent.
    pub fn receive(&mut self, message: MessageRef<'_>) -> Result<Next, HandshakeError> {
        if let Ok(Message::Error(err)) = message.to_owned_message() {
            self.step = Step::Finished;
            return Err(HandshakeError::Refused {
                code: err.code,
                detail: err.detail,
            });
        }
        match std::mem::replace(&mut self.step, Step::Finished) {
            Step::HelloSent => {
                let greeting = Greeting::read(message).ok_or(HandshakeError::Unexpected {
                    expected: "hello_ack or welcome",
                    got: message.kind().name(),
                })?;
                let Some(challenge) = greeting.auth_challenge else {
                    return Ok(Next::Done(greeting));
                };
                let secret = self.secret.as_ref().ok_or(HandshakeError::SecretMissing)?;
                let proof = Message::AuthProof(AuthProof {
                    mac: secret.client_proof(&challenge, &self.nonce),
                });
                self.step = Step::ProofSent {
                    greeting,
                    challenge,
                };
                Ok(Next::Send(proof))
            }
            Step::ProofSent {
                greeting,
                challenge,
            } => match message {
                MessageRef::AuthOk(ok) => {
                    let proven = self
                        .secret
                        .as_ref()
                        .is_some_and(|secret| secret.verify_node(&self.nonce, &challenge, &ok.mac));
                    if proven {
                        Ok(Next::Done(greeting))
                    } else {
                        Err(HandshakeError::WrongProof)
                    }
                }
                other => Err(HandshakeError::Unexpected {
                    expected: "auth_ok",
                    got: other.kind().name(),
                }),
            },
            Step::Finished => Err(HandshakeError::Unexpected {
                expected: "nothing (the handshake is over)",
                got: message.kind().name(),
            }),
        }
    }
}
