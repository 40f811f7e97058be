//! The real `stratum-node` binary on 127.0.0.1: every operation, pipelining,
//! misrouted requests, restart.

mod common;

use std::collections::HashMap;

use common::object;
use stratum_testkit::TestNode;
use stratum_wire::message::*;
use stratum_wire::placement::shard_of;
use stratum_wire::{Message, ObjectId};

fn put_msg(id: ObjectId, kind: stratum_wire::ObjectKind) -> Message {
    Message::Put(Put { id, kind })
}

fn error_code(frame: &stratum_wire::Frame) -> Option<ErrorCode> {
    match frame.to_message().unwrap() {
        Message::Error(err) => Some(err.code),
        _ => None,
    }
}

#[test]
fn every_operation_through_the_real_server() {
    let node = TestNode::start(2, &[]);
    let (id, kind, content) = object(1, 3000);
    let owner = shard_of(&id, 2);
    let mut client = node.client(owner);
    assert_eq!(client.ack.shard_count, 2);
    assert_eq!(client.ack.shard_id, owner);
    assert_eq!(client.ack.topology_epoch, 1);
    assert_eq!(client.ack.auth_challenge, None);

    // put, then put again (deduplicated)
    let reply = client.call(&put_msg(id, kind), &content).unwrap();
    let Message::PutAck(ack) = reply.to_message().unwrap() else {
        panic!("{reply:?}")
    };
    assert_eq!((ack.id, ack.outcome), (id, PutOutcome::Stored));
    let reply = client.call(&put_msg(id, kind), &content).unwrap();
    let Message::PutAck(ack) = reply.to_message().unwrap() else {
        panic!("{reply:?}")
    };
    assert_eq!(ack.outcome, PutOutcome::AlreadyPresent);

    // get
    let reply = client.call(&Message::Get(Get { id }), &[]).unwrap();
    let Message::GetOk(ok) = reply.to_message().unwrap() else {
        panic!("{reply:?}")
    };
    assert_eq!((ok.id, ok.kind), (id, kind));
    assert_eq!(reply.payload(), &content[..]);
    assert!(id.verify(kind, reply.payload()));

    // has
    let reply = client.call(&Message::Has(Has { id }), &[]).unwrap();
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::HasResult(HasResult { present: true, .. })
    ));

    // a body that does not hash to its id is refused and not stored
    let (other_id, other_kind, other_content) = object(2, 100);
    let mut wrong = other_content.clone();
    wrong[0] ^= 1;
    let reply = client.call(&put_msg(other_id, other_kind), &wrong).unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::HashMismatch));
    let reply = client
        .call(&Message::Get(Get { id: other_id }), &[])
        .unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::NotFound));

    // batch get: found, missing, and an id owned by the other shard
    let (far_id, far_kind, far_content) = (3..)
        .map(|seed| object(seed, 500))
        .find(|(id, _, _)| shard_of(id, 2) != owner)
        .unwrap();
    node.client(1 - owner)
        .call(&put_msg(far_id, far_kind), &far_content)
        .unwrap();
    let ids = vec![id, other_id, far_id];
    let request = client.send(&Message::BatchGet(BatchGet { ids: ids.clone() }), &[]);
    let mut seen = HashMap::new();
    let end = loop {
        let frame = client.recv().unwrap();
        assert_eq!(frame.request_id(), request);
        match frame.to_message().unwrap() {
            Message::BatchItem(item) => {
                assert_eq!(ids[item.index as usize], item.id);
                seen.insert(item.id, (item.status, frame.payload().to_vec()));
            }
            Message::BatchEnd(end) => break end,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((end.found, end.not_found, end.failed), (2, 1, 0));
    assert_eq!(seen[&id], (BatchStatus::Found(kind), content.clone()));
    assert_eq!(seen[&far_id], (BatchStatus::Found(far_kind), far_content));
    assert_eq!(seen[&other_id].0, BatchStatus::NotFound);
    // an empty batch is a bad request, not a hang
    let reply = client
        .call(&Message::BatchGet(BatchGet { ids: vec![] }), &[])
        .unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::BadRequest));

    // delete, then the object is gone
    let reply = client.call(&Message::Delete(Delete { id }), &[]).unwrap();
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::DeleteAck(DeleteAck { existed: true, .. })
    ));
    let reply = client.call(&Message::Get(Get { id }), &[]).unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::NotFound));
    let reply = client.call(&Message::Delete(Delete { id }), &[]).unwrap();
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::DeleteAck(DeleteAck { existed: false, .. })
    ));

    // ping and stats (all shards)
    let reply = client
        .call(&Message::Ping(Ping { nonce: 99 }), &[])
        .unwrap();
    assert_eq!(
        reply.to_message().unwrap(),
        Message::Pong(Pong { nonce: 99 })
    );
    let reply = client
        .call(&Message::Stats(Stats { all_shards: true }), &[])
        .unwrap();
    let Message::StatsReply(stats) = reply.to_message().unwrap() else {
        panic!()
    };
    assert_eq!((stats.node_id, stats.shard_count), (1, 2));
    let objects: u64 = stats
        .entries
        .iter()
        .filter(|entry| entry.name == "store.objects")
        .map(|entry| entry.value)
        .sum();
    assert_eq!(objects, 1, "only far_id is left");
    let shards: std::collections::BTreeSet<u16> =
        stats.entries.iter().map(|entry| entry.shard_id).collect();
    assert_eq!(shards.len(), 2);

    // a reply kind sent as a request is refused, and the connection lives on
    let reply = client.call(&Message::Pong(Pong { nonce: 1 }), &[]).unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::BadRequest));
    let reply = client.call(&Message::Ping(Ping { nonce: 2 }), &[]).unwrap();
    assert_eq!(
        reply.to_message().unwrap(),
        Message::Pong(Pong { nonce: 2 })
    );

    // a replicate from a client is refused (nodes only)
    let (rid, rkind, rcontent) = object(50, 10);
    let replicate = Message::Replicate(Replicate {
        id: rid,
        kind: rkind,
        coordinator: 1,
        topology_epoch: 1,
        hinted: false,
    });
    let reply = client.call(&replicate, &rcontent).unwrap();
    assert_eq!(error_code(&reply), Some(ErrorCode::BadRequest));

    // the admin endpoint
    let (status, body) = node.admin_get("/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok: 2 shards"), "{body}");
    assert!(node.metric("stratum_requests_total", "op=\"put\",outcome=\"ok\"") >= 2.0);
    assert!(node.metric("stratum_requests_total", "op=\"put\",outcome=\"rejected\"") >= 1.0);
    assert_eq!(node.admin_get("/nope").0, 404);
}

