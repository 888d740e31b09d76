//! Users (tokens by hash) and the refusal counters.

use crate::{Role, User};
use rusqlite::{params, Connection, OptionalExtension};

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: super::named(r, 2, Role::parse)?,
        disabled: r.get(3)?,
    })
}

/// The user whose token hashes to `token_hash`, disabled or not.
pub fn by_token_hash(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        "SELECT id, name, role, disabled FROM users WHERE token_hash = ?1",
        [token_hash],
        row_to_user,
    )
    .optional()
}

/// User `name`.
pub fn by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        "SELECT id, name, role, disabled FROM users WHERE name = ?1",
        [name],
        row_to_user,
    )
    .optional()
}

/// Every user, by id.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut st = conn.prepare("SELECT id, name, role, disabled FROM users ORDER BY id")?;
    let v = st.query_map([], row_to_user)?.collect();
    v
}

/// How many users there are.
pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
}

/// How many enabled admins there are.
pub fn enabled_admins(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
        [],
        |r| r.get(0),
    )
}

/// Inserts a user; its id.
pub fn insert(
    conn: &Connection,
    name: &str,
    role: Role,
    token_hash: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO users (name, role, token_hash, created) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.as_str(), token_hash, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Replaces user `name`'s token hash; whether the user exists.
pub fn set_token_hash(conn: &Connection, name: &str, token_hash: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET token_hash = ?1 WHERE name = ?2",
        params![token_hash, name],
    )? > 0)
}

/// Sets user `name`'s role and disabled flag.
pub fn set_role_disabled(
    conn: &Connection,
    name: &str,
    role: Role,
    disabled: bool,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE users SET role = ?1, disabled = ?2 WHERE name = ?3",
        params![role.as_str(), disabled, name],
    )?;
    Ok(())
}

/// A refusal counter: refusals not yet audited, and when the last entry was written.
pub fn refusal(conn: &Connection, key: &str) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row(
        "SELECT pending, last_logged FROM refusals WHERE key = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Counts one more refusal not yet audited.
pub fn set_refusal_pending(
    conn: &Connection,
    key: &str,
    pending: i64,
    reason: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE refusals SET pending = ?2, reason = ?3 WHERE key = ?1",
        params![key, pending, reason],
    )?;
    Ok(())
}

/// Records that refusals under `key` were just audited at `now`.
pub fn refusal_logged(
    conn: &Connection,
    key: &str,
    actor: &str,
    action: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO refusals (key, actor, action, reason, pending, last_logged) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        params![key, actor, action, reason, now],
    )?;
    Ok(())
}

/// A refusal counter with refusals not yet audited.
pub struct PendingRefusals {
    /// Actor and action, joined.
    pub key: String,
    /// Who was refused.
    pub actor: String,
    /// `auth.failure` or `access.refused`.
    pub action: String,
    /// The last reason.
    pub reason: String,
    /// How many.
    pub pending: i64,
}

/// Counters with refusals not yet audited.
pub fn pending_refusals(conn: &Connection) -> rusqlite::Result<Vec<PendingRefusals>> {
    let mut st =
        conn.prepare("SELECT key, actor, action, reason, pending FROM refusals WHERE pending > 0")?;
    let v = st
        .query_map([], |r| {
            Ok(PendingRefusals {
                key: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                reason: r.get(3)?,
                pending: r.get(4)?,
            })
        })?
        .collect();
    v
}

/// Marks the refusals under `key` audited at `now`.
pub fn clear_refusal(conn: &Connection, key: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE refusals SET pending = 0, last_logged = ?2 WHERE key = ?1",
        params![key, now],
    )?;
    Ok(())
}
