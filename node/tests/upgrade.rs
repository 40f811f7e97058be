//! Upgrades never strand data: a data dir written by each earlier release
//! (fixtures under `tests/fixtures/datadirs/`, made with that release's own
//! binaries by `scripts/make-datadir-fixture.py`) opens with this build and
//! serves everything it held, byte for byte, and nothing it had deleted:
//! through its index checkpoint, and again by replaying every record. New
//! writes (compressed ones included) then land beside the old records and
//! survive a restart. The fixture of the release that brought compression
//! holds compressed records, some naming its shard's dictionary.

use std::path::{Path, PathBuf};

use stratum_testkit::{object, TestClient, TestNode};
use stratum_wire::codec::{self, DEFAULT_LEVEL};
use stratum_wire::message::{Get, Put};
use stratum_wire::{Codec, Message, MessageRef, ObjectId, ObjectKind};

struct Entry {
    id: ObjectId,
    content: Vec<u8>,
    live: bool,
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadirs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The content `scripts/make-datadir-fixture.py` wrote for a manifest line.
fn content(seed: u64, len: usize, form: &str) -> Vec<u8> {
    match form {
        "random" => object(seed, len).2,
        "text" => format!("object {seed}: a line of text that compresses well\n")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(len)
            .collect(),
        other => panic!("unknown content form {other}"),
    }
}

fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("MANIFEST")).expect("MANIFEST");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, seed, len, form, state] = fields[..] else {
                panic!("bad manifest line {line:?}")
            };
            Entry {
                id: ObjectId::from_hex(id).expect("id"),
                content: content(seed.parse().unwrap(), len.parse().unwrap(), form),
                live: state == "live",
            }
        })
        .collect()
}

/// Copies a fixture into `to`, inflating the `.zst` files it was stored as.
fn install(fixture: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            install(&path, &to.join(&name));
        } else if let Some(stem) = name.strip_suffix(".zst") {
            let packed = std::fs::read(&path).unwrap();
            let bytes = zstd::stream::decode_all(&packed[..]).expect("fixture inflates");
            std::fs::write(to.join(stem), bytes).unwrap();
        } else if name != "MANIFEST" {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn check_serves(node: &TestNode, entries: &[Entry], release: &str) {
    for mut client in [
        node.client(0),
        TestClient::connect_revision(node.addr(0), 2).expect("revision 2"),
    ] {
        let dictionaries = client.fetch_dictionaries().expect("dictionaries");
        for entry in entries {
            let frame = client
                .call(&Message::Get(Get { id: entry.id }), &[])
                .expect("get answered");
            match frame.message() {
                MessageRef::GetOk(_) => {
                    assert!(entry.live, "{release}: deleted {} is served", entry.id);
                    let got = codec::decode(frame.codec(), frame.payload(), 1 << 30, &dictionaries)
                        .expect("inflates");
                    assert_eq!(
                        got.as_ref(),
                        entry.content.as_slice(),
                        "{release}: {}",
                        entry.id
                    );
                }
                MessageRef::Error(_) => {
                    assert!(!entry.live, "{release}: {} is lost", entry.id)
                }
                other => panic!("{release}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn data_dirs_of_earlier_releases_open_and_serve_everything_they_held() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 2, "fixtures: {fixtures:?}");
    for fixture in fixtures {
        let release = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let mut entries = manifest(&fixture);
        assert!(entries.iter().any(|e| e.live) && entries.iter().any(|e| !e.live));
        let mut node = TestNode::prepare(1, &[]);
        let data = node.dir.join("data");
        install(&fixture, &data);

        // Through the checkpoint the old release wrote at its clean stop.
        node.launch();
        check_serves(&node, &entries, &release);

        // New objects beside the old, compressed and raw.
        let mut client = TestClient::connect_revision(node.addr(0), 2).expect("revision 2");
        for seed in 0..6u64 {
            let content = content(
                1000 + seed,
                5000,
                if seed % 2 == 0 { "text" } else { "random" },
            );
            let id = ObjectId::compute(ObjectKind::Blob, &content);
            let (codec, payload) = match codec::compress(&content, DEFAULT_LEVEL, None).unwrap() {
                Some(compressed) => (Codec::Zstd, compressed),
                None => (Codec::Raw, content.clone()),
            };
            let put = Message::Put(Put {
                id,
                kind: ObjectKind::Blob,
            });
            let ack = client.call_as(&put, &payload, codec).expect("put");
            assert!(matches!(ack.message(), MessageRef::PutAck(_)), "{release}");
            entries.push(Entry {
                id,
                content,
                live: true,
            });
        }
        drop(client);
        node.sigterm();

        // Again by replaying every record (no checkpoint).
        std::fs::remove_file(data.join("shard-000/index.ckpt")).expect("checkpoint");
        node.launch();
        check_serves(&node, &entries, &release);
        node.sigterm();
    }
}
