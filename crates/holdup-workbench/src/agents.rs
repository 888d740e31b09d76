//! Dispatch: agents on other hosts pull the runs of their host, enforce
//! the same bounds there, send heartbeats while a run goes and upload its
//! output. Each agent has its own identity and token (created, rotated and
//! revoked by an admin, audited); a run whose agent goes quiet is marked
//! interrupted by [`Workbench::sweep_agent_runs`].

use super::*;
use crate::store::{agents as db, runs as run_db};
use holdup_wb_api::{Agent, DispatchedRun, Heartbeat, HeartbeatAnswer, RunEnd};

/// A new agent token: `hwa_` + 32 random bytes in hex. Only its sha256 is stored.
fn new_agent_token() -> WbResult<String> {
    let t = new_token().map_err(|e| Error::internal(e.to_string()))?;
    Ok(t.replacen("hwb_", "hwa_", 1))
}

/// A host name as agents and requests name it: 1-253 of `A-Z a-z 0-9 . _ -`.
fn validate_host(host: &str) -> WbResult<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "host {host:?} is not a host name (1-253 of A-Z a-z 0-9 . _ -)"
        )))
    }
}

impl Workbench {
    /// One change of `host`'s agent in a transaction, audited as `action`;
    /// the agent afterwards.
    fn change_agent(
        &self,
        actor: &User,
        host: &str,
        action: &str,
        change: impl FnOnce(&Connection) -> WbResult<()>,
    ) -> WbResult<Agent> {
        validate_host(host)?;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        change(&tx)?;
        audit::append(&tx, now(), &actor.name, action, &json!({"host": host}))?;
        let agent = db::by_host(&tx, host)?.ok_or_else(|| Error::internal("agent vanished"))?;
        tx.commit()?;
        Ok(agent)
    }

    /// Creates the agent identity of `host`; returns its token (shown once).
    pub fn create_agent(&self, actor: &User, host: &str) -> WbResult<(Agent, String)> {
        let token = new_agent_token()?;
        let agent = self.change_agent(actor, host, "agent.created", |tx| {
            if db::by_host(tx, host)?.is_some() {
                return Err(Error::conflict(format!(
                    "host {host} already has an agent; replace its token (POST /api/agents/{host}/token) instead"
                )));
            }
            db::insert(tx, host, &sha256_hex(token.as_bytes()), &actor.name, now())?;
            Ok(())
        })?;
        Ok((agent, token))
    }

    /// Replaces `host`'s agent token (and lifts a revocation); the old one
    /// is refused at once.
    pub fn rotate_agent_token(&self, actor: &User, host: &str) -> WbResult<(Agent, String)> {
        let token = new_agent_token()?;
        let agent = self.change_agent(actor, host, "agent.token_rotated", |tx| {
            if !db::set_token(tx, host, &sha256_hex(token.as_bytes()))? {
                return Err(Error::not_found(format!("no agent for host {host}")));
            }
            Ok(())
        })?;
        Ok((agent, token))
    }

    /// Revokes `host`'s agent: its token is refused from now on.
    pub fn revoke_agent(&self, actor: &User, host: &str) -> WbResult<Agent> {
        self.change_agent(actor, host, "agent.revoked", |tx| {
            if !db::revoke(tx, host)? {
                return Err(Error::not_found(format!("no agent for host {host}")));
            }
            Ok(())
        })
    }

    /// Every agent.
    pub fn list_agents(&self) -> WbResult<Vec<Agent>> {
        Ok(db::list(&self.db())?)
    }

