//! The real node against bad and abusive peers: authentication, garbage,
//! half-sent frames, slow senders, clients that stop reading, connection
//! limits, invalid configuration. Through all of it the node keeps serving
//! everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::object;
use stratum_testkit::TestClient;
use stratum_testkit::TestNode;
use stratum_wire::auth::ClusterSecret;
use stratum_wire::message::*;
use stratum_wire::{FrameEncoder, Message};

fn ping_ok(client: &mut TestClient) {
    let reply = client.call(&Message::Ping(Ping { nonce: 5 }), &[]).unwrap();
    assert_eq!(
        reply.to_message().unwrap(),
        Message::Pong(Pong { nonce: 5 })
    );
}

fn error_of(frame: &stratum_wire::Frame) -> ErrorReply {
    match frame.to_message().unwrap() {
        Message::Error(err) => err,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Reads until the peer closes (or 10 s pass): true if it closed.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn authentication_on() {
    let temp = tempfile::tempdir().unwrap();
    let secret_path =
        TestNode::write_file(temp.path(), "secret", "a cluster secret of good length\n");
    let mut node = TestNode::start(1, &["--secret-file", secret_path.to_str().unwrap()]);
    let secret = ClusterSecret::new(b"a cluster secret of good length").unwrap();
    node.secret = Some(secret.clone());

    // The right secret: mutual proof, then service.
    let mut client = node.client(0);
    assert!(client.ack.auth_challenge.is_some());
    ping_ok(&mut client);

    // No proof: any request is refused and the connection closed.
    let mut anonymous = TestClient::connect(node.addr(0), None).unwrap();
    let (id, kind, content) = object(1, 10);
    let reply = anonymous
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    assert_eq!(error_of(&reply).code, ErrorCode::Unauthorized);
    assert!(closed_by_peer(&mut anonymous.stream));

    // The wrong secret: refused.
    let wrong = ClusterSecret::new(b"not the cluster secret at all").unwrap();
    let err = TestClient::connect(node.addr(0), Some(&wrong))
        .err()
        .expect("refused");
    assert!(err.contains("Unauthorized"), "{err}");

    // Nothing was stored by the refused put; the authenticated client works.
    let reply = client.call(&Message::Has(Has { id }), &[]).unwrap();
    assert!(matches!(
        reply.to_message().unwrap(),
        Message::HasResult(HasResult { present: false, .. })
    ));
    assert!(
        node.metric(
            "stratum_connection_events_total",
            "event=\"handshake_failed\""
        ) >= 2.0
    );
    assert!(node.is_running());
}

#[test]
fn authentication_off_needs_no_proof() {
    let node = TestNode::start(1, &[]);
    let mut client = TestClient::connect(node.addr(0), None).unwrap();
    assert_eq!(client.ack.auth_challenge, None);
    ping_ok(&mut client);
}

#[test]
fn garbage_and_half_frames_close_only_their_connection() {
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[limits]\nframe_timeout_secs = 1\n",
    );
    let node = TestNode::start(1, &["--config", config.to_str().unwrap()]);
    let mut good = node.client(0);
    let (id, kind, content) = object(7, 1000);
    good.call(&Message::Put(Put { id, kind }), &content)
        .unwrap();

    // 1. A stream of garbage instead of a handshake.
    let mut raw = TcpStream::connect(node.addr(0)).unwrap();
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = raw.write_all(&garbage);
    assert!(closed_by_peer(&mut raw));
    ping_ok(&mut good);

    // 2. Garbage after a good handshake: the node says why, then closes.
    let mut after = node.client(0);
    after
        .stream
        .write_all(b"GET / HTTP/1.1\r\n\r\n................................")
        .unwrap();
    let frame = after.recv().expect("an error frame before the close");
    let err = error_of(&frame);
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.detail.contains("magic"), "{}", err.detail);
    assert!(closed_by_peer(&mut after.stream));
    ping_ok(&mut good);

    // 3. A frame with a bad checksum.
    let mut bad_crc = node.client(0);
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode(&mut bytes, 9, &Message::Ping(Ping { nonce: 1 }), &[])
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bad_crc.stream.write_all(&bytes).unwrap();
    let err = error_of(&bad_crc.recv().unwrap());
    assert!(err.detail.contains("checksum"), "{}", err.detail);
    assert!(closed_by_peer(&mut bad_crc.stream));

    // 4. An oversize announcement (above the 64 MiB object limit): refused
    //    from the header alone, before any body arrives.
    let mut huge = node.client(0);
    huge.stream.write_all(&put_head(3, 65 << 20)).unwrap();
    let err = error_of(&huge.recv().unwrap());
    assert_eq!(err.code, ErrorCode::TooLarge);
    assert!(closed_by_peer(&mut huge.stream));

    // 5. Half a frame, then the client hangs up.
    let mut half = node.client(0);
    let mut bytes = Vec::new();
    FrameEncoder::default()
        .encode(&mut bytes, 4, &Message::Put(Put { id, kind }), &content)
        .unwrap();
    half.stream.write_all(&bytes[..bytes.len() / 2]).unwrap();
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_peer(&mut half.stream));

    // 6. Half a frame, then silence: closed after the frame timeout (1 s).
    let mut slow = node.client(0);
    slow.stream.write_all(&bytes[..40]).unwrap();
    let started = Instant::now();
    assert!(closed_by_peer(&mut slow.stream));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );

    ping_ok(&mut good);
    let reply = good.call(&Message::Get(Get { id }), &[]).unwrap();
    assert_eq!(reply.payload(), &content[..]);
    assert!(node.metric("stratum_connection_events_total", "event=\"malformed\"") >= 3.0);
    assert!(node.metric("stratum_connection_events_total", "event=\"slow_peer\"") >= 1.0);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_pins_no_memory() {
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[limits]\nwrite_timeout_secs = 2\n",
    );
    let node = TestNode::start(1, &["--config", config.to_str().unwrap()]);
    let mut good = node.client(0);
    let (id, kind, content) = object(11, 1 << 20);
    good.call(&Message::Put(Put { id, kind }), &content)
        .unwrap();

    // Ask for the 1 MiB object 2,000 times (2 GB of replies) and never read.
    let mut stalled = node.client(0);
    let mut requests = Vec::new();
    let mut encoder = FrameEncoder::default();
    for request_id in 0..2000 {
        encoder
            .encode(&mut requests, request_id, &Message::Get(Get { id }), &[])
            .unwrap();
    }
    stalled
        .stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stalled.stream.write_all(&requests);
    // Other clients are served meanwhile.
    ping_ok(&mut good);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.metric("stratum_connection_events_total", "event=\"slow_peer\"") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never disconnected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The node buffered at most its outbox budget for it, not 2 GB.
    let rss = rss_kib(node.pid());
    assert!(rss < 300 * 1024, "node RSS {rss} KiB");
    ping_ok(&mut good);
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[test]
fn connections_past_the_limit_are_refused_with_busy() {
    let node = TestNode::start(1, &["--max-connections", "3"]);
    let mut held: Vec<TestClient> = (0..3).map(|_| node.client(0)).collect();
    // The fourth gets a Busy error instead of a handshake.
    let err = TestClient::connect(node.addr(0), None)
        .err()
        .expect("refused");
    assert!(err.contains("Busy"), "{err}");
    ping_ok(&mut held[0]);
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TestClient::connect(node.addr(0), None) {
            Ok(mut client) => {
                ping_ok(&mut client);
                break;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("a freed slot was never reusable: {err}"),
        }
    }
    assert!(node.metric("stratum_connection_events_total", "event=\"refused\"") >= 1.0);
}

