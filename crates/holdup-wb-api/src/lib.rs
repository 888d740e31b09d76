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
    pub report: serde_json::Value,
    pub submitted_by: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInput {
    /// A catalog probe name, or `script:<id>` for a user script.
    pub probe: String,
    /// `host`, `pid` or `cgroup`.
    pub target_kind: String,
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
