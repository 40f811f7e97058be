//! One request, from its decoded frame to its reply frames.
//!
//! Runs as its own task, so a connection has many requests in flight and
//! replies go out in completion order (each carries its request id).

use std::borrow::Cow;
use std::rc::Rc;

use stratum_wire::message::{
    BatchEnd, BatchItem, BatchStatus, CorruptReported, DeleteAck, DictionaryBytes,
    DictionaryInstalled, ErrorCode, GetOk, HasResult, IdList, PeerRole, Pong, PutAck, PutOutcome,
    RepairStarted, ReplicateAck, StatEntry, StatsReply, TopologyNode, TopologyReply,
};
use stratum_wire::{Codec, CodecError, Frame, Message, MessageRef, ObjectId, ObjectKind};

use super::connection::Conn;
use super::core::{Admission, Core};
use super::mesh::CoreMsg;
use super::metrics::{OpKind, Outcome};
use crate::replication::anti_entropy;
use crate::replication::quorum::{self, Write};
use crate::replication::read_repair;
use crate::shard::ops::{Done, Op, OpError};
use crate::store::fs::StoreFs;

/// A request's fields, copied out of the archive so the frame's payload can
/// be moved into the store without copying.
enum Request {
    Put {
        id: ObjectId,
        kind: ObjectKind,
    },
    Replicate {
        id: ObjectId,
        kind: ObjectKind,
        epoch: u64,
        /// A replayed hint (see `Op::PutUnlessDeleted`).
        hinted: bool,
    },
    Get {
        id: ObjectId,
    },
    Has {
        id: ObjectId,
    },
    Delete {
        id: ObjectId,
    },
    BatchGet {
        ids: Vec<ObjectId>,
    },
    Ping {
        nonce: u64,
    },
    Stats {
        all_shards: bool,
    },
    GetTopology,
    ListIds {
        after: Option<u64>,
        max_ids: u32,
    },
    /// Anti-entropy from a peer node: digests of ranges.
    SyncDigests(stratum_wire::message::SyncDigests),
    /// Anti-entropy from a peer node: the ids of one range.
    SyncList(stratum_wire::message::SyncList),
    /// Operator: start an anti-entropy pass now.
    Repair {
        all_shards: bool,
    },
    /// A consumer found what this node served under `id` wrong.
    ReportCorrupt {
        id: ObjectId,
    },
    /// A dictionary's bytes, for a client or peer that lacks it.
    GetDictionary {
        id: u32,
    },
    /// Operator: store a dictionary on every shard (payload: its bytes).
    InstallDictionary {
        id: u32,
        make_current: bool,
    },
    /// Well framed, but not something a node answers (a reply kind, a
    /// second hello, ...).
    Unexpected(&'static str),
}

impl Request {
    fn parse(frame: &Frame) -> Self {
        match frame.message() {
            MessageRef::Put(put) => Self::Put {
                id: put.id.get(),
                kind: put.kind.into(),
            },
            MessageRef::Replicate(replicate) => Self::Replicate {
                id: replicate.id.get(),
                kind: replicate.kind.into(),
                epoch: replicate.topology_epoch.to_native(),
                hinted: replicate.hinted,
            },
            MessageRef::Get(get) => Self::Get { id: get.id.get() },
            MessageRef::Has(has) => Self::Has { id: has.id.get() },
            MessageRef::Delete(delete) => Self::Delete {
                id: delete.id.get(),
            },
            MessageRef::BatchGet(batch) => Self::BatchGet {
                ids: batch.ids.iter().map(|id| id.get()).collect(),
            },
            MessageRef::Ping(ping) => Self::Ping {
                nonce: ping.nonce.to_native(),
            },
            MessageRef::Stats(stats) => Self::Stats {
                all_shards: stats.all_shards,
            },
            MessageRef::GetTopology(_) => Self::GetTopology,
            MessageRef::ListIds(list) => Self::ListIds {
                after: list.after.as_ref().map(|after| after.to_native()),
                max_ids: list.max_ids.to_native(),
            },
            MessageRef::Repair(repair) => Self::Repair {
                all_shards: repair.all_shards,
            },
            MessageRef::ReportCorrupt(report) => Self::ReportCorrupt {
                id: report.id.get(),
            },
            MessageRef::GetDictionary(get) => Self::GetDictionary {
                id: get.id.to_native(),
            },
            MessageRef::InstallDictionary(install) => Self::InstallDictionary {
                id: install.id.to_native(),
                make_current: install.make_current,
            },
            MessageRef::SyncDigests(_) | MessageRef::SyncList(_) => match frame.to_message() {
                Ok(Message::SyncDigests(request)) => Self::SyncDigests(request),
                Ok(Message::SyncList(request)) => Self::SyncList(request),
                _ => Self::Unexpected(frame.kind().name()),
            },
            other => Self::Unexpected(other.kind().name()),
        }
    }

