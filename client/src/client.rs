//! The async client: every operation, with routing, failover and retries.
//!
//! Futures here wait only on flume channels and a runtime-free timer, so
//! they run under tokio, async-std, glommio or `block_on` alike.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use stratum_wire::codec::Dictionary;
use stratum_wire::message::{
    Delete, ErrorCode, Get, GetTopology, Has, InstallDictionary, ListIds, Put, PutOutcome, Repair,
    ReportCorrupt, Stats, StatsReply, Welcome,
};
use stratum_wire::{
    codec, Codec, Frame, FrameEncoder, FrameLimits, Message, MessageKind, MessageRef, ObjectId,
    ObjectKind, Topology,
};

use crate::cluster::{self, ClusterView};
use crate::config::{ClientConfig, Discovery};
use crate::dictionaries::ClientDictionaries;
use crate::error::{AttemptError, ClientError, Peer, ReplicaAttempt};
use crate::get_many::GetMany;
use crate::io::{Event, IoPool, Outgoing, PeerInfo, Route};
use crate::retry;
use crate::traffic::{Traffic, TrafficStats};

/// An object read back from the cluster, already checked against its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub content: Vec<u8>,
}

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReceipt {
    pub id: ObjectId,
    /// `AlreadyPresent` when the cluster held it before (nothing written).
    pub outcome: PutOutcome,
    /// Nodes that hold it durably (at least the write quorum).
    pub durable_replicas: u8,
}

/// One node's answer to [`Client::stats`].
#[derive(Debug)]
pub struct NodeStats {
    pub node_id: u32,
    pub address: String,
    pub result: Result<StatsReply, AttemptError>,
}

/// One node's answer to [`Client::install_dictionary`]: how many of its
/// shards hold dictionary `id`.
#[derive(Debug)]
pub struct NodeDictionary {
    pub node_id: u32,
    pub address: String,
    pub id: u32,
    pub result: Result<u16, AttemptError>,
}

/// One node's answer to [`Client::repair`]: how many of its shards
/// started a pass.
#[derive(Debug)]
pub struct NodeRepair {
    pub node_id: u32,
    pub address: String,
    pub result: Result<u16, AttemptError>,
}

/// A handle to a Stratum cluster. Cheap to clone; every clone shares the
/// same I/O threads and connections. Dropping the last one stops them.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ClientConfig,
    pub io: IoPool,
    pub view: ClusterView,
    /// Highest topology epoch any node reported.
    pub seen_epoch: AtomicU64,
    pub traffic: Arc<Traffic>,
    pub dictionaries: Arc<ClientDictionaries>,
}

thread_local! {
    /// Encoding scratch for callers' threads (frames are encoded where the
    /// request is made, so I/O threads only move bytes).
    static ENCODER: RefCell<FrameEncoder> = RefCell::new(FrameEncoder::new(FrameLimits {
        max_message_len: FrameLimits::DEFAULT_MAX_MESSAGE_LEN,
        max_payload_len: u32::MAX,
    }));
}

