//! Test helpers shared by the integration tests of every Stratum crate.
//!
//! - [`node_proc`]: runs the real `stratum-node` binary on 127.0.0.1.
//! - [`wire_client`]: a minimal blocking protocol client that shows exactly
//!   what a node sends.
//! - [`first_release`]: a stand-in for a node of the first release, for
//!   mixed-version tests.
//! - [`object`]: deterministic test objects; [`topology_text`]: topology
//!   files.
//!
//! Lives in its own crate so node, client and bench tests share one copy.

pub mod first_release;
pub mod node_proc;
pub mod wire_client;

use stratum_wire::{ObjectId, ObjectKind};

pub use node_proc::TestNode;
pub use wire_client::TestClient;

/// CPU seconds (user + system, all threads) that process `pid` has used so
/// far, from /proc; 0 when it cannot be read. Benchmarks charge a server's
/// CPU to the requests of a phase with it: CPU per request holds steady on
/// a shared machine where throughput does not.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let times = process_cpu_times(pid);
    times.user + times.system
}

/// CPU seconds a process has spent in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    /// System calls, and the softirq work they run inline (on loopback, a
    /// send delivers into the receiving socket on the sender's CPU).
    pub system: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;
    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// [`process_cpu_seconds`], split into user and kernel time; zeros when
/// /proc cannot be read.
pub fn process_cpu_times(pid: u32) -> CpuTimes {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line; count from after
    // the parenthesised command name, which may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return CpuTimes::default();
    }
    let per_second = per_second as f64;
    CpuTimes {
        user: ticks(11) / per_second,
        system: ticks(12) / per_second,
    }
}

/// CPU seconds (user + system) and context switches (voluntary and not)
/// from getrusage: `who` is `libc::RUSAGE_SELF` (this process) or
/// `libc::RUSAGE_CHILDREN` (its children that have been waited for).
pub fn rusage(who: libc::c_int) -> (f64, u64) {
    // SAFETY: getrusage only writes the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    (
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    )
}

/// The median of benchmark figures (the mean of the middle two for an even
/// count; NaN for none). Benchmarks here report medians over rounds: one
/// round moves by ±20% on a shared VM.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by a test while it runs a multi-node cluster: such tests of one
/// binary then run one at a time (every io_uring executor locks memory
/// against the per-user memlock limit, 8 MiB on the CI machine).
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replaces `path` with `text` the way an operator should roll out a
/// topology: written beside it, then renamed over it, so a reader (a node
/// on SIGHUP, a client refreshing) sees the old file or the new one, never
/// a half-written one.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write staged file");
    std::fs::rename(&staged, path).expect("rename staged file");
}

/// A topology file's text: `nodes` as (id, `host:port` of shard 0,
/// shards), replication factor `rf`, write quorum `w`.
pub fn topology_text(epoch: u64, rf: u8, w: u8, nodes: &[(u32, String, u16)]) -> String {
    let mut text = format!("epoch = {epoch}\nreplication_factor = {rf}\nwrite_quorum = {w}\n");
    for (id, address, shards) in nodes {
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\naddress = \"{address}\"\nshards = {shards}\n"
        ));
    }
    text
}

/// A deterministic object of `len` bytes: (id, kind, content).
pub fn object(seed: u64, len: usize) -> (ObjectId, ObjectKind, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let content: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let kind = ObjectKind::ALL[(seed % 4) as usize];
    (ObjectId::compute(kind, &content), kind, content)
}

/// A deterministic object shaped like a Git tree of `len` bytes: entries
/// of a mode, a path and 32 id bytes. Such objects are short and alike,
/// what a trained dictionary is for.
pub fn tree_like(seed: u64, len: usize) -> Vec<u8> {
    let mut text = Vec::new();
    let mut entry = 0u64;
    while text.len() < len {
        entry += 1;
        text.extend_from_slice(
            format!("100644 src/module_{}/file_{entry}.rs\0", seed % 9).as_bytes(),
        );
        text.extend(
            (0..32u64).map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * entry) >> 3) as u8),
        );
    }
    text.truncate(len);
    text
}

/// Pins the calling thread (and the threads and processes it starts
/// afterwards) to `cpus`: benchmarks place a node and its load on separate
/// CPUs with it.
pub fn pin_to(cpus: &[usize]) {
    // SAFETY: a plain bit set built from CPU numbers, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(*cpu, &mut set);
        }
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity({cpus:?})");
    }
}

/// A benchmark's `--flag value` arguments (cargo's own `--bench` is
/// ignored). A flag not in `known`, or one without a value, stops the run.
pub struct BenchArgs(std::collections::HashMap<String, String>);

impl BenchArgs {
    pub fn parse(known: &[&str]) -> Self {
        let mut values = std::collections::HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "--bench" {
                continue;
            }
            assert!(
                known.contains(&arg.as_str()),
                "unknown argument {arg} (known: {known:?})"
            );
            let value = it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            values.insert(arg, value);
        }
        Self(values)
    }

    /// The value of `flag`, or `default` when it was not given.
    pub fn get<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        match self.0.get(flag) {
            Some(text) => text
                .parse()
                .unwrap_or_else(|_| panic!("{flag} {text}: not a valid value")),
            None => default,
        }
    }
}
