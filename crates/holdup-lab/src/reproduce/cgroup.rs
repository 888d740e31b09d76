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
    /// Its CPU controls (when a CPU limit was asked for and a CPU
    /// controller holds them): the CPU calibration moves them.
    pub cpu: Option<CpuKnobs>,
    /// Limits that could not be applied, in words.
    pub notes: Vec<String>,
}

/// What the CPU calibration moves for one hog: its cgroup's CPU controls
/// (v2 `cpu.weight` and `cpu.max`, or v1 `cpu.shares` and
/// `cpu.cfs_quota_us`), or, for a hog in the service's own CPU group, its
/// nice value (no quota there).
#[derive(Clone, Debug)]
pub struct CpuKnobs(Knob);

#[derive(Clone, Debug)]
enum Knob {
    Cgroup { dir: PathBuf, v2: bool },
    Nice { pid: u32 },
}

/// The kernel's weight of a nice value (1024 × 1.25^-nice, its table's rule).
pub fn nice_weight(nice: i32) -> u64 {
    (1024.0 * 1.25f64.powi(-nice.clamp(-20, 19))).round() as u64
}

impl CpuKnobs {
    /// A hog's nice value as its knob.
    pub fn nice(pid: u32) -> CpuKnobs {
        CpuKnobs(Knob::Nice { pid })
    }

    /// Whether a quota can be set.
    pub fn has_quota(&self) -> bool {
        matches!(self.0, Knob::Cgroup { .. })
    }

    /// Most weight the kernel takes, in its units (1024: a nice-0 task):
    /// v2's 10000 is 102400, v1's `cpu.shares` goes to 262144, nice -20
    /// is 88761.
    pub fn max_weight(&self) -> u64 {
        match self.0 {
            Knob::Cgroup { v2: true, .. } => 102_400,
            Knob::Cgroup { v2: false, .. } => 262_144,
            Knob::Nice { .. } => nice_weight(-20),
        }
    }

    /// Sets the weight, in the kernel's units (1024: a task of nice 0).
    pub fn set_weight(&self, weight: u64) -> std::io::Result<()> {
        match &self.0 {
            Knob::Cgroup { dir, v2: true } => {
                let w2 = (weight * 100 / 1024).clamp(1, 10000);
                write(&dir.join("cpu.weight"), &w2.to_string())
            }
            Knob::Cgroup { dir, v2: false } => write(
                &dir.join("cpu.shares"),
                &weight.clamp(2, 262_144).to_string(),
            ),
            Knob::Nice { pid } => {
                let nice = (-(weight.max(1) as f64 / 1024.0).ln() / 1.25f64.ln()).round() as i32;
                // SAFETY: setpriority on a thread id the lab started (the
                // hog spins in its one thread).
                let r = unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, *pid as libc::id_t, nice.clamp(-20, 19))
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
        }
    }

    /// Sets the quota, in CPUs (0.5: half of one CPU per period).
    pub fn set_quota(&self, cpus: f64) -> std::io::Result<()> {
        let quota = ((cpus * PERIOD_US as f64) as u64).max(1000);
        match &self.0 {
            Knob::Cgroup { dir, v2: true } => {
                write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))
            }
            Knob::Cgroup { dir, v2: false } => {
                write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())
            }
            Knob::Nice { .. } => Err(std::io::Error::other("a nice value has no quota")),
        }
    }
}

/// Whether `pid` competes for the CPU in holdup's own CPU group: the same
/// v1 `cpu` cgroup, or v2 cgroup where v2 holds the cpu controller, and the
/// same autogroup. A hog holdup starts without a CPU cgroup of its own then
/// competes with it task against task, as a process beside it would.
pub fn shares_cpu_group_with_me(pid: u32) -> bool {
    let cpu_line = |p: &str| -> Option<String> {
        let s = std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok()?;
        let v1 = s.lines().find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "cpu"))
        });
        Some(
            v1.or_else(|| s.lines().find(|l| l.starts_with("0::")))?
                .to_string(),
        )
    };
    let autogroup = |p: &str| -> Option<String> {
        let s = std::fs::read_to_string(format!("/proc/{p}/autogroup")).ok()?;
        Some(s.split_whitespace().next()?.to_string())
    };
    let (me, it) = ("self".to_string(), pid.to_string());
    cpu_line(&me).is_some() && cpu_line(&me) == cpu_line(&it) && autogroup(&me) == autogroup(&it)
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
            cpu: None,
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
        let knobs = if has("cpu") {
            Some(CpuKnobs(Knob::Cgroup {
                dir: v2.clone(),
                v2: true,
            }))
        } else {
            cpu_v1.as_ref().map(|d| {
                CpuKnobs(Knob::Cgroup {
                    dir: d.clone(),
                    v2: false,
                })
            })
        };
        let mut cpu_ok = true;
        if let Some(cpu) = limits.cpu {
            if knobs.as_ref().is_none_or(|k| k.set_quota(cpu).is_err()) {
                cpu_ok = false;
                set.notes.push(format!(
                    "no CPU controller: the {cpu:.2}-CPU quota of {name} is not applied"
                ));
            }
        }
        if let Some(w) = limits.weight {
            if knobs.as_ref().is_none_or(|k| k.set_weight(w).is_err()) {
                cpu_ok = false;
                set.notes.push(format!(
                    "no CPU controller: the CPU weight of {name} is not set"
                ));
            }
        }
        if cpu_ok && (limits.cpu.is_some() || limits.weight.is_some()) {
            set.cpu = knobs;
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
