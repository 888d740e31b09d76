//! Host facts read from /proc and cgroupfs: kernel, CPUs, memory, load,
//! pressure (PSI), per-CPU run delay (schedstat), cgroup CPU limits and
//! throttling, and the hung-task and OOM lines of the kernel log. Each
//! reader tolerates a missing file (older kernels, containers): it returns
//! what it can and says what it could not in [`HostFacts::missing`].

use holdup_collect::target::cgroup_root;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Most cgroup directories read (a host with more is summarised partly).
const MAX_CGROUPS: usize = 4000;
/// Most kernel-log lines kept.
const MAX_KMSG_LINES: usize = 200;

/// What the host is, at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostFacts {
    /// Host name.
    pub hostname: String,
    /// Kernel release and version (`uname -rv`).
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// MemTotal, bytes.
    pub mem_total: u64,
    /// MemAvailable, bytes.
    pub mem_available: u64,
    /// Load average 1, 5, 15 min.
    pub loadavg: [f64; 3],
    /// Seconds since boot.
    pub uptime_s: f64,
    /// Pressure per resource (cpu, io, memory).
    pub psi: Vec<Psi>,
    /// Cgroups that have a CPU or memory limit.
    pub cgroup_limits: Vec<CgroupLimit>,
    /// Hung-task and OOM lines of the kernel log.
    pub kernel_log: Vec<String>,
    /// What could not be read, and why.
    pub missing: Vec<String>,
}

/// One resource's pressure (/proc/pressure/*).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Psi {
    /// "cpu", "io" or "memory".
    pub resource: String,
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled (absent for cpu on older kernels).
    pub full: Option<PsiLine>,
}

/// One line of a PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PsiLine {
    /// Percent of the last 10 s.
    pub avg10: f64,
    /// Percent of the last 60 s.
    pub avg60: f64,
    /// Percent of the last 300 s.
    pub avg300: f64,
    /// Total stall time since boot, µs.
    pub total_us: u64,
}

/// Parses one PSI file's text.
pub fn parse_psi(resource: &str, text: &str) -> Option<Psi> {
    let line = |l: &str| -> Option<PsiLine> {
        let mut p = PsiLine::default();
        for kv in l.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => p.avg10 = v.parse().ok()?,
                "avg60" => p.avg60 = v.parse().ok()?,
                "avg300" => p.avg300 = v.parse().ok()?,
                "total" => p.total_us = v.parse().ok()?,
                _ => {}
            }
        }
        Some(p)
    };
    let mut psi = Psi {
        resource: resource.to_string(),
        ..Psi::default()
    };
    let mut seen = false;
    for l in text.lines() {
        if l.starts_with("some ") {
            psi.some = line(l)?;
            seen = true;
        } else if l.starts_with("full ") {
            psi.full = Some(line(l)?);
        }
    }
    seen.then_some(psi)
}

/// Reads /proc/pressure/{cpu,io,memory}; an empty list when PSI is off.
pub fn read_psi() -> Vec<Psi> {
    ["cpu", "io", "memory"]
        .iter()
        .filter_map(|r| {
            let text = fs::read_to_string(format!("/proc/pressure/{r}")).ok()?;
            parse_psi(r, &text)
        })
        .collect()
}

/// One CPU's scheduler counters (/proc/schedstat) and time split (/proc/stat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuCounters {
    /// CPU number.
    pub cpu: usize,
    /// Time tasks waited on this CPU's run queue, ns, and time slices run
    /// (None without /proc/schedstat: a kernel without CONFIG_SCHEDSTATS).
    pub run_delay: Option<(u64, u64)>,
    /// Busy jiffies (user, nice, system).
    pub busy_ticks: u64,
    /// irq + softirq jiffies.
    pub irq_ticks: u64,
    /// Stolen jiffies (hypervisor).
    pub steal_ticks: u64,
    /// All jiffies.
    pub total_ticks: u64,
}

