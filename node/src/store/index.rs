//! The in-memory index: object key → where its record is.
//!
//! Budget: at most 48 bytes of RAM per stored object. An entry is 16 bytes:
//! - `key`: id bytes 16..24 as a u64. (Bytes 0..16 are skewed inside a
//!   shard: the ring and the shard rule chose them.) 0 marks an empty slot,
//!   so a real key of 0 is stored as 1.
//! - `location`: segment slot (14 bits) | offset / 8 (26 bits) | record
//!   length / 8 (24 bits): segments up to 512 MiB, records up to 128 MiB.
//!
//! 64 bits of id are not the whole id: a matching key is a *candidate*, and
//! the store confirms it against the full id in the record before it answers
//! (`has`, `get`, dedup of `put`). A false candidate costs one read, with
//! probability ~n/2^64 per lookup.
//!
//! Buckets are 4 entries, one 64-byte cache line, chosen by the key's high
//! bits; a full bucket overflows into the next (linear probing by bucket).
//! When live plus removed slots pass 80%, the table is rebuilt: doubled if
//! live entries pass 2/3, else at the same size (purging removed slots). A
//! growing table is therefore 40–80% full (20 to 40 bytes per object) and
//! never under 1/3 after a rebuild (at most 48 bytes per object). Removal
//! leaves a tombstone slot, reused by inserts and purged by the next rebuild.
//! The table does not shrink after mass deletion.

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u16,
    pub offset: u64,
    /// On-disk record length (a multiple of 8).
    pub len: u32,
}

pub const MAX_SEGMENT_SLOTS: u16 = 1 << 14;
pub const MAX_SEGMENT_BYTES: u64 = 8 << 26;
pub const MAX_RECORD_BYTES: u64 = 8 << 24;

impl Location {
    pub(crate) fn pack(self) -> u64 {
        debug_assert!(self.segment < MAX_SEGMENT_SLOTS);
        debug_assert!(self.offset % 8 == 0 && self.offset < MAX_SEGMENT_BYTES);
        debug_assert!(self.len % 8 == 0 && u64::from(self.len) < MAX_RECORD_BYTES);
        (u64::from(self.segment) << 50) | ((self.offset / 8) << 24) | u64::from(self.len / 8)
    }

    pub(crate) fn unpack(packed: u64) -> Self {
        Self {
            segment: (packed >> 50) as u16,
            offset: ((packed >> 24) & ((1 << 26) - 1)) * 8,
            len: ((packed & ((1 << 24) - 1)) * 8) as u32,
        }
    }
}

/// The key of an object id in the index.
pub fn key_of(id: &stratum_wire::ObjectId) -> u64 {
    let bytes = id.as_bytes();
    let mut key = [0u8; 8];
    key.copy_from_slice(&bytes[16..24]);
    u64::from_be_bytes(key).max(1)
}

const SLOTS: usize = 4;
const EMPTY: u64 = 0;
/// A removed entry's location; never a valid packed location (length 0).
const REMOVED: u64 = u64::MAX << 24;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; SLOTS],
    locations: [u64; SLOTS],
}

pub struct Index {
    buckets: Vec<Bucket>,
    /// log2(buckets.len())
    bits: u32,
    live: usize,
    removed: usize,
}

impl Index {
    pub fn new() -> Self {
        Self::with_buckets(64)
    }

    /// Sized for `objects` without growing.
    pub fn with_capacity(objects: usize) -> Self {
        let buckets = (objects * 5 / 4 / SLOTS + 1).next_power_of_two().max(64);
        Self::with_buckets(buckets)
    }

