//! Workbench policy, loaded from TOML at start and shown via `GET /api/policy`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use holdup_wb_api::{Overhead, TargetKind};

/// The policy. Every field has a safe default, so an empty file is valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Probes each role may request: catalog names, `"script:*"` for any
    /// accepted user script, `"*"` for everything.
    pub allowed_probes: BTreeMap<String, Vec<String>>,
    /// Longest run a request may ask for, in seconds.
    pub max_duration_s: u64,
    /// Largest output a run may produce, in bytes.
    pub max_output_bytes: u64,
    /// Highest overhead class a request may use.
    pub max_overhead: Overhead,
    /// Target kinds a request may name (`host`, `pid`, `cgroup`).
    pub allowed_target_kinds: Vec<TargetKind>,
    /// Hosts a request may name; `"*"` allows any.
    pub allowed_hosts: Vec<String>,
    /// Cgroup targets must lie under one of these paths (`"/"`: any).
    pub allowed_cgroup_prefixes: Vec<String>,
    /// Pid targets must be a process whose name (comm) is in this list
    /// (`"*"`: any), checked when the request is made and when it runs.
    pub allowed_pid_comms: Vec<String>,
    /// Allow scripts using unsafe builtins (`system`, `signal`, `override`,
    /// `cat`).
    pub allow_unsafe: bool,
    /// Allow scripts that name a C preprocessor file directive
    /// (`#include`, `#import`, `#embed`): the checker would read that file
    /// as root.
    pub allow_include: bool,
    /// Address space the `bpftrace -d` check of one script may use, bytes.
    pub check_memory_bytes: u64,
    /// CPU and wall time the check of one script may take, seconds.
    pub check_time_s: u64,
    /// Runs one approval allows when the approver does not say.
    pub approval_runs: u32,
    /// Most runs an approver may allow for one request.
    pub approval_max_runs: u32,
    /// How long an approval stays valid, seconds.
    pub approval_ttl_s: u64,
    /// Most runs going at once on this server.
    pub max_concurrent_runs: usize,
    /// A run on an agent whose agent sends no heartbeat for this long (or
    /// that no agent claims by its deadline plus this long) is marked
    /// interrupted, seconds.
    pub agent_heartbeat_timeout_s: u64,
    /// Bytes of artifacts one user may upload in total.
    pub artifact_quota_bytes: u64,
    /// Largest note (or incident notes field), bytes.
    pub max_note_bytes: usize,
    /// Bytes of notes one user may write in total.
    pub note_quota_bytes: u64,
    /// Domain names the server may be reached by (the `Host` header),
    /// besides IP addresses, single-label names and this host's name: a
    /// request naming another domain is refused (a DNS-rebinding page
    /// would name its own).
    pub server_names: Vec<String>,
    /// Largest number of probes one wildcard attach point may expand to.
    pub wildcard_limit: u64,
    /// Catalog probes that need no approval when at most
    /// `auto_approve_max_duration_s` long. Everything else needs an approver.
    pub auto_approve: Vec<String>,
    /// The longest auto-approved run, seconds.
    pub auto_approve_max_duration_s: u64,
    /// Largest request body (JSON requests), in bytes.
    pub max_body_bytes: usize,
    /// Largest artifact upload (a recording, say), in bytes.
    pub max_upload_bytes: usize,
    /// How much CPU a run's BPF programs may use, by the probe's overhead
    /// class, in percent of one CPU (measured from the kernel's BPF stats).
    pub overhead_budget_percent: OverheadBudget,
}

/// CPU budget per overhead class, percent of one CPU.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverheadBudget {
    pub low: f64,
    pub medium: f64,
    pub high: f64,
}

/// Defaults from BENCHMARKS.md ("Workbench probe classes"): under a
/// saturating redis-benchmark, holdup-sched's programs use ~2.6% of a CPU
/// and holdup-full's ~5.1%; each class gets about 1.5x its probe's worst.
impl Default for OverheadBudget {
    fn default() -> Self {
        OverheadBudget {
            low: 4.0,
            medium: 8.0,
            high: 10.0,
        }
    }
}