/// Reads each CPU's counters; CPUs missing from either file are left out.
pub fn read_cpu_counters() -> Vec<CpuCounters> {
    let mut by_cpu: BTreeMap<usize, CpuCounters> = BTreeMap::new();
    if let Ok(text) = fs::read_to_string("/proc/schedstat") {
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let Some(name) = f.next() else { continue };
            let Some(n) = name.strip_prefix("cpu").and_then(|n| n.parse().ok()) else {
                continue;
            };
            let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
            // version 15: yld, 0, sched, goidle, ttwu, ttwu_local, cpu_time, run_delay, pcount
            if v.len() >= 9 {
                let c = by_cpu.entry(n).or_default();
                c.cpu = n;
                c.run_delay = Some((v[7], v[8]));
            }
        }
    }
    if let Ok(text) = fs::read_to_string("/proc/stat") {
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let Some(name) = f.next() else { continue };
            let Some(n) = name.strip_prefix("cpu").and_then(|n| n.parse().ok()) else {
                continue;
            };
            let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
            if v.len() >= 8 {
                let c = by_cpu.entry(n).or_default();
                c.cpu = n;
                {
                    c.busy_ticks = v[0] + v[1] + v[2];
                    c.irq_ticks = v[5] + v[6];
                    c.steal_ticks = v[7];
                    c.total_ticks = v.iter().take(8).sum();
                }
            }
        }
    }
    by_cpu.into_values().collect()
}

/// A cgroup's CPU counters (cpu.stat) and limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupCpu {
    /// Path below the cgroup v2 root.
    pub path: String,
    /// cgroup id (the directory's inode).
    pub id: u64,
    /// CPU time used, µs.
    pub usage_usec: u64,
    /// Enforcement periods.
    pub nr_periods: u64,
    /// Periods in which it was throttled.
    pub nr_throttled: u64,
    /// Time throttled, µs.
    pub throttled_usec: u64,
}

/// A cgroup with a limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupLimit {
    /// Path below the cgroup v2 root.
    pub path: String,
    /// cpu.max ("quota period"), when not "max".
    pub cpu_max: Option<String>,
    /// memory.max, bytes, when not "max".
    pub memory_max: Option<u64>,
}

/// Every cgroup's CPU counters and the limits that are set, walking the
/// v2 hierarchy (at most [`MAX_CGROUPS`] directories).
pub fn read_cgroups() -> (Vec<CgroupCpu>, Vec<CgroupLimit>) {
    let root = cgroup_root();
    let mut stats = Vec::new();
    let mut limits = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        if stats.len() >= MAX_CGROUPS {
            break;
        }
        let rel = format!("/{}", d.strip_prefix(&root).unwrap_or(&d).display());
        let id = fs::metadata(&d).map(|m| m.ino()).unwrap_or(0);
        if let Ok(text) = fs::read_to_string(d.join("cpu.stat")) {
            let mut c = CgroupCpu {
                path: rel.clone(),
                id,
                ..CgroupCpu::default()
            };
            for l in text.lines() {
                let mut f = l.split_whitespace();
                let (Some(k), Some(v)) = (f.next(), f.next().and_then(|v| v.parse().ok())) else {
                    continue;
                };
                match k {
                    "usage_usec" => c.usage_usec = v,
                    "nr_periods" => c.nr_periods = v,
                    "nr_throttled" => c.nr_throttled = v,
                    "throttled_usec" => c.throttled_usec = v,
                    _ => {}
                }
            }
            stats.push(c);
        }
        let cpu_max = read_trim(&d.join("cpu.max")).filter(|s| !s.starts_with("max"));
        let memory_max = read_trim(&d.join("memory.max")).and_then(|s| s.parse().ok());
        if cpu_max.is_some() || memory_max.is_some() {
            limits.push(CgroupLimit {
                path: rel,
                cpu_max,
                memory_max,
            });
        }
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    (stats, limits)
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Is this kernel-log message about a hung task or the OOM killer?
pub fn is_hung_or_oom(msg: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "blocked for more than",
        "hung_task",
        "Out of memory",
        "oom-kill",
        "oom_reaper",
        "invoked oom-killer",
        "Killed process",
        "Memory cgroup out of memory",
    ];
    PATTERNS.iter().any(|p| msg.contains(p))
}

