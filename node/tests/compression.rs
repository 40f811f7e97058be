//! Compressed payloads end to end through a real node: stored as they
//! came, served compressed to peers that speak revision 2 and inflated to
//! those of the first release, refused when they would inflate past the
//! object size limit or do not inflate to their id, and replicated raw to
//! a peer of the first release.

use std::time::{Duration, Instant};

use stratum_testkit::first_release::FirstReleaseNode;
use stratum_testkit::node_proc::one_shard_cluster;
use stratum_testkit::{one_cluster_at_a_time, topology_text, tree_like, TestClient, TestNode};
use stratum_wire::codec::{self, DEFAULT_LEVEL};
use stratum_wire::message::{BatchGet, ErrorCode, Get, Has, Ping, Put, PutOutcome};
use stratum_wire::{Codec, Frame, Message, MessageRef, ObjectId, ObjectKind};

fn source_like(seed: u64, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len);
    let mut line = 0u64;
    while text.len() < len {
        line += 1;
        let words = [
            "fn", "let", "match", "impl", "struct", "pub", "use", "return",
        ];
        let word = words[((seed + line) % words.len() as u64) as usize];
        text.extend_from_slice(
            format!("    {word} item_{line} = compute({seed}, {line});\n").as_bytes(),
        );
    }
    text.truncate(len);
    text
}

fn compressed(content: &[u8]) -> Vec<u8> {
    codec::compress(content, DEFAULT_LEVEL, None)
        .expect("compresses")
        .expect("worth compressing")
}

fn put_as(client: &mut TestClient, id: ObjectId, payload: &[u8], codec: Codec) -> Frame {
    let put = Message::Put(Put {
        id,
        kind: ObjectKind::Blob,
    });
    client.call_as(&put, payload, codec).expect("put answered")
}

fn error_code(frame: &Frame) -> Option<ErrorCode> {
    match frame.to_message().ok()? {
        Message::Error(err) => Some(err.code),
        _ => None,
    }
}

fn get(client: &mut TestClient, id: ObjectId) -> Frame {
    client
        .call(&Message::Get(Get { id }), &[])
        .expect("get answered")
}

