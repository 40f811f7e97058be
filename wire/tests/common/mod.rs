//! Proptest strategies for every protocol message, shared by the tests.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use stratum_wire::message::*;
use stratum_wire::{ObjectId, ObjectKind};

pub fn object_id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 32]>().prop_map(ObjectId::from_bytes)
}

pub fn object_kind() -> impl Strategy<Value = ObjectKind> {
    prop::sample::select(ObjectKind::ALL.to_vec())
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::NotFound,
        ErrorCode::Busy,
        ErrorCode::HashMismatch,
        ErrorCode::TooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::StaleTopology,
        ErrorCode::Unavailable,
        ErrorCode::ReadOnly,
        ErrorCode::ShardFailed,
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Timeout,
        ErrorCode::Corrupt,
        ErrorCode::Internal,
    ])
}

fn put_outcome() -> impl Strategy<Value = PutOutcome> {
    prop_oneof![Just(PutOutcome::Stored), Just(PutOutcome::AlreadyPresent)]
}

fn timed_id() -> impl Strategy<Value = TimedId> {
    (object_id(), any::<u64>()).prop_map(|(id, at)| TimedId { id, at })
}

fn span() -> impl Strategy<Value = RingSpan> {
    (any::<u64>(), any::<u64>()).prop_map(|(start, end)| RingSpan { start, end })
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

/// Any message of protocol version 1.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u16>(),
            prop_oneof![Just(PeerRole::Client), Just(PeerRole::Node)],
            any::<Option<u32>>(),
            any::<u64>(),
            text(),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(protocol_version, role, node_id, topology_epoch, agent, auth_nonce)| {
                    Message::Hello(Hello {
                        protocol_version,
                        role,
                        node_id,
                        topology_epoch,
                        agent,
                        auth_nonce,
                    })
                }
            ),
        (
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            any::<Option<[u8; 32]>>()
        )
            .prop_map(
                |(
                    protocol_version,
                    node_id,
                    shard_id,
                    shard_count,
                    topology_epoch,
                    auth_challenge,
                )| {
                    Message::HelloAck(HelloAck {
                        protocol_version,
                        node_id,
                        shard_id,
                        shard_count,
                        topology_epoch,
                        auth_challenge,
                    })
                }
            ),
        any::<[u8; 32]>().prop_map(|mac| Message::AuthProof(AuthProof { mac })),
        any::<[u8; 32]>().prop_map(|mac| Message::AuthOk(AuthOk { mac })),
        (object_id(), object_kind()).prop_map(|(id, kind)| Message::Put(Put { id, kind })),
        (object_id(), put_outcome(), any::<u8>()).prop_map(|(id, outcome, durable_replicas)| {
            Message::PutAck(PutAck {
                id,
                outcome,
                durable_replicas,
            })
        }),
        object_id().prop_map(|id| Message::Get(Get { id })),
        (object_id(), object_kind()).prop_map(|(id, kind)| Message::GetOk(GetOk { id, kind })),
        object_id().prop_map(|id| Message::Has(Has { id })),
        (object_id(), any::<bool>())
            .prop_map(|(id, present)| Message::HasResult(HasResult { id, present })),
        object_id().prop_map(|id| Message::Delete(Delete { id })),
        (object_id(), any::<bool>())
            .prop_map(|(id, existed)| Message::DeleteAck(DeleteAck { id, existed })),
        vec(object_id(), 0..64).prop_map(|ids| Message::BatchGet(BatchGet { ids })),
        (
            any::<u32>(),
            object_id(),
            prop_oneof![
                object_kind().prop_map(BatchStatus::Found),
                Just(BatchStatus::NotFound),
                error_code().prop_map(BatchStatus::Failed),
            ]
        )
            .prop_map(|(index, id, status)| Message::BatchItem(BatchItem {
                index,
                id,
                status
            })),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(found, not_found, failed)| {
            Message::BatchEnd(BatchEnd {
                found,
                not_found,
                failed,
            })
        }),
        (
            object_id(),
            object_kind(),
            any::<u32>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(id, kind, coordinator, topology_epoch, hinted)| {
                Message::Replicate(Replicate {
                    id,
                    kind,
                    coordinator,
                    topology_epoch,
                    hinted,
                })
            }),
        (object_id(), put_outcome())
            .prop_map(|(id, outcome)| Message::ReplicateAck(ReplicateAck { id, outcome })),
        any::<u64>().prop_map(|nonce| Message::Ping(Ping { nonce })),
        any::<u64>().prop_map(|nonce| Message::Pong(Pong { nonce })),
        any::<bool>().prop_map(|all_shards| Message::Stats(Stats { all_shards })),
        any::<u64>().prop_map(|known_epoch| Message::GetTopology(GetTopology { known_epoch })),
        (
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            vec(
                (any::<u32>(), text(), any::<u16>()).prop_map(|(id, address, shards)| {
                    TopologyNode {
                        id,
                        address,
                        shards,
                    }
                }),
                0..4
            )
        )
            .prop_map(|(epoch, replication_factor, write_quorum, nodes)| {
                Message::TopologyReply(TopologyReply {
                    epoch,
                    replication_factor,
                    write_quorum,
                    nodes,
                })
            }),
        (proptest::option::of(any::<u64>()), any::<u32>())
            .prop_map(|(after, max_ids)| Message::ListIds(ListIds { after, max_ids })),
        (vec(object_id(), 0..16), proptest::option::of(any::<u64>()))
            .prop_map(|(ids, next)| Message::IdList(IdList { ids, next })),
        (any::<u16>(), any::<u16>(), vec(span(), 0..8)).prop_map(
            |(requester_shards, requester_shard, ranges)| Message::SyncDigests(SyncDigests {
                requester_shards,
                requester_shard,
                ranges,
            })
        ),
        vec(
            (any::<u32>(), any::<[u8; 16]>()).prop_map(|(count, xor)| SpanDigest { count, xor }),
            0..8
        )
        .prop_map(|digests| Message::SyncDigestsReply(SyncDigestsReply { digests })),
        (any::<u16>(), any::<u16>(), span(), any::<u32>()).prop_map(
            |(requester_shards, requester_shard, range, max)| Message::SyncList(SyncList {
                requester_shards,
                requester_shard,
                range,
                max,
            })
        ),
        (
            vec(object_id(), 0..8),
            vec(timed_id(), 0..8),
            vec(timed_id(), 0..8),
            any::<bool>()
        )
            .prop_map(
                |(live, deleted, revived, truncated)| Message::SyncListReply(SyncListReply {
                    live,
                    deleted,
                    revived,
                    truncated,
                })
            ),
        any::<bool>().prop_map(|all_shards| Message::Repair(Repair { all_shards })),
        any::<u16>().prop_map(|shards| Message::RepairStarted(RepairStarted { shards })),
        (
            any::<(u16, u32, u16, u16, u64)>(),
            any::<Option<[u8; 32]>>(),
            any::<u64>(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..4),
            any::<u32>()
        )
            .prop_map(
                |(
                    (protocol_version, node_id, shard_id, shard_count, topology_epoch),
                    auth_challenge,
                    max_object_bytes,
                    codecs,
                    dictionaries,
                    dictionary,
                )| {
                    Message::Welcome(Welcome {
                        protocol_version,
                        node_id,
                        shard_id,
                        shard_count,
                        topology_epoch,
                        auth_challenge,
                        max_object_bytes,
                        codecs,
                        dictionaries,
                        dictionary,
                    })
                }
            ),
        any::<u32>().prop_map(|id| Message::GetDictionary(GetDictionary { id })),
        object_id().prop_map(|id| Message::ReportCorrupt(ReportCorrupt { id })),
        (object_id(), any::<bool>()).prop_map(|(id, quarantined)| Message::CorruptReported(
            CorruptReported { id, quarantined }
        )),
        any::<u32>().prop_map(|id| Message::DictionaryBytes(DictionaryBytes { id })),
        (any::<u32>(), any::<bool>()).prop_map(|(id, make_current)| {
            Message::InstallDictionary(InstallDictionary { id, make_current })
        }),
        (any::<u32>(), any::<u16>()).prop_map(|(id, shards)| Message::DictionaryInstalled(
            DictionaryInstalled { id, shards }
        )),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            vec(
                (text(), any::<u16>(), any::<u64>()).prop_map(|(name, shard_id, value)| {
                    StatEntry {
                        name,
                        shard_id,
                        value,
                    }
                }),
                0..8
            )
        )
            .prop_map(|(node_id, shard_count, topology_epoch, entries)| {
                Message::StatsReply(StatsReply {
                    node_id,
                    shard_count,
                    topology_epoch,
                    entries,
                })
            }),
        (
            error_code(),
            text(),
            any::<u64>(),
            vec(
                (any::<u32>(), error_code(), text()).prop_map(|(node_id, code, detail)| {
                    ReplicaFailure {
                        node_id,
                        code,
                        detail,
                    }
                }),
                0..4
            )
        )
            .prop_map(|(code, detail, topology_epoch, replicas)| {
                Message::Error(ErrorReply {
                    code,
                    detail,
                    topology_epoch,
                    replicas,
                })
            }),
    ]
}

/// A message with a payload that its kind allows (empty for the rest).
pub fn message_with_payload() -> impl Strategy<Value = (Message, Vec<u8>)> {
    (message(), vec(any::<u8>(), 0..2048)).prop_map(|(message, payload)| {
        if message.kind().carries_payload() {
            (message, payload)
        } else {
            (message, Vec::new())
        }
    })
}
