//! Aligned I/O buffers, and the pool of them the ring registers with the
//! kernel.
//!
//! A registered buffer spares the kernel pinning the buffer's pages on every
//! I/O (`WRITE_FIXED` / `READ_FIXED`). Registered memory is locked memory,
//! charged against `ulimit -l` per user across processes, so the pool is
//! small (the shard's `store.io_memory_bytes`) and a buffer that does not fit
//! in it comes from the heap and goes through a plain `WRITE` / `READ`.

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
}

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

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. Every buffer lent out
        // holds an `Rc` to the pool, and the ring that registered the region
        // holds one too until the kernel has let go of it.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

enum Origin {
    Pool { pool: Rc<BufferPool>, first: usize },
    Heap { layout: Layout },
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
        Self::heap(len, align)
    }

    /// `len` bytes from the heap, aligned to `align`.
    pub fn heap(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1).div_ceil(align) * align, align.max(1))
            .expect("aligned sizes are valid layouts");
        // SAFETY: the layout has a non-zero size. Zeroed: a read may fill
        // fewer bytes than the buffer holds, and the rest is still exposed
        // through `as_bytes` up to `len`.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self {
            ptr,
            len,
            origin: Origin::Heap { layout },
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
            Origin::Heap { .. } => None,
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
            // SAFETY: allocated in `heap` with this layout.
            Origin::Heap { layout } => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), *layout) },
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
        assert!(matches!(c.origin, Origin::Heap { .. }));
        assert_eq!(c.as_ptr() as usize % 4096, 0);
        drop(a);
        assert_eq!(pool.pages_in_use(), 5);
        let d = IoBuf::new(&pool, 2 * PAGE, 512);
        assert!(matches!(d.origin, Origin::Pool { first: 0, .. }));
        // Larger than the whole pool: heap.
        let e = IoBuf::new(&pool, 9 * PAGE, 512);
        assert!(matches!(e.origin, Origin::Heap { .. }));
        drop((b, d));
        assert_eq!(pool.pages_in_use(), 0);
    }

    #[test]
    fn an_empty_pool_always_uses_the_heap() {
        let pool = BufferPool::new(0);
        let buf = IoBuf::new(&pool, 10, 512);
        assert!(matches!(buf.origin, Origin::Heap { .. }));
        assert_eq!(buf.as_bytes(), &[0; 10]);
    }
}
