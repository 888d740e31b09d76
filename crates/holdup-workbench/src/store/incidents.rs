//! Incidents, their notes and artifacts.

use crate::{Incident, IncidentInput, Note};
use rusqlite::{params, Connection, OptionalExtension};

/// Whether incident `id` exists.
pub fn exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM incidents WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )
}

/// Inserts an incident; its id.
pub fn insert(
    conn: &Connection,
    input: &IncidentInput,
    created_by: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO incidents (title, service, host, start_time, end_time, notes, created_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![input.title, input.service, input.host, input.start_time, input.end_time, input.notes, created_by, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Who opened incident `id` and the length of its notes field.
pub fn owner_and_notes_len(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, i64)>> {
    conn.query_row(
        "SELECT created_by, length(notes) FROM incidents WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Replaces an incident's fields; whether it existed.
pub fn update(conn: &Connection, id: i64, input: &IncidentInput) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE incidents SET title = ?1, service = ?2, host = ?3, start_time = ?4, end_time = ?5, notes = ?6 WHERE id = ?7",
        params![input.title, input.service, input.host, input.start_time, input.end_time, input.notes, id],
    )?;
    Ok(n > 0)
}

/// Deletes an incident (its artifacts and notes cascade); whether it existed.
pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM incidents WHERE id = ?1", [id])? > 0)
}

/// Incident `id` with its artifact names and timeline.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Incident>> {
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
    let Some(mut inc) = inc else {
        return Ok(None);
    };
    let mut st = conn.prepare("SELECT name FROM artifacts WHERE incident_id = ?1 ORDER BY name")?;
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
    Ok(Some(inc))
}

/// Every incident's id, oldest first.
pub fn ids(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut st = conn.prepare("SELECT id FROM incidents ORDER BY id")?;
    let v = st.query_map([], |r| r.get(0))?.collect();
    v
}

/// Bytes of notes `author` has written: notes plus incidents' notes fields.
pub fn note_bytes_of(conn: &Connection, author: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT (SELECT COALESCE(SUM(length(text)), 0) FROM notes WHERE author = ?1) + (SELECT COALESCE(SUM(length(notes)), 0) FROM incidents WHERE created_by = ?1)",
        [author],
        |r| r.get(0),
    )
}

/// Appends a note to incident `incident`'s timeline.
pub fn insert_note(
    conn: &Connection,
    incident: i64,
    author: &str,
    now: i64,
    text: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO notes (incident_id, author, created, text) VALUES (?1, ?2, ?3, ?4)",
        params![incident, author, now, text],
    )?;
    Ok(())
}

/// The sha256 of artifact `name` of `incident`, if it exists.
pub fn artifact_sha(
    conn: &Connection,
    incident: i64,
    name: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT sha256 FROM artifacts WHERE incident_id = ?1 AND name = ?2",
        params![incident, name],
        |r| r.get(0),
    )
    .optional()
}

/// Inserts an artifact.
pub fn insert_artifact(
    conn: &Connection,
    incident: i64,
    name: &str,
    sha256: &str,
    data: &[u8],
    uploaded_by: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO artifacts (incident_id, name, sha256, data, uploaded_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![incident, name, sha256, data, uploaded_by, now],
    )?;
    Ok(())
}

/// Bytes of artifacts `user` has uploaded.
pub fn artifact_bytes_of(conn: &Connection, user: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(SUM(length(data)), 0) FROM artifacts WHERE uploaded_by = ?1",
        [user],
        |r| r.get(0),
    )
}

/// Artifact `name` of `incident`, if it exists.
pub fn artifact(conn: &Connection, incident: i64, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT data FROM artifacts WHERE incident_id = ?1 AND name = ?2",
        params![incident, name],
        |r| r.get(0),
    )
    .optional()
}
