//! `stratum-client`: the library Git frontends link.
//!
//! Not built yet (issue #5). What a client needs to agree with the nodes on
//! ids, frames and placement is already here, re-exported from
//! `stratum-wire` so frontends depend on one crate and can never compute a
//! different placement than the nodes do.

pub use stratum_wire::{
    frame, message, object_id, placement, Frame, FrameDecoder, FrameEncoder, FrameError,
    FrameLimits, Message, MessageKind, MessageRef, ObjectId, ObjectIdError, ObjectKind, Placement,
    Topology, TopologyError,
};
