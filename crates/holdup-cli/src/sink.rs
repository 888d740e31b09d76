//! Where live windows go. `top`, `record` and a live `diagnose` run the one
//! window loop ([`Collector::windows`]) into one or more sinks.

use anyhow::Result;
use holdup_collect::windows::End;
use holdup_collect::Collector;
use holdup_model::Snapshot;
use holdup_record::Recorder;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Takes each window's snapshot as it closes.
pub trait Sink {
    /// One window.
    fn window(&mut self, snap: &Snapshot) -> Result<()>;
}

/// Runs the window loop into `sinks` until a stop rule fires; says which.
pub fn drive(
    c: &mut Collector,
    stop: &AtomicBool,
    until: Option<Duration>,
    sinks: &mut [&mut dyn Sink],
) -> Result<End> {
    let mut windows = c.windows(stop, until);
    for snap in windows.by_ref() {
        let snap = snap?;
        for s in sinks.iter_mut() {
            s.window(&snap)?;
        }
    }
    Ok(windows.end().unwrap_or(End::Stopped))
}

impl Sink for Recorder {
    fn window(&mut self, snap: &Snapshot) -> Result<()> {
        Ok(self.write_window(snap)?)
    }
}

/// Keeps every window in memory (for a live diagnosis).
impl Sink for Vec<Snapshot> {
    fn window(&mut self, snap: &Snapshot) -> Result<()> {
        self.push(snap.clone());
        Ok(())
    }
}
