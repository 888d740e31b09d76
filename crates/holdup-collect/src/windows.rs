//! The one window loop: cut windows until the user stops, the duration
//! passes or the target exits. `top`, `record` and a live `diagnose` all
//! read their snapshots from here, so they stop by the same rules.

use crate::{CollectError, Collector};
use holdup_model::Snapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a run of windows ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The stop flag was set (Ctrl-C, SIGTERM).
    Stopped,
    /// The requested duration passed.
    Duration,
    /// Every target process exited.
    TargetExited,
}

/// Snapshots, one per window, until a stop rule fires; see [`Collector::windows`].
pub struct Windows<'a> {
    collector: &'a mut Collector,
    stop: &'a AtomicBool,
    until: Option<Duration>,
    started: Instant,
    end: Option<End>,
}

impl Collector {
    /// Cuts windows until `stop` is set, `until` has passed (a window that
    /// would end within 5 ms of it is the last), or the target exits. The
    /// window in which the rule fires is still yielded.
    pub fn windows<'a>(&'a mut self, stop: &'a AtomicBool, until: Option<Duration>) -> Windows<'a> {
        Windows {
            collector: self,
            stop,
            until,
            started: Instant::now(),
            end: None,
        }
    }
}

impl Windows<'_> {
    /// Why the windows ended (None while they go on).
    pub fn end(&self) -> Option<End> {
        self.end
    }
}

impl Iterator for Windows<'_> {
    type Item = Result<Snapshot, CollectError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.end.is_some() {
            return None;
        }
        let snap = match self.collector.next_window(self.stop) {
            Ok(s) => s,
            Err(e) => {
                self.end = Some(End::Stopped);
                return Some(Err(e));
            }
        };
        self.end = if self.stop.load(Ordering::Relaxed) {
            Some(End::Stopped)
        } else if self
            .until
            .is_some_and(|d| self.started.elapsed() + Duration::from_millis(5) >= d)
        {
            Some(End::Duration)
        } else if !self.collector.target_alive() {
            Some(End::TargetExited)
        } else {
            None
        };
        Some(Ok(snap))
    }
}
