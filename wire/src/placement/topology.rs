//! The cluster topology: which nodes exist, where, with how many shards, and
//! how many copies of each object to keep.
//!
//! ```toml
//! epoch = 1                # bump on every change; nodes compare epochs
//! replication_factor = 3   # N: copies of each object (default 3)
//! write_quorum = 2         # W: durable copies before a put is acknowledged (default 2)
//!
//! [[node]]
//! id = 1
//! address = "10.0.0.1:7400"   # host:port of the node's shard 0
//! shards = 8
//! ```
//!
//! A [`Topology`] value is always valid: the only ways to get one check it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most shards a node may declare (shard ids are u16 on the wire; no host
/// has anywhere near this many cores).
pub const MAX_SHARDS_PER_NODE: u16 = 1024;
/// Most nodes a topology may list (node indices stay small; far beyond any
/// planned cluster).
pub const MAX_NODES: usize = 4096;
pub const DEFAULT_REPLICATION_FACTOR: u8 = 3;
pub const DEFAULT_WRITE_QUORUM: u8 = 2;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: u32,
    /// `host:port` of shard 0; shard `i` listens on `port + i`.
    pub address: String,
    pub shards: u16,
}

impl NodeSpec {
    /// `host:port` of shard `shard` (port of shard 0 plus `shard`).
    pub fn shard_address(&self, shard: u16) -> Option<String> {
        let (host, port) = split_host_port(&self.address).ok()?;
        let port = port.checked_add(shard)?;
        if host.contains(':') {
            Some(format!("[{host}]:{port}"))
        } else {
            Some(format!("{host}:{port}"))
        }
    }
}

/// The file's shape, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    epoch: u64,
    #[serde(default = "default_replication_factor")]
    replication_factor: u8,
    #[serde(default = "default_write_quorum")]
    write_quorum: u8,
    #[serde(default, rename = "node")]
    nodes: Vec<NodeSpec>,
}

fn default_replication_factor() -> u8 {
    DEFAULT_REPLICATION_FACTOR
}

fn default_write_quorum() -> u8 {
    DEFAULT_WRITE_QUORUM
}

/// Why a topology was refused. Each message names the problem and, where
/// there is one, the node.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The TOML error is the source: a message repeating it would print it
    // twice in every error chain.
    #[error("topology is not valid TOML of the expected shape")]
    Parse(#[from] toml::de::Error),
    #[error("epoch must be at least 1 (0 means \"no topology\" on the wire)")]
    ZeroEpoch,
    #[error("topology lists no [[node]]")]
    NoNodes,
    #[error("topology lists {count} nodes; at most {MAX_NODES} are supported")]
    TooManyNodes { count: usize },
    #[error("replication_factor must be at least 1")]
    ZeroReplicationFactor,
    #[error("write_quorum must be at least 1")]
    ZeroWriteQuorum,
    #[error("write_quorum {write_quorum} is larger than replication_factor {replication_factor}")]
    QuorumExceedsReplication {
        write_quorum: u8,
        replication_factor: u8,
    },
    #[error(
        "replication_factor {replication_factor} needs at least that many nodes; the topology has {nodes}"
    )]
    NotEnoughNodes {
        replication_factor: u8,
        nodes: usize,
    },
    #[error("node id {0} appears more than once")]
    DuplicateNodeId(u32),
    #[error("address {address:?} is used by nodes {first} and {second}")]
    DuplicateAddress {
        address: String,
        first: u32,
        second: u32,
    },
    #[error("node {node_id} has zero shards")]
    ZeroShards { node_id: u32 },
    #[error("node {node_id} has {shards} shards; at most {MAX_SHARDS_PER_NODE} are supported")]
    TooManyShards { node_id: u32, shards: u16 },
    #[error("node {node_id} address {address:?} is not host:port ({reason})")]
    BadAddress {
        node_id: u32,
        address: String,
        reason: &'static str,
    },
    #[error("nodes {first} and {second} on {host} listen on overlapping ports ({first_ports} and {second_ports}): shard i of a node listens on its port + i")]
    PortRangesOverlap {
        host: String,
        first: u32,
        second: u32,
        first_ports: String,
        second_ports: String,
    },
    #[error("node {node_id}: ports {first_port}..={last_port} for its {shards} shards pass 65535")]
    PortRangeOverflow {
        node_id: u32,
        first_port: u16,
        last_port: u32,
        shards: u16,
    },
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    epoch: u64,
    replication_factor: u8,
    write_quorum: u8,
    nodes: Vec<NodeSpec>,
}

