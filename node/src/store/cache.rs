//! A per-shard cache of hot objects, bounded in bytes, with CLOCK
//! (second-chance) eviction. Only objects that passed their checks enter it,
//! so a hit is served without re-verification.
//!
//! It holds objects as stored (compressed when their record is): more
//! objects fit, and a hit is sent to a client as it is, with no work.

use std::collections::{HashMap, VecDeque};

use stratum_wire::ObjectId;

use super::StoredObject;

struct Entry {
    object: StoredObject,
    referenced: bool,
}

pub struct ObjectCache {
    map: HashMap<ObjectId, Entry, ahash::RandomState>,
    clock: VecDeque<ObjectId>,
    bytes: usize,
    capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

/// Fixed per-entry overhead charged against the budget (map slot, clock
/// slot, `Bytes` header), so a cache of tiny objects stays bounded too.
const ENTRY_OVERHEAD: usize = 96;

impl ObjectCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::default(),
            clock: VecDeque::new(),
            bytes: 0,
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, id: &ObjectId) -> Option<StoredObject> {
        match self.map.get_mut(id) {
            Some(entry) => {
                entry.referenced = true;
                self.hits += 1;
                Some(entry.object.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Like [`ObjectCache::get`], but a miss is not counted (the caller
    /// falls back to a counted `get`).
    pub fn peek(&mut self, id: &ObjectId) -> Option<StoredObject> {
        let entry = self.map.get_mut(id)?;
        entry.referenced = true;
        self.hits += 1;
        Some(entry.object.clone())
    }

    /// Whether an object of `len` bytes may enter. One object may not take
    /// more than an eighth of the cache: a large blob read once must not
    /// flush everything hot.
    pub fn admits(&self, len: usize) -> bool {
        len + ENTRY_OVERHEAD <= self.capacity / 8
    }

    pub fn insert(&mut self, id: ObjectId, object: StoredObject) {
        let cost = object.payload.len() + ENTRY_OVERHEAD;
        if !self.admits(object.payload.len()) || self.map.contains_key(&id) {
            return;
        }
        while self.bytes + cost > self.capacity {
            if !self.evict_one() {
                return;
            }
        }
        self.bytes += cost;
        self.map.insert(
            id,
            Entry {
                object,
                referenced: false,
            },
        );
        self.clock.push_back(id);
    }

    pub fn remove(&mut self, id: &ObjectId) {
        if let Some(entry) = self.map.remove(id) {
            self.bytes -= entry.object.payload.len() + ENTRY_OVERHEAD;
        }
        // The clock slot is dropped lazily by eviction.
    }

    fn evict_one(&mut self) -> bool {
        while let Some(id) = self.clock.pop_front() {
            let Some(entry) = self.map.get_mut(&id) else {
                continue; // removed earlier
            };
            if entry.referenced {
                entry.referenced = false;
                self.clock.push_back(id);
                continue;
            }
            self.remove(&id);
            return true;
        }
        false
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stratum_wire::{Codec, ObjectKind};

    fn object(content: Bytes) -> StoredObject {
        StoredObject {
            kind: ObjectKind::Blob,
            codec: Codec::Raw,
            payload: content,
        }
    }

    fn id(i: u32) -> ObjectId {
        ObjectId::compute(ObjectKind::Blob, &i.to_le_bytes())
    }

    #[test]
    fn stays_within_its_byte_budget_and_keeps_hot_entries() {
        let mut cache = ObjectCache::new(64 * 1024);
        let content = Bytes::from(vec![7u8; 1000]);
        cache.insert(id(0), object(content.clone()));
        for i in 1..1000 {
            assert!(cache.get(&id(0)).is_some(), "hot entry evicted at {i}");
            cache.insert(id(i), object(content.clone()));
            assert!(cache.bytes() <= 64 * 1024);
        }
        assert!(cache.len() < 70);
        cache.remove(&id(0));
        assert!(cache.get(&id(0)).is_none());
    }

    #[test]
    fn refuses_objects_larger_than_an_eighth() {
        let mut cache = ObjectCache::new(8000);
        cache.insert(id(1), object(vec![0u8; 1000].into()));
        assert!(cache.is_empty());
    }
}
