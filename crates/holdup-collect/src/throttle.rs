//! CPU throttling of the targets' cgroups, read each window from the
//! cgroup's `cpu.stat`: how long CFS bandwidth control held their runnable
//! tasks off the CPUs because the quota was spent. The scheduler has no
//! tracepoint for throttling, and these are the kernel's own exact
//! counters, so they are read, not traced (and named as such).
//!
//! On a busy host a throttled service's run-queue wait is also credited to
//! whoever ran meanwhile; without this a quota reads as a noisy neighbour.

use holdup_model::CgroupThrottle;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// Where the cpu controller is mounted: cgroup v1 (its own hierarchy) or
/// the unified v2 hierarchy.
#[derive(Clone, Debug)]
enum CpuHierarchy {
    V1(PathBuf),
    V2(PathBuf),
}

/// Finds the cpu controller's mount in /proc/self/mountinfo.
fn cpu_hierarchy() -> Option<CpuHierarchy> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2 = None;
    for line in text.lines() {
        // ... mount_point opts - fstype source super_opts
        let (pre, post) = line.split_once(" - ")?;
        let mount = pre.split_whitespace().nth(4)?;
        let mut post = post.split_whitespace();
        let fstype = post.next()?;
        let super_opts = post.nth(1).unwrap_or("");
        if fstype == "cgroup" && super_opts.split(',').any(|o| o == "cpu") {
            return Some(CpuHierarchy::V1(PathBuf::from(mount)));
        }
        if fstype == "cgroup2" && v2.is_none() {
            v2 = Some(PathBuf::from(mount));
        }
    }
    v2.map(CpuHierarchy::V2)
}

/// The cgroup of `tgid` in the cpu hierarchy, from /proc/PID/cgroup.
fn cgroup_of(tgid: u32, hierarchy: &CpuHierarchy) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let wanted = match hierarchy {
            CpuHierarchy::V1(_) => controllers.split(',').any(|c| c == "cpu"),
            CpuHierarchy::V2(_) => id == "0" && controllers.is_empty(),
        };
        wanted.then(|| path.to_string())
    })
}

/// (periods, throttled periods, throttled ns) from a cpu.stat text: v1
/// writes `throttled_time` in ns, v2 `throttled_usec`.
pub fn parse_cpu_stat(text: &str) -> Option<(u64, u64, u64)> {
    let mut vals: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.trim().parse() {
                vals.insert(k, v);
            }
        }
    }
    let ns = match (vals.get("throttled_time"), vals.get("throttled_usec")) {
        (Some(ns), _) => *ns,
        (None, Some(us)) => us.saturating_mul(1000),
        (None, None) => return None,
    };
    Some((*vals.get("nr_periods")?, *vals.get("nr_throttled")?, ns))
}

/// A process's cgroup is looked up again after this many windows.
pub const RESOLVE_EVERY: u64 = 8;

/// Reads the throttling of the targets' cgroups window by window.
#[derive(Default)]
pub struct ThrottleReader {
    hierarchy: Option<Option<CpuHierarchy>>,
    /// Each process's cgroup (None: not found), looked up again every
    /// [`RESOLVE_EVERY`] windows (processes move between cgroups).
    cgroup: HashMap<u32, Option<String>>,
    /// Windows read.
    reads: u64,
    /// Each cgroup's counters at the last window.
    last: HashMap<String, (u64, u64, u64)>,
}

impl ThrottleReader {
    /// The cgroups of `tgids` that were throttled since the last call.
    pub fn read(&mut self, tgids: &BTreeSet<u32>) -> Vec<CgroupThrottle> {
        let Some(hierarchy) = self.hierarchy.get_or_insert_with(cpu_hierarchy).clone() else {
            return Vec::new();
        };
        let root = match &hierarchy {
            CpuHierarchy::V1(p) | CpuHierarchy::V2(p) => p.clone(),
        };
        if self.reads.is_multiple_of(RESOLVE_EVERY) {
            self.cgroup.clear();
        }
        self.reads += 1;
        let mut members: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &tgid in tgids {
            let cg = self
                .cgroup
                .entry(tgid)
                .or_insert_with(|| cgroup_of(tgid, &hierarchy));
            if let Some(cg) = cg {
                members.entry(cg.clone()).or_default().push(tgid);
            }
        }
        let mut out = Vec::new();
        for (cg, tgids) in members {
            let file = root.join(cg.trim_start_matches('/')).join("cpu.stat");
            let Some(now) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| parse_cpu_stat(&t))
            else {
                continue;
            };
            let Some(before) = self.last.insert(cg.clone(), now) else {
                continue; // first sight: a baseline, not a window's worth
            };
            let delta = (
                now.0.saturating_sub(before.0),
                now.1.saturating_sub(before.1),
                now.2.saturating_sub(before.2),
            );
            if delta.2 > 0 {
                out.push(CgroupThrottle {
                    cgroup: cg,
                    tgids,
                    periods: delta.0,
                    throttled_periods: delta.1,
                    throttled_ns: delta.2,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cpu_stat_forms_parse() {
        let v1 = "nr_periods 120\nnr_throttled 95\nthrottled_time 8123456789\n";
        assert_eq!(parse_cpu_stat(v1), Some((120, 95, 8_123_456_789)));
        let v2 = "usage_usec 9\nuser_usec 5\nsystem_usec 4\nnr_periods 10\nnr_throttled 3\nthrottled_usec 2500\n";
        assert_eq!(parse_cpu_stat(v2), Some((10, 3, 2_500_000)));
        assert_eq!(parse_cpu_stat("usage_usec 9\n"), None);
    }
}
