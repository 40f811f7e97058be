//! Does O_DIRECT work in the data directory? (tmpfs and some network and
//! overlay file systems refuse it, and the node's store needs it, with
//! O_DSYNC under the default `store.sync_method`.)

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const BLOCK: usize = 4096;

/// An aligned buffer for direct I/O.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, BLOCK).ok()?;
        // SAFETY: non-zero size, valid alignment.
        let ptr = unsafe { alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(Self { ptr, layout })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points at `layout.size()` bytes we own.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Writes (O_DSYNC: durable when it returns), syncs and reads back one
/// 4 KiB block with O_DIRECT in `dir`.
pub fn probe(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(".stratum-tune-odirect-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&path)
            .map_err(|err| format!("open with O_DIRECT | O_DSYNC: {err}"))?;
        let mut out = Aligned::new(BLOCK).ok_or("cannot allocate an aligned buffer")?;
        for (i, byte) in out.bytes().iter_mut().enumerate() {
            *byte = (i * 7 + 3) as u8;
        }
        file.write_all(out.bytes())
            .map_err(|err| format!("direct write: {err}"))?;
        file.sync_data()
            .map_err(|err| format!("fdatasync: {err}"))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|err| err.to_string())?;
        let mut back = Aligned::new(BLOCK).ok_or("cannot allocate an aligned buffer")?;
        file.read_exact(back.bytes())
            .map_err(|err| format!("direct read: {err}"))?;
        if back.bytes() != out.bytes() {
            return Err("direct read returned other bytes than were written".into());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result
}
