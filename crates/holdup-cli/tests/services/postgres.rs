//! PostgreSQL 15 under pgbench: a hot row, another fsync writer under the WAL flush lock, an unchanged run.

use super::*;

const PG_TOOLS: &[&str] = &["runuser", "pgbench", "/usr/lib/postgresql/15/bin/postgres"];
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// pgbench's rate (transactions/s): a healthy, unsaturated server on two
/// CPUs, so the faults, not the load, hold it up.
const PG_RATE: &str = "200";

/// PostgreSQL's fault in a run.
#[derive(Clone, Copy, PartialEq)]
enum PgFault {
    /// Every transaction updates the same branch row (row-lock contention).
    HotRow,
    /// Another process's O_DIRECT + fsync writer on the same filesystem as
    /// the WAL: commits wait for the WAL flush lock while its holder fsyncs.
    DiskWriter,
    None,
}

/// A command run as the `postgres` user (initdb and postgres refuse root).
fn as_postgres(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).args(args);
    c
}

/// `pgbench` against the server, as the postgres user, for `secs`.
fn pgbench(port: u16, secs: u64, extra: &[&str]) -> Guard {
    let port = port.to_string();
    let secs = secs.to_string();
    let mut args = vec![
        "pgbench",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "8",
        "-j",
        "2",
        "-T",
        &secs,
        "-R",
        PG_RATE,
    ];
    args.extend_from_slice(extra);
    args.push("postgres");
    Guard::spawn("pgbench", quiet(&mut as_postgres(&args)))
}

/// PostgreSQL 15 (Debian) on loopback, one process per connection, its data
/// on /var/tmp (a real disk), under pgbench's simple-update transactions.
fn pg_run(name: &str, fault: PgFault) -> (Run, Value) {
    let dir = TempDir::under("/var/tmp", "pg");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data directory");
    let owner = |p: &Path| {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "setup: chown {} to postgres", p.display());
    };
    owner(&dir.0);
    let mut initdb = as_postgres(&[
        &format!("{PG_BIN}/initdb"),
        "-D",
        &data.display().to_string(),
        "--no-sync",
        "-A",
        "trust",
    ]);
    succeeds(&mut initdb, "setup: initdb");
    let port = free_port();
    let server = Guard::spawn(
        "postgres",
        quiet(&mut as_postgres(&[
            &format!("{PG_BIN}/postgres"),
            "-D",
            &data.display().to_string(),
            "-p",
            &port.to_string(),
            "-k",
            &data.display().to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "shared_buffers=64MB",
        ])),
    );
    wait_for_port(port, "postgres", Duration::from_secs(20));
    let mut init = as_postgres(&[
        "pgbench",
        "-i",
        "-s",
        "2",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "postgres",
    ]);
    succeeds(&mut init, "setup: pgbench -i");
    // The postmaster is runuser's child; its pid is the data dir's first line.
    let postmaster: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok())
        .expect("setup: postmaster.pid names the server");
    let hot = dir.join("hot.sql");
    std::fs::write(
        &hot,
        "\\set aid random(1, 200000)\nBEGIN;\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;\nSELECT pg_sleep(0.005);\nEND;\n",
    )
    .expect("write the hot-row script");
    owner(&hot);
    let writer_dir = TempDir::under("/var/tmp", "pg-writer");
    let (mut loads, mut disk) = (Vec::new(), None);
    let run = watch(name, postmaster, |phase, _| match phase {
        Phase::Watching => {}
        Phase::Load => {
            let until = if fault == PgFault::HotRow {
                FAULT_AT
            } else {
                RUN_SECS
            };
            loads.push(pgbench(port, until - LOAD_AT, &["-N"]));
        }
        Phase::Fault => match fault {
            PgFault::HotRow => {
                loads.push(pgbench(
                    port,
                    RUN_SECS - FAULT_AT,
                    &["-f", &hot.display().to_string()],
                ));
            }
            PgFault::DiskWriter => {
                disk = Some(start_disk_writer(&writer_dir));
            }
            PgFault::None => {}
        },
    });
    // pgbench ran: the server committed its transactions.
    let count = as_postgres(&[
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-At",
        "-c",
        // every commit, whatever the script (the hot one writes no history)
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
        "postgres",
    ])
    .output()
    .expect("run psql");
    let transactions: u64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        transactions >= 500,
        "setup: pgbench committed only {transactions} transactions (psql said {:?}, {:?})",
        String::from_utf8_lossy(&count.stdout).trim(),
        String::from_utf8_lossy(&count.stderr).trim()
    );
    drop(loads);
    let mut facts = json!({
        "postmaster": postmaster,
        "port": port,
        "transactions": transactions,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    if let Some(d) = disk {
        facts["writer"] = finish_disk_writer(d);
    }
    drop(server);
    (run, facts)
}

#[test]
fn postgres_hot_row_is_lock_contention_naming_the_backends() {
    const NAME: &str = "pg-hot-row";
    let Some(_g) = prepare(NAME, PG_TOOLS) else {
        return;
    };
    let expect = Expect {
        kind: "lock_contention",
        culprit: Box::new(|v, _| {
            let futexes = culprits(v, "futex");
            let backends = ["thread", "process", "role"]
                .iter()
                .flat_map(|k| culprits(v, k))
                .any(|n| n.starts_with("postgres"));
            if futexes.is_empty() || !backends {
                return Err(format!(
                    "futexes {futexes:?}, postgres backends named {backends}"
                ));
            }
            Ok(())
        }),
    };
    check(NAME, expect, || pg_run(NAME, PgFault::HotRow));
}

#[test]
fn postgres_with_another_fsync_writer_is_disk_contention_naming_the_writer() {
    const NAME: &str = "pg-disk-writer";
    let Some(_g) = prepare(NAME, PG_TOOLS) else {
        return;
    };
    let writer = names_process("hw-disk");
    let expect = Expect {
        kind: "disk_contention",
        culprit: Box::new(move |v, facts| writer(v, facts)),
    };
    check(NAME, expect, || pg_run(NAME, PgFault::DiskWriter));
}

#[test]
fn postgres_unchanged_raises_no_alarm() {
    const NAME: &str = "pg-unchanged";
    let Some(_g) = prepare(NAME, PG_TOOLS) else {
        return;
    };
    check(NAME, unchanged(), || pg_run(NAME, PgFault::None));
}
