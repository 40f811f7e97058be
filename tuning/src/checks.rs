//! Verdicts: each fact becomes a line that says OK, WARN or FAIL, and every
//! WARN and FAIL says exactly how to fix it.

use serde::Serialize;

use crate::facts::{Facts, UringFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }

    /// The process exit status for a worst finding of this level.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Fail => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// The command or setting that fixes a WARN or FAIL.
    pub fix: Option<String>,
}

/// What the node will run with, to judge limits against.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub shards: u16,
    pub io_memory_bytes: u64,
    pub max_connections: u32,
}

impl Plan {
    /// Locked memory the node needs: each core's registered buffers
    /// (glommio's, in each of its three rings, and its segment ring's) plus
    /// the rings themselves (a quarter again, generously), and 1 MiB of slack.
    pub fn memlock_needed(&self) -> u64 {
        let per_core = stratum_node::config::locked_bytes_per_core(self.io_memory_bytes);
        u64::from(self.shards) * (per_core + per_core / 4) + (1 << 20)
    }

    /// Descriptors the node needs: connections, segment files, slack.
    pub fn nofile_needed(&self) -> u64 {
        u64::from(self.shards) * (u64::from(self.max_connections) + 64) + 1024
    }
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes / 1024)
}

pub fn evaluate(facts: &Facts, plan: &Plan) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(kernel(facts));
    if let Some(uring) = &facts.uring {
        out.push(io_uring(uring, facts.io_uring_disabled));
    }
    if let Some(memlock) = facts.memlock {
        let need = plan.memlock_needed();
        out.push(match memlock.soft {
            None => ok("memlock", format!("unlimited; the node needs ~{} for {} shards", kib(need), plan.shards)),
            Some(limit) if limit >= need => ok(
                "memlock",
                format!("{} (ulimit -l); the node needs ~{} for {} shards x {} io_memory", kib(limit), kib(need), plan.shards, kib(plan.io_memory_bytes)),
            ),
            Some(limit) => fail(
                "memlock",
                format!("{} (ulimit -l), but the node needs ~{} for {} shards x {} io_memory: executors would fail to start", kib(limit), kib(need), plan.shards, kib(plan.io_memory_bytes)),
                "raise it: `ulimit -l unlimited` in the starting shell, LimitMEMLOCK=infinity in the systemd unit, or `stratum soft memlock unlimited` / `stratum hard memlock unlimited` in /etc/security/limits.conf",
            ),
        });
    }
    if let Some(nofile) = facts.nofile {
        let need = plan.nofile_needed();
        out.push(match nofile.soft {
            Some(limit) if limit < need => warn(
                "nofile",
                format!(
                    "{limit} open files (ulimit -n); {} shards x {} connections need ~{need}",
                    plan.shards, plan.max_connections
                ),
                format!("`ulimit -n {need}` or LimitNOFILE={need} in the systemd unit"),
            ),
            Some(limit) => ok("nofile", format!("{limit} open files (need ~{need})")),
            None => ok("nofile", "unlimited"),
        });
    }
    device(facts, &mut out);
    cpus(facts, plan, &mut out);
    vm(facts, &mut out);
    out
}

fn kernel(facts: &Facts) -> Finding {
    let Some(release) = &facts.kernel_release else {
        return warn(
            "kernel",
            "cannot read /proc/sys/kernel/osrelease",
            "run on Linux with /proc mounted",
        );
    };
    match crate::parse::kernel_version(release) {
        Some(version) if version < (5, 8, 0) => fail(
            "kernel",
            format!("{release}: glommio needs io_uring features of Linux 5.8 or later"),
            "upgrade to a kernel >= 5.8 (6.1 LTS or later recommended)",
        ),
        Some(version) if version < (6, 1, 0) => warn(
            "kernel",
            format!(
                "{release}: works, but io_uring networking and O_DIRECT fixes landed through 6.1"
            ),
            "upgrade to 6.1 LTS or later",
        ),
        Some(_) => ok("kernel", release.clone()),
        None => warn(
            "kernel",
            format!("cannot parse kernel release {release:?}"),
            "check `uname -r`",
        ),
    }
}

