//! The fingerprint of a diagnosed recording: what holds its entry roles up
//! and by whom, in a form that survives other pids, tids, hosts and load
//! levels, and the similarity of two fingerprints (docs/LAB.md).
//!
//! Everything in it is read from the [`Diagnosis`]: the entry threads'
//! per-window state vectors of the incident (and baseline) period, and the
//! top verdict with its culprits. Shares are of busy (not idle) time, so a
//! service under twice the load with the same hold-up has the same
//! fingerprint; names are patterns (digits → `*`), ports stay, addresses,
//! pids and futex addresses go.

use holdup_diagnose::states::{name_pattern, port_of, Category, CauseFamily};
use holdup_diagnose::verdict::NamedKind;
use holdup_diagnose::{Diagnosis, Mode, VerdictKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bumped when the fingerprint's meaning changes (stored fingerprints of
/// another version are recomputed, never compared).
pub const FINGERPRINT_VERSION: u32 = 1;

/// The entry roles' own work, beside the hold-up families.
pub const OWN_WORK: &str = "own_work";

/// Weights of the similarity's parts (they add up to 1).
pub const WEIGHTS: Weights = Weights {
    profile: 0.40,
    verdict: 0.30,
    culprit_kinds: 0.15,
    culprit_names: 0.10,
    service: 0.05,
};

/// How much each part of two fingerprints counts in their similarity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Weights {
    /// The hold-up profile (shares of busy time, and their growth).
    pub profile: f64,
    /// The verdict kind.
    pub verdict: f64,
    /// The kinds of culprits named (process, disk, peer, futex, ...).
    pub culprit_kinds: f64,
    /// Their name patterns and ports.
    pub culprit_names: f64,
    /// The entry roles' process names.
    pub service: f64,
}

/// What holds a recording's entry roles up and by whom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// [`FINGERPRINT_VERSION`].
    pub version: u32,
    /// The top verdict's kind (snake_case, as in the diagnosis's JSON).
    pub verdict: String,
    /// Whether the top verdict is a significant cause.
    pub significant: bool,
    /// "compare" or "incident_only".
    pub mode: String,
    /// Share of the entry roles' busy time in the incident: own work and
    /// each hold-up family; adds up to 1 (empty when they were never busy).
    pub profile: BTreeMap<String, f64>,
    /// Compared with a baseline: how much of the busy time each family
    /// gained, normalised to add up to 1 (None when judged alone, or
    /// nothing grew).
    pub growth: Option<BTreeMap<String, f64>>,
    /// Kinds of the top verdict's culprits ("process", "disk", "peer", ...).
    pub culprit_kinds: BTreeSet<String>,
    /// The culprits' name patterns ("process:stress-ng-cpu",
    /// "file:appendonly.aof.*.incr.aof", "peer-port:6379", "role:hw-kn-w-*").
    pub culprit_names: BTreeSet<String>,
    /// Process-name patterns of the entry roles.
    pub service: BTreeSet<String>,
}

fn family_key(f: CauseFamily) -> &'static str {
    match f {
        CauseFamily::Cpu => "cpu",
        CauseFamily::Disk => "disk",
        CauseFamily::Lock => "lock",
        CauseFamily::Handoff => "handoff",
        CauseFamily::External => "peer",
        CauseFamily::OtherSleep => "other_sleep",
    }
}

