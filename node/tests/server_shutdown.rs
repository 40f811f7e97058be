//! SIGTERM and SIGKILL while clients write: the node never loses a put it
//! acknowledged, and SIGTERM ends in a clean exit 0.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::object;
use stratum_testkit::TestNode;
use stratum_wire::message::*;
use stratum_wire::placement::shard_of;
use stratum_wire::{Message, ObjectId, ObjectKind};

type Acked = Arc<Mutex<Vec<(ObjectId, ObjectKind, Vec<u8>)>>>;

/// `writers` threads put objects (pipelined, 8 in flight each) until their
/// connection breaks, recording every acknowledged object.
fn start_writers(
    node: &TestNode,
    writers: u64,
    acked: &Acked,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..writers)
        .map(|writer| {
            let addr0 = node.addr(0);
            let (acked, stop) = (Arc::clone(acked), Arc::clone(stop));
            std::thread::spawn(move || {
                let Ok(mut client) = stratum_testkit::TestClient::connect(addr0, None) else {
                    return;
                };
                let mut in_flight = std::collections::HashMap::new();
                let mut seed = writer << 40;
                loop {
                    while in_flight.len() < 8 && !stop.load(Ordering::Relaxed) {
                        seed += 1;
                        let (id, kind, content) = object(seed, 100 + (seed % 5000) as usize);
                        let Ok(request) =
                            client.try_send(&Message::Put(Put { id, kind }), &content)
                        else {
                            return;
                        };
                        in_flight.insert(request, (id, kind, content));
                    }
                    if in_flight.is_empty() {
                        return;
                    }
                    let Ok(frame) = client.recv() else { return };
                    let Some(object) = in_flight.remove(&frame.request_id()) else {
                        continue;
                    };
                    if let Ok(Message::PutAck(ack)) = frame.to_message() {
                        assert_eq!(ack.id, object.0);
                        acked.lock().unwrap().push(object);
                    }
                }
            })
        })
        .collect()
}

fn assert_all_present(node: &TestNode, acked: &Acked) {
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "only {} puts were acknowledged",
        acked.len()
    );
    let mut clients = [node.client(0), node.client(1)];
    for (id, kind, content) in acked.iter() {
        let client = &mut clients[usize::from(shard_of(id, 2))];
        let reply = client.call(&Message::Get(Get { id: *id }), &[]).unwrap();
        let Ok(Message::GetOk(ok)) = reply.to_message() else {
            panic!("acknowledged {id} lost: {reply:?}\nlog:\n{}", node.log())
        };
        assert_eq!(ok.kind, *kind);
        assert_eq!(reply.payload(), &content[..], "{id}: wrong bytes");
    }
}

#[test]
fn sigterm_under_load_exits_zero_and_loses_nothing_acknowledged() {
    let mut node = TestNode::start(2, &[]);
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&node, 6, &acked, &stop);
    std::thread::sleep(Duration::from_millis(1500));
    let status = node.sigterm();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(status.success(), "exit {status:?}; log:\n{}", node.log());
    let log = node.log();
    assert_eq!(log.matches("shard closed cleanly").count(), 2, "{log}");
    node.launch();
    assert_all_present(&node, &acked);
    // The clean shutdown checkpointed: the restart replayed nothing.
    let restart_log = node.log();
    let last_start = restart_log.rsplit("starting").next().unwrap();
    let opens: Vec<&str> = last_start
        .lines()
        .filter(|line| line.contains("shard open"))
        .collect();
    assert_eq!(opens.len(), 2, "{last_start}");
    for open in opens {
        assert!(open.contains("replayed_records=0"), "{open}");
        assert!(!open.contains("checkpoint_entries=0"), "{open}");
    }
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let mut node = TestNode::start(2, &[]);
    for round in 0..3 {
        let acked: Acked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&node, 6, &acked, &stop);
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        node.sigkill();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        node.launch();
        assert_all_present(&node, &acked);
    }
}
