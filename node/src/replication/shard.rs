//! The narrow handle replication has on the core it runs on. The server's
//! core implements it; replication never sees the core's listener,
//! connections, mesh or metrics, and never imports the server.

use std::future::Future;

use stratum_wire::ObjectId;

use super::Replicator;
use crate::config::NodeConfig;
use crate::shard::ops::{Done, Op, OpError};
use crate::store::fs::StoreFs;
use crate::store::ShardStore;

/// One core, as replication sees it.
pub trait Shard: 'static {
    /// The file system under the core's store.
    type Fs: StoreFs + 'static;

    fn shard_id(&self) -> u16;
    fn config(&self) -> &NodeConfig;
    /// This core's own store.
    fn store(&self) -> &ShardStore<Self::Fs>;
    /// This core's replication state: links, placement, hints, stats.
    fn replication(&self) -> &Replicator;
    /// Runs `op` on the core of this node that owns `id`: this one, or
    /// another by message.
    fn run_op(&self, id: &ObjectId, op: Op) -> impl Future<Output = Result<Done, OpError>>;
}

/// A shared core is the core: functions that only look take `&S`, and a
/// caller holding `&Rc<S>` passes it as is.
impl<T: Shard> Shard for std::rc::Rc<T> {
    type Fs = T::Fs;

    fn shard_id(&self) -> u16 {
        T::shard_id(self)
    }
    fn config(&self) -> &NodeConfig {
        T::config(self)
    }
    fn store(&self) -> &ShardStore<Self::Fs> {
        T::store(self)
    }
    fn replication(&self) -> &Replicator {
        T::replication(self)
    }
    fn run_op(&self, id: &ObjectId, op: Op) -> impl Future<Output = Result<Done, OpError>> {
        T::run_op(self, id, op)
    }
}