/// The snake_case name of a verdict kind, as in the diagnosis's JSON.
pub fn kind_name(k: VerdictKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn named_kind(k: NamedKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Mean state vector of the entry threads over the windows of one period.
fn mean_states(d: &Diagnosis, period: &str) -> Option<Vec<f64>> {
    let rows: Vec<&Vec<f64>> = d
        .timeline
        .iter()
        .filter(|p| p.period == period && p.states.iter().any(|x| *x > 0.0))
        .map(|p| &p.states)
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut v = vec![0.0; Category::ALL.len()];
    for r in &rows {
        for (a, x) in v.iter_mut().zip(r.iter()) {
            *a += x / rows.len() as f64;
        }
    }
    Some(v)
}

/// Own work and each family as a share of busy time.
fn profile_of(states: &[f64]) -> BTreeMap<String, f64> {
    let busy: f64 = Category::ALL
        .iter()
        .filter(|c| !c.is_idle())
        .map(|c| states[c.index()])
        .sum();
    let mut p = BTreeMap::new();
    if busy <= 0.0 {
        return p;
    }
    p.insert(OWN_WORK.to_string(), states[Category::OnCpu.index()] / busy);
    for f in CauseFamily::ALL {
        let s: f64 = f.categories().map(|c| states[c.index()]).sum();
        p.insert(family_key(f).to_string(), s / busy);
    }
    p
}

impl Fingerprint {
    /// The fingerprint of a diagnosis.
    pub fn of(d: &Diagnosis) -> Fingerprint {
        let top = d.top();
        let incident = mean_states(d, "incident");
        let profile = incident.as_deref().map(profile_of).unwrap_or_default();
        let growth = match (d.mode, mean_states(d, "baseline")) {
            (Mode::Compare, Some(b)) if !profile.is_empty() => {
                let before = profile_of(&b);
                let gains: BTreeMap<String, f64> = profile
                    .iter()
                    .map(|(k, v)| (k.clone(), (v - before.get(k).unwrap_or(&0.0)).max(0.0)))
                    .collect();
                let total: f64 = gains.values().sum();
                (total > 0.02).then(|| gains.into_iter().map(|(k, v)| (k, v / total)).collect())
            }
            _ => None,
        };
        let mut culprit_kinds = BTreeSet::new();
        let mut culprit_names = BTreeSet::new();
        for c in &top.culprits {
            let kind = named_kind(c.kind);
            culprit_kinds.insert(kind.clone());
            let name = match c.kind {
                NamedKind::Process
                | NamedKind::Role
                | NamedKind::Thread
                | NamedKind::File
                | NamedKind::Cgroup => Some(name_pattern(&c.name)),
                NamedKind::Peer => port_of(&c.name).map(|p| {
                    culprit_names.insert(format!("peer-port:{p}"));
                    // A loopback peer and a remote one are different setups.
                    let local = c.name.starts_with("127.") || c.name.starts_with("[::1]");
                    if local { "loopback" } else { "remote" }.to_string()
                }),
                // Futex addresses, disk names and client counts are not
                // the same from one host or run to the next.
                NamedKind::Futex | NamedKind::Disk | NamedKind::Clients => None,
            };
            if let Some(n) = name {
                culprit_names.insert(format!("{kind}:{n}"));
            }
        }
        Fingerprint {
            version: FINGERPRINT_VERSION,
            verdict: kind_name(top.kind),
            significant: top.significant,
            mode: match d.mode {
                Mode::Compare => "compare".into(),
                Mode::IncidentOnly => "incident_only".into(),
            },
            profile,
            growth,
            culprit_kinds,
            culprit_names,
            service: d.entry.iter().map(|r| name_pattern(&r.process)).collect(),
        }
    }

    /// Similarity to another fingerprint, 0..=1 (1: the same), with its parts.
    pub fn similarity(&self, other: &Fingerprint) -> Similarity {
        let profile = {
            let p = profile_similarity(&self.profile, &other.profile);
            match (&self.growth, &other.growth) {
                (Some(a), Some(b)) => 0.5 * p + 0.5 * profile_similarity(a, b),
                _ => p,
            }
        };
        let verdict = verdict_similarity(&self.verdict, &other.verdict);
        let culprit_kinds = jaccard(&self.culprit_kinds, &other.culprit_kinds);
        let culprit_names = jaccard(&self.culprit_names, &other.culprit_names);
        let service = jaccard(&self.service, &other.service);
        let w = WEIGHTS;
        let total = w.profile * profile
            + w.verdict * verdict
            + w.culprit_kinds * culprit_kinds
            + w.culprit_names * culprit_names
            + w.service * service;
        Similarity {
            total,
            profile,
            verdict,
            culprit_kinds,
            culprit_names,
            service,
        }
    }
}

/// The similarity of two fingerprints and its parts, each 0..=1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Similarity {
    /// The weighted sum ([`WEIGHTS`]).
    pub total: f64,
    /// 1 − half the L1 distance of the hold-up profiles.
    pub profile: f64,
    /// 1 for the same verdict kind, 0.5 for a related one, else 0.
    pub verdict: f64,
    /// Jaccard index of the culprit kinds.
    pub culprit_kinds: f64,
    /// Jaccard index of the culprit name patterns and ports.
    pub culprit_names: f64,
    /// Jaccard index of the entry roles' process names.
    pub service: f64,
}

/// 1 − half the L1 distance of two share vectors (1: the same, 0: disjoint).
pub fn profile_similarity(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let l1: f64 = keys
        .iter()
        .map(|k| (a.get(*k).unwrap_or(&0.0) - b.get(*k).unwrap_or(&0.0)).abs())
        .sum();
    (1.0 - l1 / 2.0).clamp(0.0, 1.0)
}

/// Kinds that are one family of answer: the CPU verdicts, and the quiet ones.
fn verdict_group(kind: &str) -> &'static str {
    match kind {
        "cpu_contention" | "cpu_saturation" | "cpu_throttled" => "cpu",
        "no_significant_change" | "nothing_holds_it_up" | "insufficient_data" => "quiet",
        "disk_contention" | "disk_throttled" => "disk",
        "more_load" => "load",
        _ => "",
    }
}

