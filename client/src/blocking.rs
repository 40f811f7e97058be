//! The blocking API, for frontends built on plain threads.
//!
//! Each call drives the async operation to completion on the calling thread
//! (`futures_lite::future::block_on`); the I/O itself still happens on the
//! client's I/O threads. Do not call it from inside an async runtime's
//! worker thread: use [`crate::Client`] there.

use bytes::Bytes;
use futures_lite::future::block_on;
use stratum_wire::{ObjectId, ObjectKind, Topology};

use crate::client::{Client, NodeRepair, NodeStats, Object, PutReceipt};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::get_many::GetMany;

/// A blocking handle to a Stratum cluster; see [`Client`] for what each
/// operation does. Cheap to clone.
#[derive(Clone)]
pub struct BlockingClient {
    client: Client,
}

impl BlockingClient {
    pub fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Self {
            client: block_on(Client::connect(config))?,
        })
    }

    /// The async client sharing this one's connections.
    pub fn async_client(&self) -> &Client {
        &self.client
    }

    /// See [`Client::install_dictionary`].
    pub fn install_dictionary(
        &self,
        dictionary: &[u8],
        make_current: bool,
    ) -> Result<Vec<crate::NodeDictionary>, ClientError> {
        block_on(self.client.install_dictionary(dictionary, make_current))
    }

    /// See [`Client::traffic`].
    pub fn traffic(&self) -> crate::TrafficStats {
        self.client.traffic()
    }

    pub fn topology(&self) -> Topology {
        self.client.topology()
    }

    pub fn put(
        &self,
        kind: ObjectKind,
        content: impl Into<Bytes>,
    ) -> Result<PutReceipt, ClientError> {
        block_on(self.client.put(kind, content))
    }

    pub fn get(&self, id: ObjectId) -> Result<Object, ClientError> {
        block_on(self.client.get(id))
    }

    pub fn has(&self, id: ObjectId) -> Result<bool, ClientError> {
        block_on(self.client.has(id))
    }

    pub fn delete(&self, id: ObjectId) -> Result<bool, ClientError> {
        block_on(self.client.delete(id))
    }

    /// An iterator over the objects as they arrive.
    pub fn get_many(&self, ids: impl IntoIterator<Item = ObjectId>) -> GetManyIter {
        GetManyIter {
            inner: self.client.get_many(ids),
        }
    }

    pub fn stats(&self) -> Vec<NodeStats> {
        block_on(self.client.stats())
    }

    /// See [`Client::repair`].
    pub fn repair(&self) -> Vec<NodeRepair> {
        block_on(self.client.repair())
    }
}

impl From<Client> for BlockingClient {
    fn from(client: Client) -> Self {
        Self { client }
    }
}

/// Blocking iteration over a [`GetMany`].
pub struct GetManyIter {
    inner: GetMany,
}

impl Iterator for GetManyIter {
    type Item = (ObjectId, Result<Object, ClientError>);

    fn next(&mut self) -> Option<Self::Item> {
        block_on(self.inner.next())
    }
}
