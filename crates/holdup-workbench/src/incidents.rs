//! Incidents, their notes and artifacts (evidence: never replaced), and
//! the diagnosis of recorded artifacts.

use super::*;

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

use crate::store::incidents as db;

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
    match db::artifact_sha(conn, incident, name)? {
        Some(old) if old == sha => return Ok(sha),
        Some(old) => {
            return Err(Error::conflict(format!(
                "incident {incident} already has an artifact {name} (sha256 {old}); artifacts are never replaced: upload under another name"
            )))
        }
        None => {}
    }
    db::insert_artifact(conn, incident, name, &sha, data, actor, now())?;
    let mut d = json!({"incident": incident, "name": name, "sha256": sha, "bytes": data.len()});
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), details) {
        d.extend(extra);
    }
    audit::append(conn, now(), actor, "artifact.uploaded", &d)?;
    Ok(sha)
}

impl Workbench {
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
            let tx = store::begin(&mut conn)?;
            self.check_note_quota(&tx, &actor.name, input.notes.len(), 0)?;
            let id = db::insert(&tx, &input, &actor.name, now())?;
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
            let tx = store::begin(&mut conn)?;
            let Some((owner, old_notes)) = db::owner_and_notes_len(&tx, id)? else {
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
            if !db::update(&tx, id, &input)? {
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
        let tx = store::begin(&mut conn)?;
        if !db::delete(&tx, id)? {
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
        db::get(&self.db(), id)?.ok_or_else(|| Error::not_found(format!("no incident {id}")))
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
        let used = db::note_bytes_of(conn, author)?;
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
            let tx = store::begin(&mut conn)?;
            if !db::exists(&tx, incident)? {
                return Err(Error::not_found(format!("no incident {incident}")));
            }
            self.check_note_quota(&tx, &actor.name, text.len(), 0)?;
            db::insert_note(&tx, incident, &actor.name, now(), text)?;
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
    ) -> WbResult<Diagnosis> {
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
        Ok(Diagnosis {
            artifact: report,
            top: serde_json::to_value(d.top()).unwrap_or_default(),
            text,
        })
    }

    pub fn list_incidents(&self) -> WbResult<Vec<Incident>> {
        let ids = db::ids(&self.db())?;
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
        let tx = store::begin(&mut conn)?;
        if !db::exists(&tx, incident)? {
            return Err(Error::not_found(format!("no incident {incident}")));
        }
        let used = db::artifact_bytes_of(&tx, &actor.name)?;
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
        db::artifact(&self.db(), incident, name)?
            .ok_or_else(|| Error::not_found(format!("incident {incident} has no artifact {name}")))
    }
}
