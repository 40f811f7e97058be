//! The client compresses puts itself, reads compressed objects back, keeps
//! working with a node of the first release (raw payloads only), and learns
//! a node's maximum object size from its handshake.

mod common;

use common::{fast, metric, Cluster};
use stratum_client::{BlockingClient, ClientConfig, ClientError, ObjectKind};
use stratum_testkit::first_release::FirstReleaseNode;
use stratum_testkit::TestNode;

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
