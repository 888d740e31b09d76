//! User bpftrace scripts: submitted and changed (checked each time), and
//! the catalog.

use super::*;
use crate::store::scripts::{self as db, ScriptRow};

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
            ScriptStatus::Accepted
        } else {
            ScriptStatus::Refused
        };
        let sha = sha256_hex(body.as_bytes());
        let row = ScriptRow {
            name,
            body,
            sha256: &sha,
            status,
            report: &report,
        };
        let id = {
            let mut conn = self.db();
            let tx = store::begin(&mut conn)?;
            let id = db::insert(&tx, &row, &actor.name, now())?;
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
            ScriptStatus::Accepted
        } else {
            ScriptStatus::Refused
        };
        let sha = sha256_hex(body.as_bytes());
        {
            let mut conn = self.db();
            let tx = store::begin(&mut conn)?;
            let row = ScriptRow {
                name: &old.name,
                body,
                sha256: &sha,
                status,
                report: &report,
            };
            db::update(&tx, id, &row)?;
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
        db::get(&self.db(), id)?.ok_or_else(|| Error::not_found(format!("no script {id}")))
    }

    /// The catalog: built-in probes and accepted user scripts.
    pub fn catalog(&self) -> WbResult<Catalog> {
        let scripts: Vec<CatalogScript> = db::accepted(&self.db())?
            .into_iter()
            .map(|s| CatalogScript {
                probe: format!("script:{}", s.id),
                name: s.name,
                sha256: s.sha256,
                submitted_by: s.submitted_by,
                overhead: Overhead::High,
                budget_percent: self.policy.overhead_budget_percent.high,
            })
            .collect();
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
