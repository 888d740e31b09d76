//! User bpftrace scripts: submitted and changed (checked each time), and
//! the catalog.

use super::*;

impl Workbench {
    fn run_checks(&self, body: &str) -> WbResult<checks::CheckReport> {
        Ok(checks::check(body, &self.policy))
    }

    /// Stores a user script with its check report. A refused script is
    /// stored too (status `refused`), so the refusal is on record.
    pub fn submit_script(&self, actor: &User, name: &str, body: &str) -> WbResult<Script> {
        validate_name(name)?;
        check_text("body", body, 256 * 1024)?;
        let report = self.run_checks(body)?;
        let status = if report.accepted {
            "accepted"
        } else {
            "refused"
        };
        let sha = sha256_hex(body.as_bytes());
        let report_json = serde_json::to_value(&report).unwrap_or_default();
        let id = {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO scripts (name, body, sha256, status, report, submitted_by, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, body, sha, status, report_json.to_string(), actor.name, now()],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                &tx,
                now(),
                &actor.name,
                "script.submitted",
                &json!({"id": id, "name": name, "sha256": sha}),
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "script.checked",
                &json!({"id": id, "sha256": sha, "status": status, "problems": report.problems}),
            )?;
            tx.commit()?;
            id
        };
        self.get_script(id)
    }

    /// Replaces a script's body (its submitter or an admin); re-checks it.
    /// Requests pinned to the old hash stop being runnable.
    pub fn update_script(&self, actor: &User, id: i64, body: &str) -> WbResult<Script> {
        check_text("body", body, 256 * 1024)?;
        let old = self.get_script(id)?;
        if old.submitted_by != actor.name && actor.role < Role::Admin {
            return Err(Error::forbidden(format!(
                "only the submitter ({}) or an admin may change script {id}",
                old.submitted_by
            )));
        }
        let report = self.run_checks(body)?;
        let status = if report.accepted {
            "accepted"
        } else {
            "refused"
        };
        let sha = sha256_hex(body.as_bytes());
        {
            let mut conn = self.db();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE scripts SET body = ?1, sha256 = ?2, status = ?3, report = ?4 WHERE id = ?5",
                params![
                    body,
                    sha,
                    status,
                    serde_json::to_value(&report)
                        .unwrap_or_default()
                        .to_string(),
                    id
                ],
            )?;
            audit::append(
                &tx,
                now(),
                &actor.name,
                "script.updated",
                &json!({"id": id, "old_sha256": old.sha256, "sha256": sha}),
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "script.checked",
                &json!({"id": id, "sha256": sha, "status": status, "problems": report.problems}),
            )?;
            tx.commit()?;
        }
        self.get_script(id)
    }

    pub fn get_script(&self, id: i64) -> WbResult<Script> {
        self.db()
            .query_row(
                "SELECT id, name, body, sha256, status, report, submitted_by, created FROM scripts WHERE id = ?1",
                [id],
                |r| {
                    let report: String = r.get(5)?;
                    Ok(Script {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        body: r.get(2)?,
                        sha256: r.get(3)?,
                        status: crate::store::named(r, 4, ScriptStatus::parse)?,
                        report: serde_json::from_str(&report).unwrap_or_default(),
                        submitted_by: r.get(6)?,
                        created: r.get(7)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| Error::not_found(format!("no script {id}")))
    }

    /// The catalog: built-in probes and accepted user scripts.
    pub fn catalog(&self) -> WbResult<Catalog> {
        let conn = self.db();
        let mut st = conn.prepare(
            "SELECT id, name, sha256, submitted_by FROM scripts WHERE status = 'accepted' ORDER BY id",
        )?;
        let scripts: Vec<CatalogScript> = st
            .query_map([], |r| {
                Ok(CatalogScript {
                    probe: format!("script:{}", r.get::<_, i64>(0)?),
                    name: r.get(1)?,
                    sha256: r.get(2)?,
                    submitted_by: r.get(3)?,
                    overhead: Overhead::High,
                    budget_percent: self.policy.overhead_budget_percent.high,
                })
            })?
            .collect::<Result<_, _>>()?;
        let p = &self.policy;
        // Each probe with the bounds a run of it gets under this policy.
        let builtin = BUILTIN_PROBES
            .iter()
            .map(|b| CatalogProbe {
                name: b.name.into(),
                description: b.description.into(),
                overhead: b.overhead,
                budget_percent: p.overhead_budget_percent.for_class(b.overhead),
                max_duration_s: p.max_duration_s,
                max_output_bytes: p.max_output_bytes,
                auto_approve_max_duration_s: p
                    .auto_approve
                    .iter()
                    .any(|a| a == b.name)
                    .then_some(p.auto_approve_max_duration_s),
                allowed: b.overhead <= p.max_overhead,
            })
            .collect();
        Ok(Catalog {
            builtin,
            scripts,
            script_budget_percent: p.overhead_budget_percent.high,
            max_duration_s: p.max_duration_s,
            max_output_bytes: p.max_output_bytes,
        })
    }
}