    fn op_kind(&self) -> Option<OpKind> {
        Some(match self {
            Self::Put { .. } | Self::Replicate { .. } => OpKind::Put,
            Self::Get { .. } | Self::ReportCorrupt { .. } => OpKind::Get,
            Self::Has { .. } => OpKind::Has,
            Self::Delete { .. } => OpKind::Delete,
            Self::BatchGet { .. } => OpKind::BatchGet,
            Self::Ping { .. } => OpKind::Ping,
            Self::Stats { .. }
            | Self::Repair { .. }
            | Self::GetDictionary { .. }
            | Self::InstallDictionary { .. } => OpKind::Stats,
            Self::GetTopology => OpKind::Topology,
            Self::ListIds { .. } | Self::SyncDigests(_) | Self::SyncList(_) => OpKind::List,
            Self::Unexpected(_) => return None,
        })
    }
}

fn outcome_of(err: &OpError) -> Outcome {
    match err.code {
        ErrorCode::NotFound => Outcome::NotFound,
        ErrorCode::Busy => Outcome::Busy,
        ErrorCode::HashMismatch
        | ErrorCode::TooLarge
        | ErrorCode::BadRequest
        | ErrorCode::Unauthorized
        | ErrorCode::StaleTopology
        | ErrorCode::UnsupportedVersion => Outcome::Rejected,
        _ => Outcome::Error,
    }
}

/// Answers a request on the reader's own turn, with no task, when that
/// needs no I/O and no waiting: a ping, or a get of an object this core
/// owns and has cached (the common case for hot objects). Returns `false`
/// to take the general path.
pub fn answer_inline<F: StoreFs + 'static>(conn: &Conn<F>, frame: &Frame) -> bool {
    let started = crate::clock::now();
    let core = &conn.core;
    let (kind, answered) = match frame.message() {
        MessageRef::Get(get) => {
            let id = get.id.get();
            if core.owner_of(&id) != core.shard_id {
                return false;
            }
            let Some(object) = core.store.get_cached(&id) else {
                return false;
            };
            let Ok((codec, payload)) = conn.wire_form(&object) else {
                return false;
            };
            let ok = Message::GetOk(GetOk {
                id,
                kind: object.kind,
            });
            if !conn.try_reply_as(frame.request_id(), &ok, &payload, codec) {
                return false;
            }
            core.metrics.borrow_mut().bytes_out += payload.len() as u64;
            (OpKind::Get, true)
        }
        MessageRef::Ping(ping) => {
            let pong = Message::Pong(Pong {
                nonce: ping.nonce.to_native(),
            });
            (OpKind::Ping, conn.try_reply(frame.request_id(), &pong, &[]))
        }
        _ => return false,
    };
    if answered {
        core.metrics
            .borrow_mut()
            .request(kind, Outcome::Ok, crate::clock::since(started));
    }
    answered
}

