//! holdup's lab: looking at recorded incidents after the fact.
//!
//! One module per verb, all over the recording format (`holdup-record`)
//! and the diagnosis (`holdup-diagnose`, whose roles, statistics and
//! verdicts are reused, never re-derived):
//! - [`diff`]: two periods (two recordings, or two ranges of one) side by
//!   side per role and per resource, each change with its significance;
//! - [`fingerprint`]: what holds a diagnosed recording's entry roles up and
//!   by whom, in a form that survives other pids, hosts and load levels,
//!   and the similarity of two fingerprints;
//! - [`matching`]: a library of earlier incidents ranked by similarity;
//! - [`reproduce`]: a plan that regenerates the recorded contention against
//!   a lab copy of the service (CPU hogs, a disk writer, a delay proxy,
//!   scaled load), the generators that carry it out, each in a cgroup of its
//!   own, and how closely the lab run matches.

#![warn(missing_docs)]

pub mod diff;
pub mod fingerprint;
pub mod matching;
pub mod reproduce;

use anyhow::{Context, Result};
use holdup_model::Snapshot;
use holdup_record::{ReadStatus, Recording};
use std::path::Path;

/// A recording read for the lab, with what was wrong with it.
pub struct Loaded {
    /// The recording.
    pub recording: Recording,
    /// Its label (the path as given).
    pub label: String,
}

impl Loaded {
    /// Reads a recording; a file that is not one, or holds no window, is an
    /// error that says so. A truncated file keeps its good windows (with a
    /// note in `warning`).
    pub fn open(path: &Path) -> Result<Loaded> {
        let recording = Recording::open(path)
            .with_context(|| format!("cannot read the recording {}", path.display()))?;
        if recording.windows.is_empty() {
            anyhow::bail!(
                "the recording {} holds no complete window ({}): record longer (holdup record --duration 10s)",
                path.display(),
                recording.status.describe()
            );
        }
        Ok(Loaded {
            recording,
            label: path.display().to_string(),
        })
    }

    /// Its windows.
    pub fn windows(&self) -> &[Snapshot] {
        &self.recording.windows
    }

    /// What was wrong reading it, when something was.
    pub fn warning(&self) -> Option<String> {
        (!matches!(self.recording.status, ReadStatus::Complete))
            .then(|| format!("{}: {}", self.label, self.recording.status.describe()))
    }
}

/// Diagnoses one recording on its own (the automatic split, or the run
/// judged alone), as `holdup diagnose FILE` does.
pub fn diagnose_alone(loaded: &Loaded) -> holdup_diagnose::Diagnosis {
    holdup_diagnose::diagnose(&holdup_diagnose::Input {
        target: format!("{} (recorded)", loaded.recording.header.target),
        windows: loaded.windows(),
        label: &loaded.label,
        baseline_windows: None,
        split: holdup_diagnose::SplitRequest::default(),
    })
}
