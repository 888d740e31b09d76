//! User scripts with their check reports.

use crate::checks::CheckReport;
use crate::{Script, ScriptStatus};
use rusqlite::{params, Connection, OptionalExtension};

/// What a script's row holds besides its id and submitter.
pub struct ScriptRow<'a> {
    /// Script name.
    pub name: &'a str,
    /// bpftrace source.
    pub body: &'a str,
    /// sha256 of the body.
    pub sha256: &'a str,
    /// The checks' verdict.
    pub status: ScriptStatus,
    /// The checks' report.
    pub report: &'a CheckReport,
}

fn report_text(report: &CheckReport) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

/// Inserts a script; its id.
pub fn insert(
    conn: &Connection,
    s: &ScriptRow<'_>,
    submitted_by: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO scripts (name, body, sha256, status, report, submitted_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![s.name, s.body, s.sha256, s.status.as_str(), report_text(s.report), submitted_by, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Replaces script `id`'s body, hash and check results (the name stays).
pub fn update(conn: &Connection, id: i64, s: &ScriptRow<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE scripts SET body = ?1, sha256 = ?2, status = ?3, report = ?4 WHERE id = ?5",
        params![
            s.body,
            s.sha256,
            s.status.as_str(),
            report_text(s.report),
            id
        ],
    )?;
    Ok(())
}

/// Script `id`.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Script>> {
    conn.query_row(
        "SELECT id, name, body, sha256, status, report, submitted_by, created FROM scripts WHERE id = ?1",
        [id],
        |r| {
            let report: String = r.get(5)?;
            Ok(Script {
                id: r.get(0)?,
                name: r.get(1)?,
                body: r.get(2)?,
                sha256: r.get(3)?,
                status: super::named(r, 4, ScriptStatus::parse)?,
                report: serde_json::from_str(&report).unwrap_or_default(),
                submitted_by: r.get(6)?,
                created: r.get(7)?,
            })
        },
    )
    .optional()
}

/// Script `id`'s body as stored now.
pub fn body(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT body FROM scripts WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

/// An accepted script as the catalog lists it.
pub struct Accepted {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its pinned hash.
    pub sha256: String,
    /// Who submitted it.
    pub submitted_by: String,
}

/// Every accepted script, by id.
pub fn accepted(conn: &Connection) -> rusqlite::Result<Vec<Accepted>> {
    let mut st = conn.prepare(
        "SELECT id, name, sha256, submitted_by FROM scripts WHERE status = 'accepted' ORDER BY id",
    )?;
    let v = st
        .query_map([], |r| {
            Ok(Accepted {
                id: r.get(0)?,
                name: r.get(1)?,
                sha256: r.get(2)?,
                submitted_by: r.get(3)?,
            })
        })?
        .collect();
    v
}
