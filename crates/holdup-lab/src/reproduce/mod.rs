//! `holdup reproduce`: regenerate an incident's recorded contention
//! against a lab copy of the service, and say how closely the lab run
//! matches the incident.
//!
//! [`plan`] turns the incident's diagnosis into contention (CPU hogs, a
//! disk writer, a delay proxy, more load) or says plainly why it cannot be
//! made from outside the service; [`Lab`] starts the lab copy, its load and
//! the generators, each in a cgroup of its own ([`cgroup`]), and stops every
//! one of them by its id at the end (also when dropped: on an error, a
//! panic, or Ctrl-C, which ends the CLI's recording loop); [`closeness`]
//! compares the lab run's diagnosis with the incident's. The CLI
//! (`holdup-cli/src/lab.rs`) records the lab run with the collector.

pub mod cgroup;
pub mod generators;
pub mod plan;

pub use generators::{affinity_of, run_generator, GeneratorRun, GeneratorSpec};
pub use plan::{plan, Contention, Plan};

use crate::fingerprint::{Fingerprint, Similarity};
use anyhow::{Context, Result};
use cgroup::{LabCgroups, Limits};
use holdup_diagnose::Diagnosis;
use serde::Serialize;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Something the lab started.
#[derive(Clone, Debug, Serialize)]
pub struct Started {
    /// What it is ("lab copy", "load 1", "cpu hog 1", ...).
    pub what: String,
    /// Its pid (also its process group).
    pub pid: u32,
    /// Its v2 cgroup directory.
    pub cgroup: String,
}

/// What [`Lab::stop`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stopped {
    /// Processes stopped (by process group).
    pub processes: Vec<Started>,
    /// Cgroup directories and files removed.
    pub removed: Vec<String>,
    /// What could not be removed.
    pub left: Vec<String>,
}

/// The lab: everything `holdup reproduce` starts, stopped together.
pub struct Lab {
    cgroups: Option<LabCgroups>,
    children: Vec<(Started, Child)>,
    files: Vec<PathBuf>,
    exe: PathBuf,
    secs: f64,
    /// Limits that could not be applied, and other remarks.
    pub notes: Vec<String>,
}

impl Lab {
    /// A lab whose generators are `exe reproduce --generator ...` and end
    /// by themselves after `secs` at the latest.
    pub fn new(exe: PathBuf, secs: f64) -> Result<Lab> {
        Ok(Lab {
            cgroups: Some(LabCgroups::create()?),
            children: Vec::new(),
            files: Vec::new(),
            exe,
            secs,
            notes: Vec::new(),
        })
    }

    /// The lab's v2 cgroup directory.
    pub fn cgroup_dir(&self) -> String {
        self.cgroups
            .as_ref()
            .map(|c| c.dir().display().to_string())
            .unwrap_or_default()
    }

    /// What is running now.
    pub fn started(&self) -> Vec<Started> {
        self.children.iter().map(|(s, _)| s.clone()).collect()
    }

