//! `holdup match`: earlier incidents ranked by how much their fingerprint
//! looks like this one's.
//!
//! A library is a folder of recordings (`*.rec`), each with optional
//! sidecars beside it: `NAME.verdict` (one line: what it turned out to be,
//! "disk contention by the backup job") and `NAME.notes` (free text). The
//! workbench's incidents are another library (their recordings fetched over
//! its API by the CLI); both end up as [`LibraryEntry`]s.

use crate::fingerprint::{Fingerprint, Similarity};
use crate::{diagnose_alone, Loaded};
use anyhow::{bail, Context, Result};
use holdup_diagnose::Diagnosis;
use holdup_format as fmt;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One earlier incident.
#[derive(Clone, Debug, Serialize)]
pub struct LibraryEntry {
    /// How it is called ("incident 12", or the file name without `.rec`).
    pub name: String,
    /// Where it came from (a path, or a workbench URL).
    pub source: String,
    /// When its recording started, Unix ms (0 when unknown).
    pub started_unix_ms: u64,
    /// What people said it was (the `.verdict` sidecar, or the incident's title).
    pub verdict_note: Option<String>,
    /// Free notes (the `.notes` sidecar, or the incident's description).
    pub notes: Option<String>,
    /// The diagnosis's top verdict, in words.
    pub diagnosed: String,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
}

impl LibraryEntry {
    /// An entry from a diagnosis and what is known about it.
    pub fn new(
        name: String,
        source: String,
        started_unix_ms: u64,
        d: &Diagnosis,
        verdict_note: Option<String>,
        notes: Option<String>,
    ) -> LibraryEntry {
        let top = d.top();
        LibraryEntry {
            name,
            source,
            started_unix_ms,
            verdict_note,
            notes,
            diagnosed: top.kind.title().to_string(),
            fingerprint: Fingerprint::of(d),
        }
    }
}

fn sidecar(rec: &Path, ext: &str) -> Option<String> {
    let p = rec.with_extension(ext);
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads every recording of a folder (sorted by name), diagnoses and
/// fingerprints it. Unreadable files are skipped with a warning each (in
/// the returned list); a folder without any recording is an error.
pub fn load_library(dir: &Path) -> Result<(Vec<LibraryEntry>, Vec<String>)> {
    let rd = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the library folder {}: give a folder of recordings (*.rec)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "the library {} holds no recording (*.rec): put earlier incidents' recordings there (holdup record -o DIR/NAME.rec), with optional NAME.verdict and NAME.notes beside them",
            dir.display()
        );
    }
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        match Loaded::open(&f) {
            Ok(l) => {
                if let Some(w) = l.warning() {
                    warnings.push(w);
                }
                let d = diagnose_alone(&l);
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                entries.push(LibraryEntry::new(
                    name,
                    f.display().to_string(),
                    l.recording.header.started_unix_ms,
                    &d,
                    sidecar(&f, "verdict"),
                    sidecar(&f, "notes"),
                ));
            }
            Err(e) => warnings.push(format!("skipped {}: {e:#}", f.display())),
        }
    }
    Ok((entries, warnings))
}

/// One ranked earlier incident.
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    /// The earlier incident.
    pub entry: LibraryEntry,
    /// How similar, with the parts.
    pub similarity: Similarity,
}

/// The answer of `holdup match`.
#[derive(Clone, Debug, Serialize)]
pub struct MatchReport {
    /// The incident matched.
    pub incident: String,
    /// Its diagnosis's top verdict, in words.
    pub diagnosed: String,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Earlier incidents, most similar first.
    pub matches: Vec<Match>,
    /// Library files that could not be used, and other notes.
    pub warnings: Vec<String>,
}

/// Ranks `library` by similarity to `fp` (most similar first; ties by name).
pub fn rank(fp: &Fingerprint, library: &[LibraryEntry]) -> Vec<Match> {
    let mut out: Vec<Match> = library
        .iter()
        .map(|e| Match {
            similarity: fp.similarity(&e.fingerprint),
            entry: e.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.similarity
            .total
            .total_cmp(&a.similarity.total)
            .then_with(|| a.entry.name.cmp(&b.entry.name))
    });
    out
}

/// What an earlier incident was, in a few words: the people's verdict when
/// there is one, else the diagnosis's.
fn what_it_was(e: &LibraryEntry) -> String {
    e.verdict_note
        .clone()
        .unwrap_or_else(|| format!("diagnosed: {}", e.diagnosed))
}

