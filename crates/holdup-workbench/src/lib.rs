//! holdup workbench: governed probes. A store (SQLite, migrated, survives
//! restart), users with hashed API tokens and roles, a hash-chained audit
//! log, incidents, a probe catalog with static checks of user bpftrace
//! scripts, requests with approval, and a TOML policy — all behind the HTTP
//! API in [`api`]. See docs/WORKBENCH.md.

pub mod api;
pub mod audit;
pub mod checks;
pub mod error;
pub mod overhead;
pub mod plot;
pub mod policy;
pub mod runs;
pub mod scratch;
pub mod store;
pub mod ui;

pub use error::{Error, ErrorKind, WbResult};
use policy::{Overhead, Policy};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
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
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// A disabled user's token is refused.
    #[serde(default)]
    pub disabled: bool,
}

/// A built-in catalog probe.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltinProbe {
    pub name: &'static str,
    pub description: &'static str,
    pub overhead: Overhead,
    /// Whether `holdup record` runs with the scheduler programs only.
    #[serde(skip)]
    pub sched_only: bool,
}

pub const BUILTIN_PROBES: &[BuiltinProbe] = &[
    BuiltinProbe {
        name: "holdup-sched",
        description: "holdup record with the scheduler tracepoints only: on-CPU, run queue and who ran instead, iowait, sleeps and what they wait on, wakers",
        overhead: Overhead::Low,
        sched_only: true,
    },
    BuiltinProbe {
        name: "holdup-full",
        description: "holdup record, all subsystems: scheduler, futex, files, sockets, block devices (who hammered the disk, which peer woke a socket)",
        overhead: Overhead::Medium,
        sched_only: false,
    },
];

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// sha256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A new API token: 32 random bytes, hex. Only its sha256 is stored.
fn new_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    Ok(format!("hwb_{}", hex::encode(b)))
}

/// Artifact and file names: 1..=128 of `[A-Za-z0-9._-]`, not starting with
/// a dot, no `..` — so never a path, never traversal, never NUL.
pub fn validate_name(name: &str) -> WbResult<()> {
    let bad = |why: &str| {
        Err(Error::bad_request(format!(
            "invalid name {name:?}: {why}; use 1-128 characters from A-Z a-z 0-9 . _ - , not starting with '.'"
        )))
    };
    if name.is_empty() || name.len() > 128 {
        return bad("length");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator");
    }
    if name.contains("..") {
        return bad("contains '..'");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("contains a character outside the allowed set");
    }
    Ok(())
}

/// Why an artifact name is the workbench's own (runs' outputs, diagnosis
/// reports), if it is: users may not upload under such names.
pub fn reserved_artifact_name(name: &str) -> Option<&'static str> {
    if name.starts_with("run-") {
        Some("runs' outputs (run-<id>.json, run-<id>.rec)")
    } else if name.ends_with(".diagnosis.txt") {
        Some("diagnosis reports (POST .../diagnose makes them)")
    } else {
        None
    }
}

fn check_text(field: &str, value: &str, max: usize) -> WbResult<()> {
    if value.len() > max {
        return Err(Error::bad_request(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(Error::bad_request(format!("{field} contains NUL")));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: i64,
    pub author: String,
    pub created: i64,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub id: i64,
    pub name: String,
    pub body: String,
    pub sha256: String,
    pub status: String,
    pub report: serde_json::Value,
    pub submitted_by: String,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct ProbeRequest {
    pub id: i64,
    #[serde(flatten)]
    pub input: RequestInput,
    pub script_id: Option<i64>,
    pub script_sha256: Option<String>,
    pub requester: String,
    pub status: String,
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

/// What the run gate cleared: the request, and for a script the exact
/// bytes approved (hashed again here: these bytes are what runs).
pub(crate) struct Cleared {
    pub req: ProbeRequest,
    pub script: Option<Vec<u8>>,
    pub overhead: Overhead,
}

/// The workbench: store, policy and every operation the API exposes.
pub struct Workbench {
    conn: Mutex<Connection>,
    policy: Policy,
    scratch: scratch::Scratch,
    /// The runs this server process watches: stop switch and live output.
    active: Mutex<std::collections::HashMap<i64, runs::ActiveRun>>,
    /// The copy of the audit log's head kept beside the store, and the head
    /// last written there.
    head_path: PathBuf,
    head: Mutex<Option<audit::Head>>,
    /// The connection's `total_changes` when the head copy was last synced:
    /// guards that changed nothing (most are reads) skip the head query.
    head_synced_at: std::sync::atomic::AtomicU64,
    /// Stored run outputs being read, shared by their concurrent readers.
    outputs: Mutex<std::collections::HashMap<i64, std::sync::Weak<Vec<u8>>>>,
}

/// Actor names the workbench itself writes into the audit log; no user
/// may have one.
pub const RESERVED_ACTORS: &[&str] = &["system", "policy", "anonymous"];

/// At most one refusal audit entry per actor and action this often.
pub const AUTH_FAILURE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The store's connection, held; when released, the audit head copy is
/// brought up to date if the log grew meanwhile.
pub(crate) struct Db<'a> {
    conn: MutexGuard<'a, Connection>,
    wb: &'a Workbench,
}

impl std::ops::Deref for Db<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Db<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Db<'_> {
    fn drop(&mut self) {
        self.wb.sync_head(&self.conn);
    }
}

/// Checks the audit chain of the store at `db_path` without starting a
/// workbench or writing anything (`holdup workbench audit verify`).
pub fn verify_store(db_path: &Path) -> anyhow::Result<audit::VerifyReport> {
    if !db_path.exists() {
        anyhow::bail!("no workbench store at {}", db_path.display());
    }
    let conn = Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let copy = audit::read_head(&audit::head_path(db_path))?;
    Ok(verify_with_head(&conn, copy.as_ref())?)
}

/// What the audit keeps of an incident's fields: the free text as its
/// sha256 and length (a log entry per edit must not repeat kilobytes of
/// notes), the rest as given.
fn incident_digest(input: &IncidentInput) -> serde_json::Value {
    json!({
        "title": input.title,
        "service": input.service,
        "host": input.host,
        "start_time": input.start_time,
        "end_time": input.end_time,
        "notes_sha256": sha256_hex(input.notes.as_bytes()),
        "notes_bytes": input.notes.len(),
    })
}

/// Whether incident `id` exists.
fn incident_exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM incidents WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )
}

/// Stores a new artifact of an existing incident with its audit entry,
/// inside the caller's transaction; `details` joins the entry. Artifacts
/// are evidence: once written never replaced (409), so the same bytes
/// under the same name are accepted again and anything else is refused.
/// Returns the data's sha256.
pub(crate) fn store_artifact(
    conn: &Connection,
    actor: &str,
    incident: i64,
    name: &str,
    data: &[u8],
    details: serde_json::Value,
) -> WbResult<String> {
    let sha = sha256_hex(data);
    let existing: Option<String> = conn
        .query_row(
            "SELECT sha256 FROM artifacts WHERE incident_id = ?1 AND name = ?2",
            params![incident, name],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(old) if old == sha => return Ok(sha),
        Some(old) => {
            return Err(Error::conflict(format!(
                "incident {incident} already has an artifact {name} (sha256 {old}); artifacts are never replaced: upload under another name"
            )))
        }
        None => {}
    }
    conn.execute(
        "INSERT INTO artifacts (incident_id, name, sha256, data, uploaded_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![incident, name, sha, data, actor, now()],
    )?;
    let mut d = json!({"incident": incident, "name": name, "sha256": sha, "bytes": data.len()});
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), details) {
        d.extend(extra);
    }
    audit::append(conn, now(), actor, "artifact.uploaded", &d)?;
    Ok(sha)
}