/// Serves one request. `admission` is `None` when the shard was over its
/// limits as the request arrived: data requests are then answered `Busy` at
/// once; pings and stats are still answered (they are how operators look).
pub async fn handle<F: StoreFs + 'static>(
    conn: Rc<Conn<F>>,
    mut frame: Frame,
    admission: Option<Admission<F>>,
) {
    let started = crate::clock::now();
    let request_id = frame.request_id();
    let request = Request::parse(&frame);
    let core = Rc::clone(&conn.core);
    let Some(kind) = request.op_kind() else {
        if let Request::Unexpected(name) = request {
            let _ = conn
                .error(
                    request_id,
                    &OpError::new(
                        ErrorCode::BadRequest,
                        format!("a node does not accept {name} frames"),
                    ),
                )
                .await;
        }
        return;
    };
    let is_data = !matches!(
        request,
        Request::Ping { .. }
            | Request::Stats { .. }
            | Request::GetTopology
            | Request::GetDictionary { .. }
    );
    if is_data && admission.is_none() {
        let err = OpError::new(
            ErrorCode::Busy,
            format!(
                "shard {} is at its in-flight or buffered-bytes limit; retry later",
                core.shard_id
            ),
        );
        let _ = conn.error(request_id, &err).await;
        core.metrics
            .borrow_mut()
            .request(kind, Outcome::Busy, crate::clock::since(started));
        return;
    }

    let outcome = match request {
        Request::Put {
            id,
            kind: object_kind,
        } => {
            core.metrics.borrow_mut().bytes_in += frame.payload().len() as u64;
            // Checked here, once (the object size limit bounds the
            // inflating and hashing): a bad body is refused before any
            // replica spends a write on it, and nothing downstream hashes it
            // again.
            match core
                .store
                .verify_payload(id, object_kind, frame.codec(), frame.take_payload())
                .await
            {
                Err(err) => fail(&conn, request_id, err.into()).await,
                // Clients' writes are coordinated across the replicas; a
                // node sending put (rather than replicate) writes here only.
                Ok(object) => match coordinated(&conn, Write::Put(object)).await {
                    Ok(acked) => {
                        let ack = PutAck {
                            id,
                            outcome: if acked.changed {
                                PutOutcome::Stored
                            } else {
                                PutOutcome::AlreadyPresent
                            },
                            durable_replicas: acked.replicas,
                        };
                        let _ = conn.reply(request_id, &Message::PutAck(ack), &[]).await;
                        Outcome::Ok
                    }
                    Err(err) => fail(&conn, request_id, err).await,
                },
            }
        }
        Request::Replicate {
            id,
            kind: object_kind,
            epoch,
            hinted,
        } => {
            if epoch != core.topology_epoch() {
                // Stored anyway (an extra copy never hurts), but counted and
                // logged: the cluster is mid-rollout or misconfigured.
                core.replication
                    .stats
                    .borrow_mut()
                    .replicate_epoch_mismatches += 1;
                tracing::debug!(shard = core.shard_id, %id, theirs = epoch, ours = core.topology_epoch(), "replicate from another topology epoch");
            }
            if conn.peer.role != PeerRole::Node {
                let err = OpError::new(
                    ErrorCode::BadRequest,
                    "replicate is for nodes; clients send put",
                );
                fail(&conn, request_id, err).await
            } else {
                core.metrics.borrow_mut().bytes_in += frame.payload().len() as u64;
                let stored = match core
                    .store
                    .verify_payload(id, object_kind, frame.codec(), frame.take_payload())
                    .await
                {
                    Ok(object) if hinted => core.run_op(&id, Op::PutUnlessDeleted(object)).await,
                    Ok(object) => core.run_op(&id, Op::Put(object)).await,
                    Err(err) => Err(err.into()),
                };
                match stored {
                    Ok(Done::Put(outcome)) => {
                        let ack = ReplicateAck { id, outcome };
                        let _ = conn
                            .reply(request_id, &Message::ReplicateAck(ack), &[])
                            .await;
                        Outcome::Ok
                    }
                    Ok(_) => unexpected(&conn, request_id).await,
                    Err(err) => fail(&conn, request_id, err).await,
                }
            }
        }
        Request::Get { id } => match get_or_moved(&conn, id).await {
            Ok(Done::Get(Some(object))) => match conn.wire_form(&object) {
                Ok((codec, payload)) => {
                    core.metrics.borrow_mut().bytes_out += payload.len() as u64;
                    let ok = GetOk {
                        id,
                        kind: object.kind,
                    };
                    let _ = conn
                        .reply_as(request_id, &Message::GetOk(ok), &payload, codec)
                        .await;
                    Outcome::Ok
                }
                Err(err) => {
                    let err = undecodable(id, &err);
                    heal_if_corrupt(&conn, id, &err);
                    fail(&conn, request_id, err).await
                }
            },
            Ok(Done::Get(None)) => {
                let err = OpError::new(ErrorCode::NotFound, format!("{id} is not stored here"));
                let _ = conn.error(request_id, &err).await;
                if conn.peer.role == PeerRole::Client {
                    read_repair::maybe_repair(&core, id);
                }
                Outcome::NotFound
            }
            Ok(_) => unexpected(&conn, request_id).await,
            Err(err) => {
                heal_if_corrupt(&conn, id, &err);
                fail(&conn, request_id, err).await
            }
        },
        Request::Has { id } => match core.run_op(&id, Op::Has { id }).await {
            Ok(Done::Has(present)) => {
                let _ = conn
                    .reply(
                        request_id,
                        &Message::HasResult(HasResult { id, present }),
                        &[],
                    )
                    .await;
                Outcome::Ok
            }
            Ok(_) => unexpected(&conn, request_id).await,
            Err(err) => fail(&conn, request_id, err).await,
        },
        Request::Delete { id } => match coordinated(&conn, Write::Delete { id }).await {
            Ok(acked) => {
                let ack = DeleteAck {
                    id,
                    existed: acked.changed,
                };
                let _ = conn.reply(request_id, &Message::DeleteAck(ack), &[]).await;
                Outcome::Ok
            }
            Err(err) => fail(&conn, request_id, err).await,
        },
        Request::BatchGet { ids } => batch_get(&conn, request_id, ids).await,
        Request::Ping { nonce } => {
            let _ = conn
                .reply(request_id, &Message::Pong(Pong { nonce }), &[])
                .await;
            Outcome::Ok
        }
        Request::Stats { all_shards } => {
            stats(&conn, request_id, all_shards).await;
            Outcome::Ok
        }
        Request::GetTopology => {
            let _ = conn
                .reply(
                    request_id,
                    &Message::TopologyReply(topology_reply(&core)),
                    &[],
                )
                .await;
            Outcome::Ok
        }
        Request::ListIds { after, max_ids } => {
            let max_ids = (max_ids as usize).min(MAX_LIST_PAGE);
            match core.store.list_ids(after, max_ids).await {
                Ok((ids, next)) => {
                    let _ = conn
                        .reply(request_id, &Message::IdList(IdList { ids, next }), &[])
                        .await;
                    Outcome::Ok
                }
                Err(err) => fail(&conn, request_id, OpError::from(err)).await,
            }
        }
        Request::Repair { all_shards } => {
            core.replication.request_repair();
            let mut shards = 1;
            if all_shards {
                for shard in (0..core.config.shards).filter(|shard| *shard != core.shard_id) {
                    if core.mesh.send(shard, CoreMsg::Repair).await {
                        shards += 1;
                    }
                }
            }
            let started = Message::RepairStarted(RepairStarted { shards });
            let _ = conn.reply(request_id, &started, &[]).await;
            Outcome::Ok
        }
        Request::ReportCorrupt { id } => match core.run_op(&id, Op::Quarantine { id }).await {
            Ok(Done::Quarantined(quarantined)) => {
                if quarantined {
                    tracing::warn!(shard = core.shard_id, %id, peer = %conn.peer_addr, "a consumer's report confirmed: damaged record quarantined, repairing from a replica");
                    read_repair::maybe_repair(&core, id);
                }
                let reply = Message::CorruptReported(CorruptReported { id, quarantined });
                let _ = conn.reply(request_id, &reply, &[]).await;
                Outcome::Ok
            }
            Ok(_) => unexpected(&conn, request_id).await,
            Err(err) => fail(&conn, request_id, err).await,
        },
        Request::GetDictionary { id } => {
            let dictionary = core.store.dictionary_set().get(id).cloned();
            match dictionary {
                Some(dictionary) => {
                    let reply = Message::DictionaryBytes(DictionaryBytes { id });
                    let _ = conn.reply(request_id, &reply, dictionary.bytes()).await;
                    Outcome::Ok
                }
                None => {
                    let err = OpError::new(
                        ErrorCode::NotFound,
                        format!("dictionary {id:#010x} is not held here"),
                    );
                    fail(&conn, request_id, err).await
                }
            }
        }
        Request::InstallDictionary { id, make_current } => {
            let bytes = frame.take_payload();
            match install_dictionary(&core, id, bytes, make_current).await {
                Ok(shards) => {
                    let reply = Message::DictionaryInstalled(DictionaryInstalled { id, shards });
                    let _ = conn.reply(request_id, &reply, &[]).await;
                    Outcome::Ok
                }
                Err(err) => fail(&conn, request_id, err).await,
            }
        }
        Request::SyncDigests(_) | Request::SyncList(_) if conn.peer.role != PeerRole::Node => {
            let err = OpError::new(
                ErrorCode::BadRequest,
                "anti-entropy requests are for peer nodes only",
            );
            fail(&conn, request_id, err).await
        }
        Request::SyncDigests(request) => {
            let reply = anti_entropy::answer_digests(&core.store.holdings(), &request);
            match reply {
                Ok(reply) => {
                    let _ = conn
                        .reply(request_id, &Message::SyncDigestsReply(reply), &[])
                        .await;
                    Outcome::Ok
                }
                Err(err) => fail(&conn, request_id, err).await,
            }
        }
        Request::SyncList(request) => {
            let reply = anti_entropy::answer_list(&core.store.holdings(), &request);
            let _ = conn
                .reply(request_id, &Message::SyncListReply(reply), &[])
                .await;
            Outcome::Ok
        }
        Request::Unexpected(_) => return,
    };
    drop(admission);
    core.metrics
        .borrow_mut()
        .request(kind, outcome, crate::clock::since(started));
}

