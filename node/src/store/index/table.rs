//! One open-addressing table of the index: 16-byte entries in buckets of
//! four (one 64-byte cache line), chosen by the key's high bits; a full
//! bucket overflows into the next (linear probing by bucket). Removal leaves
//! a removed slot, reused by inserts; a resize (`mod.rs`) purges them.

use super::Location;

pub(super) const SLOTS: usize = 4;
/// The smallest table.
pub(super) const MIN_BUCKETS: usize = 64;
pub(super) const EMPTY: u64 = 0;
/// A removed entry's location; never a valid packed location (length 0).
pub(super) const REMOVED: u64 = u64::MAX << 24;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; SLOTS],
    locations: [u64; SLOTS],
}

/// `count` empty buckets from zeroed memory. `vec![Bucket::default(); n]`
/// would write every byte at once (19 ms for a 256 MiB table here); fresh
/// zeroed pages cost nothing until the drain first touches them.
fn zeroed_buckets(count: usize) -> Vec<Bucket> {
    assert!(count > 0);
    let layout = std::alloc::Layout::array::<Bucket>(count).expect("index table size");
    // SAFETY: the layout is `count` Buckets' and not zero-sized; a Bucket is
    // plain u64s, so all-zero bytes are a valid (empty) Bucket; the Vec owns
    // the allocation with exactly the layout it frees it with.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<Bucket>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Vec::from_raw_parts(ptr, count, count)
    }
}

pub(super) struct Table {
    buckets: Vec<Bucket>,
    /// log2(buckets.len())
    bits: u32,
    live: usize,
    removed: usize,
}

impl Table {
    /// Buckets for `objects` entries without passing 80% full.
    pub(super) fn buckets_for(objects: usize) -> usize {
        (objects * 5 / 4 / SLOTS + 1)
            .next_power_of_two()
            .max(MIN_BUCKETS)
    }

    /// Whether a resize should double the table (live entries alone past
    /// 2/3, so the doubled table starts over 1/3 full), rather than keep its
    /// size and purge removed slots.
    pub(super) fn should_double(&self) -> bool {
        (self.live + 1) * 3 > self.buckets.len() * SLOTS * 2
    }

    pub(super) fn with_buckets(count: usize) -> Self {
        debug_assert!(count.is_power_of_two());
        Self {
            buckets: zeroed_buckets(count),
            bits: count.trailing_zeros(),
            live: 0,
            removed: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Heap bytes held by the table.
    pub(super) fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    fn home(&self, key: u64) -> usize {
        (key >> (64 - self.bits)) as usize
    }

    /// Every location stored under `key` (normally zero or one).
    pub(super) fn candidates(&self, key: u64) -> impl Iterator<Item = Location> + '_ {
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

    /// Whether one more entry would pass 80% of the slots (live plus
    /// removed): time to resize.
    pub(super) fn is_full(&self) -> bool {
        (self.live + self.removed + 1) * 5 > self.buckets.len() * SLOTS * 4
    }

    /// Adds an entry. The caller has checked that this exact object is not
    /// already present (another object may share the key), and that the
    /// table is not full.
    pub(super) fn insert(&mut self, key: u64, location: Location) {
        debug_assert!(key != EMPTY);
        debug_assert!((self.live + self.removed) < self.buckets.len() * SLOTS);
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

    /// Moves bucket `bucket`'s live entries out (to `into`), leaving removed
    /// slots behind: probe chains through the bucket stay unbroken for the
    /// entries still here.
    pub(super) fn drain_bucket(&mut self, bucket: usize, mut into: impl FnMut(u64, Location)) {
        let current = &mut self.buckets[bucket];
        for slot in 0..SLOTS {
            let (key, location) = (current.keys[slot], current.locations[slot]);
            if key != EMPTY && location != REMOVED {
                into(key, Location::unpack(location));
                current.locations[slot] = REMOVED;
                self.live -= 1;
                self.removed += 1;
            }
        }
    }

    pub(super) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Replaces `old` under `key` with `new`. Returns whether `old` was there.
    pub(super) fn replace(&mut self, key: u64, old: Location, new: Location) -> bool {
        match self.find_slot(key, old) {
            Some((bucket, slot)) => {
                self.buckets[bucket].locations[slot] = new.pack();
                true
            }
            None => false,
        }
    }

    /// Removes the entry `key → location`. Returns whether it was there.
    pub(super) fn remove(&mut self, key: u64, location: Location) -> bool {
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
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            (0..SLOTS).filter_map(move |slot| {
                let (key, location) = (bucket.keys[slot], bucket.locations[slot]);
                (key != EMPTY && location != REMOVED).then(|| (key, Location::unpack(location)))
            })
        })
    }
}