/// The chain check, plus the check against the head copy when there is one.
fn verify_with_head(
    conn: &Connection,
    copy: Option<&audit::Head>,
) -> rusqlite::Result<audit::VerifyReport> {
    let mut report = audit::verify(conn)?;
    report.head_copy_checked = copy.is_some();
    if let (true, Some(copy)) = (report.ok, copy) {
        if let Err(why) = audit::check_head(conn, copy)? {
            report.ok = false;
            report.bad_seq = Some(copy.seq);
            report.reason = Some(why);
        }
    }
    Ok(report)
}

impl Workbench {
    /// Opens (creating and migrating) the store at `db_path`. On first start
    /// creates the user `admin` and returns its token — the only time it is
    /// shown. Appends a `policy.loaded` audit entry.
    pub fn open(db_path: &Path, policy: Policy) -> anyhow::Result<(Workbench, Option<String>)> {
        let mut conn = store::open(db_path)?;
        // Before anything is appended: a log cut short at its end would
        // otherwise grow over the gap and the evidence would be gone.
        let head_path = audit::head_path(db_path);
        if let Some(copy) = audit::read_head(&head_path)? {
            if let Err(why) = audit::check_head(&conn, &copy)? {
                anyhow::bail!(
                    "refusing to start: {why}. Run `holdup workbench audit verify --db {}` and investigate; to accept the log as it is, move {} away",
                    db_path.display(),
                    head_path.display()
                );
            }
        }
        runs::interrupt_stale(&mut conn)?;
        Self::flush_refusals(&mut conn)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let users: i64 = tx.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        let mut admin_token = None;
        if users == 0 {
            let token = new_token()?;
            tx.execute(
                "INSERT INTO users (name, role, token_hash, created) VALUES ('admin', 'admin', ?1, ?2)",
                params![sha256_hex(token.as_bytes()), now()],
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "user.created",
                &json!({"name": "admin", "role": "admin", "first_start": true}),
            )?;
            admin_token = Some(token);
        }
        let policy_text = toml::to_string(&policy)?;
        audit::append(
            &tx,
            now(),
            "system",
            "policy.loaded",
            &json!({"sha256": sha256_hex(policy_text.as_bytes()), "policy": serde_json::to_value(&policy)?}),
        )?;
        tx.commit()?;
        let scratch = scratch::Scratch::new()
            .map_err(|e| anyhow::anyhow!("creating the private scratch directory: {e}"))?;
        let wb = Workbench {
            conn: Mutex::new(conn),
            policy,
            scratch,
            active: Mutex::default(),
            head_path,
            head: Mutex::default(),
            head_synced_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            outputs: Mutex::default(),
        };
        // Writes the head copy now; failing to is fatal at start.
        let head = audit::head(&wb.db())?;
        if let Some(h) = head {
            audit::write_head(&wb.head_path, &h).map_err(|e| {
                anyhow::anyhow!(
                    "writing the audit head copy {}: {e}",
                    wb.head_path.display()
                )
            })?;
        }
        Ok((wb, admin_token))
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The server's private scratch directory (run files).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    pub(crate) fn db(&self) -> Db<'_> {
        Db {
            conn: self.conn.lock().unwrap_or_else(|e| e.into_inner()),
            wb: self,
        }
    }

    /// Brings the audit head copy up to date with the log.
    fn sync_head(&self, conn: &Connection) {
        use std::sync::atomic::Ordering;
        let changes = conn.total_changes();
        if self.head_synced_at.load(Ordering::Relaxed) == changes {
            return;
        }
        let Ok(Some(now)) = audit::head(conn) else {
            return;
        };
        let mut last = self.head.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&now) {
            self.head_synced_at.store(changes, Ordering::Relaxed);
            return;
        }
        // Only a log that still holds the head written last may replace it:
        // a log cut short or rewritten behind our back must not erase the
        // evidence (verify reports it).
        if let Some(prev) = last.as_ref() {
            if !matches!(audit::check_head(conn, prev), Ok(Ok(()))) {
                return;
            }
        }
        match audit::write_head(&self.head_path, &now) {
            Ok(()) => {
                *last = Some(now);
                self.head_synced_at.store(changes, Ordering::Relaxed);
            }
            Err(e) => eprintln!(
                "holdup workbench: WARNING: could not write the audit head copy {} ({e}); deleting entries from the end of the log would go unnoticed until it is written",
                self.head_path.display()
            ),
        }
    }

    /// Checks the audit chain, and its head against the copy kept beside
    /// the store.
    pub fn verify_audit(&self) -> WbResult<audit::VerifyReport> {
        let copy = audit::read_head(&self.head_path)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        Ok(verify_with_head(&self.db(), copy.as_ref())?)
    }

