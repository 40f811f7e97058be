//! Aligned I/O buffers, and the pool of them the ring registers with the
//! kernel.
//!
//! A registered buffer spares the kernel pinning the buffer's pages on every
//! I/O (`WRITE_FIXED` / `READ_FIXED`). Registered memory is locked memory,
//! charged against `ulimit -l` per user across processes, so the pool is
//! small (the shard's `store.io_memory_bytes`) and a buffer that does not fit
//! in it comes from the heap and goes through a plain `WRITE` / `READ`. Heap
//! buffers are kept for reuse (up to 16 MiB), so steady large batches cost
//! no allocation and no zeroing.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

/// The pool hands out whole pages.
const PAGE: usize = 4096;

/// One contiguous, page-aligned region, registered with the ring when the
/// memlock budget allows.
pub struct BufferPool {
    base: NonNull<u8>,
    layout: Layout,
    /// One bit per page: set while the page is lent out.
    used: RefCell<Vec<u64>>,
    /// The region's index in the ring's registered-buffer table, once
    /// registered.
    registered: std::cell::Cell<Option<u16>>,
    /// Heap buffers given back, kept for reuse (page-aligned, whole pages):
    /// a large batch then costs no allocation and no zeroing.
    spare: RefCell<Vec<(NonNull<u8>, Layout)>>,
    spare_bytes: std::cell::Cell<usize>,
}

/// Heap buffers kept for reuse, at most.
const SPARE_LIMIT: usize = 16 << 20;

impl BufferPool {
    /// A pool of `bytes` (rounded down to whole pages; may be zero).
    pub fn new(bytes: usize) -> Rc<Self> {
        let pages = bytes / PAGE;
        let layout = Layout::from_size_align(pages.max(1) * PAGE, PAGE)
            .expect("a whole number of pages is a valid layout");
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Rc::new(Self {
            base,
            layout,
            used: RefCell::new(vec![0; pages.div_ceil(64)]),
            registered: std::cell::Cell::new(None),
            spare: RefCell::new(Vec::new()),
            spare_bytes: std::cell::Cell::new(0),
        })
    }

    fn pages(&self) -> usize {
        self.used.borrow().len() * 64
    }

    /// The region as the iovec to register.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.base.as_ptr().cast(),
            iov_len: self.layout.size(),
        }
    }

    pub fn set_registered(&self, index: u16) {
        self.registered.set(Some(index));
    }

    pub fn is_registered(&self) -> bool {
        self.registered.get().is_some()
    }

    /// First fit of `pages` contiguous free pages.
    fn take(&self, pages: usize) -> Option<usize> {
        let mut used = self.used.borrow_mut();
        let total = (self.layout.size() / PAGE).min(used.len() * 64);
        let is_used = |used: &[u64], page: usize| used[page / 64] & (1 << (page % 64)) != 0;
        let mut run_start = 0;
        let mut run = 0;
        for page in 0..total {
            if is_used(&used, page) {
                run = 0;
                run_start = page + 1;
                continue;
            }
            run += 1;
            if run == pages {
                for taken in run_start..run_start + pages {
                    used[taken / 64] |= 1 << (taken % 64);
                }
                return Some(run_start);
            }
        }
        None
    }

    fn give_back(&self, first: usize, pages: usize) {
        let mut used = self.used.borrow_mut();
        for page in first..first + pages {
            debug_assert!(
                used[page / 64] & (1 << (page % 64)) != 0,
                "page {page} returned twice"
            );
            used[page / 64] &= !(1 << (page % 64));
        }
    }

    /// Pages lent out now (for tests and stats).
    pub fn pages_in_use(&self) -> usize {
        self.used
            .borrow()
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }
}

impl BufferPool {
    /// A spare heap buffer of at least `len` bytes, if one was given back.
    fn take_spare(&self, len: usize) -> Option<(NonNull<u8>, Layout)> {
        let mut spare = self.spare.borrow_mut();
        // Smallest fit, so large buffers stay for large batches.
        let (at, _) = spare
            .iter()
            .enumerate()
            .filter(|(_, (_, layout))| layout.size() >= len)
            .min_by_key(|(_, (_, layout))| layout.size())?;
        let taken = spare.swap_remove(at);
        self.spare_bytes
            .set(self.spare_bytes.get() - taken.1.size());
        Some(taken)
    }