impl Client {
    /// Starts the I/O threads and learns the topology (from the file, or by
    /// asking the seeds).
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        let dictionaries = Arc::new(ClientDictionaries::new(config.compression_level));
        let traffic = Arc::new(Traffic::default());
        let io = IoPool::start(&config, &dictionaries, &traffic)
            .map_err(|err| ClientError::Config(format!("cannot start I/O threads: {err}")))?;
        let (topology, io) = match &config.discovery {
            Discovery::TopologyFile(path) => (Topology::load(path)?, io),
            Discovery::Seeds(seeds) => {
                let topology = fetch_topology_from(&io, &config, seeds).await?;
                (topology, io)
            }
        };
        let epoch = topology.epoch();
        let view = ClusterView::new(topology, &io);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                io,
                view,
                seen_epoch: AtomicU64::new(epoch),
                traffic,
                dictionaries,
            }),
        })
    }

    /// Object bytes this client sent and received, before and after
    /// compression (puts as sent, retries included; reads once verified).
    pub fn traffic(&self) -> TrafficStats {
        self.inner.traffic.snapshot()
    }

    /// The topology requests are routed by.
    pub fn topology(&self) -> Topology {
        self.inner.view.routing().topology().clone()
    }

    /// Where an object's replicas are: node and owning shard, preferred
    /// first.
    pub fn replicas_of(&self, id: &ObjectId) -> Vec<Peer> {
        self.inner
            .view
            .routing()
            .replicas(id)
            .map(|route| route.peer().clone())
            .collect()
    }

    /// Stores an object; its id is computed here from `kind` and `content`.
    /// Returns once the cluster holds it durably.
    pub async fn put(
        &self,
        kind: ObjectKind,
        content: impl Into<Bytes>,
    ) -> Result<PutReceipt, ClientError> {
        let content: Bytes = content.into();
        let max = self.inner.config.max_object_size;
        if content.len() > max as usize {
            return Err(ClientError::TooLarge {
                len: content.len() as u64,
                max,
            });
        }
        let id = ObjectId::compute(kind, &content);
        let message = Message::Put(Put { id, kind });
        let dictionary = self.inner.dictionaries.current();
        let payload = ObjectPayload::new(
            content,
            self.inner.config.compression_level,
            dictionary.as_deref(),
        );
        self.with_failover(id, |route| {
            let message = &message;
            let payload = &payload;
            async move {
                let (frame, _) = self.inner.call_object(&route, message, payload).await?;
                match frame.message() {
                    MessageRef::PutAck(ack) if ack.id.get() == id => Ok(PutReceipt {
                        id,
                        outcome: match ack.outcome {
                            stratum_wire::message::ArchivedPutOutcome::Stored => PutOutcome::Stored,
                            stratum_wire::message::ArchivedPutOutcome::AlreadyPresent => {
                                PutOutcome::AlreadyPresent
                            }
                        },
                        durable_replicas: ack.durable_replicas,
                    }),
                    other => Err(unexpected(other)),
                }
            }
        })
        .await
    }

    /// Reads an object from the first replica that has an intact copy. The
    /// content is verified against `id` before it is returned.
    pub async fn get(&self, id: ObjectId) -> Result<Object, ClientError> {
        let message = Message::Get(Get { id });
        self.with_failover(id, |route| {
            let message = &message;
            async move {
                let (mut frame, info) = self.inner.call(&route, message, Bytes::new()).await?;
                let kind = match frame.message() {
                    MessageRef::GetOk(ok) if ok.id.get() == id => ObjectKind::from(ok.kind),
                    other => return Err(unexpected(other)),
                };
                self.inner.verify_from(&route, &info, id, kind, &mut frame)
            }
        })
        .await
    }

    /// Reads an object from one node only (its owning shard there): no
    /// failover, no retry. For operators checking what a node holds
    /// (`stratum-bench verify --direct`). The content is verified.
    pub async fn get_from(&self, node_id: u32, id: ObjectId) -> Result<Object, ClientError> {
        let routing = self.inner.view.routing();
        let topology = routing.topology();
        let Some(node) = topology.nodes().iter().find(|node| node.id == node_id) else {
            return Err(ClientError::Config(format!(
                "node {node_id} is not in the topology (epoch {})",
                topology.epoch()
            )));
        };
        let shard = stratum_wire::placement::shard_of(&id, node.shards);
        let Some(route) = routing.shard(node_id, shard).cloned() else {
            return Err(ClientError::Config(format!(
                "node {node_id} has no shard {shard}"
            )));
        };
        let peer = route.peer().clone();
        let message = Message::Get(Get { id });
        let attempt = async {
            let (mut frame, info) = self.inner.call(&route, &message, Bytes::new()).await?;
            let kind = match frame.message() {
                MessageRef::GetOk(ok) if ok.id.get() == id => ObjectKind::from(ok.kind),
                other => return Err(unexpected(other)),
            };
            self.inner.verify_from(&route, &info, id, kind, &mut frame)
        };
        attempt.await.map_err(|error| {
            ClientError::from_attempts(Some(id), vec![ReplicaAttempt { peer, error }])
        })
    }

    /// Whether any replica holds the object.
    pub async fn has(&self, id: ObjectId) -> Result<bool, ClientError> {
        let message = Message::Has(Has { id });
        let found = self
            .with_failover(id, |route| {
                let message = &message;
                async move {
                    let (frame, _) = self.inner.call(&route, message, Bytes::new()).await?;
                    match frame.message() {
                        MessageRef::HasResult(result) if result.present => Ok(()),
                        // Absent here: ask the next replica.
                        MessageRef::HasResult(_) => Err(AttemptError::NotFound),
                        other => Err(unexpected(other)),
                    }
                }
            })
            .await;
        match found {
            Ok(()) => Ok(true),
            Err(ClientError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Deletes an object (a durable tombstone on the node that takes it).
    /// Returns whether a live object existed there.
    pub async fn delete(&self, id: ObjectId) -> Result<bool, ClientError> {
        let message = Message::Delete(Delete { id });
        self.with_failover(id, |route| {
            let message = &message;
            async move {
                let (frame, _) = self.inner.call(&route, message, Bytes::new()).await?;
                match frame.message() {
                    MessageRef::DeleteAck(ack) if ack.id.get() == id => Ok(ack.existed),
                    other => Err(unexpected(other)),
                }
            }
        })
        .await
    }

    /// Fetches many objects: ids are grouped by owning node and shard, one
    /// batch per group is sent at once, and objects are yielded as they
    /// arrive (in no particular order). Ids a replica cannot serve move on to
    /// the next replica.
    pub fn get_many(&self, ids: impl IntoIterator<Item = ObjectId>) -> GetMany {
        GetMany::start(self.clone(), ids.into_iter().collect())
    }

    /// Every node's statistics (all shards), node by node; an unreachable
    /// node is reported, not fatal.
    pub async fn stats(&self) -> Vec<NodeStats> {
        let topology = self.topology();
        let mut out = Vec::with_capacity(topology.nodes().len());
        for node in topology.nodes() {
            let route = self.inner.io.route(&cluster::node_peer(node));
            let message = Message::Stats(Stats { all_shards: true });
            let result = match self.inner.call(&route, &message, Bytes::new()).await {
                Ok((frame, _)) => match frame.to_message() {
                    Ok(Message::StatsReply(reply)) => Ok(reply),
                    Ok(other) => Err(AttemptError::UnexpectedReply(other.kind().name().into())),
                    Err(err) => Err(AttemptError::protocol(&err)),
                },
                Err(err) => Err(err),
            };
            out.push(NodeStats {
                node_id: node.id,
                address: node.address.clone(),
                result,
            });
        }
        out
    }

    /// Asks every node to start an anti-entropy pass on all its shards now
    /// (it runs in the background; [`Client::stats`] shows its progress).
    pub async fn repair(&self) -> Vec<NodeRepair> {
        let topology = self.topology();
        let mut out = Vec::with_capacity(topology.nodes().len());
        for node in topology.nodes() {
            let route = self.inner.io.route(&cluster::node_peer(node));
            let message = Message::Repair(Repair { all_shards: true });
            let result = match self.inner.call(&route, &message, Bytes::new()).await {
                Ok((frame, _)) => match frame.to_message() {
                    Ok(Message::RepairStarted(started)) => Ok(started.shards),
                    Ok(other) => Err(AttemptError::UnexpectedReply(other.kind().name().into())),
                    Err(err) => Err(AttemptError::protocol(&err)),
                },
                Err(err) => Err(err),
            };
            out.push(NodeRepair {
                node_id: node.id,
                address: node.address.clone(),
                result,
            });
        }
        out
    }

    /// Stores a zstd dictionary durably on every shard of every node and,
    /// with `make_current`, asks clients to compress with it (clients pick
    /// it up on their next connection to a node). Per node: the shards that
    /// hold it, or why not. Run it again for a node that was down: installs
    /// are idempotent. See `stratum dictionary`.
    pub async fn install_dictionary(
        &self,
        dictionary: &[u8],
        make_current: bool,
    ) -> Result<Vec<NodeDictionary>, ClientError> {
        let parsed = Dictionary::new(dictionary.to_vec())
            .map_err(|err| ClientError::Config(format!("not a dictionary: {err}")))?;
        let topology = self.topology();
        let message = Message::InstallDictionary(InstallDictionary {
            id: parsed.id(),
            make_current,
        });
        let payload = Bytes::copy_from_slice(dictionary);
        let mut out = Vec::with_capacity(topology.nodes().len());
        for node in topology.nodes() {
            let route = self.inner.io.route(&cluster::node_peer(node));
            let result = match self.inner.call(&route, &message, payload.clone()).await {
                Ok((frame, _)) => match frame.to_message() {
                    Ok(Message::DictionaryInstalled(done)) => Ok(done.shards),
                    Ok(other) => Err(AttemptError::UnexpectedReply(other.kind().name().into())),
                    Err(err) => Err(AttemptError::protocol(&err)),
                },
                Err(err) => Err(err),
            };
            out.push(NodeDictionary {
                node_id: node.id,
                address: node.address.clone(),
                id: parsed.id(),
                result,
            });
        }
        Ok(out)
    }

    /// One page of the ids one shard of one node holds (see
    /// [`ListIds`]); `None` as the cursor starts from the beginning.
    pub async fn list_ids(
        &self,
        peer: &Peer,
        after: Option<u64>,
        max_ids: u32,
    ) -> Result<(Vec<ObjectId>, Option<u64>), AttemptError> {
        let message = Message::ListIds(ListIds { after, max_ids });
        let route = self.inner.io.route(peer);
        let (frame, _) = self.inner.call(&route, &message, Bytes::new()).await?;
        match frame.to_message() {
            Ok(Message::IdList(list)) => Ok((list.ids, list.next)),
            Ok(other) => Err(AttemptError::UnexpectedReply(other.kind().name().into())),
            Err(err) => Err(AttemptError::protocol(&err)),
        }
    }

    /// Every shard of every node, for whole-cluster scans.
    pub fn all_shards(&self) -> Vec<Peer> {
        self.topology()
            .nodes()
            .iter()
            .flat_map(cluster::shard_peers)
            .collect()
    }

    /// Runs `attempt` against the object's replicas in order until one
    /// succeeds; then, for failures a pause may cure, more rounds with
    /// backoff. A rejection ends it at once.
    async fn with_failover<'a, T, F, Fut>(
        &'a self,
        id: ObjectId,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Route) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>> + 'a,
    {
        let mut attempts: Vec<ReplicaAttempt> = Vec::new();
        for round in 0..=self.inner.config.retries {
            if round > 0 {
                retry::sleep(retry::backoff(self.inner.config.retry_backoff, round)).await;
            }
            self.inner.refresh_if_stale().await;
            let mut another_round = false;
            let routing = self.inner.view.routing();
            for route in routing.replicas(&id) {
                match attempt(route.clone()).await {
                    Ok(value) => return Ok(value),
                    Err(AttemptError::Node { code, detail }) if retry::is_rejection(code) => {
                        let peer = route.peer().clone();
                        return Err(ClientError::Rejected { peer, code, detail });
                    }
                    Err(AttemptError::Closed) => return Err(ClientError::Closed),
                    Err(error) => {
                        another_round |= retry::round_may_help(&error);
                        let peer = route.peer().clone();
                        tracing::debug!(%peer, %id, %error, "attempt failed");
                        attempts.push(ReplicaAttempt { peer, error });
                    }
                }
            }
            if !another_round {
                break;
            }
        }
        Err(ClientError::from_attempts(Some(id), attempts))
    }
}

impl Inner {
    /// One request to one peer: the answer frame, or why there is none. A
    /// node's error reply becomes [`AttemptError::Node`] (or `NotFound`).
    pub async fn call(
        &self,
        route: &Route,
        message: &Message,
        payload: Bytes,
    ) -> Result<(Frame, PeerInfo), AttemptError> {
        let (reply, answers) = flume::bounded(1);
        self.send(route, message, payload, false, reply)?;
        self.answer(answers).await
    }

    /// The answer to a request sent with `reply` = the sender of `answers`.
    async fn answer(
        &self,
        answers: flume::Receiver<Event>,
    ) -> Result<(Frame, PeerInfo), AttemptError> {
        match answers.recv_async().await {
            Ok(Event::Frame { frame, peer: info }) => {
                self.observe(&info);
                if frame.kind() == MessageKind::Error {
                    return Err(node_error(&frame));
                }
                Ok((frame, info))
            }
            Ok(Event::Failed { error, .. }) => Err(error),
            Err(_) => Err(AttemptError::Closed),
        }
    }

    /// [`Inner::call`] for a request carrying an object.
    pub async fn call_object(
        &self,
        route: &Route,
        message: &Message,
        payload: &ObjectPayload,
    ) -> Result<(Frame, PeerInfo), AttemptError> {
        let (reply, answers) = flume::bounded(1);
        self.send_as(route, message, payload, false, reply)?;
        self.answer(answers).await
    }

    /// The object in a `get_ok` or `batch_item` frame, inflated and checked
    /// against `id`.
    pub fn verify(
        &self,
        id: ObjectId,
        kind: ObjectKind,
        frame: &mut Frame,
    ) -> Result<Object, AttemptError> {
        let codec = frame.codec();
        let payload = frame.take_payload();
        let payload_len = payload.len() as u64;
        let max = u64::from(self.config.max_object_size);
        let decoded = self.dictionaries.with(|dictionaries| {
            codec::decode(codec, &payload, max, dictionaries).map(|content| match content {
                std::borrow::Cow::Borrowed(_) => None,
                std::borrow::Cow::Owned(content) => Some(content),
            })
        });
        let content = match decoded {
            Ok(None) => payload,
            Ok(Some(content)) => content,
            Err(err) => {
                return Err(AttemptError::Corrupt(format!(
                    "the {} payload of {id} does not decode: {err}",
                    codec.name()
                )))
            }
        };
        let object = verify(id, kind, content)?;
        self.traffic
            .received(object.content.len() as u64, payload_len);
        Ok(object)
    }

    /// [`Inner::verify`] of an object `route`'s node sent; if it is corrupt,
    /// the node is told (it checks its record, quarantines a damaged one
    /// and repairs it from a replica) while the caller moves on.
    pub fn verify_from(
        &self,
        route: &Route,
        info: &PeerInfo,
        id: ObjectId,
        kind: ObjectKind,
        frame: &mut Frame,
    ) -> Result<Object, AttemptError> {
        let result = self.verify(id, kind, frame);
        if matches!(result, Err(AttemptError::Corrupt(_))) {
            self.report_corrupt(route, info, id);
        }
        result
    }

    /// Tells `route`'s node that what it served under `id` is corrupt; no
    /// answer is awaited. Nodes of the first release do not know the
    /// message, and are not told.
    fn report_corrupt(&self, route: &Route, info: &PeerInfo, id: ObjectId) {
        if !Welcome::accepts(info.codecs, Codec::Zstd) {
            return;
        }
        tracing::warn!(%id, node = info.node_id, shard = info.shard_id, "a node served a corrupt object; reporting it");
        let request_id = self.io.request_id();
        let message = Message::ReportCorrupt(ReportCorrupt { id });
        let mut head = Vec::new();
        let encoded = ENCODER.with(|encoder| {
            encoder
                .borrow_mut()
                .encode_head(&mut head, request_id, &message, &[])
        });
        if encoded.is_err() {
            return;
        }
        let (reply, _) = flume::bounded(1);
        self.io.send(Outgoing {
            route: route.clone(),
            request_id,
            head,
            payload: Bytes::new(),
            codec: Codec::Raw,
            raw: None,
            detached: true,
            content_len: 0,
            streaming: false,
            timeout: self.config.request_timeout,
            reply,
        });
    }

    /// Encodes and hands a request to the peer's I/O thread; answers go to
    /// `reply`. Returns the request id.
    pub fn send(
        &self,
        route: &Route,
        message: &Message,
        payload: Bytes,
        streaming: bool,
        reply: flume::Sender<Event>,
    ) -> Result<u64, AttemptError> {
        let payload = ObjectPayload {
            content_len: payload.len() as u64,
            content: payload,
            compressed: None,
        };
        self.send_as(route, message, &payload, streaming, reply)
    }

    /// [`Inner::send`] for an object payload: the compressed form when
    /// there is one, with the raw form beside it for a node that does not
    /// accept it.
    fn send_as(
        &self,
        route: &Route,
        message: &Message,
        payload: &ObjectPayload,
        streaming: bool,
        reply: flume::Sender<Event>,
    ) -> Result<u64, AttemptError> {
        let request_id = self.io.request_id();
        let encode = |codec: Codec, bytes: &Bytes| {
            let mut head = Vec::new();
            ENCODER
                .with(|encoder| {
                    encoder
                        .borrow_mut()
                        .encode_head_as(&mut head, request_id, message, bytes, codec)
                })
                .map(|_| head)
                .map_err(|err| AttemptError::Protocol(format!("cannot encode the request: {err}")))
        };
        let raw = encode(Codec::Raw, &payload.content)?;
        let (head, bytes, codec, raw) = match &payload.compressed {
            Some(compressed) => (
                encode(Codec::Zstd, compressed)?,
                compressed.clone(),
                Codec::Zstd,
                Some((raw, payload.content.clone())),
            ),
            None => (raw, payload.content.clone(), Codec::Raw, None),
        };
        self.io.send(Outgoing {
            route: route.clone(),
            request_id,
            head,
            payload: bytes,
            codec,
            raw,
            detached: false,
            content_len: payload.content_len,
            streaming,
            timeout: self.config.request_timeout,
            reply,
        });
        Ok(request_id)
    }

    /// Notes a node's topology epoch; a newer one triggers a refresh before
    /// the next attempt.
    pub fn observe(&self, info: &PeerInfo) {
        self.seen_epoch
            .fetch_max(info.topology_epoch, Ordering::Relaxed);
    }

    /// Refreshes the topology when a node reported a newer epoch than the
    /// one in use: from the topology file if it has caught up, else from the
    /// nodes themselves.
    pub async fn refresh_if_stale(&self) {
        let seen = self.seen_epoch.load(Ordering::Relaxed);
        if seen <= self.view.epoch() {
            return;
        }
        if let Discovery::TopologyFile(path) = &self.config.discovery {
            match Topology::load(path) {
                Ok(topology) if topology.epoch() >= seen => {
                    self.view.install(topology, &self.io);
                    return;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot re-read the topology file")
                }
            }
        }
        let addresses: Vec<String> = self
            .view
            .routing()
            .topology()
            .nodes()
            .iter()
            .map(|node| node.address.clone())
            .collect();
        match fetch_topology_from(&self.io, &self.config, &addresses).await {
            Ok(topology) => {
                self.view.install(topology, &self.io);
            }
            Err(err) => {
                tracing::warn!(error = %err, "topology refresh failed; routing by the old one")
            }
        }
    }
}

/// Asks each address in turn for its node's topology.
async fn fetch_topology_from(
    io: &IoPool,
    config: &ClientConfig,
    addresses: &[String],
) -> Result<Topology, ClientError> {
    let mut attempts = Vec::new();
    for address in addresses {
        // The node id is unknown until the handshake; the address alone
        // names this connection.
        let peer = Peer {
            node_id: 0,
            shard: 0,
            address: address.clone(),
        };
        let (reply, answers) = flume::bounded(1);
        let request_id = io.request_id();
        let mut head = Vec::new();
        let message = Message::GetTopology(GetTopology { known_epoch: 0 });
        if let Err(err) = ENCODER.with(|encoder| {
            encoder
                .borrow_mut()
                .encode_head(&mut head, request_id, &message, &[])
        }) {
            return Err(ClientError::Config(format!(
                "cannot encode get_topology: {err}"
            )));
        }
        io.send(Outgoing {
            route: io.route(&peer),
            request_id,
            head,
            payload: Bytes::new(),
            codec: Codec::Raw,
            raw: None,
            detached: false,
            content_len: 0,
            streaming: false,
            timeout: config.request_timeout,
            reply,
        });
        let error = match answers.recv_async().await {
            Ok(Event::Frame { frame, .. }) => match frame.to_message() {
                Ok(Message::TopologyReply(reply)) => {
                    return Ok(cluster::topology_from_reply(reply)?)
                }
                Ok(Message::Error(err)) => AttemptError::Node {
                    code: err.code,
                    detail: err.detail,
                },
                Ok(other) => AttemptError::UnexpectedReply(other.kind().name().into()),
                Err(err) => AttemptError::protocol(&err),
            },
            Ok(Event::Failed { error, .. }) => error,
            Err(_) => AttemptError::Closed,
        };
        attempts.push(ReplicaAttempt { peer, error });
    }
    Err(ClientError::from_attempts(None, attempts))
}

/// A node's error frame as an attempt error.
pub(crate) fn node_error(frame: &Frame) -> AttemptError {
    match frame.to_message() {
        Ok(Message::Error(err)) if err.code == ErrorCode::NotFound => AttemptError::NotFound,
        Ok(Message::Error(err)) => AttemptError::Node {
            code: err.code,
            detail: err.detail,
        },
        Ok(other) => AttemptError::UnexpectedReply(other.kind().name().into()),
        Err(err) => AttemptError::protocol(&err),
    }
}

pub(crate) fn unexpected(message: MessageRef<'_>) -> AttemptError {
    AttemptError::UnexpectedReply(format!("{} frame", message.kind().name()))
}

/// An object's content as a request carries it: raw, and compressed when
/// that saves at least a tenth (compressed once, on the caller's thread;
/// retries and failover reuse both).
pub(crate) struct ObjectPayload {
    content: Bytes,
    compressed: Option<Bytes>,
    content_len: u64,
}

impl ObjectPayload {
    pub(crate) fn new(content: Bytes, level: Option<i32>, dictionary: Option<&Dictionary>) -> Self {
        let compressed =
            level.and_then(|level| match codec::compress(&content, level, dictionary) {
                Ok(compressed) => compressed.map(Bytes::from),
                Err(err) => {
                    tracing::debug!(error = %err, "cannot compress; sending the content raw");
                    None
                }
            });
        Self {
            content_len: content.len() as u64,
            content,
            compressed,
        }
    }
}

/// The object, if `content` is what `id` names.
pub(crate) fn verify(
    id: ObjectId,
    kind: ObjectKind,
    content: Vec<u8>,
) -> Result<Object, AttemptError> {
    if id.verify(kind, &content) {
        Ok(Object { id, kind, content })
    } else {
        Err(AttemptError::Corrupt(format!(
            "{} bytes of kind {kind} do not hash to the id asked for",
            content.len()
        )))
    }
}