impl Topology {
    /// Checks and builds a topology.
    pub fn new(
        epoch: u64,
        replication_factor: u8,
        write_quorum: u8,
        nodes: Vec<NodeSpec>,
    ) -> Result<Self, TopologyError> {
        if epoch == 0 {
            return Err(TopologyError::ZeroEpoch);
        }
        if nodes.is_empty() {
            return Err(TopologyError::NoNodes);
        }
        if nodes.len() > MAX_NODES {
            return Err(TopologyError::TooManyNodes { count: nodes.len() });
        }
        if replication_factor == 0 {
            return Err(TopologyError::ZeroReplicationFactor);
        }
        if write_quorum == 0 {
            return Err(TopologyError::ZeroWriteQuorum);
        }
        if write_quorum > replication_factor {
            return Err(TopologyError::QuorumExceedsReplication {
                write_quorum,
                replication_factor,
            });
        }
        if usize::from(replication_factor) > nodes.len() {
            return Err(TopologyError::NotEnoughNodes {
                replication_factor,
                nodes: nodes.len(),
            });
        }
        let mut ids = HashSet::new();
        let mut addresses: Vec<(String, std::ops::RangeInclusive<u32>, u32)> =
            Vec::with_capacity(nodes.len());
        for node in &nodes {
            if !ids.insert(node.id) {
                return Err(TopologyError::DuplicateNodeId(node.id));
            }
            if node.shards == 0 {
                return Err(TopologyError::ZeroShards { node_id: node.id });
            }
            if node.shards > MAX_SHARDS_PER_NODE {
                return Err(TopologyError::TooManyShards {
                    node_id: node.id,
                    shards: node.shards,
                });
            }
            let (host, port) =
                split_host_port(&node.address).map_err(|reason| TopologyError::BadAddress {
                    node_id: node.id,
                    address: node.address.clone(),
                    reason,
                })?;
            let last_port = u32::from(port) + u32::from(node.shards) - 1;
            if last_port > u32::from(u16::MAX) {
                return Err(TopologyError::PortRangeOverflow {
                    node_id: node.id,
                    first_port: port,
                    last_port,
                    shards: node.shards,
                });
            }
            let host = host.to_ascii_lowercase();
            let ports = u32::from(port)..=last_port;
            for (seen_host, seen_ports, first) in &addresses {
                if *seen_host != host {
                    continue;
                }
                if *seen_ports.start() == u32::from(port) {
                    return Err(TopologyError::DuplicateAddress {
                        address: node.address.clone(),
                        first: *first,
                        second: node.id,
                    });
                }
                if seen_ports.start() <= ports.end() && ports.start() <= seen_ports.end() {
                    return Err(TopologyError::PortRangesOverlap {
                        host,
                        first: *first,
                        second: node.id,
                        first_ports: format!("{}..={}", seen_ports.start(), seen_ports.end()),
                        second_ports: format!("{}..={}", ports.start(), ports.end()),
                    });
                }
            }
            addresses.push((host, ports, node.id));
        }
        Ok(Self {
            epoch,
            replication_factor,
            write_quorum,
            nodes,
        })
    }

    /// The topology of a lone node: one copy, acknowledged when it is durable
    /// there. What `stratum-node` runs with when given no topology.
    pub fn single_node(node_id: u32, address: String, shards: u16) -> Result<Self, TopologyError> {
        Self::new(
            1,
            1,
            1,
            vec![NodeSpec {
                id: node_id,
                address,
                shards,
            }],
        )
    }

    pub fn from_toml_str(text: &str) -> Result<Self, TopologyError> {
        let file: TopologyFile = toml::from_str(text)?;
        Self::new(
            file.epoch,
            file.replication_factor,
            file.write_quorum,
            file.nodes,
        )
    }

    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn replication_factor(&self) -> u8 {
        self.replication_factor
    }

    pub fn write_quorum(&self) -> u8 {
        self.write_quorum
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6). The host is not resolved here.
fn split_host_port(address: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("missing :port")?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or("unclosed [ in IPv6 host")?,
        None if host.contains(':') => return Err("IPv6 hosts must be written [addr]:port"),
        None => host,
    };
    if host.is_empty() {
        return Err("empty host");
    }
    let port: u16 = port.parse().map_err(|_| "port is not a number 1-65535")?;
    if port == 0 {
        return Err("port 0 is not a listening port");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        epoch = 4
        replication_factor = 3
        write_quorum = 2
        [[node]]
        id = 1
        address = "127.0.0.1:7400"
        shards = 2
        [[node]]
        id = 2
        address = "127.0.0.1:7500"
        shards = 2
        [[node]]
        id = 3
        address = "[::1]:7600"
        shards = 4
    "#;

    /// The refusal with its causes, as a log line shows it.
    fn refused(text: &str) -> String {
        match Topology::from_toml_str(text) {
            Ok(topology) => panic!("accepted {topology:?}"),
            Err(err) => {
                let mut out = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    out.push_str(": ");
                    out.push_str(&cause.to_string());
                    source = cause.source();
                }
                out
            }
        }
    }