    pub fn audit_entries(&self, after: i64, limit: i64) -> WbResult<Vec<audit::Entry>> {
        Ok(audit::list(&self.db(), after, limit.clamp(1, 1000))?)
    }

    /// Authenticates a bearer token: the user it belongs to, enabled.
    /// Refusals are audited (see [`Workbench::record_refusal`]).
    pub fn authenticate(&self, token: Option<&str>) -> WbResult<User> {
        let Some(token) = token else {
            self.record_refusal("anonymous", "auth.failure", "no token", "failures")?;
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "no API token: send `Authorization: Bearer <token>` (the admin token is printed once at first start; an admin creates users with POST /api/users)",
            ));
        };
        let hash = sha256_hex(token.as_bytes());
        let user = self
            .db()
            .query_row(
                "SELECT id, name, role, disabled FROM users WHERE token_hash = ?1",
                [&hash],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?;
        match user {
            Some((id, name, role, false)) => Ok(User {
                id,
                name,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                disabled: false,
            }),
            other => {
                let (reason, msg) = match &other {
                    Some((_, name, _, _)) => (
                        format!("user {name} is disabled"),
                        format!("user {name} is disabled: ask an admin to enable it"),
                    ),
                    None => (
                        format!("unknown token (sha256 prefix {})", &hash[..12]),
                        "unknown or revoked API token: ask an admin for a valid one".to_string(),
                    ),
                };
                self.record_refusal("anonymous", "auth.failure", &reason, "failures")?;
                Err(Error::new(ErrorKind::Unauthenticated, msg))
            }
        }
    }

    /// Checks `user` has at least role `need`.
    pub fn require_role(user: &User, need: Role) -> WbResult<()> {
        if user.role < need {
            return Err(Error::forbidden(format!(
                "this needs role {} or higher; user {} has role {}",
                need.as_str(),
                user.name,
                user.role.as_str()
            )));
        }
        Ok(())
    }

    /// Audits a refusal (`action`: `auth.failure`, `access.refused`) by
    /// `actor`. A flood of refusals would grow the log without bound: per
    /// actor and action, at most one entry per [`AUTH_FAILURE_EVERY`], each
    /// counting (under `count_key`) the refusals it stands for. The count
    /// not yet written is kept in the store, so a restart loses none: it is
    /// written at the next start.
    pub fn record_refusal(
        &self,
        actor: &str,
        action: &str,
        reason: &str,
        count_key: &str,
    ) -> WbResult<()> {
        let key = format!("{actor}\n{action}");
        let every = AUTH_FAILURE_EVERY.as_secs() as i64;
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(i64, i64)> = tx
            .query_row(
                "SELECT pending, last_logged FROM refusals WHERE key = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let t = now();
        match row {
            Some((pending, last)) if t - last < every => {
                tx.execute(
                    "UPDATE refusals SET pending = ?2, reason = ?3 WHERE key = ?1",
                    params![key, pending + 1, reason],
                )?;
            }
            row => {
                let n = row.map_or(0, |r| r.0) + 1;
                let mut d = json!({"reason": reason});
                d[count_key] = json!(n);
                audit::append(&tx, t, actor, action, &d)?;
                tx.execute(
                    "INSERT OR REPLACE INTO refusals (key, actor, action, reason, pending, last_logged) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                    params![key, actor, action, reason, t],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Writes the refusals counted but not yet audited (at start: those a
    /// previous server process counted before it stopped).
    fn flush_refusals(conn: &mut Connection) -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<(String, String, String, String, i64)> = {
            let mut st = tx.prepare(
                "SELECT key, actor, action, reason, pending FROM refusals WHERE pending > 0",
            )?;
            let v = st
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            v
        };
        for (key, actor, action, reason, pending) in rows {
            let count_key = if action == "auth.failure" {
                "failures"
            } else {
                "refusals"
            };
            let mut d = json!({"reason": reason, "counted_before_restart": true});
            d[count_key] = json!(pending);
            audit::append(&tx, now(), &actor, &action, &d)?;
            tx.execute(
                "UPDATE refusals SET pending = 0, last_logged = ?2 WHERE key = ?1",
                params![key, now()],
            )?;
        }
        tx.commit()
    }

    /// Replaces a user's token (revoking the old one); returns the new one.
    /// Admins may rotate anyone's token, users their own.
    pub fn rotate_token(&self, actor: &User, name: &str) -> WbResult<String> {
        validate_name(name)?;
        if actor.name != name && actor.role < Role::Admin {
            return Err(Error::forbidden(format!(
                "only an admin or {name} may replace {name}'s token"
            )));
        }
        let token = new_token().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE users SET token_hash = ?1 WHERE name = ?2",
            params![sha256_hex(token.as_bytes()), name],
        )?;
        if n == 0 {
            return Err(Error::not_found(format!("no user {name}")));
        }
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.token_rotated",
            &json!({"name": name}),
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// Changes a user's role or disables/enables it (admin). The last
    /// enabled admin can be neither demoted nor disabled.
    pub fn update_user(
        &self,
        actor: &User,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> WbResult<User> {
        validate_name(name)?;
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let cur: Option<(String, bool)> = tx
            .query_row(
                "SELECT role, disabled FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((cur_role, cur_disabled)) = cur else {
            return Err(Error::not_found(format!("no user {name}")));
        };
        let new_role = role.unwrap_or(Role::parse(&cur_role).unwrap_or(Role::Viewer));
        let new_disabled = disabled.unwrap_or(cur_disabled);
        if cur_role == "admin" && !cur_disabled && (new_role != Role::Admin || new_disabled) {
            let admins: i64 = tx.query_row(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                [],
                |r| r.get(0),
            )?;
            if admins <= 1 {
                return Err(Error::conflict(format!(
                    "{name} is the last enabled admin; make another admin first"
                )));
            }
        }
        tx.execute(
            "UPDATE users SET role = ?1, disabled = ?2 WHERE name = ?3",
            params![new_role.as_str(), new_disabled, name],
        )?;
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.updated",
            &json!({"name": name, "role": new_role.as_str(), "disabled": new_disabled}),
        )?;
        tx.commit()?;
        drop(conn);
        self.list_users()?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| Error::not_found(format!("no user {name}")))
    }

    /// Creates a user and returns its token (shown once).
    pub fn create_user(&self, actor: &User, name: &str, role: Role) -> WbResult<(User, String)> {
        validate_name(name)?;
        if RESERVED_ACTORS.contains(&name) {
            return Err(Error::bad_request(format!(
                "user name {name:?} is reserved: the audit log uses it for the workbench itself ({}); pick another",
                RESERVED_ACTORS.join(", ")
            )));
        }
        let token = new_token().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(Error::conflict(format!("user {name} already exists")));
        }
        tx.execute(
            "INSERT INTO users (name, role, token_hash, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), sha256_hex(token.as_bytes()), now()],
        )?;
        let id = tx.last_insert_rowid();
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.created",
            &json!({"name": name, "role": role.as_str()}),
        )?;
        tx.commit()?;
        Ok((
            User {
                id,
                name: name.to_string(),
                role,
                disabled: false,
            },
            token,
        ))
    }

    pub fn list_users(&self) -> WbResult<Vec<User>> {
        let conn = self.db();
        let mut st = conn.prepare("SELECT id, name, role, disabled FROM users ORDER BY id")?;
        let rows = st.query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                disabled: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn check_incident(&self, input: &IncidentInput) -> WbResult<()> {
        if input.title.trim().is_empty() {
            return Err(Error::bad_request("title is required"));
        }
        check_text("title", &input.title, 1024)?;
        check_text("service", &input.service, 1024)?;
        check_text("host", &input.host, 1024)?;
        check_text("notes", &input.notes, self.policy.max_note_bytes)?;
        if let (Some(s), Some(e)) = (input.start_time, input.end_time) {
            if e < s {
                return Err(Error::bad_request("end_time is before start_time"));
            }
        }
        Ok(())
    }

    pub fn create_incident(&self, actor: &User, input: IncidentInput) -> WbResult<Incident> {
        self.check_incident(&input)?;
        let id = {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            self.check_note_quota(&tx, &actor.name, input.notes.len(), 0)?;
            tx.execute(
                "INSERT INTO incidents (title, service, host, start_time, end_time, notes, created_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![input.title, input.service, input.host, input.start_time, input.end_time, input.notes, actor.name, now()],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                &tx,
                now(),
                &actor.name,
                "incident.created",
                &json!({"id": id, "incident": incident_digest(&input)}),
            )?;
            tx.commit()?;
            id
        };
        self.get_incident(id)
    }

    pub fn update_incident(
        &self,
        actor: &User,
        id: i64,
        input: IncidentInput,
    ) -> WbResult<Incident> {
        self.check_incident(&input)?;
        {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let owner: Option<(String, i64)> = tx
                .query_row(
                    "SELECT created_by, length(notes) FROM incidents WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((owner, old_notes)) = owner else {
                return Err(Error::not_found(format!("no incident {id}")));
            };
            if owner != actor.name && actor.role < Role::Approver {
                return Err(Error::forbidden(format!(
                    "incident {id} was opened by {owner}: only they or an approver may edit it; add a note instead (POST /api/incidents/{id}/notes)"
                )));
            }
            let freed = if owner == actor.name {
                old_notes as usize
            } else {
                0
            };
            self.check_note_quota(&tx, &actor.name, input.notes.len(), freed)?;
            let n = tx.execute(
                "UPDATE incidents SET title = ?1, service = ?2, host = ?3, start_time = ?4, end_time = ?5, notes = ?6 WHERE id = ?7",
                params![input.title, input.service, input.host, input.start_time, input.end_time, input.notes, id],
            )?;
            if n == 0 {
                return Err(Error::not_found(format!("no incident {id}")));
            }
            audit::append(
                &tx,
                now(),
                &actor.name,
                "incident.updated",
                &json!({"id": id, "incident": incident_digest(&input)}),
            )?;
            tx.commit()?;
        }
        self.get_incident(id)
    }

    pub fn delete_incident(&self, actor: &User, id: i64) -> WbResult<()> {
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM incidents WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(Error::not_found(format!("no incident {id}")));
        }
        audit::append(
            &tx,
            now(),
            &actor.name,
            "incident.deleted",
            &json!({"id": id}),
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_incident(&self, id: i64) -> WbResult<Incident> {
        let conn = self.db();
        let inc = conn
            .query_row(
                "SELECT id, title, service, host, start_time, end_time, notes, created_by, created FROM incidents WHERE id = ?1",
                [id],
                |r| {
                    Ok(Incident {
                        id: r.get(0)?,
                        input: IncidentInput {
                            title: r.get(1)?,
                            service: r.get(2)?,
                            host: r.get(3)?,
                            start_time: r.get(4)?,
                            end_time: r.get(5)?,
                            notes: r.get(6)?,
                        },
                        created_by: r.get(7)?,
                        created: r.get(8)?,
                        artifacts: vec![],
                        timeline: vec![],
                    })
                },
            )
            .optional()?;
        let mut inc = inc.ok_or_else(|| Error::not_found(format!("no incident {id}")))?;
        let mut st =
            conn.prepare("SELECT name FROM artifacts WHERE incident_id = ?1 ORDER BY name")?;
        inc.artifacts = st
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut st = conn.prepare(
            "SELECT id, author, created, text FROM notes WHERE incident_id = ?1 ORDER BY id",
        )?;
        inc.timeline = st
            .query_map([id], |r| {
                Ok(Note {
                    id: r.get(0)?,
                    author: r.get(1)?,
                    created: r.get(2)?,
                    text: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(inc)
    }

    /// Refuses text of `adding` bytes by `author` past the policy's
    /// note_quota_bytes (`freed`: bytes of theirs the change replaces).
    fn check_note_quota(
        &self,
        conn: &Connection,
        author: &str,
        adding: usize,
        freed: usize,
    ) -> WbResult<()> {
        let used: i64 = conn.query_row(
            "SELECT (SELECT COALESCE(SUM(length(text)), 0) FROM notes WHERE author = ?1) + (SELECT COALESCE(SUM(length(notes)), 0) FROM incidents WHERE created_by = ?1)",
            [author],
            |r| r.get(0),
        )?;
        let after = (used as u64).saturating_sub(freed as u64) + adding as u64;
        if after > self.policy.note_quota_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{author} has written {used} bytes of notes; {adding} more would pass the policy's note_quota_bytes ({}); ask an admin to raise it",
                    self.policy.note_quota_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Appends a note to an incident's timeline.
    pub fn add_note(&self, actor: &User, incident: i64, text: &str) -> WbResult<Incident> {
        check_text("text", text, self.policy.max_note_bytes)?;
        if text.trim().is_empty() {
            return Err(Error::bad_request("a note needs some text"));
        }
        {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !incident_exists(&tx, incident)? {
                return Err(Error::not_found(format!("no incident {incident}")));
            }
            self.check_note_quota(&tx, &actor.name, text.len(), 0)?;
            tx.execute(
                "INSERT INTO notes (incident_id, author, created, text) VALUES (?1, ?2, ?3, ?4)",
                params![incident, actor.name, now(), text],
            )?;
            audit::append(
                &tx,
                now(),
                &actor.name,
                "incident.note_added",
                &json!({"incident": incident, "text_sha256": sha256_hex(text.as_bytes()), "bytes": text.len()}),
            )?;
            tx.commit()?;
        }
        self.get_incident(incident)
    }

    /// Runs holdup's diagnosis on a recording attached to an incident and
    /// attaches its report as `<name>.diagnosis.txt`.
    pub fn diagnose_artifact(
        &self,
        actor: &User,
        incident: i64,
        name: &str,
    ) -> WbResult<serde_json::Value> {
        let data = self.get_artifact(incident, name)?;
        let rec = holdup_record::Recording::from_bytes(&data).map_err(|e| {
            Error::new(
                ErrorKind::Unprocessable,
                format!("artifact {name} is not a readable holdup recording: {e}"),
            )
        })?;
        if rec.windows.is_empty() {
            return Err(Error::new(
                ErrorKind::Unprocessable,
                format!("recording {name} has no complete windows to diagnose"),
            ));
        }
        let d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
            target: format!("{} (recorded)", rec.header.target),
            windows: &rec.windows,
            label: name,
            baseline_windows: None,
            split: Default::default(),
        });
        let text = holdup_diagnose::text::render(&d);
        let report = format!("{name}.diagnosis.txt");
        self.store_user_artifact(actor, incident, &report, text.as_bytes())?;
        Ok(json!({"artifact": report, "top": d.top(), "text": text}))
    }

    pub fn list_incidents(&self) -> WbResult<Vec<Incident>> {
        let ids: Vec<i64> = {
            let conn = self.db();
            let mut st = conn.prepare("SELECT id FROM incidents ORDER BY id")?;
            let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            v
        };
        ids.into_iter().map(|id| self.get_incident(id)).collect()
    }

    pub fn put_artifact(
        &self,
        actor: &User,
        incident: i64,
        name: &str,
        data: &[u8],
    ) -> WbResult<String> {
        validate_name(name)?;
        if let Some(why) = reserved_artifact_name(name) {
            return Err(Error::forbidden(format!(
                "artifact name {name:?} is reserved for {why}; upload under another name"
            )));
        }
        self.store_user_artifact(actor, incident, name, data)
    }

    /// Stores an artifact `actor` uploaded, within their quota.
    fn store_user_artifact(
        &self,
        actor: &User,
        incident: i64,
        name: &str,
        data: &[u8],
    ) -> WbResult<String> {
        let mut conn = self.db();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !incident_exists(&tx, incident)? {
            return Err(Error::not_found(format!("no incident {incident}")));
        }
        let used: i64 = tx.query_row(
            "SELECT COALESCE(SUM(length(data)), 0) FROM artifacts WHERE uploaded_by = ?1",
            [&actor.name],
            |r| r.get(0),
        )?;
        let quota = self.policy.artifact_quota_bytes;
        if used as u64 + data.len() as u64 > quota {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} has uploaded {used} bytes of artifacts; {} more would pass the policy's artifact_quota_bytes ({quota}); ask an admin to raise it",
                    actor.name,
                    data.len()
                ),
            ));
        }
        let sha = store_artifact(&tx, &actor.name, incident, name, data, json!({}))?;
        tx.commit()?;
        Ok(sha)
    }

    pub fn get_artifact(&self, incident: i64, name: &str) -> WbResult<Vec<u8>> {
        validate_name(name)?;
        self.db()
            .query_row(
                "SELECT data FROM artifacts WHERE incident_id = ?1 AND name = ?2",
                params![incident, name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::not_found(format!("incident {incident} has no artifact {name}")))
    }

    fn run_checks(&self, body: &str) -> WbResult<checks::CheckReport> {
        Ok(checks::check(body, &self.policy))
    }

    /// Stores a user script with its check report. A refused script is
    /// stored too (status `refused`), so the refusal is on record.
    pub fn submit_script(&self, actor: &User, name: &str, body: &str) -> WbResult<Script> {
        validate_name(name)?;
        check_text("body", body, 256 * 1024)?;
        let report = self.run_checks(body)?;
        let status = if report.accepted {
            "accepted"
        } else {
            "refused"
        };
        let sha = sha256_hex(body.as_bytes());
        let report_json = serde_json::to_value(&report).unwrap_or_default();
        let id = {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO scripts (name, body, sha256, status, report, submitted_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, body, sha, status, report_json.to_string(), actor.name, now()],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                &tx,
                now(),
                &actor.name,
                "script.submitted",
                &json!({"id": id, "name": name, "sha256": sha}),
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "script.checked",
                &json!({"id": id, "sha256": sha, "status": status, "problems": report.problems}),
            )?;
            tx.commit()?;
            id
        };
        self.get_script(id)
    }

    /// Replaces a script's body (its submitter or an admin); re-checks it.
    /// Requests pinned to the old hash stop being runnable.
    pub fn update_script(&self, actor: &User, id: i64, body: &str) -> WbResult<Script> {
        check_text("body", body, 256 * 1024)?;
        let old = self.get_script(id)?;
        if old.submitted_by != actor.name && actor.role < Role::Admin {
            return Err(Error::forbidden(format!(
                "only the submitter ({}) or an admin may change script {id}",
                old.submitted_by
            )));
        }
        let report = self.run_checks(body)?;
        let status = if report.accepted {
            "accepted"
        } else {
            "refused"
        };
        let sha = sha256_hex(body.as_bytes());
        {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE scripts SET body = ?1, sha256 = ?2, status = ?3, report = ?4 WHERE id = ?5",
                params![
                    body,
                    sha,
                    status,
                    serde_json::to_value(&report)
                        .unwrap_or_default()
                        .to_string(),
                    id
                ],
            )?;
            audit::append(
                &tx,
                now(),
                &actor.name,
                "script.updated",
                &json!({"id": id, "old_sha256": old.sha256, "sha256": sha}),
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "script.checked",
                &json!({"id": id, "sha256": sha, "status": status, "problems": report.problems}),
            )?;
            tx.commit()?;
        }
        self.get_script(id)
    }

    pub fn get_script(&self, id: i64) -> WbResult<Script> {
        self.db()
            .query_row(
                "SELECT id, name, body, sha256, status, report, submitted_by, created FROM scripts WHERE id = ?1",
                [id],
                |r| {
                    let report: String = r.get(5)?;
                    Ok(Script {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        body: r.get(2)?,
                        sha256: r.get(3)?,
                        status: r.get(4)?,
                        report: serde_json::from_str(&report).unwrap_or_default(),
                        submitted_by: r.get(6)?,
                        created: r.get(7)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| Error::not_found(format!("no script {id}")))
    }

    /// The catalog: built-in probes and accepted user scripts.
    pub fn catalog(&self) -> WbResult<serde_json::Value> {
        let conn = self.db();
        let mut st = conn.prepare(
            "SELECT id, name, sha256, submitted_by FROM scripts WHERE status = 'accepted' ORDER BY id",
        )?;
        let scripts: Vec<serde_json::Value> = st
            .query_map([], |r| {
                Ok(json!({
                    "probe": format!("script:{}", r.get::<_, i64>(0)?),
                    "name": r.get::<_, String>(1)?,
                    "sha256": r.get::<_, String>(2)?,
                    "submitted_by": r.get::<_, String>(3)?,
                    "overhead": "high",
                    "budget_percent": self.policy.overhead_budget_percent.high,
                }))
            })?
            .collect::<Result<_, _>>()?;
        let p = &self.policy;
        // Each probe with the bounds a run of it gets under this policy.
        let builtin: Vec<serde_json::Value> = BUILTIN_PROBES
            .iter()
            .map(|b| {
                json!({
                    "name": b.name,
                    "description": b.description,
                    "overhead": b.overhead,
                    "budget_percent": p.overhead_budget_percent.for_class(b.overhead),
                    "max_duration_s": p.max_duration_s,
                    "max_output_bytes": p.max_output_bytes,
                    "auto_approve_max_duration_s": p.auto_approve.iter().any(|a| a == b.name).then_some(p.auto_approve_max_duration_s),
                    "allowed": b.overhead <= p.max_overhead,
                })
            })
            .collect();
        Ok(
            json!({"builtin": builtin, "scripts": scripts, "script_budget_percent": p.overhead_budget_percent.high, "max_duration_s": p.max_duration_s, "max_output_bytes": p.max_output_bytes}),
        )
    }

    /// The policy checks of a request made, or run, by a user of `role`:
    /// the probe's overhead class if it passes.
    fn request_policy(&self, role: Role, input: &RequestInput) -> WbResult<Overhead> {
        let p = &self.policy;
        if !p.probe_allowed(role.as_str(), &input.probe) {
            return Err(Error::forbidden(format!(
                "the policy does not allow role {} to request probe {:?} (allowed_probes.{})",
                role.as_str(),
                input.probe,
                role.as_str()
            )));
        }
        if input.duration_s == 0 || input.duration_s > p.max_duration_s {
            return Err(Error::forbidden(format!(
                "duration_s {} is outside 1..={} (policy max_duration_s)",
                input.duration_s, p.max_duration_s
            )));
        }
        if !p
            .allowed_target_kinds
            .iter()
            .any(|k| k == &input.target_kind)
        {
            return Err(Error::forbidden(format!(
                "target_kind {:?} is not allowed; the policy allows {:?}",
                input.target_kind, p.allowed_target_kinds
            )));
        }
        match input.target_kind.as_str() {
            "pid" if input.target.parse::<u32>().is_err() => {
                return Err(Error::bad_request(
                    "target must be a numeric pid for target_kind pid",
                ));
            }
            "cgroup" if !input.target.starts_with('/') || input.target.contains("..") => {
                return Err(Error::bad_request(
                    "target must be an absolute cgroup path without '..' for target_kind cgroup",
                ));
            }
            _ => {}
        }
        if input.target_kind == "cgroup" && !p.cgroup_allowed(&input.target) {
            return Err(Error::forbidden(format!(
                "cgroup {:?} is not under the policy's allowed_cgroup_prefixes {:?}",
                input.target, p.allowed_cgroup_prefixes
            )));
        }
        if input.target_kind == "pid" && runs::is_this_host(&input.host) {
            self.check_pid_target(&input.target)?;
        }
        if !p.host_allowed(&input.host) {
            return Err(Error::forbidden(format!(
                "host {:?} is not in the policy's allowed_hosts",
                input.host
            )));
        }
        if input.probe.starts_with("script:") {
            return Ok(Overhead::High);
        }
        let b = BUILTIN_PROBES
            .iter()
            .find(|b| b.name == input.probe)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no catalog probe {:?}; see GET /api/catalog",
                    input.probe
                ))
            })?;
        if b.overhead > p.max_overhead {
            return Err(Error::forbidden(format!(
                "probe {} has overhead {:?}, over the policy's max_overhead {:?}",
                input.probe, b.overhead, p.max_overhead
            )));
        }
        Ok(b.overhead)
    }

    /// Creates a probe request after the policy checks; auto-approved when
    /// the policy allows it, pending otherwise.
    pub fn create_request(&self, actor: &User, input: RequestInput) -> WbResult<ProbeRequest> {
        for (f, v, max) in [
            ("probe", &input.probe, 256),
            ("target_kind", &input.target_kind, 32),
            ("target", &input.target, 4096),
            ("host", &input.host, 1024),
            ("purpose", &input.purpose, 16 * 1024),
        ] {
            check_text(f, v, max)?;
        }
        if input.purpose.trim().is_empty() {
            return Err(Error::bad_request(
                "purpose is required: say why this probe should run",
            ));
        }
        if let Some(inc) = input.incident_id {
            self.get_incident(inc)?;
        }
        self.request_policy(actor.role, &input)?;
        let script = if let Some(rest) = input.probe.strip_prefix("script:") {
            let sid: i64 = rest
                .parse()
                .map_err(|_| Error::bad_request("probe script:<id> needs a numeric id"))?;
            let s = self.get_script(sid)?;
            if s.status != "accepted" {
                return Err(Error::forbidden(format!(
                    "script {sid} was refused by the static checks: {}",
                    s.report["problems"]
                )));
            }
            Some((sid, s.sha256))
        } else {
            None
        };
        let p = &self.policy;
        let auto = script.is_none()
            && p.auto_approve.iter().any(|a| a == &input.probe)
            && input.duration_s <= p.auto_approve_max_duration_s;
        let status = if auto { "approved" } else { "pending" };
        let (max_runs, expires) = if auto {
            (Some(p.approval_runs), Some(now() + p.approval_ttl_s as i64))
        } else {
            (None, None)
        };
        let id = {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO requests (probe, script_id, script_sha256, target_kind, target, host, duration_s, purpose, requester, status, created, incident_id, max_runs, approval_expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![input.probe, script.as_ref().map(|s| s.0), script.as_ref().map(|s| s.1.clone()), input.target_kind, input.target, input.host, input.duration_s as i64, input.purpose, actor.name, status, now(), input.incident_id, max_runs, expires],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                &tx,
                now(),
                &actor.name,
                "request.created",
                &json!({"id": id, "request": &input, "status": status, "script_sha256": script.as_ref().map(|s| &s.1)}),
            )?;
            if auto {
                audit::append(
                    &tx,
                    now(),
                    "policy",
                    "request.approved",
                    &json!({"id": id, "auto": true, "runs": max_runs, "expires": expires}),
                )?;
            }
            tx.commit()?;
            id
        };
        self.get_request(id)
    }

    /// One request.
    pub fn get_request(&self, id: i64) -> WbResult<ProbeRequest> {
        load_request(&self.db(), id)
    }

    /// Every request, oldest first.
    pub fn list_requests(&self) -> WbResult<Vec<ProbeRequest>> {
        let conn = self.db();
        let ids: Vec<i64> = {
            let mut st = conn.prepare("SELECT id FROM requests ORDER BY id")?;
            let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            v
        };
        ids.into_iter().map(|id| load_request(&conn, id)).collect()
    }

    /// Approves or rejects a pending request. The requester may not decide
    /// their own request. Approving a script request checks, in the same
    /// transaction, that the script still has the hash it had when
    /// requested, and keeps those exact bytes with the approval: a run
    /// executes that copy, never the editable script.
    pub fn decide(
        &self,
        actor: &User,
        id: i64,
        approve: bool,
        comment: &str,
        grant: &Grant,
    ) -> WbResult<ProbeRequest> {
        check_text("comment", comment, 16 * 1024)?;
        let p = &self.policy;
        let runs = grant.runs.unwrap_or(p.approval_runs);
        if approve && (runs == 0 || runs > p.approval_max_runs) {
            return Err(Error::bad_request(format!(
                "runs {runs} is outside 1..={} (policy approval_max_runs)",
                p.approval_max_runs
            )));
        }
        {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let req = load_request(&tx, id)?;
            if req.requester == actor.name {
                return Err(Error::forbidden(format!(
                    "self-approval refused: {} made request {id}; another approver must decide it",
                    actor.name
                )));
            }
            if req.status != "pending" {
                return Err(Error::conflict(format!(
                    "request {id} is {}, not pending",
                    req.status
                )));
            }
            let body = if approve {
                pinned_body(&tx, &req, false)?
            } else {
                None
            };
            let status = if approve { "approved" } else { "rejected" };
            let expires = approve.then(|| now() + p.approval_ttl_s as i64);
            let n = tx.execute(
                "UPDATE requests SET status = ?1, decided_by = ?2, comment = ?3, decided = ?4, script_body = ?5, max_runs = ?6, approval_expires = ?7, concurrent = ?8 WHERE id = ?9 AND status = 'pending'",
                params![status, actor.name, comment, now(), body, approve.then_some(runs), expires, approve && grant.concurrent, id],
            )?;
            if n != 1 {
                return Err(Error::conflict(format!(
                    "request {id} was decided meanwhile"
                )));
            }
            audit::append(
                &tx,
                now(),
                &actor.name,
                &format!("request.{status}"),
                &json!({"id": id, "comment": comment, "script_sha256": req.script_sha256, "runs": approve.then_some(runs), "expires": expires, "concurrent": approve && grant.concurrent}),
            )?;
            tx.commit()?;
        }
        self.get_request(id)
    }

    /// The run gate, inside the caller's transaction: the caller is the
    /// requester or an approver; the request is approved, its approval not
    /// expired nor used up, no run of it is going (unless approved
    /// concurrent) and the server is under max_concurrent_runs; the policy
    /// in force *now* still allows it for its requester; a script still
    /// hashes to the pinned sha256, and so do the approved bytes.
    pub(crate) fn gate(&self, conn: &Connection, actor: &User, id: i64) -> WbResult<Cleared> {
        let req = load_request(conn, id)?;
        if req.requester != actor.name && actor.role < Role::Approver {
            return Err(Error::forbidden(format!(
                "only the requester ({}) or an approver may start request {id}",
                req.requester
            )));
        }
        if req.status != "approved" {
            return Err(Error::forbidden(format!(
                "request {id} is {}, not approved",
                req.status
            )));
        }
        let p = &self.policy;
        let expires = req
            .approval_expires
            .unwrap_or(req.decided.unwrap_or(req.created) + p.approval_ttl_s as i64);
        if now() >= expires {
            return Err(Error::forbidden(format!(
                "the approval of request {id} expired at {expires} (policy approval_ttl_s); make a new request"
            )));
        }
        let max_runs = req.max_runs.unwrap_or(p.approval_runs);
        if req.runs >= max_runs as i64 {
            return Err(Error::forbidden(format!(
                "request {id} was approved for {max_runs} run(s) and has had {}; make a new request",
                req.runs
            )));
        }
        let (mine, all): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(request_id = ?1), 0), COUNT(*) FROM runs WHERE status = 'running'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if mine > 0 && !req.concurrent {
            return Err(Error::conflict(format!(
                "a run of request {id} is going; its approval does not allow overlapping runs (approve with \"concurrent\": true)"
            )));
        }
        if all as usize >= p.max_concurrent_runs {
            return Err(Error::conflict(format!(
                "{all} runs are going on this server, the policy's max_concurrent_runs; retry when one has ended"
            )));
        }
        // The policy may have changed since approval, and so may the
        // requester's account.
        let requester: Option<(String, bool)> = conn
            .query_row(
                "SELECT role, disabled FROM users WHERE name = ?1",
                [&req.requester],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let role = match requester {
            Some((_, true)) | None => {
                return Err(Error::forbidden(format!(
                    "the requester of request {id}, {}, is disabled or gone",
                    req.requester
                )))
            }
            Some((role, false)) => Role::parse(&role).unwrap_or(Role::Viewer),
        };
        let overhead = self.request_policy(role, &req.input)?;
        let script = pinned_body(conn, &req, true)?;
        Ok(Cleared {
            req,
            script,
            overhead,
        })
    }

    /// The run gate the runner calls, as an API of its own: what may run.
    /// [`Workbench::start_run`] goes through the same gate.
    pub fn authorize_run(&self, actor: &User, id: i64) -> WbResult<serde_json::Value> {
        let conn = self.db();
        match self.gate(&conn, actor, id) {
            Err(e) => {
                drop(conn);
                self.refuse_run(actor, id, &e);
                Err(e)
            }
            Ok(c) => {
                audit::append(
                    &conn,
                    now(),
                    &actor.name,
                    "run.authorized",
                    &json!({"request": id, "script_sha256": c.req.script_sha256}),
                )?;
                Ok(
                    json!({"request": id, "authorized": true, "probe": c.req.input.probe, "script_sha256": c.req.script_sha256, "duration_s": c.req.input.duration_s, "max_output_bytes": self.policy.max_output_bytes, "runs_left": c.req.max_runs.unwrap_or(self.policy.approval_runs) as i64 - c.req.runs}),
                )
            }
        }
    }

    /// Audits a run the gate refused (403s are audited by the API as
    /// `access.refused`; the others here, as `run.refused`).
    pub(crate) fn refuse_run(&self, actor: &User, id: i64, e: &Error) {
        if e.kind != ErrorKind::Forbidden {
            let _ = self.record_refusal(
                &actor.name,
                "run.refused",
                &format!("request {id}: {}", e.message),
                "refusals",
            );
        }
    }
}