#[test]
fn compressed_puts_are_stored_compressed_and_served_to_old_and_new_clients() {
    let mut node = TestNode::start(1, &[]);
    let mut new = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    assert_eq!(new.greeting.revision, 2);
    assert!(new.greeting.accepts(Codec::Zstd));
    assert_eq!(new.greeting.max_object_bytes, Some(64 << 20));
    let mut old = node.client(0);
    assert_eq!(
        old.greeting.revision, 1,
        "a revision-1 hello gets a hello_ack"
    );

    let content = source_like(1, 200_000);
    let id = ObjectId::compute(ObjectKind::Blob, &content);
    let payload = compressed(&content);
    let ack = put_as(&mut new, id, &payload, Codec::Zstd);
    assert!(
        matches!(ack.message(), MessageRef::PutAck(ack) if ack.outcome == stratum_wire::message::ArchivedPutOutcome::Stored),
        "{:?}",
        ack.to_message()
    );
    // A raw put from an old client of another object, beside it.
    let raw = source_like(2, 50_000);
    let raw_id = ObjectId::compute(ObjectKind::Blob, &raw);
    let ack = old
        .call(
            &Message::Put(Put {
                id: raw_id,
                kind: ObjectKind::Blob,
            }),
            &raw,
        )
        .expect("raw put");
    assert!(matches!(ack.message(), MessageRef::PutAck(_)));

    let logical = node.metric("stratum_store_put_logical_bytes_total", "");
    let stored = node.metric("stratum_store_put_stored_bytes_total", "");
    assert_eq!(logical as usize, content.len() + raw.len());
    assert_eq!(stored as usize, payload.len() + raw.len());

    let check_served = |new: &mut TestClient, old: &mut TestClient| {
        let frame = get(new, id);
        assert_eq!(
            frame.codec(),
            Codec::Zstd,
            "served as stored to a new client"
        );
        let inflated = codec::decode(frame.codec(), frame.payload(), 1 << 30, &Default::default())
            .expect("inflates");
        assert!(id.verify(ObjectKind::Blob, &inflated));
        let frame = get(old, id);
        assert_eq!(frame.codec(), Codec::Raw, "inflated for an old client");
        assert_eq!(frame.payload(), content.as_slice());
        let frame = get(new, raw_id);
        assert_eq!(
            (frame.codec(), frame.payload()),
            (Codec::Raw, raw.as_slice())
        );
        // A batch to an old client: every item raw.
        let request = old.send(
            &Message::BatchGet(BatchGet {
                ids: vec![id, raw_id],
            }),
            &[],
        );
        let mut items = 0;
        loop {
            let frame = old.recv().expect("batch frame");
            assert_eq!(frame.request_id(), request);
            match frame.message() {
                MessageRef::BatchItem(item) => {
                    let want: &[u8] = if item.id.get() == id { &content } else { &raw };
                    assert_eq!((frame.codec(), frame.payload()), (Codec::Raw, want));
                    items += 1;
                }
                MessageRef::BatchEnd(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(items, 2);
    };
    // From the cache, then from disk after a restart (records replayed or
    // read through the checkpoint, then read back with their codec).
    check_served(&mut new, &mut old);
    node.sigterm();
    node.launch();
    let mut new = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let mut old = node.client(0);
    check_served(&mut new, &mut old);
}

#[test]
fn a_decompression_bomb_is_refused_without_being_allocated() {
    let node = TestNode::start(1, &["--max-object-bytes", "1048576"]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    assert_eq!(client.greeting.max_object_bytes, Some(1 << 20));
    let rss_before = rss_kib(node.pid());

    // 48 MiB of zeros in about 2 KiB: it declares its size, over the limit.
    let zeros = vec![0u8; 48 << 20];
    let bomb = compressed(&zeros);
    assert!(bomb.len() < 8192, "{} bytes", bomb.len());
    let id = ObjectId::compute(ObjectKind::Blob, &zeros);
    for _ in 0..20 {
        let frame = put_as(&mut client, id, &bomb, Codec::Zstd);
        assert_eq!(error_code(&frame), Some(ErrorCode::TooLarge));
    }

    // One that lies: its frame says 1,000 bytes, a second frame follows.
    let small = source_like(3, 1000);
    let mut liar = compressed(&small);
    liar.extend_from_slice(&bomb);
    let small_id = ObjectId::compute(ObjectKind::Blob, &small);
    for _ in 0..20 {
        let frame = put_as(&mut client, small_id, &liar, Codec::Zstd);
        assert_eq!(error_code(&frame), Some(ErrorCode::BadRequest));
    }
    drop(zeros);

    let grown = rss_kib(node.pid()).saturating_sub(rss_before);
    assert!(grown < 16 << 10, "node RSS grew by {grown} KiB");
    // The connection still serves, and nothing was stored.
    let pong = client
        .call(&Message::Ping(Ping { nonce: 9 }), &[])
        .expect("ping");
    assert!(matches!(pong.message(), MessageRef::Pong(_)));
    for id in [id, small_id] {
        let has = client.call(&Message::Has(Has { id }), &[]).expect("has");
        assert!(matches!(has.message(), MessageRef::HasResult(has) if !has.present));
    }
}

#[test]
fn corrupt_compressed_payloads_are_caught_at_ingress() {
    let node = TestNode::start(1, &[]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let content = source_like(4, 30_000);
    let id = ObjectId::compute(ObjectKind::Blob, &content);
    let payload = compressed(&content);
    // Damage anywhere (the frame CRC is recomputed by the sender, as a bug
    // before sending would): refused, whether zstd notices or only the hash.
    let mut codes = std::collections::BTreeSet::new();
    for at in (0..payload.len()).step_by(payload.len() / 16 + 1) {
        let mut damaged = payload.clone();
        damaged[at] ^= 0x04;
        let frame = put_as(&mut client, id, &damaged, Codec::Zstd);
        let code = error_code(&frame).expect("refused");
        assert!(
            matches!(code, ErrorCode::HashMismatch | ErrorCode::BadRequest),
            "{code:?}"
        );
        codes.insert(format!("{code:?}"));
    }
    // Another object's compressed content under this id: a hash mismatch.
    let other = compressed(&source_like(5, 30_000));
    let frame = put_as(&mut client, id, &other, Codec::Zstd);
    assert_eq!(error_code(&frame), Some(ErrorCode::HashMismatch));
    let has = client.call(&Message::Has(Has { id }), &[]).expect("has");
    assert!(matches!(has.message(), MessageRef::HasResult(has) if !has.present));
    // The genuine payload is then taken.
    let frame = put_as(&mut client, id, &payload, Codec::Zstd);
    assert!(
        matches!(frame.message(), MessageRef::PutAck(_)),
        "{codes:?}"
    );
}

#[test]
fn a_node_replicates_raw_to_a_peer_of_the_first_release() {
    let _serial = one_cluster_at_a_time();
    let old = FirstReleaseNode::start(2, 1);
    let mut node = TestNode::prepare(1, &[]);
    let topology = topology_text(
        1,
        2,
        2,
        &[(1, node.address(), 1), (2, old.addr.to_string(), 1)],
    );
    let path = TestNode::write_file(&node.dir, "topology.toml", &topology);
    node.add_args(&["--node-id", "1", "--topology", path.to_str().unwrap()]);
    node.launch();

    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let content = source_like(6, 100_000);
    let id = ObjectId::compute(ObjectKind::Blob, &content);
    let deadline = Instant::now() + Duration::from_secs(20);
    let acked = loop {
        let frame = put_as(&mut client, id, &compressed(&content), Codec::Zstd);
        match frame.message() {
            MessageRef::PutAck(ack) => break ack.durable_replicas,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("put never acknowledged: {other:?}"),
        }
    };
    assert_eq!(acked, 2, "both replicas, the old one included");
    assert_eq!(old.violations(), Vec::<String>::new());
    let (kind, stored) = old.object(&id).expect("the old node holds it");
    assert_eq!(
        (kind, stored.as_slice()),
        (ObjectKind::Blob, content.as_slice())
    );
    assert!(matches!(
        ack_outcome(&mut client, id, &content),
        Some(PutOutcome::AlreadyPresent)
    ));
}

fn ack_outcome(client: &mut TestClient, id: ObjectId, content: &[u8]) -> Option<PutOutcome> {
    let frame = put_as(client, id, &compressed(content), Codec::Zstd);
    match frame.to_message().ok()? {
        Message::PutAck(ack) => Some(ack.outcome),
        _ => None,
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A dictionary trained on tree-like objects (short, alike).
fn dictionary() -> stratum_wire::codec::Dictionary {
    let samples: Vec<Vec<u8>> = (0..500).map(|seed| tree_like(seed, 600)).collect();
    stratum_wire::codec::train(&samples, 32 << 10).expect("trains")
}

fn install(client: &mut TestClient, dictionary: &stratum_wire::codec::Dictionary) -> Frame {
    let install = Message::InstallDictionary(stratum_wire::message::InstallDictionary {
        id: dictionary.id(),
        make_current: true,
    });
    client
        .call(&install, dictionary.bytes())
        .expect("install answered")
}

/// `content` compressed with `dictionary`, as a client holding it sends it.
fn with_dictionary(content: &[u8], dictionary: stratum_wire::codec::Dictionary) -> Vec<u8> {
    let prepared = dictionary.for_compressing(DEFAULT_LEVEL).expect("prepares");
    codec::compress(content, DEFAULT_LEVEL, Some(&prepared))
        .expect("compresses")
        .expect("worth it")
}

#[test]
fn dictionaries_are_installed_durably_named_in_the_welcome_and_needed_by_what_uses_them() {
    let mut node = TestNode::start(2, &[]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let mut early = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    assert!(client.greeting.dictionaries.is_empty());
    let trained = dictionary();
    let id = trained.id();

    // Before the install: a payload naming it is refused, nothing stored.
    let content = tree_like(10_000, 900);
    let object_id = ObjectId::compute(ObjectKind::Blob, &content);
    let payload = with_dictionary(&content, dictionary());
    let frame = put_as(&mut client, object_id, &payload, Codec::Zstd);
    assert_eq!(
        error_code(&frame),
        Some(ErrorCode::BadRequest),
        "{:?}",
        frame.to_message()
    );

    // Bytes that are not the dictionary they claim: refused.
    let wrong = Message::InstallDictionary(stratum_wire::message::InstallDictionary {
        id: id ^ 1,
        make_current: true,
    });
    let frame = client.call(&wrong, trained.bytes()).expect("answered");
    assert_eq!(error_code(&frame), Some(ErrorCode::BadRequest));

    let frame = install(&mut client, &trained);
    assert!(
        matches!(frame.message(), MessageRef::DictionaryInstalled(done) if done.shards == 2),
        "{:?}",
        frame.to_message()
    );
    // Idempotent.
    assert!(matches!(
        install(&mut client, &trained).message(),
        MessageRef::DictionaryInstalled(_)
    ));

    // Every shard names it to new connections, and hands out its bytes.
    for shard in 0..2 {
        let mut fresh = TestClient::connect_revision(node.addr(shard), 2).expect("revision 2");
        assert_eq!(fresh.greeting.dictionaries, vec![id]);
        assert_eq!(fresh.greeting.dictionary, id);
        let get = Message::GetDictionary(stratum_wire::message::GetDictionary { id });
        let frame = fresh.call(&get, &[]).expect("get_dictionary");
        assert_eq!(frame.payload(), trained.bytes());
    }

    // Now the payload is taken, stored as it came, and served by form.
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let frame = put_as(&mut client, object_id, &payload, Codec::Zstd);
    assert!(
        matches!(frame.message(), MessageRef::PutAck(_)),
        "{:?}",
        frame.to_message()
    );
    let check = |node: &TestNode, client: &mut TestClient| {
        let frame = get(client, object_id);
        assert_eq!(codec::frame_dictionary(frame.payload()), Some(id));
        let mut old = node.client(0);
        let frame = get(&mut old, object_id);
        assert_eq!(
            (frame.codec(), frame.payload()),
            (Codec::Raw, content.as_slice())
        );
    };
    check(&node, &mut client);
    // A connection made before the install was not told of it: it gets
    // the object inflated.
    let frame = get(&mut early, object_id);
    assert_eq!(
        (frame.codec(), frame.payload()),
        (Codec::Raw, content.as_slice())
    );
    drop(early);

    // Durable: after a restart, and with every record scrubbed.
    drop(client);
    node.sigterm();
    node.launch();
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    assert_eq!(client.greeting.dictionaries, vec![id]);
    check(&node, &mut client);
}

#[test]
fn a_node_without_the_dictionary_is_sent_inflated_content_and_a_refill_copies_the_dictionary() {
    let _serial = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        dir.path(),
        "node.toml",
        "[replication]\nconnect_timeout_ms = 500\nping_interval_ms = 300\nrepair_interval_secs = 0\n",
    );
    let (mut nodes, _) = one_shard_cluster(dir.path(), 2, 2, &[config.clone(), config]);
    // Node 1 only holds the dictionary.
    let trained = dictionary();
    let mut client = TestClient::connect_revision(nodes[0].addr(0), 2).expect("revision 2");
    assert!(matches!(
        install(&mut client, &trained).message(),
        MessageRef::DictionaryInstalled(_)
    ));
    let objects: Vec<(ObjectId, Vec<u8>)> = (0..20u64)
        .map(|seed| {
            let content = tree_like(20_000 + seed, 800);
            (ObjectId::compute(ObjectKind::Blob, &content), content)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (id, content) in &objects {
        let payload = with_dictionary(content, dictionary());
        loop {
            let frame = put_as(&mut client, *id, &payload, Codec::Zstd);
            match frame.message() {
                MessageRef::PutAck(ack) => {
                    assert_eq!(ack.durable_replicas, 2);
                    break;
                }
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => panic!("put never acknowledged: {other:?}"),
            }
        }
    }
    // Node 2 got them inflated (it lacks the dictionary), and holds them.
    let logical: f64 = objects.iter().map(|(_, c)| c.len() as f64).sum();
    let stored = nodes[1].metric("stratum_store_put_stored_bytes_total", "");
    assert_eq!(
        stored, logical,
        "node 2 stores raw what it cannot verify compressed"
    );
    let stored_1 = nodes[0].metric("stratum_store_put_stored_bytes_total", "");
    assert!(
        stored_1 < logical / 2.0,
        "node 1 keeps the compressed form: {stored_1}"
    );

    // Node 2 is wiped and refilled from node 1: it copies the dictionary
    // first, and stores what node 1 sends as node 1 stores it.
    drop(client);
    nodes[1].sigterm();
    std::fs::remove_dir_all(nodes[1].dir.join("data")).unwrap();
    nodes[1].launch();
    let mut repair = nodes[1].client(0);
    let started = repair
        .call(
            &Message::Repair(stratum_wire::message::Repair { all_shards: true }),
            &[],
        )
        .expect("repair");
    assert!(matches!(started.message(), MessageRef::RepairStarted(_)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !objects.iter().all(|(id, _)| nodes[1].holds(*id)) {
        assert!(Instant::now() < deadline, "node 2 was never refilled");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fresh = TestClient::connect_revision(nodes[1].addr(0), 2).expect("revision 2");
    assert_eq!(fresh.greeting.dictionaries, vec![trained.id()]);
    let stored_2 = nodes[1].metric("stratum_store_put_stored_bytes_total", "");
    assert!(
        stored_2 < logical / 2.0,
        "refilled compressed: {stored_2} of {logical}"
    );
    let mut old = nodes[1].client(0);
    for (id, content) in &objects {
        let frame = get(&mut old, *id);
        assert_eq!(frame.payload(), content.as_slice());
    }
}

#[test]
fn a_report_about_an_intact_object_changes_nothing() {
    let node = TestNode::start(1, &[]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let content = source_like(9, 5000);
    let id = ObjectId::compute(ObjectKind::Blob, &content);
    let frame = put_as(&mut client, id, &compressed(&content), Codec::Zstd);
    assert!(matches!(frame.message(), MessageRef::PutAck(_)));
    for _ in 0..3 {
        let report = Message::ReportCorrupt(stratum_wire::message::ReportCorrupt { id });
        let frame = client.call(&report, &[]).expect("answered");
        assert!(
            matches!(frame.message(), MessageRef::CorruptReported(reply) if !reply.quarantined),
            "{:?}",
            frame.to_message()
        );
    }
    let frame = get(&mut client, id);
    assert!(matches!(frame.message(), MessageRef::GetOk(_)));
    assert_eq!(node.metric("stratum_scrub_findings_total", ""), 0.0);
}

#[test]
fn large_objects_are_checked_in_steps_raw_and_compressed() {
    let node = TestNode::start(1, &[]);
    let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
    let (_, _, random) = stratum_testkit::object(5, 3 << 20);
    let text = source_like(6, 3 << 20);
    for (content, codec) in [(&random, Codec::Raw), (&text, Codec::Zstd)] {
        let id = ObjectId::compute(ObjectKind::Blob, content);
        let payload = match codec {
            Codec::Raw => content.clone(),
            Codec::Zstd => compressed(content),
        };
        // Wrong content for the id: refused after the last step.
        let mut wrong = content.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        let wrong_payload = match codec {
            Codec::Raw => wrong,
            Codec::Zstd => compressed(&wrong),
        };
        let frame = put_as(&mut client, id, &wrong_payload, codec);
        assert_eq!(
            error_code(&frame),
            Some(ErrorCode::HashMismatch),
            "{codec:?}"
        );
        let frame = put_as(&mut client, id, &payload, codec);
        assert!(
            matches!(frame.message(), MessageRef::PutAck(_)),
            "{codec:?}"
        );
        let frame = get(&mut client, id);
        let got = codec::decode(frame.codec(), frame.payload(), 1 << 30, &Default::default())
            .expect("inflates");
        assert_eq!(got.as_ref(), content.as_slice());
    }
}