#[test]
fn invalid_configuration_is_refused_naming_the_setting() {
    let temp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stratum-node"))
            .args(args)
            .current_dir(temp.path())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(78));
    assert!(err.contains("`listen`"), "{err}");
    let config = TestNode::write_file(
        temp.path(),
        "bad.toml",
        "[limits]\nmax_in_flight_per_shard = 0\n",
    );
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(78));
    assert!(err.contains("limits.max_in_flight_per_shard"), "{err}");
    let (code, err) = run(&["--shards", "zero"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--shards"), "{err}");
    // A port another process holds: refused at startup, not shared.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, err) = run(&[
        "--listen",
        &listen,
        "--shards",
        "1",
        "--admin",
        "off",
        "--data-dir",
        "d",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot listen"), "{err}");
}

#[test]
fn an_overloaded_shard_answers_busy_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[limits]\nmax_in_flight_per_shard = 2\n",
    );
    let node = TestNode::start(1, &["--config", config.to_str().unwrap()]);
    let mut client = node.client(0);
    let objects: Vec<_> = (0..200).map(|seed| object(900 + seed, 4096)).collect();
    let mut encoder = FrameEncoder::default();
    let mut bytes = Vec::new();
    for (n, (id, kind, content)) in objects.iter().enumerate() {
        encoder
            .encode(
                &mut bytes,
                n as u64 + 1,
                &Message::Put(Put {
                    id: *id,
                    kind: *kind,
                }),
                content,
            )
            .unwrap();
    }
    client.stream.write_all(&bytes).unwrap();
    let (mut acked, mut busy) = (Vec::new(), 0);
    for _ in 0..objects.len() {
        let frame = client.recv().unwrap();
        match frame.to_message().unwrap() {
            Message::PutAck(ack) => acked.push(ack.id),
            Message::Error(err) if err.code == ErrorCode::Busy => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(busy > 0, "no request was refused at a limit of 2 in flight");
    assert!(!acked.is_empty());
    // Everything acknowledged is there; ping still works.
    for id in acked {
        let reply = client.call(&Message::Has(Has { id }), &[]).unwrap();
        assert!(matches!(
            reply.to_message().unwrap(),
            Message::HasResult(HasResult { present: true, .. })
        ));
    }
    ping_ok(&mut client);
    assert!(node.metric("stratum_requests_total", "op=\"put\",outcome=\"busy\"") >= 1.0);
}

/// The head of a put frame announcing `len` payload bytes (the payload
/// itself is for the caller to send, or not).
fn put_head(request_id: u64, len: usize) -> Vec<u8> {
    let (id, kind, _) = object(77, 10);
    let mut head = Vec::new();
    FrameEncoder::new(stratum_wire::FrameLimits {
        max_message_len: 1 << 20,
        max_payload_len: u32::MAX,
    })
    .encode_head(
        &mut head,
        request_id,
        &Message::Put(Put { id, kind }),
        &vec![0u8; len],
    )
    .unwrap();
    head
}

#[test]
fn before_the_handshake_only_small_handshake_frames_are_read() {
    let temp = tempfile::tempdir().unwrap();
    let secret_path =
        TestNode::write_file(temp.path(), "secret", "a cluster secret of good length\n");
    let mut node = TestNode::start(1, &["--secret-file", secret_path.to_str().unwrap()]);
    node.secret = Some(ClusterSecret::new(b"a cluster secret of good length").unwrap());
    let mut good = node.client(0);
    let rss_before = rss_kib(node.pid());

    // 20 connections announce a 64 MiB put instead of hello and stream it:
    // each is refused from the header alone, before its body is buffered.
    let head = put_head(1, 64 << 20);
    let chunk = vec![0x5au8; 1 << 20];
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let mut raw = TcpStream::connect(node.addr(0)).unwrap();
        raw.write_all(&head).unwrap();
        raw.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        for _ in 0..8 {
            if raw.write_all(&chunk).is_err() {
                break;
            }
        }
        attackers.push(raw);
    }
    for raw in &mut attackers {
        assert!(
            closed_by_peer(raw),
            "an oversize pre-handshake frame was read"
        );
    }
    // An authenticated-later connection that sent hello but no proof: its
    // second frame is held to the handshake limits too.
    let mut half = TestClient::connect(node.addr(0), None).unwrap();
    half.stream.write_all(&head).unwrap();
    assert!(closed_by_peer(&mut half.stream));

    ping_ok(&mut good);
    let grown = rss_kib(node.pid()).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "node RSS grew {grown} KiB");
    assert_eq!(node.metric("stratum_buffered_request_bytes", ""), 0.0);
}

