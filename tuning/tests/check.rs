//! `check` on captured hosts (tests/fixtures/hosts): parsers, facts and
//! verdicts from real /proc and /sys samples, and the CLI on this machine.

use std::collections::HashMap;
use std::path::PathBuf;

use stratum_tune::checks::{evaluate, worst, Level, Plan};
use stratum_tune::facts::{Facts, Limit, UringFacts};
use stratum_tune::host::Host;

fn host(name: &str) -> Host {
    Host::at(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(name),
    )
}

fn plan(shards: u16) -> Plan {
    Plan {
        shards,
        io_memory_bytes: 512 << 10,
        max_connections: 1024,
    }
}

fn levels(facts: &Facts, plan: &Plan) -> HashMap<&'static str, Level> {
    evaluate(facts, plan)
        .into_iter()
        .map(|finding| {
            if finding.level != Level::Ok {
                assert!(
                    finding.fix.is_some(),
                    "{} {:?} has no fix",
                    finding.check,
                    finding.level
                );
            }
            (finding.check, finding.level)
        })
        .collect()
}

#[test]
fn this_virtual_machine_as_captured() {
    let host = host("virtio-vm");
    let mut facts = Facts::from_host(&host);
    facts.add_device(&host, 254, 0);
    facts.memlock = Some(Limit {
        soft: Some(8 << 20),
        hard: Some(8 << 20),
    });
    let device = facts
        .device
        .as_ref()
        .expect("vda found through /sys/dev/block");
    assert_eq!(device.name, "vda");
    assert_eq!(device.logical_block_size, Some(512));
    assert_eq!(device.io_poll, Some(false));
    assert_eq!(device.max_sectors_kb, Some(4096));
    assert_eq!(device.write_cache.as_deref(), Some("write back"));
    assert_eq!(facts.cpus_online, Some(vec![0, 1]));
    assert_eq!(facts.transparent_hugepages.as_deref(), Some("madvise"));
    assert!(facts.governors.is_empty());

    let levels = levels(&facts, &plan(2));
    // The two things this machine must be told: no polled-I/O queues, and
    // its memlock limit (8 MiB: enough for 2 shards of 512 KiB).
    assert_eq!(levels["poll_queues"], Level::Warn);
    assert_eq!(levels["memlock"], Level::Ok);
    assert_eq!(levels["swappiness"], Level::Warn);
    assert_eq!(levels["kernel"], Level::Ok);
    assert_eq!(levels["transparent_hugepages"], Level::Ok);
    // With glommio's default 10 MiB of io_memory per shard it would fail.
    let big = Plan {
        io_memory_bytes: 10 << 20,
        ..plan(2)
    };
    assert_eq!(
        evaluate(&facts, &big)
            .iter()
            .find(|f| f.check == "memlock")
            .unwrap()
            .level,
        Level::Fail
    );
}

#[test]
fn an_untuned_nvme_host_gets_every_fix() {
    let host = host("nvme-untuned");
    let mut facts = Facts::from_host(&host);
    // 259:1 is a partition: its queue settings are the parent disk's.
    facts.add_device(&host, 259, 1);
    facts.memlock = Some(Limit {
        soft: Some(64 << 10),
        hard: Some(64 << 10),
    });
    facts.nofile = Some(Limit {
        soft: Some(1024),
        hard: Some(4096),
    });
    facts.uring = Some(UringFacts::Usable {
        supported: 48,
        missing: vec![],
    });
    let device = facts.device.as_ref().unwrap();
    assert_eq!(device.name, "nvme0n1");
    assert_eq!(device.nvme_poll_queues, Some(0));
    assert_eq!(facts.numa_nodes, Some(vec![0, 1]));
    assert_eq!(facts.governors, ["powersave"]);

    let findings = evaluate(&facts, &plan(8));
    let levels = levels(&facts, &plan(8));
    for (check, level) in [
        ("kernel", Level::Warn),
        ("memlock", Level::Fail),
        ("nofile", Level::Warn),
        ("scheduler", Level::Warn),
        ("poll_queues", Level::Warn),
        ("max_sectors_kb", Level::Warn),
        ("governor", Level::Warn),
        ("transparent_hugepages", Level::Warn),
        ("swappiness", Level::Warn),
        ("somaxconn", Level::Warn),
        ("rotational", Level::Ok),
    ] {
        assert_eq!(levels[check], level, "{check}");
    }
    assert_eq!(worst(&findings), Level::Fail);
    let poll_fix = findings
        .iter()
        .find(|f| f.check == "poll_queues")
        .unwrap()
        .fix
        .clone()
        .unwrap();
    assert!(poll_fix.contains("nvme.poll_queues"), "{poll_fix}");
    let sched_fix = findings
        .iter()
        .find(|f| f.check == "scheduler")
        .unwrap()
        .fix
        .clone()
        .unwrap();
    assert!(
        sched_fix.contains("/sys/block/nvme0n1/queue/scheduler"),
        "{sched_fix}"
    );
}

