//! Probe requests and their decisions.

use crate::{ProbeRequest, RequestInput, RequestStatus, TargetKind};
use rusqlite::{params, Connection, OptionalExtension};

/// What a new request's row holds besides its input.
pub struct NewRequest<'a> {
    /// The request as made.
    pub input: &'a RequestInput,
    /// For a script: its id and the sha256 pinned now.
    pub script: Option<(i64, &'a str)>,
    /// Who asked.
    pub requester: &'a str,
    /// `pending`, or `approved` by the policy.
    pub status: RequestStatus,
    /// Runs an approval by policy allows.
    pub max_runs: Option<u32>,
    /// When an approval by policy lapses.
    pub approval_expires: Option<i64>,
}

/// Inserts a request; its id.
pub fn insert(conn: &Connection, r: &NewRequest<'_>, now: i64) -> rusqlite::Result<i64> {
    let i = r.input;
    conn.execute(
        "INSERT INTO requests (probe, script_id, script_sha256, target_kind, target, host, duration_s, purpose, requester, status, created, incident_id, max_runs, approval_expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![i.probe, r.script.map(|s| s.0), r.script.map(|s| s.1), i.target_kind.as_str(), i.target, i.host, i.duration_s as i64, i.purpose, r.requester, r.status.as_str(), now, i.incident_id, r.max_runs, r.approval_expires],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Every request's id, oldest first.
pub fn ids(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut st = conn.prepare("SELECT id FROM requests ORDER BY id")?;
    let v = st.query_map([], |r| r.get(0))?.collect();
    v
}

/// A decision on a pending request.
pub struct DecisionRow<'a> {
    /// `approved` or `rejected`.
    pub status: RequestStatus,
    /// The approver.
    pub decided_by: &'a str,
    /// Why.
    pub comment: &'a str,
    /// The approved script bytes (script requests).
    pub script_body: Option<&'a [u8]>,
    /// Runs allowed.
    pub max_runs: Option<u32>,
    /// When the approval lapses.
    pub approval_expires: Option<i64>,
    /// Whether runs may overlap.
    pub concurrent: bool,
}

/// Records a decision if the request is still pending; whether it was.
pub fn decide(conn: &Connection, id: i64, d: &DecisionRow<'_>, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE requests SET status = ?1, decided_by = ?2, comment = ?3, decided = ?4, script_body = ?5, max_runs = ?6, approval_expires = ?7, concurrent = ?8 WHERE id = ?9 AND status = 'pending'",
        params![d.status.as_str(), d.decided_by, d.comment, now, d.script_body, d.max_runs, d.approval_expires, d.concurrent, id],
    )?;
    Ok(n == 1)
}

/// The script bytes kept with request `id`'s approval.
pub fn approved_body(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT script_body FROM requests WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
}

/// Request `id`, with how many runs it has had.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<ProbeRequest>> {
    conn.query_row(
        "SELECT id, probe, target_kind, target, host, duration_s, purpose, script_id, script_sha256, requester, status, decided_by, comment, created, decided, incident_id, max_runs, approval_expires, concurrent, (SELECT COUNT(*) FROM runs WHERE request_id = requests.id) FROM requests WHERE id = ?1",
        [id],
        |r| {
            Ok(ProbeRequest {
                id: r.get(0)?,
                input: RequestInput {
                    probe: r.get(1)?,
                    target_kind: super::named(r, 2, TargetKind::parse)?,
                    target: r.get(3)?,
                    host: r.get(4)?,
                    duration_s: r.get::<_, i64>(5)? as u64,
                    purpose: r.get(6)?,
                    incident_id: r.get(15)?,
                },
                script_id: r.get(7)?,
                script_sha256: r.get(8)?,
                requester: r.get(9)?,
                status: super::named(r, 10, RequestStatus::parse)?,
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
    .optional()
}
