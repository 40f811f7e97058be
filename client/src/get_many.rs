//! Batch reads that stream: what a frontend assembling a pack uses.
//!
//! Ids are grouped by the node and shard that own them and one `BatchGet`
//! per group goes out at once; every batch answers into one channel, so
//! objects are yielded as soon as any node sends them. An id a replica
//! cannot serve (not found, corrupt, failed, or its batch broke) is asked
//! of the next replica in a new batch. The caller's polling drives all of
//! it: nothing is spawned, so it works on any executor.

use std::collections::{HashMap, HashSet, VecDeque};

use stratum_wire::message::{ArchivedBatchStatus, BatchGet, BatchItem, BatchStatus};
use stratum_wire::{Message, MessageKind, MessageRef, ObjectId, ObjectKind};

use crate::client::{node_error, unexpected, Client, Object};
use crate::error::{AttemptError, ClientError, Peer, ReplicaAttempt};
use crate::io::{Event, PeerInfo, Route};

/// Most ids in one `BatchGet` frame (32 bytes each: 128 KiB, well inside
/// the frame limit, and small enough to spread over a node's cores).
const MAX_BATCH_IDS: usize = 4096;

struct Batch {
    route: Route,
    /// Which replica (index in the object's replica list) this batch asked.
    replica: usize,
    ids: Vec<ObjectId>,
    answered: Vec<bool>,
}

/// The stream of a [`Client::get_many`]: each distinct id comes out exactly
/// once, as its object or its error.
pub struct GetMany {
    client: Client,
    events: flume::Receiver<Event>,
    sender: flume::Sender<Event>,
    batches: HashMap<u64, Batch>,
    ready: VecDeque<(ObjectId, Result<Object, ClientError>)>,
    failures: HashMap<ObjectId, Vec<ReplicaAttempt>>,
    retry: Vec<(ObjectId, usize)>,
}

impl GetMany {
    pub(crate) fn start(client: Client, ids: Vec<ObjectId>) -> Self {
        let (sender, events) = flume::unbounded();
        let mut stream = Self {
            client,
            events,
            sender,
            batches: HashMap::new(),
            ready: VecDeque::new(),
            failures: HashMap::new(),
            retry: Vec::new(),
        };
        let mut seen = HashSet::with_capacity(ids.len());
        let first: Vec<(ObjectId, usize)> = ids
            .into_iter()
            .filter(|id| seen.insert(*id))
            .map(|id| (id, 0))
            .collect();
        stream.dispatch(first);
        stream
    }

