//! The handshake's answer, as a connector reads it: a first-release node
//! answers `hello` with [`HelloAck`], a node of revision 2 or later with
//! [`Welcome`]. [`Greeting`] is what either says, so the client, a node's
//! peer links and the test kit read it the same way.

use crate::catalogue::{Message, MessageRef};
use crate::codec::Codec;
use crate::message::{Hello, PeerRole, Welcome, PROTOCOL_REVISION};

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
) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_REVISION,
        role,
        node_id,
        topology_epoch,
        agent,
        auth_nonce,
    })
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
