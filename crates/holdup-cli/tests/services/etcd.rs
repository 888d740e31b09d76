//! etcd (Go) under keep-alive puts: another process's fsync writer, an unchanged run.

use super::*;

const ETCD_TOOLS: &[&str] = &["etcd", "etcdctl"];

/// A single-member etcd on loopback, its data on /var/tmp (a real disk),
/// under `holdup-workload loadgen --etcd-put`; with `writer`, another
/// process's O_DIRECT + fsync writer on the same filesystem from FAULT_AT.
fn etcd_run(name: &str, writer: bool) -> (Run, Value) {
    let dir = TempDir::under("/var/tmp", "etcd");
    let (cport, pport) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "holdup", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("holdup={peer}")])
        .args(["--logger", "zap", "--log-level", "warn"]);
    let etcd = Guard::spawn("etcd", quiet(&mut cmd));
    wait_for_port(cport, "etcd", Duration::from_secs(15));
    // A leader is elected once the health check passes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &client, "endpoint", "health"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "setup: etcd never became healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let writer_dir = TempDir::under("/var/tmp", "etcd-writer");
    let (mut load, mut disk) = (None, None);
    let run = watch(name, etcd.pid(), |phase, _| match phase {
        Phase::Watching => {}
        Phase::Load => {
            load = Some(Workload::start(&[
                "loadgen",
                "--secs",
                &(RUN_SECS - LOAD_AT).to_string(),
                "--server",
                &format!("127.0.0.1:{cport}"),
                "--connections",
                "6",
                "--think-us",
                "500",
                "--etcd-put",
            ]));
        }
        Phase::Fault => {
            if writer {
                disk = Some(start_disk_writer(&writer_dir));
            }
        }
    });
    let lf = check_load(load.expect("load started"), 500);
    let mut facts = json!({
        "etcd_pid": etcd.pid(),
        "data_dir": dir.0.display().to_string(),
        "load": lf,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    if let Some(d) = disk {
        facts["writer"] = finish_disk_writer(d);
    }
    (run, facts)
}

#[test]
fn etcd_with_another_fsync_writer_is_disk_contention_naming_the_writer() {
    const NAME: &str = "etcd-disk-writer";
    let Some(_g) = prepare(NAME, ETCD_TOOLS) else {
        return;
    };
    let writer = names_process("hw-disk");
    let expect = Expect {
        kind: "disk_contention",
        culprit: Box::new(move |v, facts| {
            writer(v, facts)?;
            if culprits(v, "disk").is_empty() {
                return Err("no disk named".into());
            }
            Ok(())
        }),
    };
    check(NAME, expect, || etcd_run(NAME, true));
}

#[test]
fn etcd_unchanged_raises_no_alarm() {
    const NAME: &str = "etcd-unchanged";
    let Some(_g) = prepare(NAME, ETCD_TOOLS) else {
        return;
    };
    check(NAME, unchanged(), || etcd_run(NAME, false));
}
