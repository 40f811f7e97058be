//! `recommend`: the sysctl settings, limits and systemd unit that fit this
//! host, printed for review. Files are written only with `--apply`.

use std::fmt::Write;

use crate::checks::Plan;

pub struct Recommendation {
    pub sysctl: String,
    pub limits: String,
    pub unit: String,
}

pub const SYSCTL_PATH: &str = "/etc/sysctl.d/90-stratum.conf";
pub const UNIT_PATH: &str = "/etc/systemd/system/stratum-node.service";

/// `cpus`: the CPUs the node may use (its shards run on the first `shards`).
pub fn recommend(plan: &Plan, cpus: &[usize], binary: &str, config: &str) -> Recommendation {
    let mut sysctl = String::new();
    let _ = writeln!(sysctl, "# Stratum node settings (stratum-tune recommend)");
    let _ = writeln!(sysctl, "# Keep the index and caches in memory.");
    let _ = writeln!(sysctl, "vm.swappiness = 1");
    let _ = writeln!(sysctl, "# Room for bursts of client connections.");
    let _ = writeln!(sysctl, "net.core.somaxconn = 4096");
    let _ = writeln!(sysctl, "net.ipv4.tcp_max_syn_backlog = 4096");
    let _ = writeln!(
        sysctl,
        "# io_uring must be allowed for the node's executors."
    );
    let _ = writeln!(sysctl, "kernel.io_uring_disabled = 0");
    let _ = writeln!(
        sysctl,
        "# Descriptor headroom: every connection and segment is one."
    );
    let _ = writeln!(
        sysctl,
        "fs.file-max = {}",
        (plan.nofile_needed() * 4).max(1 << 20)
    );

    let memlock_kib = plan.memlock_needed().div_ceil(1024);
    let nofile = plan.nofile_needed();
    let mut limits = String::new();
    let _ = writeln!(limits, "# ulimits for the account that runs stratum-node");
    let _ = writeln!(
        limits,
        "# needs >= {memlock_kib} KiB locked memory for {} shards x {} KiB io_memory",
        plan.shards,
        plan.io_memory_bytes / 1024
    );
    let _ = writeln!(limits, "ulimit -l unlimited");
    let _ = writeln!(limits, "ulimit -n {nofile}");
    let _ = writeln!(limits, "# or, in /etc/security/limits.conf:");
    let _ = writeln!(limits, "stratum  soft  memlock  unlimited");
    let _ = writeln!(limits, "stratum  hard  memlock  unlimited");
    let _ = writeln!(limits, "stratum  soft  nofile   {nofile}");
    let _ = writeln!(limits, "stratum  hard  nofile   {nofile}");

    let affinity: Vec<String> = cpus
        .iter()
        .take(usize::from(plan.shards))
        .map(|cpu| cpu.to_string())
        .collect();
    let mut unit = String::new();
    let _ = writeln!(unit, "[Unit]");
    let _ = writeln!(unit, "Description=Stratum storage node");
    let _ = writeln!(unit, "After=network-online.target local-fs.target");
    let _ = writeln!(unit, "Wants=network-online.target");
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Service]");
    let _ = writeln!(unit, "Type=simple");
    let _ = writeln!(unit, "User=stratum");
    let _ = writeln!(
        unit,
        "ExecStart={binary} --config {config} --shards {}",
        plan.shards
    );
    let _ = writeln!(
        unit,
        "# One shard per listed CPU; shard i is pinned to the i-th."
    );
    let _ = writeln!(unit, "CPUAffinity={}", affinity.join(" "));
    let _ = writeln!(unit, "LimitMEMLOCK=infinity");
    let _ = writeln!(unit, "LimitNOFILE={nofile}");
    let _ = writeln!(
        unit,
        "# SIGTERM drains, makes everything durable and checkpoints."
    );
    let _ = writeln!(unit, "KillSignal=SIGTERM");
    let _ = writeln!(unit, "TimeoutStopSec=90");
    let _ = writeln!(unit, "Restart=on-failure");
    let _ = writeln!(unit, "RestartSec=2");
    let _ = writeln!(unit);
    let _ = writeln!(unit, "[Install]");
    let _ = writeln!(unit, "WantedBy=multi-user.target");
    Recommendation {
        sysctl,
        limits,
        unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_fits_the_plan() {
        let plan = Plan {
            shards: 2,
            io_memory_bytes: 512 << 10,
            max_connections: 1024,
        };
        let rec = recommend(
            &plan,
            &[0, 1, 2, 3],
            "/usr/local/bin/stratum-node",
            "/etc/stratum/node.toml",
        );
        assert!(rec.unit.contains("CPUAffinity=0 1\n"), "{}", rec.unit);
        assert!(rec.unit.contains("LimitMEMLOCK=infinity"));
        assert!(rec
            .unit
            .contains(&format!("LimitNOFILE={}", plan.nofile_needed())));
        assert!(rec.unit.contains("--shards 2"));
        assert!(rec.sysctl.contains("vm.swappiness = 1"));
        assert!(rec.limits.contains("memlock"));
    }
}
