//! What the workbench's overhead meter costs in user space: one reading of
//! the BPF run time of a process group (a /proc scan plus fdinfo reads),
//! done once a second per active run.
//!
//! Usage: meter_cost PGID [ITERATIONS]   (BENCHMARKS.md has a result)
use holdup_workbench::overhead::group_stats;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(pgid) = args.next().and_then(|a| a.parse::<i64>().ok()) else {
        eprintln!("usage: meter_cost PGID [ITERATIONS]");
        std::process::exit(2);
    };
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let first = group_stats(pgid);
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(group_stats(pgid));
    }
    let per = t0.elapsed() / n;
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    println!(
        "group {pgid}: {} programs; one reading takes {:?} with {procs} processes on the host",
        first.programs, per
    );
}
