//! Directory operations both file systems share. They are rare metadata
//! calls (remove, rename, fsync of a directory), so they use std::fs
//! directly on the shard's core.

use std::io;
use std::path::Path;

/// write, fdatasync, rename into place, fsync the directory.
fn write_atomic_blocking(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a small file whole and durably on glommio's blocking-thread pool,
/// so the shard's core keeps serving requests meanwhile (checkpoints run to
/// tens of megabytes).
pub async fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let (path, contents) = (path.to_owned(), contents.to_vec());
    crate::offload::run(move || write_atomic_blocking(&path, &contents)).await
}

pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `path` is a valid C string for the call, and `stat` is a
    // plain struct the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

pub fn map_file(path: &Path) -> io::Result<memmap2::Mmap> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the mapped files (index checkpoints) are only ever replaced
    // by an atomic rename of a new file, never modified in place, so the
    // mapping cannot change under us.
    unsafe { memmap2::Mmap::map(&file) }
}

/// The directory half of a [`super::StoreFs`] on the real file system,
/// shared by the engines: rare metadata calls, made directly on the core.
macro_rules! directory_ops {
    () => {
        async fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
            std::fs::remove_file(path)
        }

        async fn rename(
            &self,
            from: &std::path::Path,
            to: &std::path::Path,
        ) -> std::io::Result<()> {
            std::fs::rename(from, to)
        }

        async fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
            super::posix::sync_dir(dir)
        }

        async fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
            std::fs::create_dir_all(dir)
        }

        async fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
            super::posix::list(dir)
        }

        async fn write_file_atomic(
            &self,
            path: &std::path::Path,
            contents: &[u8],
        ) -> std::io::Result<()> {
            super::posix::write_file_atomic(path, contents).await
        }

        async fn exists(&self, path: &std::path::Path) -> std::io::Result<bool> {
            path.try_exists()
        }

        async fn free_bytes(&self, dir: &std::path::Path) -> std::io::Result<u64> {
            super::posix::free_bytes(dir)
        }

        async fn map_file(&self, path: &std::path::Path) -> std::io::Result<memmap2::Mmap> {
            super::posix::map_file(path)
        }
    };
}
pub(super) use directory_ops;
