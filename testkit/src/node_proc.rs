//! Runs the real `stratum-node` binary for tests: free ports on 127.0.0.1,
//! a temporary data dir, readiness by handshake, SIGTERM/SIGKILL, restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use stratum_wire::auth::ClusterSecret;
use stratum_wire::message::Has;
use stratum_wire::{Message, ObjectId};

use crate::wire_client::TestClient;

pub struct TestNode {
    child: Option<Child>,
    pub dir: PathBuf,
    pub base_port: u16,
    pub admin_port: u16,
    pub shards: u16,
    /// The ports are known to others (a topology names them, or clients
    /// reached the node there): every launch uses them, waiting for the
    /// kernel to release them after a kill, never moving elsewhere.
    fixed_ports: bool,
    extra: Vec<String>,
    pub secret: Option<ClusterSecret>,
    _temp: Option<tempfile::TempDir>,
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Ports this process has handed out. The kernel may offer a probed port
/// again as soon as the probe closes, so without this two nodes prepared one
/// after the other (a cluster whose topology names them before any binds)
/// could be given the same address.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The kernel's range of ephemeral ports (the local ends of outgoing
/// connections), from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    Some((bounds.next()??, bounds.next()??))
}

/// Where test nodes listen: below the ephemeral range when there is room,
/// else above it. A port in the ephemeral range can be taken as the local
/// end of any outgoing connection (a peer link, a test client) as soon as
/// a killed node frees it, and then a node restarted on its fixed ports
/// cannot bind them for as long as that connection lives.
fn listen_span() -> Option<std::ops::Range<u16>> {
    const LOWEST: u16 = 10_000;
    let (low, high) = ephemeral_range()?;
    if low > LOWEST + 1_000 {
        Some(LOWEST..low)
    } else if high < u16::MAX - 1_000 {
        Some(high + 1..u16::MAX)
    } else {
        None
    }
}

/// A base port with `count` free ports after it, none handed out before by
/// this process, outside the ephemeral range where the kernel allows it
/// (still racy against other processes: `start` retries when the node
/// cannot bind).
fn free_ports(count: u16) -> u16 {
    let span = listen_span();
    // Start each process somewhere else in the span, so test binaries run
    // one after another do not all probe the same ports first.
    let mut next = span.as_ref().map(|span| {
        let spread = u64::from(span.end - span.start);
        span.start + (u64::from(std::process::id()) * 7_919 % spread) as u16
    });
    for _probe in 0..100_000 {
        let base = match (&span, next) {
            (Some(span), Some(candidate)) => {
                let base = if candidate.saturating_add(count) > span.end {
                    span.start
                } else {
                    candidate
                };
                next = Some(base + count);
                base
            }
            // No room outside the ephemeral range: take what the kernel offers.
            _ => {
                let probe = TcpListener::bind("127.0.0.1:0").unwrap();
                let base = probe.local_addr().unwrap().port();
                drop(probe);
                base
            }
        };
        let Some(end) = base.checked_add(count) else {
            continue;
        };
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|err| err.into_inner());
        if handed_out.range(base..end).next().is_none() && (base..end).all(port_free) {
            handed_out.extend(base..end);
            return base;
        }
    }
    panic!("no {count} free ports in a row on 127.0.0.1");
}

