//! Routing, pipelining, streaming batch-gets, topology refresh and
//! authentication, against real `stratum-node` processes.

mod common;

use std::time::Duration;

use common::{fast, metric, object, topology_text, Cluster};
use stratum_client::{BlockingClient, Client, ClientConfig, ClientError, ObjectId, PutOutcome};
use stratum_testkit::TestNode;

#[test]
fn requests_go_straight_to_the_owning_shard() {
    let cluster = Cluster::start(1, 2, 1);
    let client = cluster.client();
    let objects: Vec<_> = (0..200)
        .map(|seed| object(seed, 100 + seed as usize))
        .collect();
    for (id, kind, content) in &objects {
        let receipt = client.put(*kind, content.clone()).expect("put");
        assert_eq!(receipt.id, *id, "the client computes the id");
        assert_eq!(receipt.outcome, PutOutcome::Stored);
    }
    for (id, kind, content) in &objects {
        let got = client.get(*id).expect("get");
        assert_eq!((got.kind, &got.content), (*kind, content));
        assert!(client.has(*id).expect("has"));
    }
    assert!(client.delete(objects[0].0).expect("delete"));
    assert!(matches!(
        client.get(objects[0].0),
        Err(ClientError::NotFound { .. })
    ));
    assert!(!client.has(objects[0].0).expect("has after delete"));

    let node = &cluster.nodes[0];
    assert_eq!(
        metric(node, "stratum_misrouted_requests_total", ""),
        0.0,
        "a shard-aware client never needs forwarding"
    );
    for shard in 0..2 {
        let puts = metric(
            node,
            "stratum_requests_total",
            &format!("shard=\"{shard}\",op=\"put\",outcome=\"ok\""),
        );
        assert!(puts > 50.0, "shard {shard} served {puts} puts");
    }
}