#[test]
fn hundreds_of_requests_in_flight_on_one_connection() {
    let node = TestNode::start(2, &[]);
    let objects: Vec<_> = (0..600)
        .map(|seed| object(1000 + seed, 200 + seed as usize))
        .collect();
    // One connection to shard 0: half the objects belong to shard 1 and are
    // forwarded, which also reorders replies.
    let mut client = node.client(0);
    let mut pending = HashMap::new();
    for (id, kind, content) in &objects {
        let request = client.send(&put_msg(*id, *kind), content);
        pending.insert(request, *id);
    }
    let mut out_of_order = 0;
    let mut last = 0;
    while !pending.is_empty() {
        let frame = client.recv().unwrap();
        if frame.request_id() < last {
            out_of_order += 1;
        }
        last = frame.request_id();
        let id = pending
            .remove(&frame.request_id())
            .expect("reply to a pending request");
        match frame.to_message().unwrap() {
            Message::PutAck(ack) => assert_eq!(ack.id, id),
            other => panic!("{other:?}"),
        }
    }
    let mut pending = HashMap::new();
    for (index, (id, _, _)) in objects.iter().enumerate() {
        pending.insert(client.send(&Message::Get(Get { id: *id }), &[]), index);
    }
    while !pending.is_empty() {
        let frame = client.recv().unwrap();
        let index = pending.remove(&frame.request_id()).unwrap();
        let (id, kind, content) = &objects[index];
        let Message::GetOk(ok) = frame.to_message().unwrap() else {
            panic!()
        };
        assert_eq!((ok.id, ok.kind), (*id, *kind));
        assert_eq!(frame.payload(), &content[..]);
    }
    eprintln!("replies out of order: {out_of_order}");
    // Misrouting is visible: shard 0 forwarded shard 1's objects.
    let expected = objects
        .iter()
        .filter(|(id, _, _)| shard_of(id, 2) == 1)
        .count() as f64;
    assert_eq!(
        node.metric("stratum_misrouted_requests_total", "shard=\"0\""),
        2.0 * expected
    );
    assert_eq!(
        node.metric("stratum_forwarded_requests_total", "shard=\"1\""),
        2.0 * expected
    );
}