    /// The agent a bearer token belongs to, not revoked. Refusals are
    /// audited like users' (`auth.failure`, rate-limited).
    pub fn authenticate_agent(&self, token: Option<&str>) -> WbResult<Agent> {
        let Some(token) = token else {
            self.record_refusal("anonymous", "auth.failure", "agent: no token", "failures")?;
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "no agent token: send `Authorization: Bearer <token>` (an admin creates one with `holdup wb agents create HOST`)",
            ));
        };
        let hash = sha256_hex(token.as_bytes());
        let agent = db::by_token_hash(&self.db(), &hash)?;
        match agent {
            Some(a) if !a.revoked => {
                db::seen(&self.db(), &a.host, now())?;
                Ok(a)
            }
            other => {
                let reason = match &other {
                    Some(a) => format!("agent of {} is revoked", a.host),
                    None => format!("unknown agent token (sha256 prefix {})", &hash[..12]),
                };
                self.record_refusal("anonymous", "auth.failure", &reason, "failures")?;
                Err(Error::new(
                    ErrorKind::Unauthenticated,
                    "unknown or revoked agent token: ask an admin for a new one (holdup wb agents rotate HOST)",
                ))
            }
        }
    }

    /// Reserves a run of request `id` for the agent of its host, through
    /// the same gate as a local run; the agent claims it with its next
    /// poll. No agent for the host (or a revoked one): 409.
    pub(crate) fn dispatch_run(&self, actor: &User, id: i64, host: &str) -> WbResult<Run> {
        let registered = db::by_host(&self.db(), host)?.is_some_and(|a| !a.revoked);
        if !registered {
            return Err(Error::conflict(format!(
                "request {id} names host {host:?}, but this server runs probes only on its own host ({}) and no agent is registered for {host:?}: an admin creates one (holdup wb agents create {host}) and runs `holdup wb agent` there",
                crate::runs::this_host()
            )));
        }
        let (_, run_id) = self.reserve_run(actor, id, Some(host))?;
        self.get_run(run_id)
    }

    /// Claims the oldest run waiting for `agent`: what to run, with the
    /// approved script bytes (hashed again against the pin) and the
    /// bounds. Audited `run.dispatched`.
    pub fn claim_run(&self, agent: &Agent) -> WbResult<Option<DispatchedRun>> {
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        // A long poll outlives its authentication: revoked meanwhile, the
        // agent gets nothing.
        if db::by_host(&tx, &agent.host)?.is_none_or(|a| a.revoked || a.id != agent.id) {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("the agent of {} was revoked", agent.host),
            ));
        }
        let Some((run_id, request_id)) = run_db::next_unclaimed(&tx, &agent.host)? else {
            return Ok(None);
        };
        let req = store::requests::get(&tx, request_id)?
            .ok_or_else(|| Error::not_found(format!("no request {request_id}")))?;
        let script = crate::requests::pinned_body(&tx, &req, true)?;
        let (overhead, sched_only) = match &script {
            Some(_) => (Overhead::High, false),
            None => {
                let b = BUILTIN_PROBES
                    .iter()
                    .find(|b| b.name == req.input.probe)
                    .ok_or_else(|| {
                        Error::not_found(format!("no catalog probe {:?}", req.input.probe))
                    })?;
                (b.overhead, b.sched_only)
            }
        };
        let script = script
            .map(|b| String::from_utf8(b).map_err(|_| Error::internal("script is not UTF-8")))
            .transpose()?;
        let run = DispatchedRun {
            run_id,
            request_id,
            probe: req.input.probe.clone(),
            sched_only,
            script_sha256: script.as_ref().map(|s| sha256_hex(s.as_bytes())),
            script,
            target_kind: req.input.target_kind,
            target: req.input.target.clone(),
            duration_s: req.input.duration_s,
            max_output_bytes: self.policy.max_output_bytes,
            overhead,
            budget_percent: self.policy.overhead_budget_percent.for_class(overhead),
        };
        run_db::claim(&tx, run_id, now())?;
        audit::append(
            &tx,
            now(),
            "system",
            "run.dispatched",
            &json!({"run": run_id, "request": request_id, "agent": agent.host, "probe": run.probe, "script_sha256": run.script_sha256, "overhead_budget_percent": run.budget_percent}),
        )?;
        tx.commit()?;
        Ok(Some(run))
    }

    /// Run `id`, checked to be `agent`'s, claimed and still running.
    fn agents_run(&self, conn: &Connection, agent: &Agent, id: i64) -> WbResult<run_db::AgentRun> {
        let r =
            run_db::agent_run(conn, id)?.ok_or_else(|| Error::not_found(format!("no run {id}")))?;
        if r.agent_host.as_deref() != Some(agent.host.as_str()) || !r.claimed {
            return Err(Error::forbidden(format!(
                "run {id} is not dispatched to the agent of {}",
                agent.host
            )));
        }
        if r.status != RunStatus::Running {
            return Err(Error::conflict(format!(
                "run {id} is {}, not running",
                r.status
            )));
        }
        Ok(r)
    }

    /// A heartbeat of `agent`'s run `id`: says whether someone stopped it.
    pub fn agent_heartbeat(
        &self,
        agent: &Agent,
        id: i64,
        hb: &Heartbeat,
    ) -> WbResult<HeartbeatAnswer> {
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let r = self.agents_run(&tx, agent, id)?;
        run_db::heartbeat(&tx, id, hb.pid, hb.bpf_run_time_ns, hb.output_bytes, now())?;
        tx.commit()?;
        Ok(HeartbeatAnswer { stop_by: r.stop_by })
    }

    /// The output of `agent`'s run `id`, kept until its end arrives.
    pub fn agent_output(&self, agent: &Agent, id: i64, data: &[u8]) -> WbResult<()> {
        if data.len() as u64 > self.policy.max_output_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("output of {} bytes is over the policy's max_output_bytes ({}): the agent must cut it", data.len(), self.policy.max_output_bytes),
            ));
        }
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        self.agents_run(&tx, agent, id)?;
        run_db::put_output(&tx, id, data)?;
        tx.commit()?;
        Ok(())
    }

    /// The end of `agent`'s run `id`: stored like a local run's end, with
    /// the output sent before (checked against the sha256 the agent says).
    pub fn agent_end(&self, agent: &Agent, id: i64, end: &RunEnd) -> WbResult<Run> {
        if matches!(end.status, RunStatus::Running | RunStatus::Interrupted) {
            return Err(Error::bad_request(format!(
                "a run ends {}, not {}",
                "finished, failed or stopped_*", end.status
            )));
        }
        let (r, out) = {
            let conn = self.db();
            let r = self.agents_run(&conn, agent, id)?;
            (r, run_db::row_output(&conn, id)?)
        };
        let sha = sha256_hex(&out);
        if sha != end.output_sha256 || out.len() as u64 != end.output_bytes {
            return Err(Error::conflict(format!(
                "run {id}: the output received ({} bytes, sha256 {sha}) is not what the agent ended with ({} bytes, sha256 {}); send it again",
                out.len(), end.output_bytes, end.output_sha256
            )));
        }
        let ext = if run_is_script(&self.db(), id)? {
            "json"
        } else {
            "rec"
        };
        let name = format!("run-{id}.{ext}");
        self.finish_run(&crate::runs::Finish {
            run_id: id,
            attach: r.incident_id.map(|i| (i, name.as_str())),
            out: &out,
            status: end.status,
            reason: &end.reason,
            code: end.exit_status,
            bpf_run_time_ns: end.bpf_run_time_ns,
            bpf_programs: end.bpf_programs,
            cpu_percent: end.bpf_cpu_percent,
            peak_percent: end.peak_interval_percent,
            agent: Some(&agent.host),
        })?;
        self.get_run(id)
    }

    /// Marks interrupted every run whose agent has sent no heartbeat for
    /// the policy's `agent_heartbeat_timeout_s` (or that no agent claimed
    /// by its deadline plus that long). Audited `run.interrupted`.
    pub fn sweep_agent_runs(&self) -> WbResult<usize> {
        let timeout = self.policy.agent_heartbeat_timeout_s as i64;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let silent = run_db::silent(&tx, now() - timeout)?;
        for s in &silent {
            let reason = match s.heartbeat {
                Some(t) => format!(
                    "the agent of {} stopped sending heartbeats (last {} s ago; policy agent_heartbeat_timeout_s = {timeout})",
                    s.agent_host,
                    now() - t
                ),
                None => format!(
                    "no agent of {} claimed the run by its deadline (plus agent_heartbeat_timeout_s = {timeout} s): is `holdup wb agent` running there?",
                    s.agent_host
                ),
            };
            run_db::end_without_output(&tx, s.id, RunStatus::Interrupted, now(), &reason)?;
            audit::append(
                &tx,
                now(),
                "system",
                "run.interrupted",
                &json!({"run": s.id, "agent": s.agent_host, "reason": reason}),
            )?;
        }
        tx.commit()?;
        Ok(silent.len())
    }
}

/// Whether run `id`'s probe is a user script.
fn run_is_script(conn: &Connection, id: i64) -> WbResult<bool> {
    let run = run_db::get(conn, id)?.ok_or_else(|| Error::not_found(format!("no run {id}")))?;
    Ok(run.probe.starts_with("script:"))
}
