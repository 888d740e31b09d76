//! A run's output on its way to readers: bpftrace's stdout as shared
//! chunks while it runs, a recording being written, or the stored bytes
//! shared by concurrent readers; and the typed `holdup record` command line.

use bytes::Bytes;
use std::sync::Arc;

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

pub use holdup_runner::{RecordCommand, RecordTarget};

/// A stored output shared by its readers.
pub(crate) struct SharedOutput(pub(crate) Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedOutput {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
