//! A flight recorder: windows go into a ring of segment recordings in one
//! directory, so the last stretch of time is always on disk at bounded use,
//! and a stretch of it can be frozen into an incident recording.
//!
//! Each segment is an ordinary recording (`seg-<unix ms of its first
//! window>.rec`) written with [`Recorder`]: finished segments are complete
//! files, and the open one reads, like any recording of a killed recorder,
//! up to its last whole window, so a SIGKILL loses at most the window in
//! flight. A segment is closed when it covers its length (or a quarter of
//! the byte bound); then the oldest segments go until the ring holds at most
//! `ring / segment` finished segments and `max_bytes` in all (open segment
//! included). Segments left by an earlier recorder in the directory are
//! part of the ring (the minutes before a crash are worth keeping) and go
//! first.

use crate::{RecordError, Recorder, Recording, RecordingHeader};
use holdup_model::Snapshot;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Segment files are named `seg-<unix ms>.rec`.
pub const SEGMENT_PREFIX: &str = "seg-";
/// Their suffix.
pub const SEGMENT_SUFFIX: &str = ".rec";

/// The ring's bounds.
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// Where the segments go.
    pub dir: PathBuf,
    /// How much time the ring keeps.
    pub ring: Duration,
    /// Length of one segment.
    pub segment: Duration,
    /// Most bytes of segments on disk, the open one included.
    pub max_bytes: Option<u64>,
}

/// A segment on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its file.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: u64,
}

struct Open {
    rec: Recorder,
    path: PathBuf,
    first_start_ns: u64,
    last_end_ns: u64,
}

/// The ring of segments being written.
pub struct Ring {
    opts: RingOptions,
    header: RecordingHeader,
    finished: Vec<Segment>,
    open: Option<Open>,
}

/// What can go wrong with a ring, beyond writing its recordings.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Writing or reading a segment or a frozen recording.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Listing or removing segments.
    #[error("cannot {what} {}: {source}; check the ring's directory (--dir)", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bounds that cannot hold.
    #[error("{0}")]
    Invalid(String),
}

fn io_error(what: &'static str, path: &Path, e: std::io::Error) -> RingError {
    RingError::Io {
        what,
        path: path.to_path_buf(),
        source: e,
    }
}

/// The segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<Segment>, RingError> {
    let mut v: Vec<Segment> = std::fs::read_dir(dir)
        .map_err(|e| io_error("list the segments in", dir, e))?
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(SEGMENT_PREFIX) && n.ends_with(SEGMENT_SUFFIX)
        })
        .map(|e| Segment {
            bytes: e.metadata().map_or(0, |m| m.len()),
            path: e.path(),
        })
        .collect();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(v)
}

impl Ring {
    /// Starts a ring in `opts.dir` (which must exist); `header` is the
    /// header of every segment.
    pub fn create(opts: RingOptions, header: RecordingHeader) -> Result<Ring, RingError> {
        if opts.segment.is_zero() || opts.ring < opts.segment {
            return Err(RingError::Invalid(format!(
                "the ring ({:?}) must be at least one segment ({:?}) long",
                opts.ring, opts.segment
            )));
        }
        let finished = segments(&opts.dir)?;
        let mut r = Ring {
            opts,
            header,
            finished,
            open: None,
        };
        r.prune()?;
        Ok(r)
    }

    /// Most finished segments kept.
    pub fn max_segments(&self) -> usize {
        (self.opts.ring.as_nanos() / self.opts.segment.as_nanos().max(1)).max(1) as usize
    }

    /// Writes one window, closing the segment when it is full.
    pub fn write_window(&mut self, s: &Snapshot) -> Result<(), RingError> {
        if self.open.is_none() {
            let mut path = self.opts.dir.join(format!(
                "{SEGMENT_PREFIX}{:013}{SEGMENT_SUFFIX}",
                s.window.wall_start_ms
            ));
            let mut n = 1;
            while path.exists() {
                path = self.opts.dir.join(format!(
                    "{SEGMENT_PREFIX}{:013}-{n}{SEGMENT_SUFFIX}",
                    s.window.wall_start_ms
                ));
                n += 1;
            }
            let mut header = self.header.clone();
            header.started_unix_ms = s.window.wall_start_ms;
            let rec = Recorder::create(&path, &header)?;
            self.open = Some(Open {
                rec,
                path,
                first_start_ns: s.window.start_ns,
                last_end_ns: s.window.end_ns,
            });
        }
        let open = self.open.as_mut().expect("opened above");
        open.rec.write_window(s)?;
        open.last_end_ns = s.window.end_ns;
        let covered = open.last_end_ns.saturating_sub(open.first_start_ns);
        let size = std::fs::metadata(&open.path).map_or(0, |m| m.len());
        // A window ending within 5 ms of the segment's length fills it.
        let full = covered + 5_000_000 >= self.opts.segment.as_nanos() as u64
            || self.opts.max_bytes.is_some_and(|m| size >= m / 4);
        if full {
            self.close()?;
        }
        self.prune()
    }

