//! How cores talk: one bounded flume inbox per core, and every core holds a
//! sender to every inbox. Messages move data between cores; nothing is
//! shared and nothing is locked. (glommio wakes a task woken from another
//! thread on its own executor.)

use stratum_wire::placement::Topology;

use super::metrics::MetricsSnapshot;
use crate::shard::ops::{Done, Op, OpError};

/// Messages a core's inbox accepts.
pub enum CoreMsg {
    /// A request another core received for an object this core owns.
    Forward {
        op: Op,
        reply: flume::Sender<Result<Done, OpError>>,
    },
    /// A snapshot of this core's metrics (admin endpoint, `stats`).
    Metrics {
        reply: flume::Sender<MetricsSnapshot>,
    },
    /// Route by this (already validated) topology from now on; say so on
    /// `done`.
    Topology {
        topology: Topology,
        done: flume::Sender<u16>,
    },
    /// Start an anti-entropy pass now (`repair` from an operator).
    Repair,
    /// Store this dictionary durably on this core's shard; say how it went
    /// on `done`.
    InstallDictionary {
        bytes: Vec<u8>,
        make_current: bool,
        done: flume::Sender<Result<bool, OpError>>,
    },
    /// Shutdown, phase 1: stop accepting, drain connections, then say so on
    /// `drained`. Forwarded ops are still served (other cores are draining
    /// too).
    Drain { drained: flume::Sender<u16> },
    /// Shutdown, phase 2 (every core has drained): checkpoint and close the
    /// store, then stop.
    Close,
}

/// Inbox capacity per core. A full inbox answers the forwarding request
/// `Busy` instead of queueing without bound.
pub const INBOX_CAPACITY: usize = 4096;

/// Senders to every core's inbox, indexed by shard id.
#[derive(Clone)]
pub struct Mesh {
    inboxes: Vec<flume::Sender<CoreMsg>>,
}

impl Mesh {
    /// Builds the mesh: the senders (cloned into every core) and each core's
    /// receiver (moved into that core).
    pub fn new(cores: u16) -> (Self, Vec<flume::Receiver<CoreMsg>>) {
        let (senders, receivers) = (0..cores).map(|_| flume::bounded(INBOX_CAPACITY)).unzip();
        (Self { inboxes: senders }, receivers)
    }

    pub fn cores(&self) -> u16 {
        self.inboxes.len() as u16
    }

    /// Sends without waiting; `Err` gives the message back when the inbox is
    /// full or its core is gone.
    pub fn try_send(&self, core: u16, msg: CoreMsg) -> Result<(), CoreMsg> {
        self.inboxes[usize::from(core)]
            .try_send(msg)
            .map_err(|err| err.into_inner())
    }

    /// Sends, waiting for room (control messages that must arrive).
    pub fn send_blocking(&self, core: u16, msg: CoreMsg) -> bool {
        self.inboxes[usize::from(core)].send(msg).is_ok()
    }

    /// Sends from async code, waiting for room.
    pub async fn send(&self, core: u16, msg: CoreMsg) -> bool {
        self.inboxes[usize::from(core)]
            .send_async(msg)
            .await
            .is_ok()
    }
}
