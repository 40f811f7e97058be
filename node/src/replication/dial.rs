//! Opening a link: TCP connect to a peer's shard, then the handshake as a
//! node (`Hello { role: Node }`, and the mutual proof of the cluster secret
//! when there is one). The answer must come from the node and shard the
//! topology names at that address; anything else is refused.

use std::time::Duration;

use futures_lite::AsyncWriteExt;
use stratum_wire::auth::{random_nonce, ClusterSecret};
use stratum_wire::handshake::{self, Connector, Greeting, Next};
use stratum_wire::message::PeerRole;
use stratum_wire::{FrameEncoder, FrameLimits, Message};

use crate::net::frame_reader::{ByteBudget, FrameReader};
use crate::net::stream::{BoxStream, Network, Stream};

/// What every link of a core shares.
#[derive(Debug)]
pub struct LinkSettings {
    /// This node's id, sent in `Hello`.
    pub node_id: u32,
    pub secret: Option<ClusterSecret>,
    pub frame_limits: FrameLimits,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ping_interval: Duration,
    /// The epoch this core routes by, sent in `Hello` and compared with the
    /// peer's (updated on a topology reload).
    pub epoch: std::cell::Cell<u64>,
    /// Handshakes that found the peer on another epoch.
    pub epoch_mismatches: std::cell::Cell<u64>,
    /// How connections to peers are made (TCP on a node).
    pub network: std::rc::Rc<dyn Network>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    #[error("{address} is not a socket address")]
    Address { address: String },
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("connect and handshake took longer than {0:?}")]
    Timeout(Duration),
    #[error("socket error: {0}")]
    Io(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("the peer at this address is node {got_node} shard {got_shard}, not node {node} shard {shard} as the topology says")]
    WrongPeer {
        node: u32,
        shard: u16,
        got_node: u32,
        got_shard: u16,
    },
}

/// Connects and completes the handshake; returns the stream, the reader
/// (which may already hold bytes after the handshake) and what the peer
/// said of itself (its revision and codecs).
pub async fn dial(
    address: &str,
    node: u32,
    shard: u16,
    settings: &LinkSettings,
) -> Result<(BoxStream, FrameReader, Greeting), DialError> {
    let mut stream = settings.network.connect(address).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::InvalidInput {
            DialError::Address {
                address: address.to_owned(),
            }
        } else {
            DialError::Connect(err.to_string())
        }
    })?;
    // Idle: pings keep a healthy link busier than this.
    let idle = settings.ping_interval * 4;
    // Replies on a link answer this core's own requests (bounded by the
    // link's in-flight requests), so they are not charged to the budget the
    // shard's request tasks hold while they wait for these very replies.
    let mut reader = FrameReader::new(
        settings.frame_limits,
        ByteBudget::unlimited(),
        idle,
        settings.request_timeout,
    );
    let mut encoder = FrameEncoder::new(settings.frame_limits);
    let nonce = random_nonce().map_err(|err| DialError::Io(err.to_string()))?;
    let hello = handshake::hello(
        PeerRole::Node,
        Some(settings.node_id),
        settings.epoch.get(),
        concat!("stratum-node/", env!("CARGO_PKG_VERSION")).to_owned(),
        nonce,
    );
    let (mut connector, mut outgoing) = Connector::start(hello, settings.secret.clone());
    let greeting = loop {
        send(&mut *stream, &mut encoder, &outgoing).await?;
        let frame = reader
            .next_frame(&mut *stream, std::future::pending())
            .await
            .map_err(|err| DialError::Handshake(err.to_string()))?
            .ok_or_else(|| DialError::Handshake("peer closed the connection".into()))?;
        match connector
            .receive(frame.message())
            .map_err(|err| DialError::Handshake(err.to_string()))?
        {
            Next::Send(message) => outgoing = message,
            Next::Done(greeting) => break greeting,
        }
    };
    let (got_node, got_shard) = (greeting.node_id, greeting.shard_id);
    if (got_node, got_shard) != (node, shard) {
        return Err(DialError::WrongPeer {
            node,
            shard,
            got_node,
            got_shard,
        });
    }
    let theirs = greeting.topology_epoch;
    if theirs != settings.epoch.get() {
        settings
            .epoch_mismatches
            .set(settings.epoch_mismatches.get() + 1);
        tracing::warn!(
            peer = node,
            shard,
            ours = settings.epoch.get(),
            theirs,
            "peer routes by another topology epoch: roll the same topology file out to every node"
        );
    }
    Ok((stream, reader, greeting))
}

async fn send(
    stream: &mut dyn Stream,
    encoder: &mut FrameEncoder,
    message: &Message,
) -> Result<(), DialError> {
    let mut out = Vec::new();
    encoder
        .encode(&mut out, 0, message, &[])
        .map_err(|err| DialError::Io(err.to_string()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|err| DialError::Io(err.to_string()))
}
