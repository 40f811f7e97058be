//! The client compresses puts itself, reads compressed objects back, keeps
//! working with a node of the first release (raw payloads only), and learns
//! a node's maximum object size from its handshake.

mod common;

use common::{fast, metric, Cluster};
use stratum_client::{BlockingClient, ClientConfig, ClientError, ObjectKind};
use stratum_testkit::first_release::FirstReleaseNode;
use stratum_testkit::{tree_like, TestNode};

fn source_text(seed: u64, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len);
    let mut line = 0u64;
    while text.len() < len {
        line += 1;
        text.extend_from_slice(
            format!(
                "    let value_{line} = compute_{}({seed}, {line});\n",
                line % 7
            )
            .as_bytes(),
        );
    }
    text.truncate(len);
    text
}

#[test]
fn puts_travel_and_rest_compressed_and_read_back_whole() {
    let cluster = Cluster::start(1, 1, 1);
    let client = cluster.client();
    let node = &cluster.nodes[0];
    let texts: Vec<Vec<u8>> = (0..50).map(|seed| source_text(seed, 20_000)).collect();
    for text in &texts {
        client.put(ObjectKind::Blob, text.clone()).expect("put");
    }
    let logical = metric(node, "stratum_store_put_logical_bytes_total", "");
    let stored = metric(node, "stratum_store_put_stored_bytes_total", "");
    let received = metric(node, "stratum_object_bytes_received_total", "");
    assert_eq!(logical as usize, 50 * 20_000);
    assert!(stored < logical * 0.3, "stored {stored} of {logical}");
    assert_eq!(received, stored, "the wire carried the compressed bytes");
    let traffic = client.traffic();
    assert_eq!(traffic.content_bytes_sent, 50 * 20_000);
    assert_eq!(traffic.payload_bytes_sent as f64, stored);
    for text in &texts {
        let id = stratum_client::ObjectId::compute(ObjectKind::Blob, text);
        let object = client.get(id).expect("get");
        assert_eq!(&object.content, text);
    }
    let sent = metric(node, "stratum_object_bytes_sent_total", "");
    assert!(sent < logical * 0.3, "gets carried {sent} bytes");
    let traffic = client.traffic();
    assert_eq!(traffic.content_bytes_received, 50 * 20_000);
    assert_eq!(traffic.payload_bytes_received as f64, sent);

    // With compression off, content goes raw.
    let mut config = cluster.config();
    config.compression_level = None;
    let raw_client = BlockingClient::connect(config).expect("client");
    let text = source_text(99, 20_000);
    raw_client.put(ObjectKind::Blob, text.clone()).expect("put");
    let stored_after = metric(node, "stratum_store_put_stored_bytes_total", "");
    assert_eq!(stored_after - stored, 20_000.0);
}

