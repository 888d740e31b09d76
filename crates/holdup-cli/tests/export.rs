//! `holdup export` of a real recording, read back by DuckDB (PyPI `duckdb`,
//! scripts/setup.sh), driven through python3: the per-thread totals a
//! query gives must be those of `holdup inspect --json`, the recording's
//! header must be in the Parquet metadata, the JSON Lines must hold the same
//! rows, and every query in docs/EXPORT.md must run. Needs root (BPF) to
//! record. Run with
//! `flock /tmp/holdup-measure.lock cargo test -p holdup-cli --test export -- --test-threads=1`.

use holdup_testkit::scenario::have_tools;
use holdup_testkit::{bpf_setup, workload_bin, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn holdup(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_holdup"))
        .args(args)
        .output()
        .expect("run holdup");
    assert!(
        out.status.success(),
        "holdup {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a python3 script (with `duckdb`) and parses the JSON it prints.
fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

const READ_BACK: &str = r#"
import duckdb, json, sys
d = sys.argv[1]
con = duckdb.connect()
threads = con.execute(f"""
    SELECT tid, sum(on_cpu_ns), sum(runq_ns), sum(iowait_ns), sum(other_d_ns),
           sum(sleep_ns), count(*)
    FROM '{d}/threads.parquet' GROUP BY tid ORDER BY tid""").fetchall()
kv = con.execute(f"SELECT key, value FROM parquet_kv_metadata('{d}/threads.parquet')").fetchall()
counts = {}
for t in ["threads", "culprits", "wake_edges", "resource_waits", "histograms"]:
    p = con.execute(f"SELECT count(*) FROM '{d}/{t}.parquet'").fetchone()[0]
    j = con.execute(f"SELECT count(*) FROM read_json_auto('{d}/{t}.jsonl')").fetchone()[0] if p else 0
    counts[t] = [p, j]
print(json.dumps({
    "threads": [[int(x) for x in r] for r in threads],
    "kv": {k.decode(): v.decode() for k, v in kv},
    "counts": counts,
}))
"#;

const RUN_DOC_QUERIES: &str = r#"
import duckdb, json, sys
d, doc = sys.argv[1], open(sys.argv[2]).read()
queries = [b.split("```")[0] for b in doc.split("```sql")[1:]]
con = duckdb.connect()
out = []
for q in queries:
    con.execute(f"SET file_search_path = '{d}'")
    rows = con.execute(q).fetchall()
    out.append(len(rows))
print(json.dumps(out))
"#;

#[test]
fn duckdb_reads_the_parquet_export_with_the_totals_of_inspect() {
    const NAME: &str = "export + duckdb";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, &["python3"]) {
        return;
    }
    let have_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_duckdb {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true: {NAME} needs the duckdb Python module (scripts/setup.sh)"
        );
        eprintln!("skipping {NAME}: no duckdb Python module (run scripts/setup.sh)");
        return;
    }
    let dir = TempDir::new("export");
    let rec = dir.join("mixed.rec");
    let wl = workload_bin();
    holdup(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "--",
        wl.to_str().unwrap(),
        "mixed",
        "--secs",
        "3",
    ]);
    let (pq, jl) = (dir.join("pq"), dir.join("jl"));
    holdup(&[
        "export",
        rec.to_str().unwrap(),
        "--parquet",
        pq.to_str().unwrap(),
        "--jsonl",
        jl.to_str().unwrap(),
    ]);
    // One directory with both kinds, as the read-back script expects.
    for e in std::fs::read_dir(&jl).unwrap().flatten() {
        std::fs::copy(e.path(), pq.join(e.file_name())).unwrap();
    }
    let inspect: Value =
        serde_json::from_slice(&holdup(&["inspect", rec.to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    let got = python(READ_BACK, &[pq.to_str().unwrap()]);

    let by_tid: std::collections::HashMap<u64, &Value> = got["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r))
        .collect();
    let listed = inspect["threads"].as_array().unwrap();
    assert!(
        listed.len() >= 5,
        "the mixed workload has 5+ threads: {inspect}"
    );
    assert_eq!(
        by_tid.len() as u64,
        inspect["thread_count"].as_u64().unwrap(),
        "DuckDB sees as many threads as inspect"
    );
    for t in listed {
        let tid = t["tid"].as_u64().unwrap();
        let row = by_tid
            .get(&tid)
            .unwrap_or_else(|| panic!("thread {tid} missing from threads.parquet"));
        let st = &t["states"];
        for (i, key) in [
            "on_cpu_ns",
            "runq_ns",
            "iowait_ns",
            "other_d_ns",
            "sleep_ns",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(
                row[i + 1].as_u64(),
                st[key].as_u64(),
                "thread {tid} {key}: DuckDB vs inspect"
            );
        }
        assert_eq!(
            row[6].as_u64(),
            t["windows"].as_u64(),
            "thread {tid} windows"
        );
    }
    // The spinner really spun, so the totals compared are not all zero.
    let spin = listed
        .iter()
        .find(|t| t["comm"] == "hw-spin")
        .expect("hw-spin");
    assert!(spin["states"]["on_cpu_ns"].as_u64().unwrap() > 1_000_000_000);

    let header: Value = serde_json::from_str(
        got["kv"]["holdup.header"]
            .as_str()
            .expect("holdup.header in the Parquet metadata"),
    )
    .unwrap();
    assert_eq!(header["target"]["type"], "command");
    assert_eq!(got["kv"]["holdup.table"], "threads");
    for (table, c) in got["counts"].as_object().unwrap() {
        assert_eq!(c[0], c[1], "{table}: Parquet and JSON Lines rows");
    }
    assert!(got["counts"]["threads"][0].as_u64().unwrap() > 0);

    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/EXPORT.md");
    let ran = python(
        RUN_DOC_QUERIES,
        &[pq.to_str().unwrap(), doc.to_str().unwrap()],
    );
    let ran = ran.as_array().unwrap();
    assert!(
        ran.len() >= 5,
        "docs/EXPORT.md should hold the usual queries"
    );
    // Who waited most on the run queue, the first query, names threads.
    assert!(
        ran[0].as_u64().unwrap() > 0,
        "the first query found no rows"
    );
}