fn verdict_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        1.0
    } else if !verdict_group(a).is_empty() && verdict_group(a) == verdict_group(b) {
        0.5
    } else {
        0.0
    }
}

/// Jaccard index; two empty sets are the same (1).
pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.intersection(b).count() as f64 / a.union(b).count() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(verdict: &str, profile: &[(&str, f64)], culprits: &[&str]) -> Fingerprint {
        Fingerprint {
            version: FINGERPRINT_VERSION,
            verdict: verdict.into(),
            significant: true,
            mode: "incident_only".into(),
            profile: profile.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            growth: None,
            culprit_kinds: culprits
                .iter()
                .map(|c| c.split(':').next().unwrap().to_string())
                .collect(),
            culprit_names: culprits.iter().map(|c| c.to_string()).collect(),
            service: ["redis-server".to_string()].into(),
        }
    }

    #[test]
    fn the_same_hold_up_at_another_load_level_is_closer_than_another_hold_up() {
        // A CPU hog at two load levels: the shares of busy time barely move.
        let hog_light = fp(
            "cpu_contention",
            &[(OWN_WORK, 0.55), ("cpu", 0.45)],
            &["process:stress-ng-cpu"],
        );
        let hog_heavy = fp(
            "cpu_contention",
            &[(OWN_WORK, 0.50), ("cpu", 0.48), ("disk", 0.02)],
            &["process:stress-ng-cpu"],
        );
        let disk = fp(
            "disk_contention",
            &[(OWN_WORK, 0.2), ("disk", 0.8)],
            &["process:hw-disk", "disk:vda"],
        );
        let same = hog_light.similarity(&hog_heavy).total;
        let other = hog_light.similarity(&disk).total;
        assert!(same > 0.9, "same hold-up: {same}");
        assert!(other < 0.3, "another hold-up: {other}");
        assert!((hog_light.similarity(&hog_light).total - 1.0).abs() < 1e-12);
        // Symmetric.
        assert!((disk.similarity(&hog_light).total - other).abs() < 1e-12);
    }

    #[test]
    fn related_verdicts_count_half() {
        let a = fp("cpu_contention", &[("cpu", 1.0)], &[]);
        let b = fp("cpu_saturation", &[("cpu", 1.0)], &[]);
        let s = a.similarity(&b);
        assert_eq!(s.verdict, 0.5);
        assert_eq!(s.profile, 1.0);
    }

    #[test]
    fn profiles_compare_by_half_l1() {
        let a: BTreeMap<String, f64> = [("x".to_string(), 1.0)].into();
        let b: BTreeMap<String, f64> = [("y".to_string(), 1.0)].into();
        let c: BTreeMap<String, f64> = [("x".to_string(), 0.5), ("y".to_string(), 0.5)].into();
        assert_eq!(profile_similarity(&a, &b), 0.0);
        assert!((profile_similarity(&a, &c) - 0.5).abs() < 1e-12);
        assert_eq!(profile_similarity(&BTreeMap::new(), &a), 0.0);
    }
}