    fn with_buckets(count: usize) -> Self {
        debug_assert!(count.is_power_of_two());
        Self {
            buckets: vec![Bucket::default(); count],
            bits: count.trailing_zeros(),
            live: 0,
            removed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    fn home(&self, key: u64) -> usize {
        (key >> (64 - self.bits)) as usize
    }

    /// Every location stored under `key` (normally zero or one).
    pub fn candidates(&self, key: u64) -> impl Iterator<Item = Location> + '_ {
        let mask = self.buckets.len() - 1;
        let home = self.home(key);
        let mut bucket = home;
        let mut slot = 0;
        let mut done = false;
        std::iter::from_fn(move || {
            while !done {
                let current = &self.buckets[bucket];
                while slot < SLOTS {
                    let (k, l) = (current.keys[slot], current.locations[slot]);
                    slot += 1;
                    if k == EMPTY && l == EMPTY {
                        done = true;
                        return None;
                    }
                    if k == key && l != REMOVED {
                        return Some(Location::unpack(l));
                    }
                }
                slot = 0;
                bucket = (bucket + 1) & mask;
                if bucket == home {
                    done = true;
                }
            }
            None
        })
    }

    /// Adds an entry. The caller has checked that this exact object is not
    /// already present (another object may share the key).
    pub fn insert(&mut self, key: u64, location: Location) {
        debug_assert!(key != EMPTY);
        if (self.live + self.removed + 1) * 5 > self.buckets.len() * SLOTS * 4 {
            // Double only when live entries alone pass 2/3: the new table is
            // then over 1/3 full (at most 48 bytes per object). Otherwise the
            // slots are mostly removed ones: rebuild at the same size.
            self.rebuild(if (self.live + 1) * 3 > self.buckets.len() * SLOTS * 2 {
                self.buckets.len() * 2
            } else {
                self.buckets.len()
            });
        }
        let mask = self.buckets.len() - 1;
        let mut bucket = self.home(key);
        loop {
            let current = &mut self.buckets[bucket];
            for slot in 0..SLOTS {
                let is_free = current.keys[slot] == EMPTY || current.locations[slot] == REMOVED;
                if is_free {
                    if current.locations[slot] == REMOVED {
                        self.removed -= 1;
                    }
                    current.keys[slot] = key;
                    current.locations[slot] = location.pack();
                    self.live += 1;
                    return;
                }
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// Replaces `old` under `key` with `new`. Returns whether `old` was there.
    pub fn replace(&mut self, key: u64, old: Location, new: Location) -> bool {
        match self.find_slot(key, old) {
            Some((bucket, slot)) => {
                self.buckets[bucket].locations[slot] = new.pack();
                true
            }
            None => false,
        }
    }

    /// Removes the entry `key → location`. Returns whether it was there.
    pub fn remove(&mut self, key: u64, location: Location) -> bool {
        match self.find_slot(key, location) {
            Some((bucket, slot)) => {
                self.buckets[bucket].locations[slot] = REMOVED;
                self.live -= 1;
                self.removed += 1;
                true
            }
            None => false,
        }
    }

    fn find_slot(&self, key: u64, location: Location) -> Option<(usize, usize)> {
        let packed = location.pack();
        let mask = self.buckets.len() - 1;
        let home = self.home(key);
        let mut bucket = home;
        loop {
            let current = &self.buckets[bucket];
            for slot in 0..SLOTS {
                if current.keys[slot] == EMPTY && current.locations[slot] == EMPTY {
                    return None;
                }
                if current.keys[slot] == key && current.locations[slot] == packed {
                    return Some((bucket, slot));
                }
            }
            bucket = (bucket + 1) & mask;
            if bucket == home {
                return None;
            }
        }
    }

    /// Every live entry (for checkpoints and compaction).
    pub fn iter(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            (0..SLOTS).filter_map(move |slot| {
                let (key, location) = (bucket.keys[slot], bucket.locations[slot]);
                (key != EMPTY && location != REMOVED).then(|| (key, Location::unpack(location)))
            })
        })
    }

    fn rebuild(&mut self, bucket_count: usize) {
        let old = std::mem::replace(self, Self::with_buckets(bucket_count));
        for (key, location) in old.iter() {
            self.insert(key, location);
        }
    }
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(i: u64) -> Location {
        Location {
            segment: (i % 1000) as u16,
            offset: (i * 8) % MAX_SEGMENT_BYTES,
            len: 64 + (i as u32 % 100) * 8,
        }
    }

    #[test]
    fn locations_pack_losslessly_at_the_limits() {
        for loc in [
            Location {
                segment: 0,
                offset: 0,
                len: 8,
            },
            Location {
                segment: MAX_SEGMENT_SLOTS - 1,
                offset: MAX_SEGMENT_BYTES - 8,
                len: (MAX_RECORD_BYTES - 8) as u32,
            },
        ] {
            assert_eq!(Location::unpack(loc.pack()), loc);
            assert_ne!(loc.pack(), REMOVED);
            assert_ne!(loc.pack(), EMPTY);
        }
    }

    #[test]
    fn insert_find_remove_and_grow() {
        let mut index = Index::new();
        let keys: Vec<u64> = (1..=50_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
            .collect();
        for (i, key) in keys.iter().enumerate() {
            index.insert(*key, location(i as u64));
        }
        assert_eq!(index.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            let found: Vec<_> = index.candidates(*key).collect();
            assert_eq!(found, vec![location(i as u64)]);
        }
        for (i, key) in keys.iter().enumerate().step_by(2) {
            assert!(index.remove(*key, location(i as u64)));
            assert!(!index.remove(*key, location(i as u64)));
        }
        assert_eq!(index.len(), keys.len() / 2);
        for (i, key) in keys.iter().enumerate() {
            let present = index.candidates(*key).next().is_some();
            assert_eq!(present, i % 2 == 1);
        }
        assert_eq!(index.iter().count(), keys.len() / 2);
    }

    #[test]
    fn colliding_keys_keep_every_candidate() {
        let mut index = Index::new();
        index.insert(42, location(1));
        index.insert(42, location(2));
        let found: Vec<_> = index.candidates(42).collect();
        assert_eq!(found, vec![location(1), location(2)]);
        assert!(index.replace(42, location(2), location(3)));
        assert!(index.remove(42, location(1)));
        assert_eq!(index.candidates(42).collect::<Vec<_>>(), vec![location(3)]);
    }

    #[test]
    fn churn_does_not_grow_without_bound() {
        let mut index = Index::new();
        for round in 0..200_000u64 {
            let key = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            index.insert(key, location(round));
            assert!(index.remove(key, location(round)));
        }
        assert!(
            index.memory_bytes() <= 64 * 64 * 2,
            "{}",
            index.memory_bytes()
        );
    }
}

#[cfg(test)]
mod budget {
    use super::*;

    /// The resident index stays within 48 bytes per object at every size
    /// (just before and just after growth included).
    #[test]
    fn at_most_48_bytes_per_object() {
        let mut index = Index::new();
        let mut worst = 0.0f64;
        let mut key = 0x2545_F491_4F6C_DD1Du64;
        for n in 1..=300_000u64 {
            key ^= key << 13;
            key ^= key >> 7;
            key ^= key << 17;
            index.insert(
                key | 1,
                Location {
                    segment: 1,
                    offset: n * 8 % MAX_SEGMENT_BYTES,
                    len: 64,
                },
            );
            if n >= 1000 {
                worst = worst.max(index.memory_bytes() as f64 / n as f64);
            }
        }
        assert!(worst <= 48.0, "worst {worst:.1} bytes per object");
    }
}
