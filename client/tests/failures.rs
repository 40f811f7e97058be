//! Failures a production driver must handle: a node down, a node that
//! hangs, a node (or network) that corrupts what it sends.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{fast, metric, object, topology_text, Cluster};
use stratum_client::{
    AttemptError, BlockingClient, ClientConfig, ClientError, ObjectId, ObjectKind,
};
use stratum_testkit::node_proc::{damage_first_record, first_segment};
use stratum_testkit::{TestClient, TestNode};
use stratum_wire::message::Put;
use stratum_wire::{FrameDecoder, FrameEncoder, FrameLimits, Message, MessageKind};

/// Stores an object on exactly one node: speaking as a peer node, the put
/// is applied there and not replicated, so tests decide which replica holds
/// what.
fn place(node: &TestNode, shard: u16, kind: ObjectKind, content: &[u8]) {
    let mut raw = node.node_client(shard);
    let id = ObjectId::compute(kind, content);
    let reply = raw
        .call(&Message::Put(Put { id, kind }), content)
        .expect("put");
    assert_eq!(reply.kind(), MessageKind::PutAck);
}

/// An object with its replicas: (node id, shard) in preference order.
fn replicas(client: &BlockingClient, id: &ObjectId) -> Vec<(u32, u16)> {
    client
        .async_client()
        .replicas_of(id)
        .iter()
        .map(|peer| (peer.node_id, peer.shard))
        .collect()
}

#[test]
fn reads_fail_over_when_a_replica_is_down_or_lacks_the_object() {
    let mut cluster = Cluster::start(2, 1, 2);
    let client = cluster.client();
    let (id, kind, content) = object(1, 500);
    let order = replicas(&client, &id);
    assert_eq!(order.len(), 2);
    let (primary, secondary) = (order[0].0, order[1].0);

    // Only the second replica has it: not-found on the first fails over.
    place(cluster.node(secondary), 0, kind, &content);
    assert_eq!(
        client.get(id).expect("failover on not-found").content,
        content
    );
    assert!(client.has(id).unwrap());

    // The preferred replica is killed: reads still succeed.
    cluster.node(primary).sigkill();
    assert_eq!(
        client.get(id).expect("failover on a dead node").content,
        content
    );
    let batch: Vec<_> = client.get_many([id]).collect();
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch[0].1.as_ref().expect("batch failover").content,
        content
    );

    // Both down: a prompt, typed error naming each replica.
    cluster.node(secondary).sigkill();
    let started = Instant::now();
    match client.get(id) {
        Err(ClientError::Unavailable { attempts }) => {
            let nodes: Vec<u32> = attempts
                .iter()
                .map(|attempt| attempt.peer.node_id)
                .collect();
            assert!(
                nodes.contains(&primary) && nodes.contains(&secondary),
                "{attempts:?}"
            );
            assert!(attempts.iter().all(|attempt| matches!(
                attempt.error,
                AttemptError::Connect { .. } | AttemptError::ConnectionLost(_)
            )));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The node comes back: the client reconnects by itself.
    cluster.node(secondary).launch();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(id) {
            Ok(object) => {
                assert_eq!(object.content, content);
                break;
            }
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("no reconnect: {err}"),
        }
    }
}

