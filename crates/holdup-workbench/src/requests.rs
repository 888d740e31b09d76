//! Probe requests: the policy checks, approval (which keeps the approved
//! script bytes), and the run gate.

use super::*;
use crate::store::requests::{self as db, DecisionRow, NewRequest};

/// What the run gate cleared: the request, and for a script the exact
/// bytes approved (hashed again here: these bytes are what runs).
pub(crate) struct Cleared {
    pub req: ProbeRequest,
    pub script: Option<Vec<u8>>,
    pub overhead: Overhead,
}

impl Workbench {
    /// The policy checks of a request made, or run, by a user of `role`:
    /// the probe's overhead class if it passes.
    fn request_policy(&self, role: Role, input: &RequestInput) -> WbResult<Overhead> {
        let p = &self.policy;
        if !p.probe_allowed(role.as_str(), &input.probe) {
            return Err(Error::forbidden(format!(
                "the policy does not allow role {} to request probe {:?} (allowed_probes.{})",
                role.as_str(),
                input.probe,
                role.as_str()
            )));
        }
        if input.duration_s == 0 || input.duration_s > p.max_duration_s {
            return Err(Error::forbidden(format!(
                "duration_s {} is outside 1..={} (policy max_duration_s)",
                input.duration_s, p.max_duration_s
            )));
        }
        if !p
            .allowed_target_kinds
            .iter()
            .any(|k| k == &input.target_kind)
        {
            return Err(Error::forbidden(format!(
                "target_kind {:?} is not allowed; the policy allows {:?}",
                input.target_kind.as_str(),
                p.allowed_target_kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
            )));
        }
        match input.target_kind {
            TargetKind::Pid if input.target.parse::<u32>().is_err() => {
                return Err(Error::bad_request(
                    "target must be a numeric pid for target_kind pid",
                ));
            }
            TargetKind::Cgroup if !input.target.starts_with('/') || input.target.contains("..") => {
                return Err(Error::bad_request(
                    "target must be an absolute cgroup path without '..' for target_kind cgroup",
                ));
            }
            _ => {}
        }
        if input.target_kind == TargetKind::Cgroup && !p.cgroup_allowed(&input.target) {
            return Err(Error::forbidden(format!(
                "cgroup {:?} is not under the policy's allowed_cgroup_prefixes {:?}",
                input.target, p.allowed_cgroup_prefixes
            )));
        }
        if input.target_kind == TargetKind::Pid && runs::is_this_host(&input.host) {
            self.check_pid_target(&input.target)?;
        }
        if !p.host_allowed(&input.host) {
            return Err(Error::forbidden(format!(
                "host {:?} is not in the policy's allowed_hosts",
                input.host
            )));
        }
        if input.probe.starts_with("script:") {
            return Ok(Overhead::High);
        }
        let b = BUILTIN_PROBES
            .iter()
            .find(|b| b.name == input.probe)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no catalog probe {:?}; see GET /api/catalog",
                    input.probe
                ))
            })?;
        if b.overhead > p.max_overhead {
            return Err(Error::forbidden(format!(
                "probe {} has overhead {:?}, over the policy's max_overhead {:?}",
                input.probe, b.overhead, p.max_overhead
            )));
        }
        Ok(b.overhead)
    }

    /// Creates a probe request after the policy checks; auto-approved when
    /// the policy allows it, pending otherwise.
    pub fn create_request(&self, actor: &User, input: RequestInput) -> WbResult<ProbeRequest> {
        for (f, v, max) in [
            ("probe", &input.probe, 256),
            ("target", &input.target, 4096),
            ("host", &input.host, 1024),
            ("purpose", &input.purpose, 16 * 1024),
        ] {
            check_text(f, v, max)?;
        }
        if input.purpose.trim().is_empty() {
            return Err(Error::bad_request(
                "purpose is required: say why this probe should run",
            ));
        }
        if let Some(inc) = input.incident_id {
            self.get_incident(inc)?;
        }
        self.request_policy(actor.role, &input)?;
        let script = if let Some(rest) = input.probe.strip_prefix("script:") {
            let sid: i64 = rest
                .parse()
                .map_err(|_| Error::bad_request("probe script:<id> needs a numeric id"))?;
            let s = self.get_script(sid)?;
            if s.status != ScriptStatus::Accepted {
                return Err(Error::forbidden(format!(
                    "script {sid} was refused by the static checks: {}",
                    json!(s.report.problems)
                )));
            }
            Some((sid, s.sha256))
        } else {
            None
        };
        let p = &self.policy;
        let auto = script.is_none()
            && p.auto_approve.iter().any(|a| a == &input.probe)
            && input.duration_s <= p.auto_approve_max_duration_s;
        let status = if auto {
            RequestStatus::Approved
        } else {
            RequestStatus::Pending
        };
        let (max_runs, expires) = if auto {
            (Some(p.approval_runs), Some(now() + p.approval_ttl_s as i64))
        } else {
            (None, None)
        };
        let id = {
            let mut conn = self.db();
            let tx = store::begin(&mut conn)?;
            let row = NewRequest {
                input: &input,
                script: script.as_ref().map(|(id, sha)| (*id, sha.as_str())),
                requester: &actor.name,
                status,
                max_runs,
                approval_expires: expires,
            };
            let id = db::insert(&tx, &row, now())?;
            audit::append(
                &tx,
                now(),
                &actor.name,
                "request.created",
                &json!({"id": id, "request": &input, "status": status, "script_sha256": script.as_ref().map(|s| &s.1)}),
            )?;
            if auto {
                audit::append(
                    &tx,
                    now(),
                    "policy",
                    "request.approved",
                    &json!({"id": id, "auto": true, "runs": max_runs, "expires": expires}),
                )?;
            }
            tx.commit()?;
            id
        };
        self.get_request(id)
    }

    /// One request.
    pub fn get_request(&self, id: i64) -> WbResult<ProbeRequest> {
        load_request(&self.db(), id)
    }

    /// Every request, oldest first.
    pub fn list_requests(&self) -> WbResult<Vec<ProbeRequest>> {
        let conn = self.db();
        db::ids(&conn)?
            .into_iter()
            .map(|id| load_request(&conn, id))
            .collect()
    }

    /// Approves or rejects a pending request. The requester may not decide
    /// their own request. Approving a script request checks, in the same
    /// transaction, that the script still has the hash it had when
    /// requested, and keeps those exact bytes with the approval: a run
    /// executes that copy, never the editable script.
    pub fn decide(
        &self,
        actor: &User,
        id: i64,
        approve: bool,
        comment: &str,
        grant: &Grant,
    ) -> WbResult<ProbeRequest> {
        check_text("comment", comment, 16 * 1024)?;
        let p = &self.policy;
        let runs = grant.runs.unwrap_or(p.approval_runs);
        if approve && (runs == 0 || runs > p.approval_max_runs) {
            return Err(Error::bad_request(format!(
                "runs {runs} is outside 1..={} (policy approval_max_runs)",
                p.approval_max_runs
            )));
        }
        {
            let mut conn = self.db();
            let tx = store::begin(&mut conn)?;
            let req = load_request(&tx, id)?;
            if req.requester == actor.name {
                return Err(Error::forbidden(format!(
                    "self-approval refused: {} made request {id}; another approver must decide it",
                    actor.name
                )));
            }
            if req.status != RequestStatus::Pending {
                return Err(Error::conflict(format!(
                    "request {id} is {}, not pending",
                    req.status
                )));
            }
            let body = if approve {
                pinned_body(&tx, &req, false)?
            } else {
                None
            };
            let status = if approve {
                RequestStatus::Approved
            } else {
                RequestStatus::Rejected
            };
            let expires = approve.then(|| now() + p.approval_ttl_s as i64);
            let decision = DecisionRow {
                status,
                decided_by: &actor.name,
                comment,
                script_body: body.as_deref(),
                max_runs: approve.then_some(runs),
                approval_expires: expires,
                concurrent: approve && grant.concurrent,
            };
            if !db::decide(&tx, id, &decision, now())? {
                return Err(Error::conflict(format!(
                    "request {id} was decided meanwhile"
                )));
            }
            audit::append(
                &tx,
                now(),
                &actor.name,
                &format!("request.{status}"),
                &json!({"id": id, "comment": comment, "script_sha256": req.script_sha256, "runs": approve.then_some(runs), "expires": expires, "concurrent": approve && grant.concurrent}),
            )?;
            tx.commit()?;
        }
        self.get_request(id)
    }

    /// The run gate, inside the caller's transaction: the caller is the
    /// requester or an approver; the request is approved, its approval not
    /// expired nor used up, no run of it is going (unless approved
    /// concurrent) and the server is under max_concurrent_runs; the policy
    /// in force *now* still allows it for its requester; a script still
    /// hashes to the pinned sha256, and so do the approved bytes.
    pub(crate) fn gate(&self, conn: &Connection, actor: &User, id: i64) -> WbResult<Cleared> {
        let req = load_request(conn, id)?;
        if req.requester != actor.name && actor.role < Role::Approver {
            return Err(Error::forbidden(format!(
                "only the requester ({}) or an approver may start request {id}",
                req.requester
            )));
        }
        if req.status != RequestStatus::Approved {
            return Err(Error::forbidden(format!(
                "request {id} is {}, not approved",
                req.status
            )));
        }
        let p = &self.policy;
        let expires = req
            .approval_expires
            .unwrap_or(req.decided.unwrap_or(req.created) + p.approval_ttl_s as i64);
        if now() >= expires {
            return Err(Error::forbidden(format!(
                "the approval of request {id} expired at {expires} (policy approval_ttl_s); make a new request"
            )));
        }
        let max_runs = req.max_runs.unwrap_or(p.approval_runs);
        if req.runs >= max_runs as i64 {
            return Err(Error::forbidden(format!(
                "request {id} was approved for {max_runs} run(s) and has had {}; make a new request",
                req.runs
            )));
        }
        let (mine, all) = store::runs::running_counts(conn, id)?;
        if mine > 0 && !req.concurrent {
            return Err(Error::conflict(format!(
                "a run of request {id} is going; its approval does not allow overlapping runs (approve with \"concurrent\": true)"
            )));
        }
        if all as usize >= p.max_concurrent_runs {
            return Err(Error::conflict(format!(
                "{all} runs are going on this server, the policy's max_concurrent_runs; retry when one has ended"
            )));
        }
        // The policy may have changed since approval, and so may the
        // requester's account.
        let role = match store::users::by_name(conn, &req.requester)? {
            Some(User { disabled: true, .. }) | None => {
                return Err(Error::forbidden(format!(
                    "the requester of request {id}, {}, is disabled or gone",
                    req.requester
                )))
            }
            Some(u) => u.role,
        };
        let overhead = self.request_policy(role, &req.input)?;
        let script = pinned_body(conn, &req, true)?;
        Ok(Cleared {
            req,
            script,
            overhead,
        })
    }

    /// The run gate the runner calls, as an API of its own: what may run.
    /// [`Workbench::start_run`] goes through the same gate.
    pub fn authorize_run(&self, actor: &User, id: i64) -> WbResult<Authorization> {
        let conn = self.db();
        match self.gate(&conn, actor, id) {
            Err(e) => {
                drop(conn);
                self.refuse_run(actor, id, &e);
                Err(e)
            }
            Ok(c) => {
                audit::append(
                    &conn,
                    now(),
                    &actor.name,
                    "run.authorized",
                    &json!({"request": id, "script_sha256": c.req.script_sha256}),
                )?;
                Ok(Authorization {
                    request: id,
                    authorized: true,
                    runs_left: c.req.max_runs.unwrap_or(self.policy.approval_runs) as i64
                        - c.req.runs,
                    probe: c.req.input.probe,
                    script_sha256: c.req.script_sha256,
                    duration_s: c.req.input.duration_s,
                    max_output_bytes: self.policy.max_output_bytes,
                })
            }
        }
    }

    /// Audits a run the gate refused (403s are audited by the API as
    /// `access.refused`; the others here, as `run.refused`).
    pub(crate) fn refuse_run(&self, actor: &User, id: i64, e: &Error) {
        if e.kind != ErrorKind::Forbidden {
            let _ = self.record_refusal(
                &actor.name,
                "run.refused",
                &format!("request {id}: {}", e.message),
                "refusals",
            );
        }
    }
}

