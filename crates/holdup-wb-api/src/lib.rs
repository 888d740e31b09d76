//! The workbench's API types, shared by the server (`holdup-workbench`) and
//! its client (`holdup wb`): what each endpoint takes and returns, as typed
//! serde structs and enums. Only serde here, so a client needs nothing of
//! the server.

use serde::{Deserialize, Serialize};

/// Defines a string-valued enum: its serde names, `as_str`, `parse` and
/// `Display` all from one list.
macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v,)+
        }

        impl $name {
            /// Its name in the API and the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }

            /// The value named `s`.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($s => Some($name::$v),)+
                    _ => None,
                }
            }
        }

        /// Compares by name, as the JSON does.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// A script's state after its checks.
    ScriptStatus {
        /// Passed every check: it may be requested.
        Accepted = "accepted",
        /// Refused by a check (the report says why).
        Refused = "refused",
    }
}

named_enum! {
    /// A probe request's state.
    RequestStatus {
        /// Waiting for an approver.
        Pending = "pending",
        /// Approved (by an approver, or by the policy).
        Approved = "approved",
        /// Rejected by an approver.
        Rejected = "rejected",
    }
}

named_enum! {
    /// What a request targets on its host.
    TargetKind {
        /// The whole host.
        Host = "host",
        /// One process (`target` is its pid).
        Pid = "pid",
        /// A cgroup subtree (`target` is its absolute path).
        Cgroup = "cgroup",
    }
}

named_enum! {
    /// Overhead class of a probe: how much it may slow the target down.
    Overhead {
        /// Scheduler tracepoints only.
        Low = "low",
        /// Every holdup program.
        Medium = "medium",
        /// User scripts.
        High = "high",
    }
}

impl PartialOrd for Overhead {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Classes order by overhead: low < medium < high.
impl Ord for Overhead {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

named_enum! {
    /// A run's state.
    RunStatus {
        /// Going.
        Running = "running",
        /// Exited with status 0.
        Finished = "finished",
        /// Exited otherwise, or could not start.
        Failed = "failed",
        /// Stopped at its approved duration.
        StoppedDuration = "stopped_duration",
        /// Stopped at the policy's max_output_bytes.
        StoppedOutput = "stopped_output",
        /// Stopped over its overhead budget.
        StoppedOverhead = "stopped_overhead",
        /// Stopped through the API.
        StoppedByUser = "stopped_by_user",
        /// Going when the server stopped.
        Interrupted = "interrupted",
    }
}

/// A refusal: why, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// `POST /api/users`: the new user and its token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// Its API token.
    pub token: String,
    /// That the token is shown only once.
    pub note: String,
}

/// Roles, ordered: each includes the rights of those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Requester,
    Approver,
    Admin,
}

impl Role {
    /// Its name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "requester" => Role::Requester,
            "approver" => Role::Approver,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// A disabled user's token is refused.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentInput {
    pub title: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub start_time: Option<i64>,
    #[serde(default)]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    #[serde(flatten)]
    pub input: IncidentInput,
    pub created_by: String,
    pub created: i64,
    pub artifacts: Vec<String>,
    /// Notes added by responders, oldest first.
    pub timeline: Vec<Note>,
}

/// A note on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    pub author: String,
    pub created: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    pub id: i64,
    pub name: String,
    pub body: String,
    pub sha256: String,
    pub status: ScriptStatus,
    pub report: CheckReport,
    pub submitted_by: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInput {
    /// A catalog probe name, or `script:<id>` for a user script.
    pub probe: String,
    /// What it targets.
    pub target_kind: TargetKind,
    /// The pid or cgroup path (empty for `host`).
    #[serde(default)]
    pub target: String,
    pub host: String,
    pub duration_s: u64,
    pub purpose: String,
    /// The incident this request serves; its runs' output is attached to it.
    #[serde(default)]
    pub incident_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub id: i64,
    #[serde(flatten)]
    pub input: RequestInput,
    pub script_id: Option<i64>,
    pub script_sha256: Option<String>,
    pub requester: String,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
    pub created: i64,
    pub decided: Option<i64>,
    /// Runs the approval allows (None: not approved).
    pub max_runs: Option<u32>,
    /// When the approval lapses (unix time).
    pub approval_expires: Option<i64>,
    /// Whether the approval lets runs overlap.
    pub concurrent: bool,
    /// Runs started so far.
    pub runs: i64,
}