    #[test]
    fn parses_a_valid_file() {
        let topology = Topology::from_toml_str(THREE).expect("valid");
        assert_eq!(topology.epoch(), 4);
        assert_eq!(topology.replication_factor(), 3);
        assert_eq!(topology.write_quorum(), 2);
        assert_eq!(topology.nodes().len(), 3);
        assert_eq!(
            topology.nodes()[2].shard_address(3).as_deref(),
            Some("[::1]:7603")
        );
    }

    #[test]
    fn defaults_are_three_copies_two_acks() {
        let text = THREE
            .replace("replication_factor = 3", "")
            .replace("write_quorum = 2", "");
        let topology = Topology::from_toml_str(&text).expect("valid");
        assert_eq!(topology.replication_factor(), 3);
        assert_eq!(topology.write_quorum(), 2);
    }

    #[test]
    fn refuses_what_cannot_work_and_says_why() {
        let msg = refused(&THREE.replace("write_quorum = 2", "write_quorum = 4"));
        assert!(
            msg.contains("write_quorum 4") && msg.contains("replication_factor 3"),
            "{msg}"
        );

        let msg = refused(&THREE.replace("id = 2", "id = 1"));
        assert!(msg.contains("node id 1 appears more than once"), "{msg}");

        let msg = refused(&THREE.replace("127.0.0.1:7500", "127.0.0.1:7400"));
        assert!(
            msg.contains("127.0.0.1:7400") && msg.contains("nodes 1 and 2"),
            "{msg}"
        );

        let msg = refused(&THREE.replace("shards = 4", "shards = 0"));
        assert!(msg.contains("node 3 has zero shards"), "{msg}");

        let msg = refused(&THREE.replace("replication_factor = 3", "replication_factor = 0"));
        assert!(
            msg.contains("replication_factor must be at least 1"),
            "{msg}"
        );

        let msg = refused(&THREE.replace("write_quorum = 2", "write_quorum = 0"));
        assert!(msg.contains("write_quorum must be at least 1"), "{msg}");

        let msg = refused(&THREE.replace("epoch = 4", "epoch = 0"));
        assert!(msg.contains("epoch"), "{msg}");

        let msg = refused(&THREE.replace("replication_factor = 3", "replication_factor = 5"));
        assert!(msg.contains("needs at least that many nodes"), "{msg}");

        let msg = refused(&THREE.replace("127.0.0.1:7500", "127.0.0.1"));
        assert!(
            msg.contains("node 2") && msg.contains("missing :port"),
            "{msg}"
        );

        let msg = refused(&THREE.replace("127.0.0.1:7500", "127.0.0.1:65535"));
        assert!(
            msg.contains("node 2") && msg.contains("pass 65535"),
            "{msg}"
        );

        let msg = refused("epoch = 1\n");
        assert!(msg.contains("no [[node]]"), "{msg}");
    }

    #[test]
    fn overlapping_shard_ports_are_refused() {
        // Node 1 has 2 shards at 7400 (7400 and 7401); node 2 at 7401.
        let text = THREE.replace("127.0.0.1:7500", "127.0.0.1:7401");
        let msg = refused(&text);
        assert!(
            msg.contains("nodes 1 and 2") && msg.contains("overlapping ports"),
            "{msg}"
        );
        // Another host may use the same ports.
        let text = THREE.replace("127.0.0.1:7500", "127.0.0.2:7401");
        Topology::from_toml_str(&text).expect("different hosts");
    }

    #[test]
    fn typos_are_refused_not_ignored() {
        let msg = refused(&THREE.replace("write_quorum", "write_qourum"));
        assert!(msg.contains("write_qourum"), "{msg}");
        assert_eq!(msg.matches("unknown field").count(), 1, "said twice: {msg}");
        let msg = refused(&THREE.replacen("shards", "shard", 1));
        assert!(msg.contains("shard"), "{msg}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Topology::load(Path::new("/nonexistent/topology.toml")).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/topology.toml"),
            "{err}"
        );
    }
}
