//! The audit table: the hash chain's rows (the chain itself is `crate::audit`).

use crate::audit::{Entry, Head};
use rusqlite::{params, Connection, OptionalExtension};

/// One row as stored, the details as their JSON text (the hash covers the text).
pub struct Row {
    /// Position in the chain.
    pub seq: i64,
    /// Unix time.
    pub time: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Details, JSON text.
    pub details: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The last entry's seq and hash (None when the log is empty).
pub fn last(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        },
    )
    .optional()
}

/// The hash of entry `seq`, if it is there.
pub fn hash_at(conn: &Connection, seq: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
        .optional()
}

/// Inserts a row.
pub fn insert(conn: &Connection, e: &Row) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (seq, time, actor, action, details, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![e.seq, e.time, e.actor, e.action, e.details, e.prev_hash, e.hash],
    )?;
    Ok(())
}

/// Entries with seq > `after`, at most `limit`, details parsed.
pub fn list(conn: &Connection, after: i64, limit: i64) -> rusqlite::Result<Vec<Entry>> {
    let mut st = conn.prepare(
        "SELECT seq, time, actor, action, details, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![after, limit], |r| {
        let details: String = r.get(4)?;
        Ok(Entry {
            seq: r.get(0)?,
            time: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Calls `f` with every row in storage order (not seq order: reordered
/// rows must show) until it returns false.
pub fn walk(conn: &Connection, mut f: impl FnMut(Row) -> bool) -> rusqlite::Result<()> {
    let mut st = conn.prepare(
        "SELECT seq, time, actor, action, details, prev_hash, hash FROM audit ORDER BY rowid",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let row = Row {
            seq: r.get(0)?,
            time: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            details: r.get(4)?,
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        };
        if !f(row) {
            break;
        }
    }
    Ok(())
}
