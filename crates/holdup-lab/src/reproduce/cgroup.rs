//! A cgroup of its own for each thing `holdup reproduce` starts, with its
//! limits: cgroup v2 (cpu.max, cpuset.cpus, io.max) where its controllers
//! are enabled, else the v1 hierarchies of a hybrid host (cpu.cfs_quota_us,
//! cpuset.cpus, blkio.throttle.write_bps_device). The v2 directory always
//! exists (it groups the processes, and `cgroup.kill` ends them); every
//! directory is removed at the end.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Limits of one generator's cgroup.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// CPU quota, in CPUs (0.5: half of one CPU).
    pub cpu: Option<f64>,
    /// CPUs it may run on.
    pub cpus: Option<Vec<usize>>,
    /// Write bytes per second on a disk ("MAJ:MIN", bytes/s).
    pub write_bps: Option<(String, u64)>,
    /// CPU weight against other groups, in the kernel's units (1024: a
    /// task of nice 0), so a hog competes as a process beside the service.
    pub weight: Option<u64>,
}

/// Where cgroup v2 is mounted (read from the mount table).
pub fn v2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

const V1_CPU: &str = "/sys/fs/cgroup/cpu";
const V1_CPUSET: &str = "/sys/fs/cgroup/cpuset";
const V1_BLKIO: &str = "/sys/fs/cgroup/blkio";
const PERIOD_US: u64 = 100_000;

/// The lab's cgroups: one parent per hierarchy, one child per generator.
pub struct LabCgroups {
    v2: PathBuf,
    v2_controllers: Vec<String>,
    /// Parents created in v1 hierarchies.
    v1: Vec<PathBuf>,
    /// Every directory created, children first when removed.
    created: Vec<PathBuf>,
    name: String,
}

/// One generator's cgroup directories.
#[derive(Clone, Debug)]
pub struct CgroupSet {
    /// Its `cgroup.procs` files, one per hierarchy.
    pub procs: Vec<PathBuf>,
    /// The v2 directory.
    pub v2: PathBuf,
    /// Limits that could not be applied, in words.
    pub notes: Vec<String>,
}

fn write(p: &Path, v: &str) -> std::io::Result<()> {
    std::fs::write(p, v)
}

