//! Routes: a peer with its connection's place in the pool worked out once.
//!
//! A request names its destination by [`Route`], not by [`Peer`]: the
//! owning I/O thread and the connection's slot there were fixed when the
//! peer was first seen, so the hot path does no hashing of addresses, no
//! string copies and no map lookups, only a reference-count increment.
//!
//! Every distinct peer gets one route for the client's life, whatever the
//! topology does afterwards, so a peer keeps its connection (and its
//! thread) across topology refreshes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Peer;

/// Where a request goes, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Route(Arc<Resolved>);

#[derive(Debug)]
struct Resolved {
    peer: Peer,
    thread: usize,
    slot: usize,
}

impl Route {
    pub fn peer(&self) -> &Peer {
        &self.0.peer
    }

    /// The I/O thread that owns this peer's connection.
    pub fn thread(&self) -> usize {
        self.0.thread
    }

    /// The connection's index among its thread's connections.
    pub fn slot(&self) -> usize {
        self.0.slot
    }
}

/// Hands out routes: peers are dealt to the I/O threads in turn, so
/// connections spread evenly (hashing can put every shard of a node on one
/// thread).
pub(crate) struct Routes {
    threads: usize,
    known: Mutex<HashMap<Peer, Route>>,
}

impl Routes {
    pub fn new(threads: usize) -> Self {
        assert!(threads > 0, "a client has at least one I/O thread");
        Self {
            threads,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The route of `peer`, the same one every time it is asked for.
    pub fn route(&self, peer: &Peer) -> Route {
        // A poisoned lock only means a panic elsewhere between a lookup and
        // an insert: the map is still whole.
        let mut known = self.known.lock().unwrap_or_else(|err| err.into_inner());
        if let Some(route) = known.get(peer) {
            return route.clone();
        }
        let index = known.len();
        let route = Route(Arc::new(Resolved {
            peer: peer.clone(),
            thread: index % self.threads,
            slot: index / self.threads,
        }));
        known.insert(peer.clone(), route.clone());
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node_id: u32, shard: u16) -> Peer {
        Peer {
            node_id,
            shard,
            address: format!("127.0.0.1:{}", 7000 + shard),
        }
    }

    #[test]
    fn a_peer_keeps_its_route_and_peers_spread_over_threads() {
        let routes = Routes::new(2);
        let a = routes.route(&peer(1, 0));
        let b = routes.route(&peer(1, 1));
        let c = routes.route(&peer(2, 0));
        assert_eq!((a.thread(), a.slot()), (0, 0));
        assert_eq!((b.thread(), b.slot()), (1, 0));
        assert_eq!((c.thread(), c.slot()), (0, 1));
        let again = routes.route(&peer(1, 1));
        assert_eq!((again.thread(), again.slot()), (1, 0));
        assert_eq!(again.peer(), &peer(1, 1));
    }

    #[test]
    fn the_same_node_at_another_address_is_another_connection() {
        let routes = Routes::new(1);
        let first = routes.route(&peer(1, 0));
        let moved = routes.route(&Peer {
            address: "127.0.0.1:9999".into(),
            ..peer(1, 0)
        });
        assert_ne!(first.slot(), moved.slot());
    }
}
