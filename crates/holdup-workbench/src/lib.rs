//! holdup workbench: governed probes. A store (SQLite, migrated, survives
//! restart), users with hashed API tokens and roles, a hash-chained audit
//! log, incidents, a probe catalog with static checks of user bpftrace
//! scripts, requests with approval, and a TOML policy — all behind the HTTP
//! API in [`api`]. See docs/WORKBENCH.md.

pub mod agent_api;
pub mod agents;
pub mod api;
pub mod audit;
pub mod checks;
pub mod error;
pub mod incidents;
pub mod matches;
pub mod output;
pub use holdup_runner::overhead;
pub mod plot;
pub mod policy;
pub mod requests;
pub mod runs;
pub mod scratch;
pub mod scripts;
pub mod server;
pub mod store;
pub mod ui;
pub mod users;

pub use error::{Error, ErrorKind, WbResult};
pub use holdup_wb_api::{
    Authorization, Catalog, CatalogProbe, CatalogScript, Decision, Diagnosis, Grant, Incident,
    IncidentInput, Note, ProbeRequest, RequestInput, RequestStatus, Role, Run, RunStatus, Script,
    ScriptStatus, TargetKind, User,
};
pub use incidents::reserved_artifact_name;
pub(crate) use incidents::store_artifact;
use policy::{Overhead, Policy};
pub(crate) use requests::Cleared;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use users::new_token;
pub use users::RESERVED_ACTORS;

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
        let tx = store::begin(&mut conn)?;
        let mut admin_token = None;
        if store::users::count(&tx)? == 0 {
            let token = new_token()?;
            store::users::insert(
                &tx,
                "admin",
                Role::Admin,
                &sha256_hex(token.as_bytes()),
                now(),
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
}