/// What an approver grants with an approval, within the policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Grant {
    /// How many runs (default: the policy's approval_runs).
    pub runs: Option<u32>,
    /// Whether runs may overlap (default: no).
    #[serde(default)]
    pub concurrent: bool,
}
/// One run of an approved request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub request_id: i64,
    /// The request's probe (catalog name or `script:<id>`).
    pub probe: String,
    /// The request's incident, which holds the run's output as an artifact.
    pub incident_id: Option<i64>,
    pub started_by: String,
    pub status: RunStatus,
    pub started_at: i64,
    pub deadline: i64,
    pub ended_at: Option<i64>,
    pub pid: Option<i64>,
    pub pgid: Option<i64>,
    pub output_bytes: i64,
    pub exit_status: Option<i64>,
    pub reason: Option<String>,
    /// BPF program run time of the run's process group, from the kernel's
    /// BPF stats (last reading).
    pub bpf_run_time_ns: Option<i64>,
    /// That run time over the run's wall time, percent of one CPU.
    pub bpf_cpu_percent: Option<f64>,
    /// Name of the incident artifact holding the output, once attached.
    pub artifact: Option<String>,
    /// The output as (lossy UTF-8) text, at most [`OUTPUT_TEXT_LIMIT`] bytes;
    /// left out of listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub output_truncated: bool,
}

impl Run {
    /// Whether the run has ended (any status but `running`).
    pub fn ended(&self) -> bool {
        self.status != RunStatus::Running
    }
}

/// The result of a script's static checks, stored with the script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CheckReport {
    /// Whether every check passed.
    pub accepted: bool,
    /// Attach points as bpftrace parsed them.
    pub attach_points: Vec<String>,
    /// Unsafe builtins the script calls.
    pub unsafe_builtins: Vec<String>,
    /// Per wildcard attach point: how many probes it expands to (None: unknown).
    pub wildcards: Vec<(String, Option<u64>)>,
    /// Why the script was refused, one line per reason.
    pub problems: Vec<String>,
    /// What `bpftrace -d` said, or why it did not run.
    pub parse: String,
}

/// `POST /api/scripts` and `PUT /api/scripts/{id}` (422 when refused by
/// the checks): the stored script, and why it was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptAnswer {
    /// The script with its check report.
    #[serde(flatten)]
    pub script: Script,
    /// Set when the checks refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /api/users`: a new user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    /// User name (A-Z a-z 0-9 . _ -).
    pub name: String,
    /// `viewer`, `requester`, `approver` or `admin` (a string, so an unknown
    /// role is refused saying which exist).
    pub role: String,
}

/// `PUT /api/users/{name}`: what changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserChange {
    /// The new role (as [`NewUser::role`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Disable (true) or enable (false) the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `POST /api/users/{name}/token`: the new token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotatedToken {
    /// Whose token.
    pub name: String,
    /// The new token.
    pub token: String,
    /// That the old one stopped working.
    pub note: String,
}

/// `POST /api/incidents/{id}/notes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteInput {
    /// The note.
    pub text: String,
}

/// `PUT /api/incidents/{id}/artifacts/{name}`: what was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredArtifact {
    /// The incident.
    pub incident: i64,
    /// The artifact's name.
    pub name: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// `POST /api/incidents/{id}/artifacts/{name}/diagnose`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The artifact holding the report (`<name>.diagnosis.txt`).
    pub artifact: String,
    /// The top verdict, as holdup-diagnose writes it.
    pub top: serde_json::Value,
    /// The report as text.
    pub text: String,
}

/// `POST /api/scripts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewScript {
    /// Script name.
    pub name: String,
    /// bpftrace source.
    pub body: String,
}

/// `PUT /api/scripts/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptBody {
    /// The new bpftrace source.
    pub body: String,
}

/// `POST /api/requests/{id}/approve|reject`: a comment and, for an
/// approval, what it grants.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Decision {
    /// Why (shown to the requester, kept in the audit log).
    #[serde(default)]
    pub comment: String,
    /// What an approval grants.
    #[serde(flatten)]
    pub grant: Grant,
}

/// `POST /api/requests/{id}/authorize`: what may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorization {
    /// The request.
    pub request: i64,
    /// Always true (a refusal is an error).
    pub authorized: bool,
    /// Its probe.
    pub probe: String,
    /// The pinned script hash (scripts only).
    pub script_sha256: Option<String>,
    /// Approved duration.
    pub duration_s: u64,
    /// The policy's output bound.
    pub max_output_bytes: u64,
    /// Runs the approval still allows.
    pub runs_left: i64,
}

/// A built-in probe in the catalog, with the bounds a run gets under the
/// policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogProbe {
    /// Probe name.
    pub name: String,
    /// What it records.
    pub description: String,
    /// Its class.
    pub overhead: Overhead,
    /// BPF CPU budget, percent of one CPU.
    pub budget_percent: f64,
    /// Longest run.
    pub max_duration_s: u64,
    /// Largest output.
    pub max_output_bytes: u64,
    /// Set when the policy approves short requests of it.
    pub auto_approve_max_duration_s: Option<u64>,
    /// Whether the policy's max_overhead allows it.
    pub allowed: bool,
}