    /// Keeps a heap buffer for reuse; frees it past the limit.
    fn give_spare(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.spare_bytes.get() + layout.size() <= SPARE_LIMIT {
            self.spare_bytes.set(self.spare_bytes.get() + layout.size());
            self.spare.borrow_mut().push((ptr, layout));
        } else {
            // SAFETY: allocated by `IoBuf::new` with this layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        for (ptr, layout) in self.spare.get_mut().drain(..) {
            // SAFETY: allocated by `IoBuf::new` with this layout, and no
            // buffer refers to it any more.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
        }
        // SAFETY: allocated in `new` with this layout. Every buffer lent out
        // holds an `Rc` to the pool, and the ring that registered the region
        // holds one too until the kernel has let go of it.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

enum Origin {
    Pool {
        pool: Rc<BufferPool>,
        first: usize,
    },
    /// From the heap, given back to `pool`'s spares when dropped.
    Spare {
        pool: Rc<BufferPool>,
        layout: Layout,
    },
}

/// An owned, aligned buffer. While an I/O on it is in flight the ring holds
/// it, so the kernel never writes into freed memory.
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    origin: Origin,
}

impl IoBuf {
    /// `len` bytes aligned to `align` (a power of two, at most a page):
    /// from `pool` when it has room, else from the heap.
    pub fn new(pool: &Rc<BufferPool>, len: usize, align: usize) -> Self {
        debug_assert!(align.is_power_of_two() && align <= PAGE);
        let pages = len.max(1).div_ceil(PAGE);
        if pages <= pool.pages() {
            if let Some(first) = pool.take(pages) {
                // SAFETY: `first + pages` pages lie inside the pool's region.
                let ptr = unsafe { pool.base.as_ptr().add(first * PAGE) };
                return Self {
                    ptr: NonNull::new(ptr).expect("inside a non-null region"),
                    len,
                    origin: Origin::Pool {
                        pool: Rc::clone(pool),
                        first,
                    },
                };
            }
        }
        // Larger than the registered pool has room for: a spare heap
        // buffer, whole pages (so any spare fits any alignment asked).
        let size = pages * PAGE;
        let (ptr, layout) = pool.take_spare(size).unwrap_or_else(|| {
            let layout =
                Layout::from_size_align(size, PAGE).expect("whole pages are a valid layout");
            // SAFETY: the layout has a non-zero size. Zeroed once, when first
            // allocated: a reused buffer holds earlier I/O's bytes, never
            // uninitialized memory.
            let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
                .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
            (ptr, layout)
        });
        Self {
            ptr,
            len,
            origin: Origin::Spare {
                pool: Rc::clone(pool),
                layout,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The registered-buffer index when this buffer lies in a registered
    /// pool: the I/O can then be `*_FIXED`.
    pub fn fixed_index(&self) -> Option<u16> {
        match &self.origin {
            Origin::Pool { pool, .. } => pool.registered.get(),
            Origin::Spare { .. } => None,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points to at least `len` initialized bytes that
        // this buffer owns.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        match &self.origin {
            Origin::Pool { pool, first } => pool.give_back(*first, self.len.max(1).div_ceil(PAGE)),
            Origin::Spare { pool, layout } => pool.give_spare(self.ptr, *layout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_lends_contiguous_pages_and_takes_them_back() {
        let pool = BufferPool::new(8 * PAGE);
        let a = IoBuf::new(&pool, 3 * PAGE, 512);
        let b = IoBuf::new(&pool, 5 * PAGE, 512);
        assert!(matches!(a.origin, Origin::Pool { first: 0, .. }));
        assert!(matches!(b.origin, Origin::Pool { first: 3, .. }));
        assert_eq!(pool.pages_in_use(), 8);
        // Full: the next one comes from the heap, still aligned.
        let c = IoBuf::new(&pool, 100, 4096);
        assert!(matches!(c.origin, Origin::Spare { .. }));
        assert_eq!(c.as_ptr() as usize % 4096, 0);
        drop(a);
        assert_eq!(pool.pages_in_use(), 5);
        let d = IoBuf::new(&pool, 2 * PAGE, 512);
        assert!(matches!(d.origin, Origin::Pool { first: 0, .. }));
        // Larger than the whole pool: heap.
        let e = IoBuf::new(&pool, 9 * PAGE, 512);
        assert!(matches!(e.origin, Origin::Spare { .. }));
        drop((b, d));
        assert_eq!(pool.pages_in_use(), 0);
    }

    #[test]
    fn an_empty_pool_always_uses_the_heap() {
        let pool = BufferPool::new(0);
        let buf = IoBuf::new(&pool, 10, 512);
        assert!(matches!(buf.origin, Origin::Spare { .. }));
        assert_eq!(buf.as_bytes(), &[0; 10]);
    }

    #[test]
    fn heap_buffers_are_reused_up_to_a_limit() {
        let pool = BufferPool::new(0);
        let first = IoBuf::new(&pool, 3 * PAGE, 512);
        let ptr = first.as_ptr();
        drop(first);
        assert_eq!(pool.spare_bytes.get(), 3 * PAGE);
        // A smaller one takes the spare; a larger one cannot.
        let again = IoBuf::new(&pool, 2 * PAGE, 512);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(pool.spare_bytes.get(), 0);
        let larger = IoBuf::new(&pool, 4 * PAGE, 512);
        assert_ne!(larger.as_ptr(), ptr);
        drop((again, larger));
        // Past the limit, buffers are freed, not kept.
        let huge: Vec<IoBuf> = (0..3).map(|_| IoBuf::new(&pool, 8 << 20, 512)).collect();
        drop(huge);
        assert!(pool.spare_bytes.get() <= SPARE_LIMIT);
    }
}
