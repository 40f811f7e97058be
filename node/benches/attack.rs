//! The pre-handshake attack against the real `stratum-node`, measured: what
//! it costs the node in memory and a well-behaved client in throughput and
//! latency.
//!
//! ```text
//! cargo bench -p stratum-node --bench attack [-- --seconds 3 --silent 1000]
//! ```
//!
//! One node, one shard, default limits. A good client (its own connection,
//! one get of a 1 KiB object in flight) runs `--seconds` quiet, then the
//! same while the attack runs: 20 connections that each announce a 64 MiB
//! put instead of `hello` and stream it, then `--silent` connections that
//! never send a byte. The node's resident memory is sampled throughout.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use stratum_testkit::{object, TestClient, TestNode};
use stratum_wire::message::{Get, Put};
use stratum_wire::{FrameEncoder, FrameLimits, Message, MessageKind, ObjectId};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .map_or(default, |value| value.parse().expect("a number"))
}

fn rss_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Gets for `seconds`, one in flight: (gets/s, p50, p99).
fn measure(client: &mut TestClient, ids: &[ObjectId], seconds: u64) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let id = ids[latencies.len() % ids.len()];
        let sent = Instant::now();
        let reply = client.call(&Message::Get(Get { id }), &[]).expect("get");
        assert_eq!(reply.kind(), MessageKind::GetOk);
        latencies.push(sent.elapsed());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (rate, at(0.5), at(0.99))
}

/// The head of a put frame announcing a 64 MiB payload.
fn put_head() -> Vec<u8> {
    let (id, kind, _) = object(1, 10);
    let mut head = Vec::new();
    FrameEncoder::new(FrameLimits {
        max_message_len: 1 << 20,
        max_payload_len: u32::MAX,
    })
    .encode_head(
        &mut head,
        1,
        &Message::Put(Put { id, kind }),
        &vec![0u8; 64 << 20],
    )
    .expect("encode");
    head
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain structs filled in and read by the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    let seconds = arg("--seconds", 3);
    let silent_count = arg("--silent", 1000) as usize;
    // The node inherits the limit: it must be able to accept them all.
    raise_fd_limit();
    let node = TestNode::start(1, &[]);
    let pid = node.pid();
    let mut client = node.client(0);
    let ids: Vec<ObjectId> = (0..1000)
        .map(|seed| {
            let (id, kind, content) = object(seed, 1024);
            client
                .call(&Message::Put(Put { id, kind }), &content)
                .expect("put");
            id
        })
        .collect();
    let rss_before = rss_kib(pid, "VmRSS:");
    let (quiet_rate, quiet_p50, quiet_p99) = measure(&mut client, &ids, seconds);

    let addr = node.addr(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let head = put_head();
            let chunk = vec![0x5au8; 1 << 20];
            let mut big = Vec::new();
            for _ in 0..20 {
                let Ok(mut raw) = TcpStream::connect(addr) else {
                    continue;
                };
                let _ = raw.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = raw.write_all(&head);
                for _ in 0..4 {
                    if raw.write_all(&chunk).is_err() {
                        break;
                    }
                }
                big.push(raw);
            }
            let silent: Vec<TcpStream> = (0..silent_count)
                .filter_map(|_| TcpStream::connect(addr).ok())
                .collect();
            let held = silent.len();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            (big.len(), held)
        })
    };
    let sampler = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (rate, p50, p99) = measure(&mut client, &ids, seconds);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (big, silent) = attacker.join().expect("attacker");
    let peak = sampler.join().expect("sampler");

    println!(
        "attack bench: one node, one shard, default limits (max_buffered_bytes_per_shard 512 MiB)"
    );
    println!("attack: {big} connections announcing 64 MiB puts before hello, then {silent} silent connections");
    println!(
        "node RSS: {:.1} MiB before, peak {:.1} MiB during (+{:.1} MiB)",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "good client gets: {quiet_rate:.0}/s quiet, {rate:.0}/s under attack = {:.2}x; p50 {:?} vs {:?}; p99 {:?} vs {:?} = {:.2}x",
        rate / quiet_rate,
        quiet_p50,
        p50,
        quiet_p99,
        p99,
        p99.as_secs_f64() / quiet_p99.as_secs_f64()
    );
}
