//! Append-only, hash-chained audit log.
//!
//! Entry `n` stores `hash = sha256(prev_hash || "\n" || canonical(entry))`
//! where `prev_hash` is entry `n-1`'s hash (64 zeros for the first) and
//! `canonical` joins seq, time, actor, action and the details JSON text
//! exactly as stored. Editing, deleting or reordering any entry breaks the
//! chain at that entry; [`verify`] names the first bad seq.

use crate::store::audit as db;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as stored.
pub use holdup_wb_api::AuditEntry as Entry;
/// Result of [`verify`].
pub use holdup_wb_api::VerifyReport;

fn entry_hash(prev: &str, seq: i64, time: i64, actor: &str, action: &str, details: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    // Length-prefixed fields, so no field can bleed into the next.
    for field in [
        seq.to_string().as_str(),
        time.to_string().as_str(),
        actor,
        action,
        details,
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends an entry; call inside the same transaction as the state change.
pub fn append(
    conn: &Connection,
    time: i64,
    actor: &str,
    action: &str,
    details: &serde_json::Value,
) -> rusqlite::Result<i64> {
    let (seq, prev_hash) = match db::last(conn)? {
        Some(h) => (h.seq + 1, h.hash),
        None => (1, GENESIS.to_string()),
    };
    let details = details.to_string();
    let hash = entry_hash(&prev_hash, seq, time, actor, action, &details);
    db::insert(
        conn,
        &db::Row {
            seq,
            time,
            actor: actor.into(),
            action: action.into(),
            details,
            prev_hash,
            hash,
        },
    )?;
    Ok(seq)
}

/// Lists entries with seq > `after`, at most `limit`.
pub fn list(conn: &Connection, after: i64, limit: i64) -> rusqlite::Result<Vec<Entry>> {
    db::list(conn, after, limit)
}

/// Walks the whole chain in storage order and reports the first break.
pub fn verify(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    let mut expect_seq = 1i64;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    let mut broken: Option<(i64, String)> = None;
    db::walk(conn, |r| {
        n += 1;
        let seq = r.seq;
        if seq != expect_seq {
            broken = Some((
                seq,
                format!("expected seq {expect_seq} but found {seq}: entries deleted or reordered"),
            ));
        } else if r.prev_hash != prev {
            broken = Some((
                seq,
                format!(
                    "seq {seq}: prev_hash does not match the hash of seq {}",
                    seq - 1
                ),
            ));
        } else if entry_hash(&r.prev_hash, seq, r.time, &r.actor, &r.action, &r.details) != r.hash {
            broken = Some((
                seq,
                format!("seq {seq}: content does not match its hash (edited)"),
            ));
        }
        prev = r.hash;
        expect_seq += 1;
        broken.is_none()
    })?;
    Ok(match broken {
        Some((seq, reason)) => VerifyReport {
            ok: false,
            entries: n,
            bad_seq: Some(seq),
            reason: Some(reason),
            head_hash: String::new(),
            head_copy_checked: false,
        },
        None => VerifyReport {
            ok: true,
            entries: n,
            bad_seq: None,
            reason: None,
            head_hash: prev,
            head_copy_checked: false,
        },
    })
}

/// The last entry of the log, kept outside the database as well: a chain
/// cut short at its end is still a valid chain, so only a copy of its head
/// kept elsewhere shows that entries were deleted from the end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

/// The head of the log in the database (None when empty).
pub fn head(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    db::last(conn)
}

/// Where the head copy of the store at `db` lives: beside it.
pub fn head_path(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".audit-head");
    db.with_file_name(name)
}

/// Reads the head copy; None if there is none.
pub fn read_head(path: &std::path::Path) -> anyhow::Result<Option<Head>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).map_err(|e| {
            anyhow::anyhow!("audit head file {} is unreadable: {e}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "reading audit head file {}: {e}",
            path.display()
        )),
    }
}

/// Replaces the head copy atomically (write, fsync, rename).
pub fn write_head(path: &std::path::Path, head: &Head) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("audit-head.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::store::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        crate::store::FILE_MODE,
    ))?;
    f.write_all(serde_json::to_string(head).unwrap_or_default().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Checks the database's log against the head copy: the entry the copy
/// names must still be in the log with the same hash. Err says what is wrong.
pub fn check_head(conn: &Connection, copy: &Head) -> rusqlite::Result<Result<(), String>> {
    let at = db::hash_at(conn, copy.seq)?;
    let last = head(conn)?.map_or(0, |h| h.seq);
    Ok(match at {
        None => Err(format!(
            "the audit log ends at seq {last}, but its head copy says it reached seq {} (hash {}): entries after seq {last} were deleted",
            copy.seq, copy.hash
        )),
        Some(h) if h != copy.hash => Err(format!(
            "entry seq {} has hash {h}, but the head copy recorded {}: the log was rewritten",
            copy.seq, copy.hash
        )),
        Some(_) => Ok(()),
    })
}