impl LabCgroups {
    /// Creates the parents (`holdup-lab-PID`).
    pub fn create() -> Result<LabCgroups> {
        let Some(v2) = v2_mount() else {
            bail!("holdup reproduce needs cgroup v2 (no cgroup2 mount in /proc/self/mounts): mount it (mount -t cgroup2 none /sys/fs/cgroup/unified)");
        };
        let name = format!("holdup-lab-{}", std::process::id());
        let dir = v2.join(&name);
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "cannot create the lab's cgroup {} (holdup reproduce must run as root)",
                dir.display()
            )
        })?;
        let mut cg = LabCgroups {
            v2: dir.clone(),
            v2_controllers: Vec::new(),
            v1: Vec::new(),
            created: vec![dir.clone()],
            name,
        };
        // Enable what the host offers for the children (best effort: a
        // controller bound to a v1 hierarchy is not offered here).
        let offered = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        for c in ["cpu", "cpuset", "io"] {
            if offered.split_whitespace().any(|o| o == c) {
                let _ = write(&v2.join("cgroup.subtree_control"), &format!("+{c}"));
                if write(&dir.join("cgroup.subtree_control"), &format!("+{c}")).is_ok() {
                    cg.v2_controllers.push(c.to_string());
                }
            }
        }
        for (root, needed, ctl) in [
            (V1_CPU, "cpu.cfs_quota_us", "cpu"),
            (V1_CPUSET, "cpuset.cpus", "cpuset"),
            (V1_BLKIO, "blkio.throttle.write_bps_device", "io"),
        ] {
            if cg.v2_controllers.iter().any(|c| c == ctl) {
                continue;
            }
            let root = Path::new(root);
            if !root.join(needed).exists() {
                continue;
            }
            let d = root.join(&cg.name);
            if std::fs::create_dir(&d).is_ok() {
                if ctl == "cpuset" {
                    // A v1 cpuset takes no task before it has CPUs and memory nodes.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(root.join(f)).unwrap_or_default();
                        let _ = write(&d.join(f), v.trim());
                    }
                }
                cg.created.push(d.clone());
                cg.v1.push(d);
            }
        }
        Ok(cg)
    }

    /// The v2 parent directory.
    pub fn dir(&self) -> &Path {
        &self.v2
    }

    /// A child cgroup `name` with `limits` in every hierarchy.
    pub fn child(&mut self, name: &str, limits: &Limits) -> Result<CgroupSet> {
        let v2 = self.v2.join(name);
        std::fs::create_dir(&v2)
            .with_context(|| format!("cannot create the cgroup {}", v2.display()))?;
        self.created.push(v2.clone());
        let mut set = CgroupSet {
            procs: vec![v2.join("cgroup.procs")],
            v2: v2.clone(),
            notes: Vec::new(),
        };
        let has = |c: &str| self.v2_controllers.iter().any(|x| x == c);
        let mut v1_dir = |root: &str| -> Option<PathBuf> {
            let parent = self.v1.iter().find(|d| d.starts_with(root))?.clone();
            let d = parent.join(name);
            std::fs::create_dir(&d).ok()?;
            if root == V1_CPUSET {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                    let _ = write(&d.join(f), v.trim());
                }
            }
            self.created.push(d.clone());
            set.procs.push(d.join("cgroup.procs"));
            Some(d)
        };
        // One v1 cpu directory for the quota and the weight.
        let cpu_v1 = if !has("cpu") && (limits.cpu.is_some() || limits.weight.is_some()) {
            v1_dir(V1_CPU)
        } else {
            None
        };
        if let Some(cpu) = limits.cpu {
            let quota = ((cpu * PERIOD_US as f64) as u64).max(1000);
            let ok = if has("cpu") {
                write(&v2.join("cpu.max"), &format!("{quota} {PERIOD_US}")).is_ok()
            } else if let Some(d) = &cpu_v1 {
                write(&d.join("cpu.cfs_period_us"), &PERIOD_US.to_string()).is_ok()
                    && write(&d.join("cpu.cfs_quota_us"), &quota.to_string()).is_ok()
            } else {
                false
            };
            if !ok {
                set.notes.push(format!(
                    "no CPU controller: the {cpu:.2}-CPU quota of {name} is not applied"
                ));
            }
        }
        if let Some(w) = limits.weight {
            let ok = if has("cpu") {
                let w2 = (w * 100 / 1024).clamp(1, 10000);
                write(&v2.join("cpu.weight"), &w2.to_string()).is_ok()
            } else if let Some(d) = &cpu_v1 {
                write(&d.join("cpu.shares"), &w.clamp(2, 262144).to_string()).is_ok()
            } else {
                false
            };
            if !ok {
                set.notes.push(format!(
                    "no CPU controller: the CPU weight of {name} is not set"
                ));
            }
        }
        if let Some(cpus) = &limits.cpus {
            let list = cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let ok = if has("cpuset") {
                write(&v2.join("cpuset.cpus"), &list).is_ok()
            } else if let Some(d) = v1_dir(V1_CPUSET) {
                write(&d.join("cpuset.cpus"), &list).is_ok()
            } else {
                false
            };
            if !ok {
                set.notes.push(format!(
                    "no cpuset controller: {name} is kept on CPUs {list} by its affinity only"
                ));
            }
        }
        if let Some((dev, bps)) = &limits.write_bps {
            let ok = if has("io") {
                write(&v2.join("io.max"), &format!("{dev} wbps={bps}")).is_ok()
            } else if let Some(d) = v1_dir(V1_BLKIO) {
                write(
                    &d.join("blkio.throttle.write_bps_device"),
                    &format!("{dev} {bps}"),
                )
                .is_ok()
            } else {
                false
            };
            if !ok {
                set.notes.push(format!(
                    "no io controller for {dev}: {name} keeps its rate by pacing itself"
                ));
            }
        }
        Ok(set)
    }

    /// Ends every process left in the lab's cgroups and removes them.
    /// Returns what could not be removed.
    pub fn remove(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        let dirs: Vec<PathBuf> = self.created.drain(..).rev().collect();
        for d in &dirs {
            let kill = d.join("cgroup.kill");
            if kill.exists() {
                let _ = write(&kill, "1");
            }
            for pid in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                // SAFETY: signalling a process the lab put in its own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for d in &dirs {
            let mut removed = false;
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    removed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !removed {
                left.push(d.display().to_string());
            }
        }
        left
    }
}

impl Drop for LabCgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The whole disk ("MAJ:MIN") holding `dir`'s filesystem.
pub fn disk_of(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if !sys.exists() {
        return None;
    }
    if sys.join("partition").exists() {
        let parent = std::fs::canonicalize(&sys).ok()?.parent()?.join("dev");
        return std::fs::read_to_string(parent)
            .ok()
            .map(|s| s.trim().to_string());
    }
    Some(format!("{maj}:{min}"))
}