/// Stores a dictionary durably on every shard of the node (this core's and,
/// by message, every other's); the number of shards that hold it, or why
/// one does not.
async fn install_dictionary<F: StoreFs + 'static>(
    core: &Core<F>,
    id: u32,
    bytes: Vec<u8>,
    make_current: bool,
) -> Result<u16, OpError> {
    let bad = |detail: String| OpError::new(ErrorCode::BadRequest, detail);
    let max = crate::store::dictionaries::MAX_DICTIONARY_BYTES;
    if bytes.len() > max {
        return Err(bad(format!(
            "a dictionary of {} bytes exceeds {max}",
            bytes.len()
        )));
    }
    match stratum_wire::codec::Dictionary::new(bytes.clone()) {
        Ok(dictionary) if dictionary.id() == id => {}
        Ok(dictionary) => {
            return Err(bad(format!(
                "the bytes hold dictionary {:#010x}, not {id:#010x}",
                dictionary.id()
            )))
        }
        Err(err) => return Err(bad(err.to_string())),
    }
    let mut waiting = Vec::new();
    for shard in (0..core.config.shards).filter(|shard| *shard != core.shard_id) {
        let (done, result) = flume::bounded(1);
        let msg = CoreMsg::InstallDictionary {
            bytes: bytes.clone(),
            make_current,
            done,
        };
        if !core.mesh.send(shard, msg).await {
            return Err(OpError::new(
                ErrorCode::Internal,
                format!("shard {shard} is gone"),
            ));
        }
        waiting.push((shard, result));
    }
    core.store.install_dictionary(bytes, make_current).await?;
    let mut shards = 1;
    for (shard, result) in waiting {
        match result.recv_async().await {
            Ok(Ok(_)) => shards += 1,
            Ok(Err(err)) => {
                return Err(OpError::new(
                    err.code,
                    format!("shard {shard}: {}", err.detail),
                ))
            }
            Err(_) => {
                return Err(OpError::new(
                    ErrorCode::Internal,
                    format!("shard {shard} did not answer"),
                ))
            }
        }
    }
    tracing::info!(
        id = format_args!("{id:#010x}"),
        make_current,
        shards,
        "dictionary installed"
    );
    Ok(shards)
}