#[test]
fn a_tuned_nvme_host_is_all_ok() {
    let host = host("nvme-tuned");
    let mut facts = Facts::from_host(&host);
    facts.add_device(&host, 259, 0);
    facts.memlock = Some(Limit {
        soft: None,
        hard: None,
    });
    facts.nofile = Some(Limit {
        soft: Some(1 << 20),
        hard: Some(1 << 20),
    });
    facts.uring = Some(UringFacts::Usable {
        supported: 58,
        missing: vec![],
    });
    facts.o_direct = Some(Ok(()));
    let findings = evaluate(&facts, &plan(4));
    let bad: Vec<_> = findings.iter().filter(|f| f.level != Level::Ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(facts.isolated_cpus, Some(vec![1, 2, 3]));
}

#[test]
fn io_uring_and_o_direct_failures_fail() {
    let facts = Facts {
        uring: Some(UringFacts::Unusable(
            "Operation not permitted (os error 1)".into(),
        )),
        io_uring_disabled: Some(2),
        o_direct: Some(Err(
            "open with O_DIRECT: Invalid argument (os error 22)".into()
        )),
        device_error: Some("no block device 0:45 in /sys/dev/block (tmpfs?)".into()),
        ..Facts::default()
    };
    let findings = evaluate(&facts, &plan(2));
    let uring = findings.iter().find(|f| f.check == "io_uring").unwrap();
    assert_eq!(uring.level, Level::Fail);
    assert!(uring
        .fix
        .as_ref()
        .unwrap()
        .contains("kernel.io_uring_disabled=0"));
    assert_eq!(
        findings
            .iter()
            .find(|f| f.check == "o_direct")
            .unwrap()
            .level,
        Level::Fail
    );
    assert_eq!(
        findings.iter().find(|f| f.check == "device").unwrap().level,
        Level::Fail
    );
    let missing = Facts {
        uring: Some(UringFacts::Usable {
            supported: 30,
            missing: vec!["send".into(), "recv".into()],
        }),
        ..Facts::default()
    };
    let uring = evaluate(&missing, &plan(2))
        .into_iter()
        .find(|f| f.check == "io_uring")
        .unwrap();
    assert_eq!(uring.level, Level::Fail);
    assert!(uring.detail.contains("send, recv"));
}

#[test]
fn the_cli_reports_this_machine_and_exits_with_the_worst_level() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stratum-tune"))
        .args(["check", "--json", "--shards", "2", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let worst = doc["worst"].as_str().unwrap();
    let expected = match worst {
        "ok" => 0,
        "warn" => 1,
        _ => 2,
    };
    assert_eq!(output.status.code(), Some(expected));
    let findings = doc["findings"].as_array().unwrap();
    let check = |name: &str| findings.iter().find(|f| f["check"] == name).cloned();
    // Live probes ran: io_uring, memlock, O_DIRECT in the data dir.
    assert!(check("io_uring").is_some());
    let memlock = check("memlock").unwrap();
    assert!(
        memlock["detail"].as_str().unwrap().contains("KiB")
            || memlock["detail"].as_str().unwrap().contains("unlimited")
    );
    assert_eq!(check("o_direct").unwrap()["level"], "ok");

    let text = std::process::Command::new(env!("CARGO_BIN_EXE_stratum-tune"))
        .args(["check"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text
        .lines()
        .any(|line| line.starts_with("OK") || line.starts_with("WARN")));
    assert!(text.contains("worst: "));
}

#[test]
fn recommend_changes_nothing_without_apply() {
    let dir = tempfile::tempdir().unwrap();
    let sysctl = dir.path().join("90-stratum.conf");
    let unit = dir.path().join("stratum-node.service");
    let run = |apply: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stratum-tune"));
        command
            .args(["recommend", "--shards", "2", "--sysctl-file"])
            .arg(&sysctl)
            .arg("--unit-file")
            .arg(&unit);
        if apply {
            command.arg("--apply");
        }
        command.output().unwrap()
    };
    let output = run(false);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("LimitMEMLOCK=infinity") && text.contains("vm.swappiness = 1"));
    assert!(!sysctl.exists() && !unit.exists());
    assert!(run(true).status.success());
    assert!(std::fs::read_to_string(&unit)
        .unwrap()
        .contains("ExecStart="));
    assert!(std::fs::read_to_string(&sysctl)
        .unwrap()
        .contains("net.core.somaxconn"));
}