    fn spawn(&mut self, what: &str, mut cmd: Command, limits: &Limits) -> Result<u32> {
        let name = format!(
            "{}-{}",
            self.children.len(),
            what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let set = self
            .cgroups
            .as_mut()
            .context("the lab is stopped")?
            .child(&name, limits)?;
        self.notes.extend(set.notes.iter().cloned());
        let procs: Vec<CString> = set
            .procs
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        cmd.process_group(0).stdin(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls
        // (prctl, open, write, close) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {what}"))?;
        let pid = child.id();
        self.children.push((
            Started {
                what: what.to_string(),
                pid,
                cgroup: set.v2.display().to_string(),
            },
            child,
        ));
        Ok(pid)
    }

    /// Starts a command (the lab copy of the service), its output to stderr.
    pub fn start_command(&mut self, what: &str, argv: &[String]) -> Result<u32> {
        let (prog, args) = argv
            .split_first()
            .context("no command given to start the lab copy")?;
        let mut cmd = Command::new(prog);
        cmd.args(args).stdout(Stdio::null());
        self.spawn(what, cmd, &Limits::default())
            .with_context(|| format!("the lab command `{}` did not start", argv.join(" ")))
    }

    /// Starts a shell command (a copy of the load), output discarded.
    pub fn start_shell(&mut self, what: &str, line: &str) -> Result<u32> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.spawn(what, cmd, &Limits::default())
    }

    /// Starts a generator in a cgroup with `limits`.
    pub fn start_generator(
        &mut self,
        what: &str,
        spec: GeneratorSpec,
        limits: &Limits,
    ) -> Result<u32> {
        if let GeneratorSpec::DiskWriter { file, .. } = &spec {
            self.files.push(file.clone());
        }
        // The generator joins its cgroup itself too (harmless twice).
        let run = GeneratorRun {
            spec,
            cgroup_procs: Vec::new(),
            secs: self.secs,
        };
        let mut cmd = Command::new(&self.exe);
        cmd.args(["reproduce", "--generator", &serde_json::to_string(&run)?]);
        self.spawn(what, cmd, limits)
    }

    /// Whether a started process still runs.
    pub fn running(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .find(|(s, _)| s.pid == pid)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends a signal to a started process.
    pub fn signal(&self, pid: u32, sig: i32) {
        if self.children.iter().any(|(s, _)| s.pid == pid) {
            // SAFETY: signalling a process this lab started.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// Stops everything: each process group by its id, then whatever is
    /// left in the lab's cgroups, which are removed, and the writer's files.
    pub fn stop(&mut self) -> Stopped {
        let mut out = Stopped::default();
        for (s, mut c) in self.children.drain(..).rev() {
            // SAFETY: signalling the process group this lab created.
            unsafe { libc::kill(-(s.pid as i32), libc::SIGKILL) };
            let _ = c.wait();
            out.processes.push(s);
        }
        if let Some(mut cg) = self.cgroups.take() {
            out.removed.push(cg.dir().display().to_string());
            out.left.extend(cg.remove());
        }
        for f in self.files.drain(..) {
            if f.exists() && std::fs::remove_file(&f).is_err() {
                out.left.push(f.display().to_string());
            } else {
                out.removed.push(f.display().to_string());
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process's CPU use (all threads), CPU-s, from /proc/PID/stat.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

/// The CPU weight a process competes with, in the kernel's units (1024:
/// nice 0): its session's autogroup nice when autogroups are on (tasks of
/// one session share one group), else its own nice.
pub fn cpu_weight_of(pid: u32) -> u64 {
    let autogroup = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|s| s.trim() == "1");
    let nice = if autogroup {
        std::fs::read_to_string(format!("/proc/{pid}/autogroup"))
            .ok()
            .and_then(|s| s.rsplit("nice").next()?.trim().parse::<i32>().ok())
    } else {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 2..].to_string();
                rest.split_whitespace().nth(16)?.parse::<i32>().ok()
            })
    };
    // The scheduler's table is 1024 × 1.25^-nice, rounded.
    (1024.0 * 1.25f64.powi(-nice.unwrap_or(0).clamp(-20, 19))).round() as u64
}

/// How closely a lab run matches the incident.
#[derive(Clone, Debug, Serialize)]
pub struct Closeness {
    /// The incident's top verdict kind.
    pub incident_verdict: String,
    /// The lab run's.
    pub lab_verdict: String,
    /// The same kind.
    pub same_verdict: bool,
    /// Kind of the incident's first culprit ("process", "disk", "peer", ...).
    pub incident_culprit_kind: Option<String>,
    /// The lab run's.
    pub lab_culprit_kind: Option<String>,
    /// The same kind of first culprit.
    pub same_culprit_kind: bool,
    /// Fingerprint similarity.
    pub similarity: Similarity,
}

fn first_culprit_kind(d: &Diagnosis) -> Option<String> {
    d.top().culprits.first().and_then(|c| {
        serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    })
}

/// Compares the lab run's diagnosis with the incident's.
pub fn closeness(incident: &Diagnosis, lab: &Diagnosis) -> Closeness {
    let (fi, fl) = (Fingerprint::of(incident), Fingerprint::of(lab));
    let (ci, cl) = (first_culprit_kind(incident), first_culprit_kind(lab));
    Closeness {
        same_verdict: fi.verdict == fl.verdict,
        incident_verdict: fi.verdict.clone(),
        lab_verdict: fl.verdict.clone(),
        same_culprit_kind: ci == cl,
        incident_culprit_kind: ci,
        lab_culprit_kind: cl,
        similarity: fi.similarity(&fl),
    }
}
