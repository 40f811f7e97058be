//! A minimal blocking protocol client for tests: it speaks frames over a
//! std socket and nothing more (no routing, no retries), so tests see
//! exactly what the node sends.
//!
//! By default it speaks protocol revision 1, as a client of the first
//! release does (raw payloads only, `hello_ack`); [`TestClient::connect_revision`]
//! speaks a later one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use stratum_wire::auth::ClusterSecret;
use stratum_wire::codec::{Dictionaries, Dictionary};
use stratum_wire::handshake::{Connector, Greeting, HandshakeError, Next};
use stratum_wire::message::{GetDictionary, Hello, HelloAck, PeerRole};
use stratum_wire::{Codec, Frame, FrameDecoder, FrameEncoder, FrameLimits, Message};

pub struct TestClient {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    next_id: u64,
    pub ack: HelloAck,
    /// What the node said in its handshake (revision, codecs, limits).
    pub greeting: Greeting,
}

fn limits() -> FrameLimits {
    FrameLimits {
        max_message_len: FrameLimits::DEFAULT_MAX_MESSAGE_LEN,
        max_payload_len: u32::MAX,
    }
}

impl TestClient {
    /// Connects and completes the handshake (proving `secret` if given).
    pub fn connect(addr: SocketAddr, secret: Option<&ClusterSecret>) -> Result<Self, String> {
        Self::connect_as(addr, secret, PeerRole::Client, None, 1)
    }

    /// A client that says it speaks protocol `revision` in its hello.
    pub fn connect_revision(addr: SocketAddr, revision: u16) -> Result<Self, String> {
        Self::connect_as(addr, None, PeerRole::Client, None, revision)
    }

    /// Connects as node `node_id` would: the node then applies writes
    /// locally only (no coordination) and never repairs on a read, which is
    /// how tests place or inspect exactly one replica.
    pub fn connect_as_node(
        addr: SocketAddr,
        secret: Option<&ClusterSecret>,
        node_id: u32,
    ) -> Result<Self, String> {
        Self::connect_as(addr, secret, PeerRole::Node, Some(node_id), 1)
    }

    fn connect_as(
        addr: SocketAddr,
        secret: Option<&ClusterSecret>,
        role: PeerRole,
        node_id: Option<u32>,
        revision: u16,
    ) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|err| format!("connect {addr}: {err}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client = Self {
            stream,
            decoder: FrameDecoder::new(limits()),
            encoder: FrameEncoder::new(limits()),
            buf: vec![0; 1 << 16],
            pos: 0,
            len: 0,
            next_id: 1,
            ack: HelloAck {
                protocol_version: 0,
                node_id: 0,
                shard_id: 0,
                shard_count: 0,
                topology_epoch: 0,
                auth_challenge: None,
            },
            greeting: Greeting {
                revision: 0,
                node_id: 0,
                shard_id: 0,
                shard_count: 0,
                topology_epoch: 0,
                auth_challenge: None,
                max_object_bytes: None,
                codecs: 1,
                dictionaries: Vec::new(),
                dictionary: 0,
            },
        };
        let hello = Hello {
            protocol_version: revision,
            role,
            node_id,
            topology_epoch: 0,
            agent: "stratum-node-tests".into(),
            auth_nonce: [7u8; 32],
        };
        let (mut connector, mut outgoing) = Connector::start(hello, secret.cloned());
        let greeting = loop {
            let reply = client.call(&outgoing, &[])?;
            match connector.receive(reply.message()) {
                Ok(Next::Send(message)) => outgoing = message,
                Ok(Next::Done(greeting)) => break greeting,
                // Tests connect without the secret on purpose, to be
                // refused later: the greeting is all they get.
                Err(HandshakeError::SecretMissing) => match Greeting::read(reply.message()) {
                    Some(greeting) => break greeting,
                    None => return Err("handshake answered without a greeting".into()),
                },
                Err(err) => return Err(format!("handshake: {err}")),
            }
        };
        client.ack = HelloAck {
            protocol_version: greeting.revision,
            node_id: greeting.node_id,
            shard_id: greeting.shard_id,
            shard_count: greeting.shard_count,
            topology_epoch: greeting.topology_epoch,
            auth_challenge: greeting.auth_challenge,
        };
        client.greeting = greeting;
        Ok(client)
    }

    /// Every dictionary the node named in its welcome, fetched from it (what
    /// a client must hold to inflate what this connection is sent).
    pub fn fetch_dictionaries(&mut self) -> Result<Dictionaries, String> {
        let mut held = Dictionaries::default();
        for id in self.greeting.dictionaries.clone() {
            let get = Message::GetDictionary(GetDictionary { id });
            let reply = self.call(&get, &[])?;
            let dictionary =
                Dictionary::new(reply.payload().to_vec()).map_err(|e| e.to_string())?;
            if dictionary.id() != id {
                return Err(format!("asked for {id:#x}, got {:#x}", dictionary.id()));
            }
            held.insert(std::sync::Arc::new(dictionary))
                .map_err(|e| e.to_string())?;
        }
        Ok(held)
    }

    /// Sends one frame; returns its request id.
    pub fn send(&mut self, message: &Message, payload: &[u8]) -> u64 {
        self.try_send(message, payload).expect("send")
    }

    /// Sends one frame, or says why the socket refused it.
    pub fn try_send(&mut self, message: &Message, payload: &[u8]) -> std::io::Result<u64> {
        self.try_send_as(message, payload, Codec::Raw)
    }

    /// Sends one frame whose payload is in `codec`.
    pub fn try_send_as(
        &mut self,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> std::io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        self.encoder
            .encode_as(&mut out, id, message, payload, codec)
            .map_err(std::io::Error::other)?;
        self.stream.write_all(&out)?;
        Ok(id)
    }

    /// The next frame from the node; `Err` on close, timeout or a bad frame.
    pub fn recv(&mut self) -> Result<Frame, String> {
        loop {
            if self.pos < self.len {
                let mut input = &self.buf[self.pos..self.len];
                let before = input.len();
                let decoded = self
                    .decoder
                    .decode(&mut input)
                    .map_err(|err| err.to_string())?;
                self.pos += before - input.len();
                if let Some(frame) = decoded {
                    return Ok(frame);
                }
                continue;
            }
            let n = self
                .stream
                .read(&mut self.buf)
                .map_err(|err| err.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.pos = 0;
            self.len = n;
        }
    }

    pub fn call(&mut self, message: &Message, payload: &[u8]) -> Result<Frame, String> {
        self.call_as(message, payload, Codec::Raw)
    }

    /// [`TestClient::call`] with a payload in `codec`.
    pub fn call_as(
        &mut self,
        message: &Message,
        payload: &[u8],
        codec: Codec,
    ) -> Result<Frame, String> {
        let id = self
            .try_send_as(message, payload, codec)
            .map_err(|err| err.to_string())?;
        let frame = self.recv()?;
        if frame.request_id() != id && frame.request_id() != 0 {
            return Err(format!(
                "reply to {} while waiting for {id}",
                frame.request_id()
            ));
        }
        Ok(frame)
    }
}