#[test]
fn many_requests_in_flight_from_tokio() {
    let cluster = Cluster::start(1, 2, 1);
    let config = cluster.config();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = Client::connect(config).await.expect("connect");
        let tasks: Vec<_> = (0..400u64)
            .map(|seed| {
                let client = client.clone();
                tokio::spawn(async move {
                    let (id, kind, content) = object(10_000 + seed, 64);
                    client.put(kind, content.clone()).await.expect("put");
                    let got = client.get(id).await.expect("get");
                    assert_eq!(got.content, content);
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    // With 400 requesters and 2 connections, requests had to be pipelined.
    let node = &cluster.nodes[0];
    let opened = metric(
        node,
        "stratum_connection_events_total",
        "event=\"accepted\"",
    );
    assert!(opened <= 8.0, "{opened} connections for 400 requesters");
}

#[test]
fn batch_get_streams_objects_and_reports_missing_ids() {
    let cluster = Cluster::start(1, 2, 1);
    let client = cluster.client();
    let objects: Vec<_> = (0..300).map(|seed| object(20_000 + seed, 2000)).collect();
    for (_, kind, content) in &objects {
        client.put(*kind, content.clone()).expect("put");
    }
    let missing: Vec<ObjectId> = (0..5).map(|seed| object(90_000 + seed, 10).0).collect();
    let ids = objects
        .iter()
        .map(|(id, _, _)| *id)
        .chain(missing.iter().copied());
    let mut found = 0;
    let mut not_found = Vec::new();
    for (id, result) in client.get_many(ids) {
        match result {
            Ok(object) => {
                let (_, kind, content) = objects.iter().find(|(want, _, _)| *want == id).unwrap();
                assert_eq!((object.kind, &object.content), (*kind, content));
                found += 1;
            }
            Err(ClientError::NotFound { id: missing_id }) => {
                assert_eq!(missing_id, id);
                not_found.push(id)
            }
            Err(err) => panic!("{id}: {err}"),
        }
    }
    assert_eq!(found, 300);
    not_found.sort();
    let mut expected = missing.clone();
    expected.sort();
    assert_eq!(not_found, expected);
    assert_eq!(
        metric(&cluster.nodes[0], "stratum_misrouted_requests_total", ""),
        0.0
    );
}

#[test]
fn a_newer_topology_epoch_makes_the_client_refresh() {
    // The node runs epoch 2 with 2 shards; the client starts from an old
    // file (epoch 1) that says the node has 1 shard.
    let dir = tempfile::tempdir().unwrap();
    let node_topology = dir.path().join("node.toml");
    let client_topology = dir.path().join("client.toml");
    let mut node = TestNode::prepare(2, &["--topology", node_topology.to_str().unwrap()]);
    std::fs::write(
        &node_topology,
        topology_text(2, 1, &[(1, node.address(), 2)]),
    )
    .unwrap();
    std::fs::write(
        &client_topology,
        topology_text(1, 1, &[(1, node.address(), 1)]),
    )
    .unwrap();
    node.launch();

    let client =
        BlockingClient::connect(fast(ClientConfig::topology_file(&client_topology))).unwrap();
    assert_eq!(client.topology().epoch(), 1);
    let objects: Vec<_> = (0..100).map(|seed| object(30_000 + seed, 50)).collect();
    for (_, kind, content) in &objects {
        client.put(*kind, content.clone()).expect("put");
    }
    assert_eq!(client.topology().epoch(), 2, "refreshed from the node");
    assert_eq!(client.topology().nodes()[0].shards, 2);
    let misrouted = metric(&node, "stratum_misrouted_requests_total", "");
    assert!(
        misrouted <= 1.0,
        "{misrouted} misrouted: only the first request may be"
    );
    for (id, _, content) in &objects {
        assert_eq!(&client.get(*id).expect("get").content, content);
    }
}

#[test]
fn seeds_alone_are_enough_to_learn_the_cluster() {
    let node = TestNode::start(2, &[]);
    let client =
        BlockingClient::connect(fast(ClientConfig::seeds([node.addr(1).to_string()]))).unwrap();
    assert_eq!(client.topology().nodes().len(), 1);
    assert_eq!(client.topology().nodes()[0].shards, 2);
    let (id, kind, content) = object(40_000, 10);
    client.put(kind, content.clone()).expect("put");
    assert_eq!(client.get(id).expect("get").content, content);
}

#[test]
fn a_cluster_secret_is_proven_or_the_request_fails() {
    let mut node = TestNode::prepare(1, &[]);
    let secret_path = node.dir.join("secret");
    std::fs::write(&secret_path, "a-cluster-secret-of-enough-length-0123456789").unwrap();
    node.add_args(&["--secret-file", secret_path.to_str().unwrap()]);
    node.secret = Some(
        stratum_wire::auth::ClusterSecret::new(&std::fs::read(&secret_path).unwrap()).unwrap(),
    );
    node.launch();
    let topology = node.dir.join("topology.toml");
    std::fs::write(&topology, topology_text(1, 1, &[(1, node.address(), 1)])).unwrap();

    let mut config = fast(ClientConfig::topology_file(&topology));
    config.secret = node.secret.clone();
    let client = BlockingClient::connect(config).unwrap();
    let (id, kind, content) = object(50_000, 10);
    client.put(kind, content).expect("put with the secret");
    assert!(client.has(id).unwrap());

    let stranger = BlockingClient::connect(fast(ClientConfig::topology_file(&topology))).unwrap();
    match stranger.has(id) {
        Err(ClientError::Rejected {
            code: stratum_wire::message::ErrorCode::Unauthorized,
            detail,
            ..
        }) => assert!(detail.contains("secret"), "{detail}"),
        other => panic!("a client without the secret got {other:?}"),
    }
    // Its failed handshake is remembered: the next request fails at once
    // instead of reconnecting (no stampede on a peer that refuses us).
    let started = std::time::Instant::now();
    assert!(stranger.has(id).is_err());
    assert!(started.elapsed() < Duration::from_millis(50));
}
