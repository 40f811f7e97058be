//! Helpers for client tests: real nodes on 127.0.0.1 and clients of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use stratum_client::{BlockingClient, ClientConfig};
use stratum_testkit::TestNode;

pub use stratum_testkit::object;

/// A cluster of `count` nodes with `shards` shards each, described by one
/// topology file (epoch `epoch`, replication factor `rf`, write quorum 1)
/// that every node and the client share.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub topology: PathBuf,
    _dir: tempfile::TempDir,
}

/// A topology file with write quorum 1 (see `stratum_testkit::topology_text`).
pub fn topology_text(epoch: u64, rf: u8, nodes: &[(u32, String, u16)]) -> String {
    stratum_testkit::topology_text(epoch, rf, 1, nodes)
}

impl Cluster {
    pub fn start(count: u32, shards: u16, rf: u8) -> Self {
        Self::start_with(count, shards, rf, &[])
    }

    /// As `start`, with `extra` flags for every node.
    pub fn start_with(count: u32, shards: u16, rf: u8, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.toml");
        let mut nodes: Vec<TestNode> = (1..=count)
            .map(|id| {
                let id = id.to_string();
                let mut args = vec!["--topology", topology.to_str().unwrap(), "--node-id", &id];
                args.extend_from_slice(extra);
                TestNode::prepare(shards, &args)
            })
            .collect();
        let specs: Vec<(u32, String, u16)> = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (index as u32 + 1, node.address(), shards))
            .collect();
        std::fs::write(&topology, topology_text(1, rf, &specs)).unwrap();
        for node in &mut nodes {
            node.launch();
        }
        Self {
            nodes,
            topology,
            _dir: dir,
        }
    }

    pub fn config(&self) -> ClientConfig {
        fast(ClientConfig::topology_file(&self.topology))
    }

    pub fn client(&self) -> BlockingClient {
        BlockingClient::connect(self.config()).expect("client connects")
    }

    /// The node with id `node_id`.
    pub fn node(&mut self, node_id: u32) -> &mut TestNode {
        &mut self.nodes[node_id as usize - 1]
    }
}

/// Short timeouts, so failure tests run in seconds.
pub fn fast(mut config: ClientConfig) -> ClientConfig {
    config.request_timeout = Duration::from_millis(800);
    config.connect_timeout = Duration::from_millis(800);
    config.io_threads = 2;
    config
}

/// Sum over a node's metric samples whose labels contain `filter`.
pub fn metric(node: &TestNode, name: &str, filter: &str) -> f64 {
    node.metric(name, filter)
}