#[test]
fn a_node_of_the_first_release_is_sent_raw_content() {
    let old = FirstReleaseNode::start(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.toml");
    std::fs::write(
        &topology,
        stratum_testkit::topology_text(1, 1, 1, &[(1, old.addr.to_string(), 1)]),
    )
    .unwrap();
    let client =
        BlockingClient::connect(fast(ClientConfig::topology_file(&topology))).expect("client");
    let text = source_text(7, 30_000);
    let receipt = client.put(ObjectKind::Tree, text.clone()).expect("put");
    assert_eq!(old.violations(), Vec::<String>::new());
    assert_eq!(
        old.object(&receipt.id),
        Some((ObjectKind::Tree, text.clone()))
    );
    assert_eq!(client.get(receipt.id).expect("get").content, text);
    let stored_there = old.insert(ObjectKind::Blob, source_text(8, 5000));
    assert_eq!(
        client.get(stored_there).expect("get").content,
        source_text(8, 5000)
    );
}

#[test]
fn a_put_over_the_nodes_limit_is_refused_without_being_sent() {
    let node = TestNode::start(1, &["--max-object-bytes", "1048576"]);
    let client =
        BlockingClient::connect(fast(ClientConfig::seeds([node.address()]))).expect("client");
    // Random-looking, so compression cannot shrink it under the limit.
    let (_, _, big) = common::object(1, 2 << 20);
    // The first connection's handshake tells the client the limit.
    client
        .put(ObjectKind::Blob, vec![1u8; 10])
        .expect("small put");
    match client.put(ObjectKind::Blob, big) {
        Err(ClientError::Rejected { code, detail, .. }) => {
            assert_eq!(code, stratum_wire::message::ErrorCode::TooLarge);
            assert!(detail.contains("1048576"), "{detail}");
        }
        other => panic!("expected too_large, got {other:?}"),
    }
    assert_eq!(
        metric(&node, "stratum_object_bytes_received_total", ""),
        10.0,
        "the big object never left the client"
    );
}

#[test]
fn clients_compress_with_the_dictionary_the_nodes_name() {
    let cluster = Cluster::start(1, 2, 1);
    let node = &cluster.nodes[0];
    let before = cluster.client();
    let samples: Vec<Vec<u8>> = (0..500).map(|seed| tree_like(seed, 700)).collect();
    let dictionary = stratum_wire::codec::train(&samples, 32 << 10).expect("trains");
    let installed = before
        .install_dictionary(dictionary.bytes(), true)
        .expect("a dictionary");
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].result.as_ref().ok(), Some(&2), "{installed:?}");

    let stored = || metric(node, "stratum_store_put_stored_bytes_total", "");
    let put_all = |client: &BlockingClient, seeds: std::ops::Range<u64>| {
        let start = stored();
        let objects: Vec<_> = seeds
            .map(|seed| {
                let content = tree_like(seed, 700);
                (
                    client
                        .put(ObjectKind::Tree, content.clone())
                        .expect("put")
                        .id,
                    content,
                )
            })
            .collect();
        (objects, stored() - start)
    };
    // A client connecting after the install fetches the dictionary in its
    // handshake and compresses with it.
    let (plain, _) = put_all(&before, 1000..1100);
    let after = cluster.client();
    let (small, small_bytes) = put_all(&after, 2000..2100);
    let without: usize = small
        .iter()
        .map(|(_, content)| {
            stratum_wire::codec::compress(content, 3, None)
                .expect("compress")
                .map_or(content.len(), |compressed| compressed.len())
        })
        .sum();
    assert!(
        small_bytes < without as f64 * 0.6,
        "with the dictionary {small_bytes} bytes, without it {without}"
    );
    // Each reads everything back: the early client gets inflated content
    // for what names a dictionary it was never told of.
    for client in [&before, &after] {
        for (id, content) in plain.iter().chain(&small) {
            assert_eq!(&client.get(*id).expect("get").content, content);
        }
    }
}

#[test]
fn the_stratum_command_trains_and_installs_a_dictionary() {
    let node = TestNode::start(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(status.status.success(), "git {args:?}: {status:?}");
    };
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q"]);
    for round in 0..20u64 {
        for file in 0..5u64 {
            std::fs::write(
                repo.join(format!("file_{file}.txt")),
                source_text(round * 10 + file, 3000),
            )
            .unwrap();
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", &format!("round {round}")]);
    }
    let stratum = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stratum"))
            .args(args)
            .output()
            .expect("stratum runs")
    };
    let dict = dir.path().join("repo.dict");
    let trained = stratum(&[
        "dictionary",
        "train",
        repo.to_str().unwrap(),
        "-o",
        dict.to_str().unwrap(),
        "--max-bytes",
        "16384",
    ]);
    assert!(trained.status.success(), "{trained:?}");
    assert!(std::fs::metadata(&dict).unwrap().len() <= 16384);
    let address = node.address();
    let installed = stratum(&[
        "--node",
        &address,
        "dictionary",
        "install",
        dict.to_str().unwrap(),
    ]);
    assert!(installed.status.success(), "{installed:?}");
    assert!(String::from_utf8_lossy(&installed.stdout).contains("held by 1 shard(s)"));
    let imported = stratum(&["--node", &address, "import-git", repo.to_str().unwrap()]);
    assert!(imported.status.success(), "{imported:?}");
    let logical = metric(&node, "stratum_store_put_logical_bytes_total", "");
    let stored = metric(&node, "stratum_store_put_stored_bytes_total", "");
    assert!(stored < logical * 0.5, "{stored} of {logical}");
    let bad = stratum(&["--node", &address, "dictionary", "install", "/nonexistent"]);
    assert_eq!(bad.status.code(), Some(6), "a local failure");
}
