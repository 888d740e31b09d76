//! `holdup record` from typed arguments.

use std::time::Duration;

/// `holdup record`'s target, as a run asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordTarget {
    /// One process.
    Pid(u32),
    /// One cgroup (a path under the cgroup root).
    Cgroup(String),
    /// The whole host.
    All,
}

/// A `holdup record` invocation, typed: [`RecordCommand::args`] is the one
/// place that spells its flags.
#[derive(Debug, Clone)]
pub struct RecordCommand {
    /// What to record.
    pub target: RecordTarget,
    /// Scheduler programs only.
    pub sched_only: bool,
    /// How long.
    pub duration: Duration,
    /// The recording file.
    pub output: std::path::PathBuf,
}

impl RecordCommand {
    /// The command line after the program name.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["record".into()];
        match &self.target {
            RecordTarget::Pid(p) => a.extend(["--pid".into(), p.to_string().into()]),
            RecordTarget::Cgroup(c) => a.extend(["--cgroup".into(), c.into()]),
            RecordTarget::All => a.push("--all".into()),
        }
        if self.sched_only {
            a.push("--sched-only".into());
        }
        a.extend([
            "--duration".into(),
            format!("{}s", self.duration.as_secs()).into(),
            "-o".into(),
            self.output.clone().into_os_string(),
        ]);
        a
    }
}
