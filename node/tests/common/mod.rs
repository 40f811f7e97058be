//! Helpers for store tests: run a future on a glommio executor, make objects.
#![allow(dead_code)]

pub mod sim_fs;
pub mod sim_net;
pub mod virtual_clock;

pub use stratum_testkit::object;

use std::future::Future;

use stratum_node::store::fs::StoreFs;
use stratum_node::store::ShardStore;
use stratum_wire::{ObjectId, ObjectKind};

/// An object: id, kind, content.
pub type Obj = (ObjectId, ObjectKind, Vec<u8>);

pub async fn put_all<F: StoreFs + 'static>(store: &ShardStore<F>, objects: &[Obj]) {
    for (id, kind, content) in objects {
        store.put(*id, *kind, content.clone()).await.expect("put");
    }
}

/// Every object of `objects` is stored, with its kind and bytes.
pub async fn assert_present<F: StoreFs + 'static>(store: &ShardStore<F>, objects: &[Obj]) {
    for (id, kind, content) in objects {
        let got = store
            .get(id)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{id} lost"));
        assert!(
            got.kind == *kind
                && *got.content(&Default::default()).expect("inflates") == content[..],
            "{id}: wrong bytes"
        );
    }
}

/// The store holds exactly `present` (byte for byte, each once) and none of
/// `absent`.
pub async fn assert_exactly<F: StoreFs + 'static>(
    store: &ShardStore<F>,
    present: &[Obj],
    absent: &[Obj],
) {
    assert_present(store, present).await;
    for (id, _, _) in absent {
        assert!(
            store.get(id).await.expect("get").is_none(),
            "{id} resurrected"
        );
    }
    assert_eq!(
        store.stats().objects,
        present.len() as u64,
        "duplicates or losses in the index"
    );
}

/// The node's segment file system for a data dir under `dir`: the shard's
/// own io_uring ring, with the node's default registered buffers. Call it on
/// the executor that uses it.
#[allow(dead_code)]
pub fn ring_fs(dir: &std::path::Path) -> stratum_node::store::fs::uring::UringFs {
    stratum_node::store::fs::uring::UringFs::for_dir(dir, 512 << 10).expect("segment ring")
}

/// Runs `make()` on a fresh single-core glommio executor and returns its
/// output. Executors lock memory for io_uring: keep it small (8 MiB memlock
/// limit on the test hosts).
pub fn on_executor<T, Fut>(make: impl FnOnce() -> Fut + Send + 'static) -> T
where
    T: Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(make)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}