fn io_uring(uring: &UringFacts, disabled: Option<u64>) -> Finding {
    match uring {
        UringFacts::Unusable(reason) => {
            let fix = match disabled {
                Some(value) if value != 0 => "`sysctl -w kernel.io_uring_disabled=0` (and set it in /etc/sysctl.d/ to persist)".to_owned(),
                _ => "allow io_uring: check seccomp/container policy (io_uring_setup must be permitted) and kernel.io_uring_disabled".to_owned(),
            };
            fail("io_uring", format!("cannot set up a ring: {reason}"), fix)
        }
        UringFacts::Usable { supported, missing } if missing.is_empty() => ok(
            "io_uring",
            format!(
                "usable; {supported} operations supported, including all {} Stratum uses",
                crate::uring::REQUIRED.len()
            ),
        ),
        UringFacts::Usable { missing, .. } => fail(
            "io_uring",
            format!("missing operations: {}", missing.join(", ")),
            "upgrade the kernel (6.1 LTS or later has every operation Stratum uses)",
        ),
    }
}

fn device(facts: &Facts, out: &mut Vec<Finding>) {
    if let Some(error) = &facts.device_error {
        out.push(fail(
            "device",
            error.clone(),
            "put --data-dir on a local NVMe file system (ext4 or XFS)",
        ));
    }
    if let Some(result) = &facts.o_direct {
        out.push(match result {
            Ok(()) => ok("o_direct", "direct 4 KiB O_DSYNC write, fdatasync and read work in the data dir"),
            Err(reason) => fail(
                "o_direct",
                reason.clone(),
                "use a file system that supports O_DIRECT (ext4, XFS); tmpfs and most overlay/network file systems do not",
            ),
        });
    }
    let Some(dev) = &facts.device else {
        return;
    };
    let queue = format!("/sys/block/{}/queue", dev.name);
    out.push(match dev.logical_block_size {
        Some(size) => ok(
            "block_size",
            format!(
                "{}: logical {size} B, physical {} B (direct I/O aligns to the logical size)",
                dev.name,
                dev.physical_block_size.unwrap_or(size)
            ),
        ),
        None => warn(
            "block_size",
            format!("{}: cannot read logical_block_size", dev.name),
            format!("check {queue}/logical_block_size"),
        ),
    });
    if let Some(true) = dev.rotational {
        let detail = if dev.name.starts_with("vd") {
            format!(
                "{} reports rotational (virtio disks often do, whatever the backing media)",
                dev.name
            )
        } else {
            format!(
                "{} is a rotational disk: Stratum is built for NVMe",
                dev.name
            )
        };
        out.push(warn(
            "rotational",
            detail,
            "put the data dir on an NVMe device",
        ));
    } else if dev.rotational.is_some() {
        out.push(ok("rotational", format!("{}: solid state", dev.name)));
    }
    if let Some((selected, offered)) = &dev.scheduler {
        out.push(if selected == "none" || dev.rotational == Some(true) {
            ok("scheduler", format!("{}: {selected}", dev.name))
        } else if offered.iter().any(|choice| choice == "none") {
            warn(
                "scheduler",
                format!("{}: {selected}; a fast SSD loses latency to an I/O scheduler", dev.name),
                format!("`echo none > {queue}/scheduler` (persist with a udev rule: ACTION==\"add|change\", KERNEL==\"{}\", ATTR{{queue/scheduler}}=\"none\")", dev.name),
            )
        } else {
            ok("scheduler", format!("{}: {selected}", dev.name))
        });
    }
    match (dev.io_poll, dev.nvme_poll_queues) {
        (Some(true), _) => out.push(ok("poll_queues", format!("{}: polled I/O queues present (io_poll=1)", dev.name))),
        (_, Some(queues)) if queues > 0 => out.push(ok("poll_queues", format!("{}: nvme poll_queues={queues}", dev.name))),
        (Some(false), _) | (None, Some(0)) => out.push(warn(
            "poll_queues",
            format!("{}: no polled-I/O queues (io_poll=0): io_uring IOPOLL cannot be used, every I/O completes by interrupt", dev.name),
            if dev.name.starts_with("nvme") {
                "give the NVMe driver poll queues, one per shard: add `nvme.poll_queues=N` to the kernel command line (or `options nvme poll_queues=N` in /etc/modprobe.d/nvme.conf and rebuild the initramfs), then reboot".to_owned()
            } else {
                format!("{} has no polled queues at all (only NVMe does): use an NVMe device with `nvme.poll_queues=N`", dev.name)
            },
        )),
        _ => {}
    }
    if let Some(cache) = &dev.write_cache {
        out.push(ok(
            "write_cache",
            if cache == "write back" {
                {
                    let (fua, durability) = if dev.fua == Some(true) {
                        (", FUA supported", "FUA writes (store.sync_method dsync) or cache flushes (fdatasync)")
                    } else {
                        ("", "a cache flush after each group commit's writes (O_DSYNC or fdatasync)")
                    };
                    format!("{}: volatile write cache (write back){fua}; durability comes from {durability}", dev.name)
                }
            } else {
                format!("{}: {cache}", dev.name)
            },
        ));
    }
    if let (Some(max), Some(hw)) = (dev.max_sectors_kb, dev.max_hw_sectors_kb) {
        out.push(if max < 512 && hw > max {
            warn(
                "max_sectors_kb",
                format!("{}: {max} KiB per I/O (hardware allows {hw}): large objects are split into many I/Os", dev.name),
                format!("`echo {} > {queue}/max_sectors_kb`", hw.min(1024)),
            )
        } else {
            ok("max_sectors_kb", format!("{}: {max} KiB per I/O (reads are split at this size)", dev.name))
        });
    }
}