/// A stored record passed its CRC but does not inflate: damaged between the
/// check that let it in and the write (or by a bug). Served as corrupt.
fn undecodable(id: ObjectId, err: &CodecError) -> OpError {
    tracing::error!(%id, error = %err, "a stored payload does not inflate");
    OpError::new(
        ErrorCode::Corrupt,
        format!("{id}: the stored payload does not inflate: {err}"),
    )
}

/// A write from a client is coordinated across the replica set; from a
/// node (a coordinator elsewhere), it is applied here only.
async fn coordinated<F: StoreFs + 'static>(
    conn: &Conn<F>,
    write: Write,
) -> Result<quorum::Acked, OpError> {
    let core = &conn.core;
    if conn.peer.role == PeerRole::Client {
        return quorum::coordinate(core, write).await;
    }
    let changed = match write {
        // A node's put is a copy (a hand-off after a topology change),
        // never a client's write: it must not bring back an object this
        // shard deleted (R10), even if the delete landed after the sender
        // looked.
        Write::Put(object) => {
            let id = object.id();
            matches!(
                core.run_op(&id, Op::PutUnlessDeleted(object)).await?,
                Done::Put(PutOutcome::Stored)
            )
        }
        write => quorum::local(core, write).await?,
    };
    Ok(quorum::Acked {
        replicas: 1,
        changed,
    })
}