/// One request, read on `conn`.
fn load_request(conn: &Connection, id: i64) -> WbResult<ProbeRequest> {
    conn.query_row(
        "SELECT id, probe, target_kind, target, host, duration_s, purpose, script_id, script_sha256, requester, status, decided_by, comment, created, decided, incident_id, max_runs, approval_expires, concurrent, (SELECT COUNT(*) FROM runs WHERE request_id = requests.id) FROM requests WHERE id = ?1",
        [id],
        |r| {
            Ok(ProbeRequest {
                id: r.get(0)?,
                input: RequestInput {
                    probe: r.get(1)?,
                    target_kind: r.get(2)?,
                    target: r.get(3)?,
                    host: r.get(4)?,
                    duration_s: r.get::<_, i64>(5)? as u64,
                    purpose: r.get(6)?,
                    incident_id: r.get(15)?,
                },
                script_id: r.get(7)?,
                script_sha256: r.get(8)?,
                requester: r.get(9)?,
                status: r.get(10)?,
                decided_by: r.get(11)?,
                comment: r.get(12)?,
                created: r.get(13)?,
                decided: r.get(14)?,
                max_runs: r.get(16)?,
                approval_expires: r.get(17)?,
                concurrent: r.get(18)?,
                runs: r.get(19)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| Error::not_found(format!("no request {id}")))
}

/// A script request's pinned bytes, read on `conn`: the current script
/// must still hash to the pinned sha256 (409 otherwise, as it was changed
/// since), and with `approved`, the copy kept with the approval must too;
/// that copy is returned, else the script's current body.
fn pinned_body(conn: &Connection, req: &ProbeRequest, approved: bool) -> WbResult<Option<Vec<u8>>> {
    let (Some(sid), Some(pinned)) = (req.script_id, &req.script_sha256) else {
        return Ok(None);
    };
    let body: Option<String> = conn
        .query_row("SELECT body FROM scripts WHERE id = ?1", [sid], |r| {
            r.get(0)
        })
        .optional()?;
    let body = body.ok_or_else(|| Error::not_found(format!("no script {sid}")))?;
    let actual = sha256_hex(body.as_bytes());
    if &actual != pinned {
        return Err(Error::conflict(format!(
            "script {sid} changed since request {} pinned it (pinned sha256 {pinned}, now {actual}); submit a new request for the new content",
            req.id
        )));
    }
    if !approved {
        return Ok(Some(body.into_bytes()));
    }
    let copy: Option<Vec<u8>> = conn.query_row(
        "SELECT script_body FROM requests WHERE id = ?1",
        [req.id],
        |r| r.get(0),
    )?;
    // Approvals from before the copy was kept run the current body, which
    // was just checked against the pin.
    let bytes = copy.unwrap_or_else(|| body.into_bytes());
    let copy_sha = sha256_hex(&bytes);
    if &copy_sha != pinned {
        return Err(Error::conflict(format!(
            "the approved copy of script {sid} for request {} hashes to {copy_sha}, not the pinned {pinned}: the store was edited; make a new request",
            req.id
        )));
    }
    Ok(Some(bytes))
}