    /// The next object (or an id's error); `None` when every id is done.
    pub async fn next(&mut self) -> Option<(ObjectId, Result<Object, ClientError>)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.batches.is_empty() {
                return None;
            }
            // `self.sender` keeps the channel open, so this only ends with
            // an event.
            let event = self.events.recv_async().await.ok()?;
            self.on_event(event);
        }
    }

    /// Ids still waiting for an answer.
    pub fn pending(&self) -> usize {
        self.batches
            .values()
            .map(|batch| batch.answered.iter().filter(|done| !**done).count())
            .sum()
    }

    /// Sends each (id, replica index) to that replica, grouped into batches.
    fn dispatch(&mut self, work: Vec<(ObjectId, usize)>) {
        let routing = self.client.inner.view.routing();
        // Keyed by (thread, slot, replica index): a route's identity.
        let mut groups: HashMap<(usize, usize, usize), (Route, Vec<ObjectId>)> = HashMap::new();
        for (id, replica) in work {
            match routing.replicas(&id).nth(replica) {
                Some(route) => {
                    groups
                        .entry((route.thread(), route.slot(), replica))
                        .or_insert_with(|| (route.clone(), Vec::new()))
                        .1
                        .push(id);
                }
                None => self.give_up(id),
            }
        }
        for ((_, _, replica), (route, ids)) in groups {
            for chunk in ids.chunks(MAX_BATCH_IDS) {
                let message = Message::BatchGet(BatchGet {
                    ids: chunk.to_vec(),
                });
                match self.client.inner.send(
                    &route,
                    &message,
                    bytes::Bytes::new(),
                    true,
                    self.sender.clone(),
                ) {
                    Ok(request_id) => {
                        self.batches.insert(
                            request_id,
                            Batch {
                                route: route.clone(),
                                replica,
                                ids: chunk.to_vec(),
                                answered: vec![false; chunk.len()],
                            },
                        );
                    }
                    Err(error) => {
                        for id in chunk {
                            self.failed(*id, route.peer(), replica, error.clone());
                        }
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Frame { mut frame, peer } => {
                self.client.inner.observe(&peer);
                let request_id = frame.request_id();
                match frame.kind() {
                    MessageKind::BatchItem => self.on_item(request_id, &peer, &mut frame),
                    MessageKind::BatchEnd => self.end_batch(request_id, || {
                        AttemptError::Protocol("the batch ended without this id".into())
                    }),
                    MessageKind::Error => {
                        let error = node_error(&frame);
                        self.end_batch(request_id, || error.clone());
                    }
                    _ => {
                        let error = unexpected(frame.message());
                        self.end_batch(request_id, || error.clone());
                    }
                }
            }
            Event::Failed { request_id, error } => self.end_batch(request_id, || error.clone()),
        }
        if !self.retry.is_empty() {
            let work = std::mem::take(&mut self.retry);
            self.dispatch(work);
        }
    }

    fn on_item(&mut self, request_id: u64, peer: &PeerInfo, frame: &mut stratum_wire::Frame) {
        let MessageRef::BatchItem(item) = frame.message() else {
            return;
        };
        let index = item.index.to_native() as usize;
        let id = item.id.get();
        let status = match item.status {
            ArchivedBatchStatus::Found(kind) => Ok(ObjectKind::from(kind)),
            ArchivedBatchStatus::NotFound => Err(AttemptError::NotFound),
            ArchivedBatchStatus::Failed(_) => Err(batch_failure(frame)),
        };
        let Some(batch) = self.batches.get_mut(&request_id) else {
            return;
        };
        if batch.ids.get(index) != Some(&id) || batch.answered[index] {
            // A node answering for an id it was not asked (or twice) breaks
            // the protocol; the rest of its batch is not trusted either.
            let error =
                AttemptError::Protocol(format!("batch item {index} does not match the request"));
            return self.end_batch(request_id, || error.clone());
        }
        batch.answered[index] = true;
        let (route, replica) = (batch.route.clone(), batch.replica);
        let result =
            status.and_then(|kind| self.client.inner.verify_from(&route, peer, id, kind, frame));
        match result {
            Ok(object) => {
                self.failures.remove(&id);
                self.ready.push_back((id, Ok(object)));
            }
            Err(error) => self.failed(id, route.peer(), replica, error),
        }
    }

    /// A batch is over: ids it never answered fail with `error()`.
    fn end_batch(&mut self, request_id: u64, error: impl Fn() -> AttemptError) {
        let Some(batch) = self.batches.remove(&request_id) else {
            return;
        };
        for (id, answered) in batch.ids.iter().zip(&batch.answered) {
            if !answered {
                self.failed(*id, batch.route.peer(), batch.replica, error());
            }
        }
    }

    /// One replica could not serve `id`: try the next one.
    fn failed(&mut self, id: ObjectId, peer: &Peer, replica: usize, error: AttemptError) {
        self.failures.entry(id).or_default().push(ReplicaAttempt {
            peer: peer.clone(),
            error,
        });
        self.retry.push((id, replica + 1));
    }

    /// No replica left for `id`.
    fn give_up(&mut self, id: ObjectId) {
        let attempts = self.failures.remove(&id).unwrap_or_default();
        self.ready
            .push_back((id, Err(ClientError::from_attempts(Some(id), attempts))));
    }
}

/// The error code of a failed batch item (rare: decoded in full).
fn batch_failure(frame: &stratum_wire::Frame) -> AttemptError {
    match frame.to_message() {
        Ok(Message::BatchItem(BatchItem {
            status: BatchStatus::Failed(code),
            ..
        })) => AttemptError::Node {
            code,
            detail: "failed inside a batch".into(),
        },
        Ok(_) => AttemptError::Protocol("batch item changed while decoding".into()),
        Err(err) => AttemptError::protocol(&err),
    }
}