impl OverheadBudget {
    /// The budget of one overhead class.
    pub fn for_class(&self, class: Overhead) -> f64 {
        match class {
            Overhead::Low => self.low,
            Overhead::Medium => self.medium,
            Overhead::High => self.high,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        let mut allowed = BTreeMap::new();
        allowed.insert("viewer".to_string(), vec![]);
        allowed.insert(
            "requester".to_string(),
            vec![
                "holdup-sched".to_string(),
                "holdup-full".to_string(),
                "script:*".to_string(),
            ],
        );
        allowed.insert("approver".to_string(), vec!["*".to_string()]);
        allowed.insert("admin".to_string(), vec!["*".to_string()]);
        Policy {
            allowed_probes: allowed,
            max_duration_s: 600,
            max_output_bytes: 256 << 20,
            max_overhead: Overhead::Medium,
            allowed_target_kinds: vec![TargetKind::Host, TargetKind::Pid, TargetKind::Cgroup],
            allowed_hosts: vec!["*".into()],
            allowed_cgroup_prefixes: vec!["/".into()],
            allowed_pid_comms: vec!["*".into()],
            allow_unsafe: false,
            allow_include: false,
            check_memory_bytes: 1 << 30,
            check_time_s: 30,
            approval_runs: 1,
            approval_max_runs: 10,
            approval_ttl_s: 24 * 3600,
            max_concurrent_runs: 4,
            agent_heartbeat_timeout_s: 15,
            artifact_quota_bytes: 1 << 30,
            max_note_bytes: 16 * 1024,
            note_quota_bytes: 4 << 20,
            server_names: vec![],
            wildcard_limit: 100,
            auto_approve: vec!["holdup-sched".into()],
            auto_approve_max_duration_s: 60,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 64 << 20,
            overhead_budget_percent: OverheadBudget::default(),
        }
    }
}

impl Policy {
    /// Parses a policy from TOML text.
    pub fn from_toml(text: &str) -> anyhow::Result<Policy> {
        let p: Policy = toml::from_str(text)?;
        let b = p.overhead_budget_percent;
        for (class, v) in [("low", b.low), ("medium", b.medium), ("high", b.high)] {
            if !(v.is_finite() && v > 0.0 && v <= 100.0 * 1024.0) {
                anyhow::bail!(
                    "overhead_budget_percent.{class} = {v}: must be a positive percentage of one CPU"
                );
            }
        }
        if p.check_memory_bytes < 64 << 20 {
            anyhow::bail!(
                "check_memory_bytes = {}: bpftrace needs at least 64 MiB to check a script",
                p.check_memory_bytes
            );
        }
        if p.approval_runs == 0 || p.approval_runs > p.approval_max_runs {
            anyhow::bail!(
                "approval_runs = {} must be within 1..=approval_max_runs ({})",
                p.approval_runs,
                p.approval_max_runs
            );
        }
        if p.agent_heartbeat_timeout_s < 2 {
            anyhow::bail!(
                "agent_heartbeat_timeout_s must be at least 2 (agents beat once a second)"
            );
        }
        if p.max_concurrent_runs == 0 {
            anyhow::bail!("max_concurrent_runs must be at least 1");
        }
        Ok(p)
    }

    /// Reads a policy file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading policy {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))
    }

    /// Whether `role` may request the probe named `probe` (`script:<sha>` for
    /// user scripts).
    pub fn probe_allowed(&self, role: &str, probe: &str) -> bool {
        let Some(list) = self.allowed_probes.get(role) else {
            return false;
        };
        list.iter()
            .any(|p| p == "*" || p == probe || (p == "script:*" && probe.starts_with("script:")))
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == "*" || h == host)
    }

    /// Whether a cgroup path lies under an allowed prefix (whole path
    /// components: `/sys` does not allow `/system.slice`).
    pub fn cgroup_allowed(&self, path: &str) -> bool {
        self.allowed_cgroup_prefixes.iter().any(|p| {
            let p = p.trim_end_matches('/');
            p.is_empty() || path == p || path.starts_with(&format!("{p}/"))
        })
    }

    /// Whether a process named `comm` may be a pid target.
    pub fn pid_comm_allowed(&self, comm: &str) -> bool {
        self.allowed_pid_comms.iter().any(|c| c == "*" || c == comm)
    }
}
