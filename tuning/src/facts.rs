//! What `check` looks at, gathered in one place. File-based facts come from
//! a [`Host`] (so tests can read captured samples); live probes (io_uring,
//! resource limits, O_DIRECT) only from the running system.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::host::Host;
use crate::parse;

/// A resource limit; `None` fields are unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceFacts {
    /// Kernel name of the whole disk ("nvme0n1", "vda").
    pub name: String,
    pub logical_block_size: Option<u64>,
    pub physical_block_size: Option<u64>,
    /// Selected scheduler and every one offered.
    pub scheduler: Option<(String, Vec<String>)>,
    /// `queue/io_poll`: whether the device has polled (interrupt-free)
    /// queues that io_uring's IOPOLL can use.
    pub io_poll: Option<bool>,
    /// The NVMe driver's `poll_queues` parameter, when the module is loaded.
    pub nvme_poll_queues: Option<u64>,
    pub rotational: Option<bool>,
    /// "write back" (a volatile cache fdatasync must flush) or "write
    /// through".
    pub write_cache: Option<String>,
    pub fua: Option<bool>,
    pub max_sectors_kb: Option<u64>,
    pub max_hw_sectors_kb: Option<u64>,
}

/// The io_uring probe's result.
#[derive(Debug, Clone, Serialize)]
pub enum UringFacts {
    /// Rings can be set up; `missing` lists the operations Stratum uses that
    /// this kernel lacks.
    Usable {
        supported: usize,
        missing: Vec<String>,
    },
    /// `io_uring_setup` failed.
    Unusable(String),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub kernel_release: Option<String>,
    pub io_uring_disabled: Option<u64>,
    pub uring: Option<UringFacts>,
    pub memlock: Option<Limit>,
    pub nofile: Option<Limit>,
    pub data_dir: Option<String>,
    pub device: Option<DeviceFacts>,
    /// Why the data dir's device could not be examined.
    pub device_error: Option<String>,
    /// Whether a direct (O_DIRECT) write and read worked in the data dir.
    pub o_direct: Option<Result<(), String>>,
    pub cpus_online: Option<Vec<usize>>,
    pub numa_nodes: Option<Vec<usize>>,
    pub isolated_cpus: Option<Vec<usize>>,
    /// Distinct `scaling_governor` values over the CPUs (empty: not exposed).
    pub governors: Vec<String>,
    pub transparent_hugepages: Option<String>,
    pub swappiness: Option<u64>,
    pub somaxconn: Option<u64>,
}

impl Facts {
    /// Everything readable from files under `host` (no live probes).
    pub fn from_host(host: &Host) -> Self {
        let cpus_online = host
            .read("/sys/devices/system/cpu/online")
            .and_then(|text| parse::cpu_list(&text));
        let mut governors: Vec<String> = cpus_online
            .iter()
            .flatten()
            .filter_map(|cpu| {
                host.read(&format!(
                    "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
                ))
            })
            .collect();
        governors.sort();
        governors.dedup();
        Self {
            kernel_release: host.read("/proc/sys/kernel/osrelease"),
            io_uring_disabled: host.read_u64("/proc/sys/kernel/io_uring_disabled"),
            cpus_online,
            numa_nodes: host
                .read("/sys/devices/system/node/online")
                .and_then(|text| parse::cpu_list(&text)),
            isolated_cpus: host
                .read("/sys/devices/system/cpu/isolated")
                .and_then(|text| parse::cpu_list(&text)),
            governors,
            transparent_hugepages: host
                .read("/sys/kernel/mm/transparent_hugepage/enabled")
                .and_then(|text| parse::bracketed_choice(&text))
                .map(|(selected, _)| selected),
            swappiness: host.read_u64("/proc/sys/vm/swappiness"),
            somaxconn: host.read_u64("/proc/sys/net/core/somaxconn"),
            ..Self::default()
        }
    }

    /// The data dir's block device, examined under `host`.
    pub fn add_device(&mut self, host: &Host, major: u32, minor: u32) {
        match device_facts(host, major, minor) {
            Some(device) => self.device = Some(device),
            None => {
                self.device_error = Some(format!(
                    "no block device {major}:{minor} in /sys/dev/block (a network, overlay or tmpfs file system?)"
                ))
            }
        }
    }

    /// Facts of the running system, with its data dir examined if given.
    pub fn live(data_dir: Option<&Path>) -> Self {
        let host = Host::live();
        let mut facts = Self::from_host(&host);
        facts.uring = Some(crate::uring::probe());
        facts.memlock = Some(rlimit(libc::RLIMIT_MEMLOCK));
        facts.nofile = Some(rlimit(libc::RLIMIT_NOFILE));
        if let Some(dir) = data_dir {
            facts.data_dir = Some(dir.display().to_string());
            match std::fs::metadata(dir) {
                Ok(meta) => {
                    let dev = meta.dev();
                    let (major, minor) = (libc::major(dev), libc::minor(dev));
                    facts.add_device(&host, major, minor);
                    facts.o_direct = Some(crate::direct::probe(dir));
                }
                Err(err) => {
                    facts.device_error = Some(format!("cannot stat {}: {err}", dir.display()));
                }
            }
        }
        facts
    }
}

fn device_facts(host: &Host, major: u32, minor: u32) -> Option<DeviceFacts> {
    let dir = host.block_device_dir(major, minor)?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let queue = |file: &str| crate::host::read_trimmed(&dir.join("queue").join(file));
    let number = |file: &str| queue(file).and_then(|text| text.parse::<u64>().ok());
    Some(DeviceFacts {
        nvme_poll_queues: if name.starts_with("nvme") {
            host.read_u64("/sys/module/nvme/parameters/poll_queues")
        } else {
            None
        },
        name,
        logical_block_size: number("logical_block_size"),
        physical_block_size: number("physical_block_size"),
        scheduler: queue("scheduler").and_then(|text| parse::bracketed_choice(&text)),
        io_poll: number("io_poll").map(|value| value != 0),
        rotational: number("rotational").map(|value| value != 0),
        write_cache: queue("write_cache"),
        fua: number("fua").map(|value| value != 0),
        max_sectors_kb: number("max_sectors_kb"),
        max_hw_sectors_kb: number("max_hw_sectors_kb"),
    })
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Limit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    let value = |raw: libc::rlim_t| (raw != libc::RLIM_INFINITY).then_some(raw);
    if rc != 0 {
        return Limit {
            soft: Some(0),
            hard: Some(0),
        };
    }
    Limit {
        soft: value(limit.rlim_cur),
        hard: value(limit.rlim_max),
    }
}