    /// Closes the open segment (it becomes a complete recording).
    pub fn close(&mut self) -> Result<(), RecordError> {
        if let Some(open) = self.open.take() {
            open.rec.finish()?;
            let bytes = std::fs::metadata(&open.path).map_or(0, |m| m.len());
            self.finished.push(Segment {
                path: open.path,
                bytes,
            });
        }
        Ok(())
    }

    /// Removes the oldest finished segments beyond the bounds.
    fn prune(&mut self) -> Result<(), RingError> {
        let open_bytes = self
            .open
            .as_ref()
            .map_or(0, |o| std::fs::metadata(&o.path).map_or(0, |m| m.len()));
        let max = self.max_segments();
        loop {
            let total: u64 = self.finished.iter().map(|s| s.bytes).sum::<u64>() + open_bytes;
            let over = self.finished.len() > max || self.opts.max_bytes.is_some_and(|m| total > m);
            if !over || self.finished.is_empty() {
                return Ok(());
            }
            let s = self.finished.remove(0);
            match std::fs::remove_file(&s.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove the old segment", &s.path, e)),
            }
        }
    }

    /// Every segment on disk now, oldest first (the open one last).
    pub fn segments(&self) -> Vec<Segment> {
        let mut v = self.finished.clone();
        if let Some(o) = &self.open {
            v.push(Segment {
                path: o.path.clone(),
                bytes: std::fs::metadata(&o.path).map_or(0, |m| m.len()),
            });
        }
        v
    }

    /// The windows of every segment that start in `[from_ms, to_ms]` (Unix
    /// ms), in order; the open segment is read up to its last whole window.
    pub fn windows_between(&self, from_ms: u64, to_ms: u64) -> Vec<Snapshot> {
        let mut out: Vec<Snapshot> = Vec::new();
        for seg in self.segments() {
            // A damaged or vanished segment gives what it can.
            let Ok(rec) = Recording::open(&seg.path) else {
                continue;
            };
            out.extend(
                rec.windows
                    .into_iter()
                    .filter(|w| (from_ms..=to_ms).contains(&w.window.wall_start_ms)),
            );
        }
        out.sort_by_key(|w| w.window.wall_start_ms);
        out
    }

    /// Writes the windows that start in `[from_ms, to_ms]` into an
    /// ordinary recording at `out`, its header the ring's with `argv`.
    /// Returns the number of windows.
    pub fn freeze(
        &self,
        out: &Path,
        from_ms: u64,
        to_ms: u64,
        argv: Vec<String>,
    ) -> Result<u64, RecordError> {
        let windows = self.windows_between(from_ms, to_ms);
        let mut header = self.header.clone();
        header.argv = argv;
        if let Some(w) = windows.first() {
            header.started_unix_ms = w.window.wall_start_ms;
        }
        let mut rec = Recorder::create(out, &header)?;
        for (i, w) in windows.iter().enumerate() {
            // Renumbered: the frozen stretch is a run of its own.
            let mut w = w.clone();
            w.window.index = i as u64;
            rec.write_window(&w)?;
        }
        rec.finish()
    }

    /// Closes the open segment; the ring stays on disk.
    pub fn finish(mut self) -> Result<(), RecordError> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::{Loss, Target, WindowInfo};

    fn window(i: u64) -> Snapshot {
        Snapshot {
            window: WindowInfo {
                index: i,
                start_ns: i * 1_000_000_000,
                end_ns: (i + 1) * 1_000_000_000,
                wall_start_ms: 1_700_000_000_000 + i * 1000,
            },
            threads: Vec::new(),
            resources: Vec::new(),
            futex_wakes: Vec::new(),
            wakeups: Vec::new(),
            culprits: Vec::new(),
            disks: Vec::new(),
            loss: Loss::default(),
            overhead: Vec::new(),
            runtimes: Vec::new(),
            throttles: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_its_bounds_and_freezes_a_stretch() {
        let dir = tempfile::tempdir().unwrap();
        let header = RecordingHeader::new(Target::All, 1000, vec!["test".into()]);
        let mut ring = Ring::create(
            RingOptions {
                dir: dir.path().to_path_buf(),
                ring: Duration::from_secs(6),
                segment: Duration::from_secs(2),
                max_bytes: None,
            },
            header,
        )
        .unwrap();
        for i in 0..20 {
            ring.write_window(&window(i)).unwrap();
            let on_disk = segments(dir.path()).unwrap();
            assert!(
                on_disk.len() <= 4,
                "3 finished + 1 open at most: {on_disk:?}"
            );
        }
        // Windows 14..=19 are kept (segments of 2 windows, 3 of them).
        let kept = ring.windows_between(0, u64::MAX);
        assert_eq!(kept.first().unwrap().window.index, 14);
        assert_eq!(kept.last().unwrap().window.index, 19);
        let out = dir.path().join("incident.rec");
        let n = ring
            .freeze(&out, 1_700_000_016_000, 1_700_000_018_000, vec![])
            .unwrap();
        assert_eq!(n, 3);
        let rec = Recording::open(&out).unwrap();
        assert_eq!(rec.status, crate::ReadStatus::Complete);
        assert_eq!(rec.windows[0].window.index, 0);
        assert_eq!(rec.windows[0].window.wall_start_ms, 1_700_000_016_000);
        ring.finish().unwrap();
    }
}