/// The `stratum-node` binary the tests run: `$STRATUM_NODE_BIN`, else the
/// one cargo built next to the running test (`target/<profile>/`), which
/// `cargo test --workspace` always builds because the node's own tests need
/// it.
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATUM_NODE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/stratum-node
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("stratum-node"))
        .expect("test binary lives under target/<profile>/deps");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p stratum-node` (or the whole suite, \
         `cargo test --workspace`), or set STRATUM_NODE_BIN",
        path.display()
    );
    path
}

impl TestNode {
    /// A node with its ports and directory chosen but not started yet (so
    /// a topology naming its address can be written first); `launch` starts
    /// it.
    pub fn prepare(shards: u16, extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let base = free_ports(shards + 1);
        Self {
            child: None,
            dir: temp.path().to_owned(),
            base_port: base,
            admin_port: base + shards,
            shards,
            fixed_ports: true,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            secret: None,
            _temp: Some(temp),
        }
    }

    /// Adds command-line flags for the next launch.
    pub fn add_args(&mut self, args: &[&str]) {
        self.extra.extend(args.iter().map(|arg| arg.to_string()));
    }

    /// `127.0.0.1:port` of shard 0, as a topology names the node.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.base_port)
    }

    /// Stops the process with SIGSTOP (a node that hangs: connections stay
    /// open, nothing is answered) or resumes it with SIGCONT.
    /// Returns once every thread of the process is stopped (or running),
    /// as /proc reports it: kill(2) only queues the signal.
    pub fn pause(&self, paused: bool) {
        self.signal(if paused { libc::SIGSTOP } else { libc::SIGCONT });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.all_threads_stopped() == paused {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!(
            "stratum-node did not {} in 10 s",
            if paused { "stop" } else { "resume" }
        );
    }

    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return false;
        };
        tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) S ...": the state follows the last ')'.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.trim_start().chars().next()
                })
                .is_some_and(|state| state == 'T' || state == 't')
        })
    }

    /// Starts a node with `shards` shards and extra flags.
    pub fn start(shards: u16, extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut node = Self {
            child: None,
            dir: temp.path().to_owned(),
            base_port: 0,
            admin_port: 0,
            shards,
            fixed_ports: false,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            secret: None,
            _temp: Some(temp),
        };
        node.launch();
        node
    }

    /// Writes `text` as a file in the node's dir and returns its path.
    pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(node_binary());
        command
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.base_port))
            .arg("--shards")
            .arg(self.shards.to_string())
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// (Re)starts the process and waits until every shard completes a
    /// handshake. A node whose ports are fixed (see `fixed_ports`) restarts
    /// on them once the kernel has released them (after a SIGKILL, sockets
    /// of the old process can hold them for a moment); a new node started
    /// with `start` takes fresh ports, and fresh ones again if another
    /// process took them first.
    pub fn launch(&mut self) {
        for _attempt in 0..5 {
            if self.fixed_ports {
                self.wait_ports_free(Duration::from_secs(30));
            } else {
                let base = free_ports(self.shards + 1);
                self.base_port = base;
                self.admin_port = base + self.shards;
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .unwrap();
            let child = self
                .command()
                .stderr(log)
                .spawn()
                .expect("spawn stratum-node");
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(30)) {
                self.fixed_ports = true;
                return;
            }
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        panic!("stratum-node did not start; log:\n{}", self.log());
    }

    fn wait_ports_free(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !((self.base_port..self.base_port + self.shards).all(port_free)
            && port_free(self.admin_port))
        {
            assert!(
                Instant::now() < deadline,
                "ports {}..={} still taken after {limit:?}",
                self.base_port,
                self.admin_port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|child| child.try_wait()) {
                return false;
            }
            // The admin endpoint starts after the shards: a test that reads
            // metrics right after a launch must find it up too.
            let all = (0..self.shards)
                .all(|shard| TestClient::connect(self.addr(shard), self.secret.as_ref()).is_ok())
                && TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok();
            if all {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn addr(&self, shard: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + shard))
    }

    pub fn client(&self, shard: u16) -> TestClient {
        TestClient::connect(self.addr(shard), self.secret.as_ref()).expect("connect")
    }

    /// A connection that speaks as a peer node: writes land on this node
    /// only and reads never trigger read repair.
    pub fn node_client(&self, shard: u16) -> TestClient {
        TestClient::connect_as_node(self.addr(shard), self.secret.as_ref(), u32::MAX)
            .expect("connect")
    }

    /// Whether the node's owning shard holds `id`, asked as a peer (a
    /// node-role `has` is answered from the local store: no read repair, no
    /// fallback).
    pub fn holds(&self, id: ObjectId) -> bool {
        let shard = stratum_wire::placement::shard_of(&id, self.shards);
        let reply = self
            .node_client(shard)
            .call(&Message::Has(Has { id }), &[])
            .expect("has");
        match reply.to_message().expect("a valid reply") {
            Message::HasResult(result) => result.present,
            other => panic!("has answered {other:?}"),
        }
    }

    /// Sends SIGHUP (the node re-reads its topology file).
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(90))
            .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", self.log()))
    }

    pub fn sigkill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(30))
            .expect("exit after SIGKILL");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|child| child.try_wait()),
            Some(Ok(None))
        )
    }

    /// `GET path` on the admin endpoint: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("admin connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Sum of a Prometheus sample over all label sets that contain `filter`.
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(filter))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

/// A cluster of one-shard nodes on 127.0.0.1, node *i* (from 1) started
/// with `--config configs[i - 1]`, all sharing a topology file written to
/// `dir` (epoch 1, replication factor `rf`, write quorum `w`). Returns the
/// running nodes and the topology's path.
pub fn one_shard_cluster(
    dir: &Path,
    rf: u8,
    w: u8,
    configs: &[PathBuf],
) -> (Vec<TestNode>, PathBuf) {
    let topology = dir.join("topology.toml");
    let mut nodes: Vec<TestNode> = configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let id = (index + 1).to_string();
            let (topology, config) = (topology.to_string_lossy(), config.to_string_lossy());
            TestNode::prepare(
                1,
                &[
                    "--topology",
                    &topology,
                    "--node-id",
                    &id,
                    "--config",
                    &config,
                ],
            )
        })
        .collect();
    let specs: Vec<(u32, String, u16)> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| (index as u32 + 1, node.address(), 1))
        .collect();
    std::fs::write(&topology, crate::topology_text(1, rf, w, &specs)).expect("topology");
    for node in &mut nodes {
        node.launch();
    }
    (nodes, topology)
}

/// The first segment file of a stopped node's shard 0.
pub fn first_segment(node: &TestNode) -> PathBuf {
    let dir = node.dir.join("data/shard-000");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".dat"))
        .collect();
    segments.sort();
    segments.into_iter().next().expect("a segment")
}

/// Flips a bit in the middle of the content of the first record of
/// `segment` (records start after the 4096-byte segment header; the
/// content after the 48-byte record header, its length at byte 8). With
/// `fix_crc`, the record's CRC is recomputed over the damage: wrong bytes
/// that a read's CRC check lets through, as a bug between the hash check
/// and the write would leave.
pub fn damage_first_record(segment: &Path, fix_crc: bool) {
    let mut bytes = std::fs::read(segment).expect("segment");
    let record = 4096;
    let len =
        u32::from_le_bytes(bytes[record + 8..record + 12].try_into().expect("4 bytes")) as usize;
    bytes[record + 48 + len / 2] ^= 0x10;
    if fix_crc {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[record..record + 12]);
        crc.update(&bytes[record + 16..record + 48]);
        crc.update(&bytes[record + 48..record + 48 + len]);
        bytes[record + 12..record + 16].copy_from_slice(&crc.finalize().to_le_bytes());
    }
    std::fs::write(segment, bytes).expect("write segment");
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_nodes_listen_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range().expect("a Linux ephemeral port range");
        let base = free_ports(3);
        let ports = base..base + 3;
        assert!(
            ports.end <= low || ports.start > high,
            "ports {ports:?} overlap the ephemeral range {low}..={high}"
        );
        assert!(ports.clone().all(port_free), "ports {ports:?} are not free");
        let again = free_ports(3);
        assert!(
            again >= ports.end || again + 3 <= ports.start,
            "a port was handed out twice: {ports:?} and {again}"
        );
    }
}
