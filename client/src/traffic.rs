//! What compression saves on the wire, as this client saw it: object bytes
//! before compression (content) and as sent or received (payload).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every clone of a client.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    content_sent: AtomicU64,
    payload_sent: AtomicU64,
    content_received: AtomicU64,
    payload_received: AtomicU64,
}

/// A snapshot of [`Traffic`]: bytes of object content and of the payloads
/// that carried it, for puts as they were sent (retries included) and
/// objects read and verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    pub content_bytes_sent: u64,
    pub payload_bytes_sent: u64,
    pub content_bytes_received: u64,
    pub payload_bytes_received: u64,
}

impl Traffic {
    pub(crate) fn sent(&self, content: u64, payload: u64) {
        self.content_sent.fetch_add(content, Ordering::Relaxed);
        self.payload_sent.fetch_add(payload, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, content: u64, payload: u64) {
        self.content_received.fetch_add(content, Ordering::Relaxed);
        self.payload_received.fetch_add(payload, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TrafficStats {
        TrafficStats {
            content_bytes_sent: self.content_sent.load(Ordering::Relaxed),
            payload_bytes_sent: self.payload_sent.load(Ordering::Relaxed),
            content_bytes_received: self.content_received.load(Ordering::Relaxed),
            payload_bytes_received: self.payload_received.load(Ordering::Relaxed),
        }
    }
}