/// The report as text: the headline ("looks like incident 12 (disk
/// contention by the backup job), 0.93") and a table of the best `rows`.
pub fn render(r: &MatchReport, rows: usize) -> String {
    let mut s = format!("incident {}: {}\n", r.incident, r.diagnosed);
    match r.matches.first() {
        Some(m) => {
            s += &format!(
                "looks like {} ({}), {:.2}\n\n",
                m.entry.name,
                what_it_was(&m.entry),
                m.similarity.total
            );
        }
        None => s += "no earlier incident to compare with\n",
    }
    if !r.matches.is_empty() {
        let mut t = fmt::table(
            &["SIMILARITY", "INCIDENT", "DATE", "VERDICT", "NOTES"],
            &[0],
        );
        for m in r.matches.iter().take(rows) {
            let e = &m.entry;
            t.add_row(vec![
                format!("{:.2}", m.similarity.total),
                e.name.clone(),
                if e.started_unix_ms > 0 {
                    fmt::utc_ms(e.started_unix_ms as i64)
                } else {
                    "-".into()
                },
                fmt::truncate(&what_it_was(e), 48),
                fmt::one_line(e.notes.as_deref().unwrap_or(""), 40),
            ]);
        }
        s += &fmt::indented(&t, 2);
        if r.matches.len() > rows {
            s += &format!("  … {} more (--rows N)\n", r.matches.len() - rows);
        }
    }
    for w in &r.warnings {
        s += &format!("note: {w}\n");
    }
    s
}

/// A workbench incident, as far as matching needs it.
#[derive(Clone, Debug)]
pub struct IncidentInfo {
    /// Its id.
    pub id: i64,
    /// Its title (what it was, for people).
    pub title: String,
    /// Its notes and the responders' timeline, joined.
    pub notes: String,
    /// When it started (or was created), Unix seconds.
    pub unix_s: i64,
    /// Its artifacts' names.
    pub artifacts: Vec<String>,
}

impl IncidentInfo {
    /// From the workbench API's incident.
    pub fn from_api(i: &holdup_wb_api::Incident) -> IncidentInfo {
        let mut notes = i.input.notes.trim().to_string();
        for n in &i.timeline {
            if !notes.is_empty() {
                notes.push_str(" | ");
            }
            notes.push_str(n.text.trim());
        }
        IncidentInfo {
            id: i.id,
            title: i.input.title.clone(),
            notes,
            unix_s: i.input.start_time.unwrap_or(i.created),
            artifacts: i.artifacts.clone(),
        }
    }
}

/// Recordings are the artifacts named `*.rec` (uploaded recordings and
/// runs' `run-<id>.rec`).
pub fn is_recording_name(name: &str) -> bool {
    name.ends_with(".rec")
}

/// Library entries from workbench incidents: each incident's first
/// readable recording (fetched by `fetch(id, name)`), diagnosed and
/// fingerprinted, named "incident ID" with its title as the verdict note.
/// Incidents without a readable recording are left out, with a note.
pub fn workbench_entries(
    list: &[IncidentInfo],
    fetch: impl Fn(i64, &str) -> Result<Vec<u8>>,
) -> Result<(Vec<LibraryEntry>, Vec<String>)> {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for inc in list {
        let mut found = false;
        for name in inc.artifacts.iter().filter(|n| is_recording_name(n)) {
            let rec = match fetch(inc.id, name)
                .and_then(|b| Ok(holdup_record::Recording::from_bytes(&b)?))
            {
                Ok(r) if !r.windows.is_empty() => r,
                Ok(_) => {
                    warnings.push(format!("incident {} {name}: no complete window", inc.id));
                    continue;
                }
                Err(e) => {
                    warnings.push(format!("incident {} {name}: {e:#}", inc.id));
                    continue;
                }
            };
            let loaded = Loaded {
                label: format!("incident {} {name}", inc.id),
                recording: rec,
            };
            let d = diagnose_alone(&loaded);
            entries.push(LibraryEntry::new(
                format!("incident {}", inc.id),
                loaded.label.clone(),
                (inc.unix_s.max(0) as u64) * 1000,
                &d,
                Some(inc.title.clone()).filter(|t| !t.is_empty()),
                Some(inc.notes.clone()).filter(|n| !n.is_empty()),
            ));
            found = true;
            break;
        }
        if !found && !inc.artifacts.is_empty() {
            warnings.push(format!(
                "incident {} has no readable recording (*.rec) among its artifacts",
                inc.id
            ));
        }
    }
    Ok((entries, warnings))
}
