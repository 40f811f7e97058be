//! Read repair: a client asked this node (a replica) for an object it does
//! not hold. The client is answered "not found" at once (it fails over to
//! the next replica itself); in the background this core asks the other
//! replicas for the object, checks it against its id and stores it.
//!
//! Only client reads trigger it (a node's own reads of a peer never do, so
//! two replicas lacking an object cannot ping-pong), at most
//! [`MAX_CONCURRENT`] per core, one per id.

use std::rc::Rc;

use stratum_wire::message::{Get, GetDictionary, MessageRef};
use stratum_wire::{Message, ObjectId, ObjectKind};

use super::peer_link::{LinkError, PeerLink};
use super::shard::Shard;
use crate::shard::ops::Op;
use crate::store::{StoreError, StoredObject, Verified};

/// Repairs one core runs at once; misses past it are not repaired.
pub const MAX_CONCURRENT: usize = 32;

/// Starts a repair of `id` if this node is one of its replicas and others
/// exist.
pub fn maybe_repair<S: Shard>(core: &Rc<S>, id: ObjectId) {
    let placement = core.replication().placement();
    let me = core.config().node_id;
    if placement.replica_node_ids(&id).len() < 2 || !placement.is_replica(me, &id) {
        return;
    }
    if !core.replication().start_repair(id) {
        return;
    }
    let task_core = Rc::clone(core);
    let spawned = core.replication().background.spawn(async move {
        repair(&task_core, id).await;
        task_core.replication().end_repair(&id);
    });
    match spawned {
        Ok(handle) => {
            handle.detach();
        }
        Err(_) => core.replication().end_repair(&id),
    }
}

/// A client's get of `id` missed here. If the topology changed while this
/// node ran, the object may still sit only on nodes that replicated it
/// before (rebalancing moves it at a bounded rate): those are asked, in
/// turn, and the first copy that verifies against its id is stored here (if
/// this node replicates it now) and returned. Nothing is asked when no
/// earlier topology differs for this id, so a steady cluster pays nothing.
pub async fn fetch_moved<S: Shard>(core: &Rc<S>, id: ObjectId) -> Option<StoredObject> {
    let previous = core.replication().previous_placements();
    if previous.is_empty() {
        return None;
    }
    let current = core.replication().placement();
    let me = core.config().node_id;
    let mut asked: Vec<(u32, u16)> = Vec::new();
    for placement in &previous {
        for replica in placement.replicas(&id) {
            let target = (replica.node.id, replica.shard);
            if replica.node.id == me
                || current.is_replica(replica.node.id, &id)
                || asked.contains(&target)
            {
                continue;
            }
            asked.push(target);
            let Some(object) = copy_from(core, id, target).await else {
                continue;
            };
            let found = StoredObject {
                kind: object.kind(),
                codec: object.codec(),
                payload: object.payload_bytes(),
            };
            if current.is_replica(me, &id) {
                if let Err(err) = core.run_op(&id, Op::PutUnlessDeleted(object)).await {
                    tracing::warn!(%id, code = ?err.code, detail = %err.detail, "moved object served but not stored here");
                }
            }
            return Some(found);
        }
    }
    None
}

/// `id` from `node`'s shard `shard`, verified against its id.
async fn copy_from<S: Shard>(
    core: &Rc<S>,
    id: ObjectId,
    (node, shard): (u32, u16),
) -> Option<Verified> {
    let link = core.replication().link(node, shard)?;
    let mut frame = link.call(&Message::Get(Get { id }), &[]).await.ok()?;
    let kind = match frame.message() {
        MessageRef::GetOk(ok) if ok.id.get() == id => ObjectKind::from(ok.kind),
        _ => return None,
    };
    match verify_copy_from(core, &link, id, kind, &mut frame).await {
        Ok(object) => Some(object),
        Err(_) => {
            tracing::warn!(%id, node, "a copy from an earlier replica does not match its id");
            None
        }
    }
}

async fn repair<S: Shard>(core: &Rc<S>, id: ObjectId) {
    let me = core.config().node_id;
    let replicas: Vec<(u32, u16)> = core
        .replication()
        .placement()
        .replicas(&id)
        .filter(|replica| replica.node.id != me)
        .map(|replica| (replica.node.id, replica.shard))
        .collect();
    for (node, shard) in replicas {
        let Some(link) = core.replication().link(node, shard) else {
            continue;
        };
        let mut frame = match link.call(&Message::Get(Get { id }), &[]).await {
            Ok(frame) => frame,
            Err(LinkError::Node { .. }) => continue,
            Err(err) => {
                tracing::debug!(%id, node, error = %err, "read repair: replica unreachable");
                continue;
            }
        };
        let kind = match frame.message() {
            MessageRef::GetOk(ok) if ok.id.get() == id => ObjectKind::from(ok.kind),
            _ => continue,
        };
        let Ok(object) = verify_copy_from(core, &link, id, kind, &mut frame).await else {
            tracing::warn!(%id, node, "read repair: the replica's copy does not match its id");
            continue;
        };
        let stored = core.run_op(&id, Op::PutUnlessDeleted(object)).await;
        let mut stats = core.replication().stats.borrow_mut();
        match stored {
            Ok(_) => {
                stats.read_repairs += 1;
                tracing::info!(%id, from = node, "read repair: copied a missing object");
            }
            Err(err) => {
                stats.read_repair_failures += 1;
                tracing::warn!(%id, code = ?err.code, detail = %err.detail, "read repair: cannot store the copy");
            }
        }
        return;
    }
}

/// Proves a copy `link`'s peer sent (in whatever codec it came), after
/// fetching from it the
/// dictionary the copy names if this shard lacks it.
async fn verify_copy_from<S: Shard>(
    core: &S,
    link: &PeerLink,
    id: ObjectId,
    kind: ObjectKind,
    frame: &mut stratum_wire::Frame,
) -> Result<Verified, StoreError> {
    if let Some(dictionary) = stratum_wire::codec::frame_dictionary(frame.payload()) {
        if !core.store().dictionary_set().contains(dictionary) {
            fetch_dictionary(core, link, dictionary).await;
        }
    }
    core.store()
        .verify_payload(id, kind, frame.codec(), frame.take_payload())
        .await
}

/// Copies a dictionary from a peer onto this shard (best effort: without
/// it, the copy that needs it is refused and another source tried).
async fn fetch_dictionary<S: Shard>(core: &S, link: &PeerLink, id: u32) {
    let message = Message::GetDictionary(GetDictionary { id });
    let mut frame = match link.call(&message, &[]).await {
        Ok(frame) => frame,
        Err(err) => {
            tracing::debug!(id = format_args!("{id:#010x}"), error = %err, "cannot fetch a dictionary from a peer");
            return;
        }
    };
    if !matches!(frame.message(), MessageRef::DictionaryBytes(reply) if reply.id == id) {
        return;
    }
    if let Err(err) = core
        .store()
        .install_dictionary(frame.take_payload(), false)
        .await
    {
        tracing::warn!(id = format_args!("{id:#010x}"), error = %err, "a peer's dictionary was not stored");
    }
}