fn cpus(facts: &Facts, plan: &Plan, out: &mut Vec<Finding>) {
    if let Some(online) = &facts.cpus_online {
        out.push(if online.len() < usize::from(plan.shards) {
            warn(
                "cpus",
                format!(
                    "{} online, fewer than the {} shards planned: shards would share cores",
                    online.len(),
                    plan.shards
                ),
                format!("run with --shards {}", online.len()),
            )
        } else {
            ok(
                "cpus",
                format!("{} online, {} shards planned", online.len(), plan.shards),
            )
        });
    }
    if let Some(nodes) = &facts.numa_nodes {
        out.push(ok("numa", match nodes.len() {
            1 => "1 NUMA node".to_owned(),
            n => format!("{n} NUMA nodes: shard i runs on the i-th allowed CPU; keep the NVMe and its shards on one node (numactl --cpunodebind)"),
        }));
    }
    match &facts.isolated_cpus {
        Some(isolated) if !isolated.is_empty() => out.push(ok("isolated_cpus", format!("{isolated:?} isolated from the scheduler"))),
        Some(_) => out.push(ok("isolated_cpus", "none (optional: `isolcpus=` / `nohz_full=` on the kernel command line keep other work off the shard cores)")),
        None => {}
    }
    if facts.governors.is_empty() {
        out.push(ok(
            "governor",
            "CPU frequency scaling not exposed (VM or firmware-managed)",
        ));
    } else if facts
        .governors
        .iter()
        .all(|governor| governor == "performance")
    {
        out.push(ok("governor", "performance"));
    } else {
        out.push(warn(
            "governor",
            format!(
                "{}: cores slow down between bursts and add latency",
                facts.governors.join(", ")
            ),
            "`cpupower frequency-set -g performance`",
        ));
    }
}

fn vm(facts: &Facts, out: &mut Vec<Finding>) {
    if let Some(thp) = &facts.transparent_hugepages {
        out.push(if thp == "always" {
            warn(
                "transparent_hugepages",
                "always: khugepaged compaction can stall a shard core",
                "`echo madvise > /sys/kernel/mm/transparent_hugepage/enabled` (persist: transparent_hugepage=madvise on the kernel command line)",
            )
        } else {
            ok("transparent_hugepages", thp.clone())
        });
    }
    if let Some(swappiness) = facts.swappiness {
        out.push(if swappiness > 10 {
            warn(
                "swappiness",
                format!(
                    "{swappiness}: the kernel may swap out index memory under page-cache pressure"
                ),
                "`sysctl -w vm.swappiness=1` (persist in /etc/sysctl.d/90-stratum.conf)",
            )
        } else {
            ok("swappiness", swappiness.to_string())
        });
    }
    if let Some(somaxconn) = facts.somaxconn {
        out.push(if somaxconn < 1024 {
            warn(
                "somaxconn",
                format!("{somaxconn}: bursts of connections overflow the accept queue"),
                "`sysctl -w net.core.somaxconn=4096` (persist in /etc/sysctl.d/90-stratum.conf)",
            )
        } else {
            ok("somaxconn", somaxconn.to_string())
        });
    }
}

/// The worst level among `findings`.
pub fn worst(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok)
}