/// The hung-task and OOM lines of the kernel log: /dev/kmsg (read without
/// blocking, from the start of its buffer), else `dmesg`. The last
/// [`MAX_KMSG_LINES`] are kept.
pub fn read_kernel_log() -> Result<Vec<String>, String> {
    let mut lines = match read_kmsg() {
        Ok(l) => l,
        Err(kmsg_err) => {
            let out = std::process::Command::new("dmesg")
                .output()
                .map_err(|e| format!("/dev/kmsg: {kmsg_err}; dmesg: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "/dev/kmsg: {kmsg_err}; dmesg: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| is_hung_or_oom(l))
                .map(str::to_string)
                .collect()
        }
    };
    let drop = lines.len().saturating_sub(MAX_KMSG_LINES);
    lines.drain(..drop);
    Ok(lines)
}

fn read_kmsg() -> std::io::Result<Vec<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    // Each read returns one record: "prio,seq,usec,flags;message\n...".
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let Some((meta, msg)) = rec.split_once(';') else {
                    continue;
                };
                let msg = msg.lines().next().unwrap_or("");
                if is_hung_or_oom(msg) {
                    let usec: u64 = meta
                        .split(',')
                        .nth(2)
                        .and_then(|u| u.parse().ok())
                        .unwrap_or(0);
                    out.push(format!("[{:>12.6}] {msg}", usec as f64 / 1e6));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // A record overwritten while reading: skip to the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads everything [`HostFacts`] holds.
pub fn read_facts() -> HostFacts {
    let mut missing = Vec::new();
    let hostname = read_trim(Path::new("/proc/sys/kernel/hostname")).unwrap_or_default();
    let kernel = format!(
        "{} {}",
        read_trim(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default(),
        read_trim(Path::new("/proc/sys/kernel/version")).unwrap_or_default()
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let mut loadavg = [0.0; 3];
    if let Some(t) = read_trim(Path::new("/proc/loadavg")) {
        for (slot, v) in loadavg.iter_mut().zip(t.split_whitespace()) {
            *slot = v.parse().unwrap_or(0.0);
        }
    }
    let uptime_s = read_trim(Path::new("/proc/uptime"))
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let psi = read_psi();
    if psi.is_empty() {
        missing.push("no pressure (PSI) files: the kernel runs without psi=1".to_string());
    }
    let (_, cgroup_limits) = read_cgroups();
    let kernel_log = match read_kernel_log() {
        Ok(l) => l,
        Err(e) => {
            missing.push(format!("kernel log not readable: {e}"));
            Vec::new()
        }
    };
    HostFacts {
        hostname,
        kernel,
        cpus,
        cpu_model,
        mem_total: mem("MemTotal:"),
        mem_available: mem("MemAvailable:"),
        loadavg,
        uptime_s,
        psi,
        cgroup_limits,
        kernel_log,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_lines_parse() {
        let t = "some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n";
        let p = parse_psi("io", t).unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total_us, 12345);
        assert_eq!(p.full.unwrap().total_us, 99);
        assert!(parse_psi("cpu", "garbage").is_none());
    }

    #[test]
    fn hung_and_oom_lines_are_recognised() {
        assert!(is_hung_or_oom(
            "INFO: task kworker/0:1:12 blocked for more than 120 seconds."
        ));
        assert!(is_hung_or_oom(
            "Out of memory: Killed process 123 (x) total-vm:1kB"
        ));
        assert!(!is_hung_or_oom("EXT4-fs (vda1): mounted filesystem"));
    }

    #[test]
    fn this_host_has_cpus_and_memory() {
        let f = read_facts();
        assert!(f.cpus >= 1 && f.mem_total > 0, "{f:?}");
        assert_eq!(read_cpu_counters().len(), f.cpus);
    }
}