/// A client's read found this node's copy damaged (it was refused, never
/// served): a good copy is fetched from another replica and stored over it
/// (a put replaces a damaged record), now rather than at the next scrub.
fn heal_if_corrupt<F: StoreFs + 'static>(conn: &Conn<F>, id: ObjectId, err: &OpError) {
    if err.code == ErrorCode::Corrupt && conn.peer.role == PeerRole::Client {
        read_repair::maybe_repair(&conn.core, id);
    }
}

/// A get, run on the owning core; a client's get that misses here is
/// tried once more at the object's replicas under earlier topologies (a
/// move may not have reached this node yet).
async fn get_or_moved<F: StoreFs + 'static>(conn: &Conn<F>, id: ObjectId) -> Result<Done, OpError> {
    let found = conn.core.run_op(&id, Op::Get { id }).await?;
    if !matches!(found, Done::Get(None)) || conn.peer.role != PeerRole::Client {
        return Ok(found);
    }
    Ok(Done::Get(read_repair::fetch_moved(&conn.core, id).await))
}

async fn fail<F: StoreFs + 'static>(conn: &Conn<F>, request_id: u64, err: OpError) -> Outcome {
    let outcome = outcome_of(&err);
    if outcome == Outcome::Error {
        if let Some(held_back) = conn.core.log_limit.admit(failure_kind(err.code)) {
            tracing::warn!(shard = conn.core.shard_id, peer = %conn.peer_addr, code = ?err.code, detail = %err.detail, held_back, "request failed (held_back: like failures not logged since the last line)");
        }
    }
    let _ = conn.error(request_id, &err).await;
    outcome
}

/// The log limiter's kind for a failed request: one per error code.
fn failure_kind(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ReadOnly => "request failed: read_only",
        ErrorCode::ShardFailed => "request failed: shard_failed",
        ErrorCode::Unavailable => "request failed: unavailable",
        ErrorCode::Timeout => "request failed: timeout",
        ErrorCode::Corrupt => "request failed: corrupt",
        ErrorCode::Internal => "request failed: internal",
        _ => "request failed",
    }
}

/// A store op answered with the wrong kind of result: a bug, reported as
/// one rather than a panic.
async fn unexpected<F: StoreFs + 'static>(conn: &Conn<F>, request_id: u64) -> Outcome {
    let err = OpError::new(
        ErrorCode::Internal,
        "internal error: mismatched operation result",
    );
    tracing::error!(shard = conn.core.shard_id, "mismatched operation result");
    let _ = conn.error(request_id, &err).await;
    Outcome::Error
}

