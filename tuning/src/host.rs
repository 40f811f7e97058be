//! Reading the host's /proc and /sys, under a root that tests point at
//! captured samples (`tests/fixtures/hosts/*`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    /// The running system.
    pub fn live() -> Self {
        Self::at("/")
    }

    /// A captured system rooted at `root` (its `proc/` and `sys/`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// A file's contents with surrounding whitespace trimmed; `None` when it
    /// does not exist or cannot be read (many files are absent in VMs).
    pub fn read(&self, absolute: &str) -> Option<String> {
        read_trimmed(&self.path(absolute))
    }

    pub fn read_u64(&self, absolute: &str) -> Option<u64> {
        self.read(absolute)?.parse().ok()
    }

    pub fn exists(&self, absolute: &str) -> bool {
        self.path(absolute).exists()
    }

    /// The sysfs directory of the whole block device `major:minor` (the
    /// parent disk when it is a partition).
    pub fn block_device_dir(&self, major: u32, minor: u32) -> Option<PathBuf> {
        let link = self.path(&format!("/sys/dev/block/{major}:{minor}"));
        let dir = std::fs::canonicalize(link).ok()?;
        if dir.join("partition").exists() {
            return dir.parent().map(Path::to_path_buf);
        }
        Some(dir)
    }
}

pub fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}