#[test]
fn silent_connections_are_closed_at_the_handshake_deadline() {
    let temp = tempfile::tempdir().unwrap();
    let config = TestNode::write_file(
        temp.path(),
        "node.toml",
        "[limits]\nhandshake_timeout_secs = 2\n",
    );
    let node = TestNode::start(
        1,
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-connections",
            "20",
        ],
    );
    // (Start-up probes of the node may still hold a slot for a moment.)
    let settled = Instant::now() + Duration::from_secs(5);
    while node.metric("stratum_connections_open", "") > 0.0 && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Twenty connections that never say hello fill the shard...
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(node.addr(0)).unwrap())
        .collect();
    let accepted = Instant::now() + Duration::from_millis(1500);
    while node.metric("stratum_connections_open", "") < 20.0 && Instant::now() < accepted {
        std::thread::sleep(Duration::from_millis(20));
    }
    let open = node.metric("stratum_connections_open", "");
    let err = TestClient::connect(node.addr(0), None)
        .err()
        .unwrap_or_else(|| panic!("not refused while {open} silent ones hold the slots"));
    assert!(err.contains("Busy"), "{err}");
    // ...for the handshake deadline, not the 300 s idle timeout.
    let started = Instant::now();
    for raw in &mut silent {
        assert!(closed_by_peer(raw), "a silent connection was kept");
    }
    assert!(started.elapsed() < Duration::from_secs(6));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match TestClient::connect(node.addr(0), None) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("slots were never freed: {err}"),
        }
    };
    ping_ok(&mut client);
    assert!(
        node.metric(
            "stratum_connection_events_total",
            "event=\"handshake_failed\""
        ) >= 20.0
    );
}

