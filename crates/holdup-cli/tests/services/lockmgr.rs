//! The workload's lock manager, with threads or prefork processes: a hot row, an unchanged run.

use super::*;

/// `holdup-workload lockmgr` (6 workers: threads, or processes with
/// `prefork`) under 6 connections; with `hot`, every request takes the same
/// row from 10 s after the first request (≈ FAULT_AT) on.
fn lockmgr_run(name: &str, hot: bool, prefork: bool) -> (Run, Value) {
    let mut args = vec![
        "lockmgr".to_string(),
        "--secs".into(),
        (RUN_SECS + 2).to_string(),
        "--workers".into(),
        "6".into(),
    ];
    if hot {
        args.push("--hot-after-secs".into());
        args.push((FAULT_AT - LOAD_AT).to_string());
    }
    if prefork {
        args.push("--prefork".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = Workload::start(&args);
    let port = svc.u64("server_port");
    let mut load = None;
    let run = watch(name, svc.pid(), |phase, _| {
        if let Phase::Load = phase {
            load = Some(Workload::start(&[
                "loadgen",
                "--secs",
                &(RUN_SECS - LOAD_AT).to_string(),
                "--server",
                &format!("127.0.0.1:{port}"),
                "--connections",
                "6",
                "--think-us",
                "1000",
            ]));
        }
    });
    let lf = check_load(load.expect("load started"), 1000);
    let info = svc.info.clone();
    let pid = svc.pid();
    let fin = svc.finish();
    let waits = fin["lock_waits"].as_u64().unwrap_or(0);
    if hot {
        assert!(
            waits >= 1000,
            "setup: the hot row made too few lock waits: {fin}"
        );
    }
    let mut pids = vec![json!(pid)];
    pids.extend(info["worker_pids"].as_array().cloned().unwrap_or_default());
    let facts = json!({
        "pid": pid,
        "pids": pids,
        "table_addr": info["table_addr"],
        "table_bytes": info["table_bytes"],
        "table_memfd_ino": info["table_memfd_ino"],
        "load": lf,
        "lockmgr": fin,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    (run, facts)
}

/// Whether a culprit's name is a futex in the lock table: `futex 0xADDR (pid
/// P)` inside the table in one of its processes, or `shared futex inode INO
/// +0xOFF` in the table's memfd.
fn in_lock_table(name: &str, facts: &Value) -> bool {
    let table = facts["table_addr"].as_u64().unwrap_or(0);
    let bytes = facts["table_bytes"].as_u64().unwrap_or(0);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    if let Some(rest) = name.strip_prefix("futex ") {
        let mut parts = rest.split_whitespace();
        let addr = parts.next().and_then(hex);
        let pid: Option<u64> = parts
            .next()
            .filter(|p| *p == "(pid")
            .and_then(|_| parts.next())
            .and_then(|p| p.trim_end_matches(')').parse().ok());
        let ours = facts["pids"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p.as_u64() == pid));
        return ours && addr.is_some_and(|a| (table..table + bytes).contains(&a));
    }
    if let Some(rest) = name.strip_prefix("shared futex inode ") {
        let mut parts = rest.split_whitespace();
        let ino: Option<u64> = parts.next().and_then(|i| i.parse().ok());
        let off = parts.next().and_then(|o| hex(o.trim_start_matches('+')));
        return ino.is_some()
            && ino == facts["table_memfd_ino"].as_u64()
            && off.is_some_and(|o| o < bytes);
    }
    false
}

/// The top verdict names a futex of the lock table and the workers that
/// hold and wait for it.
fn names_lock_table() -> Culprit {
    Box::new(|v, facts| {
        let all: Vec<(String, String)> = v["culprits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap_or("").to_string(),
                    c["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let lock = all.iter().any(|(_, n)| in_lock_table(n, facts));
        let workers = all.iter().any(|(k, n)| {
            matches!(k.as_str(), "thread" | "process" | "role") && n.starts_with("hw-lm-w-")
        });
        match (lock, workers) {
            (true, true) => Ok(()),
            _ => Err(format!(
                "culprits {all:?}: lock table named {lock}, its workers (hw-lm-w-*) named \
                 {workers} (table {:#x} + {} bytes, memfd inode {})",
                facts["table_addr"].as_u64().unwrap_or(0),
                facts["table_bytes"],
                facts["table_memfd_ino"]
            )),
        }
    })
}

#[test]
fn lock_manager_hot_row_is_lock_contention_naming_the_lock_table() {
    const NAME: &str = "lockmgr-hot-row";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    let expect = Expect {
        kind: "lock_contention",
        culprit: names_lock_table(),
    };
    check(NAME, expect, || lockmgr_run(NAME, true, false));
}

#[test]
fn lock_manager_unchanged_raises_no_alarm() {
    const NAME: &str = "lockmgr-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    check(NAME, unchanged(), || lockmgr_run(NAME, false, false));
}

#[test]
fn prefork_lock_manager_hot_row_is_lock_contention_across_processes() {
    const NAME: &str = "lockmgr-prefork-hot-row";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    let expect = Expect {
        kind: "lock_contention",
        culprit: names_lock_table(),
    };
    check(NAME, expect, || lockmgr_run(NAME, true, true));
}

#[test]
fn prefork_lock_manager_unchanged_raises_no_alarm() {
    const NAME: &str = "lockmgr-prefork-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    check(NAME, unchanged(), || lockmgr_run(NAME, false, true));
}

#[test]
fn in_lock_table_reads_both_futex_names() {
    let facts = json!({
        "pids": [100, 101],
        "table_addr": 0x1000,
        "table_bytes": 0x100,
        "table_memfd_ino": 77,
    });
    assert!(in_lock_table("futex 0x1040 (pid 101)", &facts));
    assert!(!in_lock_table("futex 0x1040 (pid 5)", &facts));
    assert!(!in_lock_table("futex 0x2000 (pid 100)", &facts));
    assert!(in_lock_table("shared futex inode 77 +0x40", &facts));
    assert!(!in_lock_table("shared futex inode 78 +0x40", &facts));
    assert!(!in_lock_table("shared futex inode 77 +0x400", &facts));
    assert!(!in_lock_table("pipe inode 77", &facts));
}