/// Streams one `BatchItem` per id as each read completes (up to
/// `read_parallelism` reads at once), then a `BatchEnd` with the counts.
async fn batch_get<F: StoreFs + 'static>(
    conn: &Rc<Conn<F>>,
    request_id: u64,
    ids: Vec<ObjectId>,
) -> Outcome {
    if ids.is_empty() {
        let err = OpError::new(ErrorCode::BadRequest, "batch_get with no ids");
        return fail(conn, request_id, err).await;
    }
    // Reads in flight at once: from the disk's measured properties.
    let slots = Rc::new(glommio::sync::Semaphore::new(u64::from(
        conn.core.config.read_parallelism,
    )));
    let mut tasks = Vec::with_capacity(ids.len());
    for (index, id) in ids.into_iter().enumerate() {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            break;
        };
        let conn = Rc::clone(conn);
        tasks.push(glommio::spawn_local(async move {
            let _permit = permit;
            let index = index as u32;
            let (status, object) = match get_or_moved(&conn, id).await {
                Ok(Done::Get(Some(object))) => (BatchStatus::Found(object.kind), Some(object)),
                Ok(Done::Get(None)) => {
                    // As for a single get: the client fails over by itself,
                    // and this replica copies the object in the background.
                    if conn.peer.role == PeerRole::Client {
                        read_repair::maybe_repair(&conn.core, id);
                    }
                    (BatchStatus::NotFound, None)
                }
                Ok(_) => (BatchStatus::Failed(ErrorCode::Internal), None),
                Err(err) => {
                    heal_if_corrupt(&conn, id, &err);
                    (BatchStatus::Failed(err.code), None)
                }
            };
            let (status, codec, payload) = match object.as_ref().map(|o| conn.wire_form(o)) {
                None => (status, Codec::Raw, Cow::Borrowed(&[][..])),
                Some(Ok((codec, payload))) => (status, codec, payload),
                Some(Err(err)) => {
                    let err = undecodable(id, &err);
                    heal_if_corrupt(&conn, id, &err);
                    (
                        BatchStatus::Failed(err.code),
                        Codec::Raw,
                        Cow::Borrowed(&[][..]),
                    )
                }
            };
            conn.core.metrics.borrow_mut().bytes_out += payload.len() as u64;
            let item = BatchItem { index, id, status };
            let _ = conn
                .reply_as(request_id, &Message::BatchItem(item), &payload, codec)
                .await;
            status
        }));
    }
    let mut end = BatchEnd {
        found: 0,
        not_found: 0,
        failed: 0,
    };
    for task in tasks {
        match task.await {
            BatchStatus::Found(_) => end.found += 1,
            BatchStatus::NotFound => end.not_found += 1,
            BatchStatus::Failed(_) => end.failed += 1,
        }
    }
    let outcome = if end.failed > 0 {
        Outcome::Error
    } else {
        Outcome::Ok
    };
    let _ = conn.reply(request_id, &Message::BatchEnd(end), &[]).await;
    outcome
}

/// Most ids in one `IdList` page: 16 Ki ids are 512 KiB of archive, half
/// the default frame message limit.
const MAX_LIST_PAGE: usize = 16 << 10;

fn topology_reply<F: StoreFs + 'static>(core: &Core<F>) -> TopologyReply {
    let placement = core.replication.placement();
    let topology = placement.topology();
    TopologyReply {
        epoch: topology.epoch(),
        replication_factor: topology.replication_factor(),
        write_quorum: topology.write_quorum(),
        nodes: topology
            .nodes()
            .iter()
            .map(|node| TopologyNode {
                id: node.id,
                address: node.address.clone(),
                shards: node.shards,
            })
            .collect(),
    }
}

async fn stats<F: StoreFs + 'static>(conn: &Rc<Conn<F>>, request_id: u64, all_shards: bool) {
    let core = &conn.core;
    let mut snapshots = vec![core.snapshot()];
    if all_shards {
        for shard in (0..core.config.shards).filter(|shard| *shard != core.shard_id) {
            let (reply, answer) = flume::bounded(1);
            if core.mesh.send(shard, CoreMsg::Metrics { reply }).await {
                if let Ok(snapshot) = answer.recv_async().await {
                    snapshots.push(snapshot);
                }
            }
        }
        snapshots.sort_by_key(|snapshot| snapshot.shard_id);
    }
    let entries = snapshots
        .iter()
        .flat_map(|snapshot| {
            snapshot
                .entries()
                .into_iter()
                .map(|(name, value)| StatEntry {
                    name,
                    shard_id: snapshot.shard_id,
                    value,
                })
        })
        .collect();
    let reply = StatsReply {
        node_id: core.config.node_id,
        shard_count: core.config.shards,
        topology_epoch: core.topology_epoch(),
        entries,
    };
    let _ = conn
        .reply(request_id, &Message::StatsReply(reply), &[])
        .await;
}