#[test]
fn direct_routing_forwards_nothing_and_restart_keeps_everything() {
    let mut node = TestNode::start(2, &[]);
    let objects: Vec<_> = (0..100).map(|seed| object(5000 + seed, 64)).collect();
    let mut clients = [node.client(0), node.client(1)];
    for (id, kind, content) in &objects {
        let reply = clients[usize::from(shard_of(id, 2))]
            .call(&put_msg(*id, *kind), content)
            .unwrap();
        assert!(matches!(reply.to_message().unwrap(), Message::PutAck(_)));
    }
    assert_eq!(node.metric("stratum_misrouted_requests_total", ""), 0.0);
    drop(clients);

    let status = node.sigterm();
    assert!(status.success(), "exit {status:?}; log:\n{}", node.log());
    assert!(node.log().contains("shard closed cleanly"));
    node.launch();
    let mut client = node.client(1);
    for (id, kind, content) in &objects {
        let reply = client.call(&Message::Get(Get { id: *id }), &[]).unwrap();
        let Message::GetOk(ok) = reply.to_message().unwrap() else {
            panic!("{id} lost: {reply:?}")
        };
        assert_eq!(ok.kind, *kind);
        assert_eq!(reply.payload(), &content[..]);
    }
}

#[test]
fn the_node_compacts_checkpoints_and_scrubs_on_its_own() {
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[store]\nsegment_bytes = 1048576\n\
         [maintenance]\ncheckpoint_interval_secs = 1\ncompaction_interval_secs = 1\n\
         compaction_dead_fraction = 0.5\nscrub_interval_secs = 1\nscrub_bytes_per_sec = 104857600\n",
    );
    let node = TestNode::start(
        1,
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-object-bytes",
            "65536",
        ],
    );
    let mut client = node.client(0);
    // ~3 MiB of objects over several 1 MiB segments, then delete 90% of them.
    let objects: Vec<_> = (0..300).map(|seed| object(70_000 + seed, 10_000)).collect();
    for (id, kind, content) in &objects {
        client.call(&put_msg(*id, *kind), content).unwrap();
    }
    let segments_before = node.metric("stratum_store_segments", "");
    for (id, _, _) in objects.iter().skip(30) {
        client
            .call(&Message::Delete(Delete { id: *id }), &[])
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.metric("stratum_store_segments", "") >= segments_before
        || node.metric("stratum_scrubs_total", "") < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction or scrub within 30 s ({segments_before} segments before); log:\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(node.metric("stratum_scrub_findings_total", ""), 0.0);
    // What survived compaction is intact.
    for (id, kind, content) in objects.iter().take(30) {
        let reply = client.call(&Message::Get(Get { id: *id }), &[]).unwrap();
        let Message::GetOk(ok) = reply.to_message().unwrap() else {
            panic!("{id} lost")
        };
        assert_eq!((ok.kind, reply.payload()), (*kind, &content[..]));
    }
    assert!(node.log().contains("index checkpoint written") || node.log().contains("compaction"));
}
