//! A run's output on its way to readers: bpftrace's stdout as shared
//! chunks while it runs, a recording being written, or the stored bytes
//! shared by concurrent readers; and the typed `holdup record` command line.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// bpftrace's stdout while it runs: the chunks as read, shared with every
/// reader (a reader takes references to the chunks, never a copy of the
/// bytes).
#[derive(Default)]
pub(crate) struct LiveBuf {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) len: usize,
}

impl LiveBuf {
    /// Appends within `max` bytes in all; false once over it.
    pub(crate) fn append(&mut self, data: &[u8], max: usize) -> bool {
        let room = max.saturating_sub(self.len);
        let take = data.len().min(room);
        if take > 0 {
            self.chunks.push(Bytes::copy_from_slice(&data[..take]));
            self.len += take;
        }
        data.len() <= room
    }

    /// The first `n` bytes (for the text view).
    pub(crate) fn head(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n.min(self.len));
        for c in &self.chunks {
            if out.len() >= n {
                break;
            }
            out.extend_from_slice(&c[..c.len().min(n - out.len())]);
        }
        out
    }

    /// All of it as one buffer (at the end of the run, to store it).
    pub(crate) fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }
}

/// Output of a run while it runs.
#[derive(Clone)]
pub(crate) enum Live {
    /// bpftrace's stdout so far.
    Stdout(Arc<std::sync::Mutex<LiveBuf>>),
    /// The recording `holdup record` is writing.
    File(std::path::PathBuf),
}

/// A run's output, to send: shared, never copied per reader.
pub enum Output {
    /// Chunks of a running bpftrace's stdout.
    Chunks(Vec<Bytes>),
    /// The first `max` bytes of a recording being written.
    File(std::path::PathBuf, u64),
    /// Stored output (one copy in memory, shared by concurrent readers).
    Stored(Bytes),
}

impl Output {
    /// The whole output in one buffer (for plots): copies chunks and
    /// reads files.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Output::Stored(b) => b.clone(),
            Output::Chunks(c) => {
                let mut v = Vec::with_capacity(c.iter().map(|b| b.len()).sum());
                for b in c {
                    v.extend_from_slice(b);
                }
                Bytes::from(v)
            }
            Output::File(p, max) => {
                use std::io::Read;
                let mut v = Vec::new();
                if let Ok(f) = std::fs::File::open(p) {
                    let _ = f.take(*max).read_to_end(&mut v);
                }
                Bytes::from(v)
            }
        }
    }
}

/// `holdup record`'s target, as the workbench asks for it.
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

/// A stored output shared by its readers.
pub(crate) struct SharedOutput(pub(crate) Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedOutput {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
