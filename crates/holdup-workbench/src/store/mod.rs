//! SQLite store: the one place with SQL. Schema migrations and small
//! helpers here; one module per table group with typed functions the
//! domain modules call (`users`, `incidents`, `scripts`, `requests`,
//! `runs`, `agents`). Every function takes a `&Connection`: a transaction
//! derefs to one, so callers compose them inside [`begin`]'s transaction
//! with the audit entry of the change.

pub mod agents;
pub mod audit;
pub mod incidents;
pub mod requests;
pub mod runs;
pub mod scripts;
pub mod users;

use rusqlite::{Connection, Transaction};

/// Begins a write transaction that takes the store's write lock first
/// (`IMMEDIATE`), so a check and the write it guards see one state.
pub fn begin(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Migrations, applied in order; `schema_version` records how many ran.
/// Never edit a shipped entry: append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: users, audit, incidents, artifacts, scripts, requests
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        service TEXT NOT NULL,
        host TEXT NOT NULL,
        start_time INTEGER,
        end_time INTEGER,
        notes TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE artifacts (
        incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        data BLOB NOT NULL,
        uploaded_by TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (incident_id, name)
    );
    CREATE TABLE scripts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        report TEXT NOT NULL,
        submitted_by TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        probe TEXT NOT NULL,
        script_id INTEGER REFERENCES scripts(id),
        script_sha256 TEXT,
        target_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        host TEXT NOT NULL,
        duration_s INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        requester TEXT NOT NULL,
        status TEXT NOT NULL,
        decided_by TEXT,
        comment TEXT,
        created INTEGER NOT NULL,
        decided INTEGER
    );",
    // 2: runs of approved requests
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests(id),
        started_by TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        ended_at INTEGER,
        pid INTEGER,
        pgid INTEGER,
        proc_start INTEGER,
        output BLOB NOT NULL DEFAULT x'',
        output_bytes INTEGER NOT NULL DEFAULT 0,
        exit_status INTEGER,
        reason TEXT
    );
    CREATE INDEX runs_request ON runs(request_id);",
    // 3: requests belong to an incident (their runs' output is attached to
    // it); runs keep the BPF run time measured against the overhead budget.
    "ALTER TABLE requests ADD COLUMN incident_id INTEGER REFERENCES incidents(id) ON DELETE SET NULL;
    CREATE INDEX requests_incident ON requests(incident_id);
    ALTER TABLE runs ADD COLUMN bpf_run_time_ns INTEGER;
    ALTER TABLE runs ADD COLUMN bpf_cpu_percent REAL;
    ALTER TABLE runs ADD COLUMN artifact TEXT;",
    // 4: users can be disabled (their token stops working; history stays)
    "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;",
    // 5: an incident's notes, a timeline appended to by its responders
    "CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
        author TEXT NOT NULL,
        created INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX notes_incident ON notes(incident_id);",
    // 6: hardening (issue 11). An approval carries the approved script
    // bytes (run from this copy, never from the editable script row), a run
    // count, an expiry and whether runs may overlap. Refusals not yet
    // written to the audit log are counted here, so a restart loses none.
    "ALTER TABLE requests ADD COLUMN script_body BLOB;
    ALTER TABLE requests ADD COLUMN max_runs INTEGER;
    ALTER TABLE requests ADD COLUMN approval_expires INTEGER;
    ALTER TABLE requests ADD COLUMN concurrent INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE refusals (
        key TEXT PRIMARY KEY,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        pending INTEGER NOT NULL,
        last_logged INTEGER NOT NULL
    );
    CREATE INDEX artifacts_uploader ON artifacts(uploaded_by);
    CREATE INDEX notes_author ON notes(author);",
    // 7: dispatch (issue 14). Agents pull the runs of their host: a run for
    // another host names its agent's host, and records when the agent
    // claimed it, its last heartbeat, and who asked it to stop.
    "CREATE TABLE agents (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        last_seen INTEGER
    );
    ALTER TABLE runs ADD COLUMN agent_host TEXT;
    ALTER TABLE runs ADD COLUMN claimed_at INTEGER;
    ALTER TABLE runs ADD COLUMN heartbeat INTEGER;
    ALTER TABLE runs ADD COLUMN stop_by TEXT;
    CREATE INDEX runs_agent ON runs(agent_host, status);",
];

/// Files of the store (the database, its WAL and shared-memory files, the
/// audit head copy) are readable by their owner only: they hold run
/// outputs and token hashes.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` empty with [`FILE_MODE`] if it does not exist, and sets
/// that mode on it and on its `-wal`/`-shm` companions if they do. SQLite
/// gives the companions the database file's mode.
pub fn restrict(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(FILE_MODE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Opens (creating if needed) the database and applies pending migrations.
pub fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
    restrict(path).map_err(|e| anyhow::anyhow!("store {}: {e}", path.display()))?;
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;",
    )?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies every migration past the recorded schema version, each in its
/// own transaction.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")?;
    let current: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
    let current = current.unwrap_or(0) as usize;
    if current > MIGRATIONS.len() {
        anyhow::bail!(
            "database schema version {current} is newer than this holdup ({}); upgrade holdup",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Current schema version.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Column `idx` of `r`, a name parsed with `parse` (a status, say): an
/// unknown name is a conversion error, not a silent default.
pub(crate) fn named<T>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let s: String = r.get(idx)?;
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unknown value {s:?}").into(),
        )
    })
}
