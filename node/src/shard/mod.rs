//! The shard layer: the store operations a request turns into, run on the
//! core that owns the object, and their errors as the wire reports them.
//! Above the store; below replication and request handling.

pub mod ops;