#[test]
fn a_frame_still_arriving_counts_against_the_shard_budget() {
    let node = TestNode::start(1, &[]);
    let mut slow = node.client(0);
    let head = put_head(1, 32 << 20);
    slow.stream.write_all(&head).unwrap();
    slow.stream.write_all(&vec![1u8; 8 << 20]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = node.metric("stratum_buffered_request_bytes", "");
        if held >= f64::from(8u32 << 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a partial frame is not counted: {held}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metric("stratum_buffered_request_bytes", "") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "a closed connection kept its charge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_put_over_a_small_object_limit_is_answered_too_large_and_the_connection_lives() {
    let node = TestNode::start(1, &["--max-object-bytes", "1048576"]);
    let mut client = node.client(0);
    let (id, kind, content) = object(31, 2 << 20);
    let reply = client
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    let err = error_of(&reply);
    assert_eq!(err.code, ErrorCode::TooLarge);
    assert!(err.detail.contains("1048576"), "{}", err.detail);
    // Same connection, next request.
    ping_ok(&mut client);
    let (id, kind, content) = object(32, 1000);
    let reply = client
        .call(&Message::Put(Put { id, kind }), &content)
        .unwrap();
    assert_eq!(reply.kind(), stratum_wire::MessageKind::PutAck);
    assert_eq!(node.metric("stratum_buffered_request_bytes", ""), 0.0);
}

#[test]
fn a_flood_of_bad_connections_is_counted_not_logged_line_by_line() {
    let node = TestNode::start(1, &[]);
    for _ in 0..200 {
        let mut raw = TcpStream::connect(node.addr(0)).unwrap();
        let _ = raw.write_all(b"this is not a stratum frame, not even close....");
        assert!(closed_by_peer(&mut raw));
    }
    assert!(
        node.metric(
            "stratum_connection_events_total",
            "event=\"handshake_failed\""
        ) >= 200.0
    );
    let lines = node.log().matches("handshake failed").count();
    assert!(
        (1..=5).contains(&lines),
        "{lines} log lines for 200 failed handshakes"
    );
    let mut good = node.client(0);
    ping_ok(&mut good);
}