#[test]
fn a_hung_node_costs_one_timeout_then_reads_move_on() {
    let mut cluster = Cluster::start(2, 1, 2);
    let client = cluster.client();
    let (id, kind, content) = object(2, 300);
    let order = replicas(&client, &id);
    let (primary, secondary) = (order[0].0, order[1].0);
    place(cluster.node(primary), 0, kind, &content);
    place(cluster.node(secondary), 0, kind, &content);
    assert_eq!(client.get(id).unwrap().content, content);

    cluster.node(primary).pause(true);
    let started = Instant::now();
    let got = client.get(id);
    let took = started.elapsed();
    cluster.node(primary).pause(false);
    assert_eq!(got.expect("served by the other replica").content, content);
    // One request timeout (800 ms in these tests) plus the second replica.
    assert!(
        took >= Duration::from_millis(700),
        "{took:?}: the hung node was not asked first?"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn requests_to_a_healthy_node_are_not_held_up_by_many_answers_due_from_a_hung_one() {
    // One I/O thread serves both nodes' connections. With many answers due
    // the thread sleeps without asking to be woken for new requests (it
    // expects an answer any moment); a hung node must not make that sleep
    // hold a request to a healthy node back.
    let mut cluster = Cluster::start(2, 1, 1);
    let mut config = cluster.config();
    config.io_threads = 1;
    let client = BlockingClient::connect(config).expect("client connects");
    let on_node = |client: &BlockingClient, node: u32| {
        (0..)
            .map(|seed| object(seed, 200))
            .find(|(id, _, _)| replicas(client, id)[0].0 == node)
            .unwrap()
    };
    let (hung_id, kind, content) = on_node(&client, 1);
    client.put(kind, content).unwrap();
    let (healthy_id, kind, content) = on_node(&client, 2);
    client.put(kind, content.clone()).unwrap();

    cluster.node(1).pause(true);
    let timings = std::thread::scope(|scope| {
        let stuck: Vec<_> = (0..24)
            .map(|_| {
                let client = client.clone();
                scope.spawn(move || client.get(hung_id))
            })
            .collect();
        // Let the 24 requests reach the hung node and stay due.
        std::thread::sleep(Duration::from_millis(200));
        let timings: Vec<Duration> = (0..20)
            .map(|_| {
                let started = Instant::now();
                let got = client.get(healthy_id).expect("the healthy node answers");
                assert_eq!(got.content, content);
                started.elapsed()
            })
            .collect();
        for request in stuck {
            let result = request.join().expect("no panic");
            assert!(
                matches!(result, Err(ClientError::Timeout { .. })),
                "{result:?}"
            );
        }
        timings
    });
    cluster.node(1).pause(false);
    let slowest = timings.iter().max().copied().unwrap_or_default();
    // The request timeout is 800 ms here; a healthy round trip is well under
    // a millisecond. Generous for a loaded machine, far from a stall.
    assert!(
        slowest < Duration::from_millis(300),
        "a get from the healthy node took {slowest:?} while the other node hung"
    );
}

#[test]
fn a_hung_lone_node_is_a_timeout() {
    let cluster = Cluster::start(1, 1, 1);
    let client = cluster.client();
    let (id, kind, content) = object(3, 10);
    client.put(kind, content).unwrap();
    cluster.nodes[0].pause(true);
    let result = client.get(id);
    cluster.nodes[0].pause(false);
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
}

#[test]
fn a_put_over_the_nodes_object_limit_is_too_large_not_unavailable() {
    let cluster = Cluster::start_with(1, 1, 1, &["--max-object-bytes", "1048576"]);
    let client = cluster.client();
    let big = vec![7u8; 2 << 20];
    let result = client.put(ObjectKind::Blob, big);
    assert!(
        matches!(
            &result,
            Err(ClientError::Rejected {
                code: stratum_wire::message::ErrorCode::TooLarge,
                ..
            })
        ),
        "{result:?}"
    );
    // The connection survived: the next put on it works at once.
    let (id, kind, content) = object(4, 1000);
    client.put(kind, content).unwrap();
    assert!(client.get(id).is_ok());
}

/// A proxy in front of a node that rewrites the node's answers with `edit`
/// (frame by frame, re-encoded, so the frame checksum is valid: a lying
/// node, not a noisy wire) or, with `raw_flip`, flips a byte of the stream.
fn proxy(upstream: std::net::SocketAddr, raw_flip: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(node) = TcpStream::connect(upstream) else {
                return;
            };
            let (mut client_read, mut node_write) =
                (client.try_clone().unwrap(), node.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_read, &mut node_write);
            });
            let (mut node_read, mut client_write) = (node, client);
            std::thread::spawn(move || {
                let limits = FrameLimits::default();
                let mut decoder = FrameDecoder::new(limits);
                let mut encoder = FrameEncoder::new(limits);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let Ok(n) = node_read.read(&mut buf) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let mut input = &buf[..n];
                    while !input.is_empty() {
                        let Ok(Some(frame)) = decoder.decode(&mut input) else {
                            continue;
                        };
                        let mut payload = frame.payload().to_vec();
                        let mut out = Vec::new();
                        let message = frame.to_message().unwrap();
                        let edit =
                            matches!(frame.kind(), MessageKind::GetOk | MessageKind::BatchItem)
                                && !payload.is_empty();
                        if edit && !raw_flip {
                            // Past a zstd frame's header, so a compressed
                            // payload may still inflate: to the wrong
                            // content.
                            let at = payload.len() / 2;
                            payload[at] ^= 0x40;
                        }
                        encoder
                            .encode_as(
                                &mut out,
                                frame.request_id(),
                                &message,
                                &payload,
                                frame.codec(),
                            )
                            .unwrap();
                        if edit && raw_flip {
                            let last = out.len() - 1;
                            out[last] ^= 0x40;
                        }
                        if client_write.write_all(&out).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

fn cluster_client_of(node: &TestNode) -> BlockingClient {
    BlockingClient::connect(fast(ClientConfig::seeds([node.address()]))).unwrap()
}

fn client_through_proxy(port: u16, dir: &std::path::Path) -> BlockingClient {
    let topology = dir.join(format!("proxy-{port}.toml"));
    std::fs::write(
        &topology,
        topology_text(1, 1, &[(1, format!("127.0.0.1:{port}"), 1)]),
    )
    .unwrap();
    BlockingClient::connect(fast(ClientConfig::topology_file(&topology))).unwrap()
}

#[test]
fn a_corrupted_answer_is_detected_never_returned() {
    let node = TestNode::start(1, &[]);
    let (id, kind, content) = object(4, 1000);
    place(&node, 0, kind, &content);
    // And one stored compressed, as a client of this release puts it.
    let text = b"a line of source that compresses\n".repeat(60);
    let compressed_id = cluster_client_of(&node)
        .put(ObjectKind::Blob, text)
        .expect("put")
        .id;
    // 1,000 raw bytes, and 1,980 that compress to a few dozen.
    let stored = metric(&node, "stratum_store_put_stored_bytes_total", "");
    assert!(stored < 1000.0 + 200.0, "{stored}");
    let dir = tempfile::tempdir().unwrap();

    // A node that sends wrong bytes under a valid frame: the id check,
    // after inflating for a compressed object.
    let liar = client_through_proxy(proxy(node.addr(0), false), dir.path());
    for id in [id, compressed_id] {
        match liar.get(id) {
            Err(ClientError::Corrupt { id: bad, .. }) => assert_eq!(bad, id),
            other => panic!("expected corrupt, got {other:?}"),
        }
        let batch: Vec<_> = liar.get_many([id]).collect();
        assert!(
            matches!(batch[0].1, Err(ClientError::Corrupt { .. })),
            "{:?}",
            batch[0].1
        );
    }

    // A flipped bit on the wire: the frame checksum.
    let noisy = client_through_proxy(proxy(node.addr(0), true), dir.path());
    match noisy.get(id) {
        Err(ClientError::Protocol { .. }) | Err(ClientError::Unavailable { .. }) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }

    // Straight to the node, the object is fine.
    let direct = TestClient::connect(node.addr(0), None).map(|_| ());
    assert!(direct.is_ok());
}

/// Wrong bytes under a matching CRC (a bug between the hash check and the
/// write): the node's read serves them (it checks only the CRC), the
/// client's hash refuses them and reports it, and the node quarantines
/// the record and repairs it from the other replica.
#[test]
fn a_corrupt_object_a_client_reports_is_quarantined_and_repaired() {
    let mut cluster = Cluster::start(2, 1, 2);
    let mut config = cluster.config();
    config.compression_level = None; // a raw record, edited below
    let client = BlockingClient::connect(config).expect("client");
    let (id, kind, content) = object(77, 4000);
    client.put(kind, content.clone()).expect("put");
    let direct = || client.async_client().clone();
    let get_from = |node: u32| futures_lite::future::block_on(direct().get_from(node, id));
    // Write quorum 1: node 2's copy may land a moment after the ack.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_from(2).map(|object| object.content).ok().as_ref() != Some(&content) {
        assert!(Instant::now() < deadline, "node 2 never got its copy");
        std::thread::sleep(Duration::from_millis(50));
    }

    let node = cluster.node(2);
    node.sigterm();
    damage_first_record(&first_segment(node), true);
    node.launch();

    assert!(
        matches!(get_from(2), Err(ClientError::Corrupt { .. })),
        "the client's hash refuses what the node's CRC let through"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(object) = get_from(2) {
            assert_eq!(object.content, content);
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never repaired its copy");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(cluster.node(2), "stratum_scrub_findings_total", ""),
        1.0
    );
}
