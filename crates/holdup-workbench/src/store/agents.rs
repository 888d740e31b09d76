//! Agents: one identity per host, tokens by hash.

use holdup_wb_api::Agent;
use rusqlite::{params, Connection, OptionalExtension};

const COLS: &str = "id, host, created_by, created, revoked, last_seen";

fn row_to_agent(r: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        host: r.get(1)?,
        created_by: r.get(2)?,
        created: r.get(3)?,
        revoked: r.get(4)?,
        last_seen: r.get(5)?,
    })
}

/// Inserts an agent for `host`; its id.
pub fn insert(
    conn: &Connection,
    host: &str,
    token_hash: &str,
    created_by: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO agents (host, token_hash, created_by, created) VALUES (?1, ?2, ?3, ?4)",
        params![host, token_hash, created_by, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The agent of `host`, revoked or not.
pub fn by_host(conn: &Connection, host: &str) -> rusqlite::Result<Option<Agent>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM agents WHERE host = ?1"),
        [host],
        row_to_agent,
    )
    .optional()
}

/// The agent whose token hashes to `token_hash`, revoked or not.
pub fn by_token_hash(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<Agent>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM agents WHERE token_hash = ?1"),
        [token_hash],
        row_to_agent,
    )
    .optional()
}

/// Every agent, by id.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Agent>> {
    let mut st = conn.prepare(&format!("SELECT {COLS} FROM agents ORDER BY id"))?;
    let v = st.query_map([], row_to_agent)?.collect();
    v
}

/// Gives `host`'s agent a new token (and takes back a revocation);
/// whether it exists.
pub fn set_token(conn: &Connection, host: &str, token_hash: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE agents SET token_hash = ?1, revoked = 0 WHERE host = ?2",
        params![token_hash, host],
    )? > 0)
}

/// Revokes `host`'s agent; whether it existed.
pub fn revoke(conn: &Connection, host: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE agents SET revoked = 1 WHERE host = ?1", [host])? > 0)
}

/// Records that `host`'s agent was heard from at `now`.
pub fn seen(conn: &Connection, host: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agents SET last_seen = ?2 WHERE host = ?1",
        params![host, now],
    )?;
    Ok(())
}