/// An accepted user script in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogScript {
    /// `script:<id>`.
    pub probe: String,
    /// Script name.
    pub name: String,
    /// Pinned hash.
    pub sha256: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// Always high.
    pub overhead: Overhead,
    /// BPF CPU budget, percent of one CPU.
    pub budget_percent: f64,
}

/// `GET /api/catalog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Built-in probes.
    pub builtin: Vec<CatalogProbe>,
    /// Accepted scripts.
    pub scripts: Vec<CatalogScript>,
    /// A script run's BPF CPU budget.
    pub script_budget_percent: f64,
    /// Longest run.
    pub max_duration_s: u64,
    /// Largest output.
    pub max_output_bytes: u64,
}

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix time.
    pub time: i64,
    /// Who (a user, or `system`, `policy`, `anonymous`).
    pub actor: String,
    /// What (`run.started`, ...).
    pub action: String,
    /// Its details.
    pub details: serde_json::Value,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The audit chain check (`GET /api/audit/verify`, `holdup workbench audit verify`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Whether the chain is intact.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first seq at which the chain is broken.
    pub bad_seq: Option<i64>,
    /// Why it is broken.
    pub reason: Option<String>,
    /// Hash of the last entry. Deleting entries from the end leaves a valid
    /// (shorter) chain: the head copy beside the store catches that.
    pub head_hash: String,
    /// Whether the log was also checked against the head copy.
    pub head_copy_checked: bool,
}

/// An agent: the identity a host's `holdup wb agent` pulls its runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Its id.
    pub id: i64,
    /// The host it runs requests for (a request's `host`).
    pub host: String,
    /// The admin who created it.
    pub created_by: String,
    /// When (unix time).
    pub created: i64,
    /// A revoked agent's token is refused.
    pub revoked: bool,
    /// When it last asked for work or sent a heartbeat (unix time).
    pub last_seen: Option<i64>,
}

/// `POST /api/agents`: an agent identity for a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAgent {
    /// The host (a request's `host` names it).
    pub host: String,
}

/// `POST /api/agents` and `POST /api/agents/{host}/token`: the agent and
/// its token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentToken {
    /// The agent.
    pub agent: Agent,
    /// Its token (`hwa_` + 64 hex characters).
    pub token: String,
    /// That it is shown only once.
    pub note: String,
}

/// `GET /agent/runs/next`: a run the agent is to execute now, with every
/// bound it must enforce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchedRun {
    /// The run.
    pub run_id: i64,
    /// Its request.
    pub request_id: i64,
    /// The probe (catalog name or `script:<id>`).
    pub probe: String,
    /// For a built-in probe: `holdup record --sched-only`.
    pub sched_only: bool,
    /// For a script: the approved bytes (what runs), and their sha256.
    pub script: Option<String>,
    /// sha256 of `script`.
    pub script_sha256: Option<String>,
    /// What it targets.
    pub target_kind: TargetKind,
    /// The pid or cgroup path.
    pub target: String,
    /// Approved duration: stopped there.
    pub duration_s: u64,
    /// The policy's output bound: stopped past it, this much kept.
    pub max_output_bytes: u64,
    /// The probe's class.
    pub overhead: Overhead,
    /// BPF CPU budget of that class, percent of one CPU (two intervals over: stopped).
    pub budget_percent: f64,
}

/// `POST /agent/runs/{id}/heartbeat`: the agent's run is alive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The probe's pid on the agent's host.
    pub pid: Option<i64>,
    /// BPF run time of its programs so far.
    pub bpf_run_time_ns: u64,
    /// Output so far, bytes.
    pub output_bytes: u64,
}

/// The answer to a heartbeat: whether someone stopped the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// Set when the run is to stop now: who stopped it.
    pub stop_by: Option<String>,
}

/// `POST /agent/runs/{id}/end`: how the run ended on the agent (its output
/// was sent before with `PUT /agent/runs/{id}/output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// Final status (not `running` or `interrupted`).
    pub status: RunStatus,
    /// Exit status of the probe.
    pub exit_status: Option<i64>,
    /// Why it ended.
    pub reason: String,
    /// Size of the output sent.
    pub output_bytes: u64,
    /// Its sha256 (the server checks it against what it received).
    pub output_sha256: String,
    /// BPF run time of its programs.
    pub bpf_run_time_ns: u64,
    /// Programs seen.
    pub bpf_programs: usize,
    /// Average BPF CPU, percent of one CPU.
    pub bpf_cpu_percent: Option<f64>,
    /// Highest one-interval BPF CPU.
    pub peak_interval_percent: f64,
}
