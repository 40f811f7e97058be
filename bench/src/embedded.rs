//! `--embedded N`: N real `stratum-node` processes on 127.0.0.1, in a
//! temporary directory, torn down when the run ends (SIGTERM, then SIGKILL
//! after 20 s).
//!
//! The processes run `stratum-bench` itself in node mode (the
//! `STRATUM_BENCH_RUN_NODE` environment variable makes it run
//! `stratum_node::cli::main`), so `cargo run -p stratum-bench` needs no
//! separately built node binary and the node always matches the bench.
//! `--node-bin PATH` runs another node binary instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stratum_client::{BlockingClient, ClientConfig};

/// Set in a child's environment: run as `stratum-node`.
pub const RUN_NODE_ENV: &str = "STRATUM_BENCH_RUN_NODE";

pub struct Embedded {
    dir: tempfile::TempDir,
    children: Vec<(u32, Child)>,
    pub topology: PathBuf,
    pub nodes: u32,
    pub replication_factor: u8,
    pub write_quorum: u8,
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port with `count` free ports from it, none of them in `taken`.
fn free_ports(count: u16, taken: &[u16]) -> Result<u16, String> {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
        let base = probe.local_addr().map_err(|err| err.to_string())?.port();
        drop(probe);
        let Some(end) = base.checked_add(count) else {
            continue;
        };
        if (base..end).all(|port| port_free(port) && !taken.contains(&port)) {
            return Ok(base);
        }
    }
    Err("cannot find free ports on 127.0.0.1".into())
}

impl Embedded {
    /// Starts `nodes` nodes of `shards` shards each: replication factor
    /// min(3, nodes), write quorum min(2, that). Returns once every node
    /// answers.
    pub fn start(nodes: u32, shards: u16, node_bin: Option<&Path>) -> Result<Self, String> {
        if nodes == 0 {
            return Err("--embedded needs at least one node".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("stratum-bench-")
            .tempdir()
            .map_err(|err| format!("cannot create a temporary directory: {err}"))?;
        let replication_factor = nodes.min(3) as u8;
        let write_quorum = replication_factor.min(2);
        let mut taken = Vec::new();
        let mut text = format!(
            "epoch = 1\nreplication_factor = {replication_factor}\nwrite_quorum = {write_quorum}\n"
        );
        for id in 1..=nodes {
            let base = free_ports(shards, &taken)?;
            taken.extend(base..base + shards);
            text.push_str(&format!(
                "\n[[node]]\nid = {id}\naddress = \"127.0.0.1:{base}\"\nshards = {shards}\n"
            ));
        }
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, text).map_err(|err| err.to_string())?;
        let program = match node_bin {
            Some(path) => path.to_owned(),
            None => std::env::current_exe()
                .map_err(|err| format!("cannot find my own executable: {err}"))?,
        };
        let mut embedded = Self {
            dir,
            children: Vec::new(),
            topology,
            nodes,
            replication_factor,
            write_quorum,
        };
        for id in 1..=nodes {
            let data = embedded.dir.path().join(format!("node-{id}"));
            let log =
                std::fs::File::create(embedded.log_path(id)).map_err(|err| err.to_string())?;
            let mut command = Command::new(&program);
            if node_bin.is_none() {
                command.env(RUN_NODE_ENV, "1");
            }
            let child = command
                .arg("--data-dir")
                .arg(&data)
                .arg("--topology")
                .arg(&embedded.topology)
                .arg("--node-id")
                .arg(id.to_string())
                .arg("--admin")
                .arg("off")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|err| format!("cannot start node {id} ({}): {err}", program.display()))?;
            embedded.children.push((id, child));
        }
        embedded.wait_ready(Duration::from_secs(60))?;
        Ok(embedded)
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    fn log_tail(&self, id: u32) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            for (id, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    let id = *id;
                    return Err(format!(
                        "node {id} exited during startup ({status}); its log:\n{}",
                        self.log_tail(id)
                    ));
                }
            }
            let mut config = ClientConfig::topology_file(&self.topology);
            config.connect_timeout = Duration::from_millis(500);
            config.request_timeout = Duration::from_secs(2);
            if let Ok(client) = BlockingClient::connect(config) {
                if client.stats().iter().all(|node| node.result.is_ok()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the nodes did not all answer within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (id, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("stratum-bench: node {id} did not stop on SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}