/// One request, read on `conn`.
fn load_request(conn: &Connection, id: i64) -> WbResult<ProbeRequest> {
    db::get(conn, id)?.ok_or_else(|| Error::not_found(format!("no request {id}")))
}

/// A script request's pinned bytes, read on `conn`: the current script
/// must still hash to the pinned sha256 (409 otherwise, as it was changed
/// since), and with `approved`, the copy kept with the approval must too;
/// that copy is returned, else the script's current body.
pub(crate) fn pinned_body(
    conn: &Connection,
    req: &ProbeRequest,
    approved: bool,
) -> WbResult<Option<Vec<u8>>> {
    let (Some(sid), Some(pinned)) = (req.script_id, &req.script_sha256) else {
        return Ok(None);
    };
    let body = store::scripts::body(conn, sid)?;
    let body = body.ok_or_else(|| Error::not_found(format!("no script {sid}")))?;
    let actual = sha256_hex(body.as_bytes());
    if &actual != pinned {
        return Err(Error::conflict(format!(
            "script {sid} changed since request {} pinned it (pinned sha256 {pinned}, now {actual}); submit a new request for the new content",
            req.id
        )));
    }
    if !approved {
        return Ok(Some(body.into_bytes()));
    }
    let copy = db::approved_body(conn, req.id)?;
    // Approvals from before the copy was kept run the current body, which
    // was just checked against the pin.
    let bytes = copy.unwrap_or_else(|| body.into_bytes());
    let copy_sha = sha256_hex(&bytes);
    if &copy_sha != pinned {
        return Err(Error::conflict(format!(
            "the approved copy of script {sid} for request {} hashes to {copy_sha}, not the pinned {pinned}: the store was edited; make a new request",
            req.id
        )));
    }
    Ok(Some(bytes))
}
