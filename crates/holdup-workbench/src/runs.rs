//! Runs: executing an approved request on this host, bounded in time and
//! output, and never outliving its bound across a server restart.

use crate::output::{Live, LiveBuf, SharedOutput};
pub use crate::output::{Output, RecordCommand, RecordTarget};
use crate::store::{self, runs as db};
use crate::{
    audit, now, overhead, Error, ErrorKind, Run, RunStatus, TargetKind, User, WbResult, Workbench,
};
use bytes::Bytes;
pub use holdup_runner::proc_start_time;
use holdup_runner::{kill_group, Stop, KILL_GRACE, OUTPUT_CHECK, OVERHEAD_INTERVAL, STDERR_KEPT};
use rusqlite::Connection;
use serde_json::json;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// How much output `GET` returns as text.
pub const OUTPUT_TEXT_LIMIT: usize = 64 * 1024;

/// This host's name.
pub fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a request's host is the one this server runs on: its hostname or
/// a loopback name. Runs execute only here (an agent on other hosts is the
/// seam left for later: [`Workbench::start_run`] refuses other hosts).
pub fn is_this_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host == this_host()
}

/// The start of a run's output as text; binary output (a recording) is
/// described instead of being shown as mojibake.
pub(crate) fn output_text(out: &[u8], total: i64) -> String {
    let head = &out[..out.len().min(OUTPUT_TEXT_LIMIT)];
    match std::str::from_utf8(head) {
        Ok(t) => t.to_string(),
        // cut inside a multi-byte character at the limit: still text
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()
        }
        Err(_) => format!(
            "(binary output, {total} bytes: a holdup recording is shown as plots; download it from the incident or /api/runs/ID/output)"
        ),
    }
}

/// At open: every run still `running` belongs to a previous server process.
/// Kill its process group if it is still the same process (pid and start
/// time match), and mark it `interrupted`, audited.
pub(crate) fn interrupt_stale(conn: &mut Connection) -> anyhow::Result<()> {
    for db::Going {
        id,
        pid,
        pgid,
        proc_start: start,
    } in db::going(conn)?
    {
        let mut killed = false;
        if let (Some(pid), Some(start)) = (pid, start) {
            if proc_start_time(pid) == Some(start) {
                kill_group(pgid.unwrap_or(pid), libc::SIGKILL);
                killed = true;
            }
        }
        let reason = if killed {
            "the server stopped while this run was running; its process group was still alive and was killed at restart"
        } else {
            "the server stopped while this run was running; its process was already gone at restart"
        };
        let tx = store::begin(conn)?;
        db::end_without_output(&tx, id, RunStatus::Interrupted, now(), reason)?;
        audit::append(
            &tx,
            now(),
            "system",
            "run.interrupted",
            &json!({"run": id, "pid": pid, "killed": killed}),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// A run this server process is watching.
pub(crate) struct ActiveRun {
    /// Taken by the first stop.
    stop: Option<oneshot::Sender<String>>,
    live: Live,
}

/// What the watcher of one run needs.
struct Watch {
    run_id: i64,
    child: tokio::process::Child,
    pgid: i64,
    bound: Duration,
    max_output: usize,
    budget: overhead::Budget,
    stop_rx: oneshot::Receiver<String>,
    /// Where stdout goes as it arrives (readable while the run goes).
    stdout_buf: Arc<std::sync::Mutex<LiveBuf>>,
    /// The recording file of a built-in probe (its output).
    recording: Option<std::path::PathBuf>,
    /// Attach the output to this incident, as this artifact name.
    attach: Option<(i64, String)>,
    dir: std::path::PathBuf,
    _stats: overhead::StatsGuard,
}

impl Workbench {
    /// A pid target must exist here and, by policy, have an allowed name.
    pub(crate) fn check_pid_target(&self, pid: &str) -> WbResult<()> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .map_err(|_| {
                Error::bad_request(format!("no process {pid} on this host ({})", this_host()))
            })?;
        if !self.policy.pid_comm_allowed(&comm) {
            return Err(Error::forbidden(format!(
                "process {pid} is {comm:?}, which the policy's allowed_pid_comms {:?} does not allow tracing",
                self.policy.allowed_pid_comms
            )));
        }
        Ok(())
    }

    /// Output so far of a run this server is watching.
    fn live_output(&self, id: i64) -> Option<Live> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|a| a.live.clone())
    }

    /// [`Workbench::get_run`] on the blocking pool, for async callers.
    async fn get_run_off_worker(self: &Arc<Self>, id: i64) -> WbResult<Run> {
        let wb = self.clone();
        crate::api::blocking(move || wb.get_run(id)).await
    }

    /// One run, with the start of its output as text (so far, while it
    /// runs).
    pub fn get_run(&self, id: i64) -> WbResult<Run> {
        let mut run =
            db::get(&self.db(), id)?.ok_or_else(|| Error::not_found(format!("no run {id}")))?;
        if run.status == RunStatus::Running {
            let (head, len) = match self.live_output(id) {
                Some(Live::Stdout(b)) => {
                    let b = b.lock().unwrap_or_else(|e| e.into_inner());
                    (b.head(OUTPUT_TEXT_LIMIT), b.len)
                }
                Some(Live::File(f)) => {
                    use std::io::Read;
                    let max = self.policy.max_output_bytes;
                    let len = std::fs::metadata(&f).map_or(0, |m| m.len().min(max)) as usize;
                    let mut head = Vec::new();
                    if let Ok(file) = std::fs::File::open(&f) {
                        let _ = file.take(OUTPUT_TEXT_LIMIT as u64).read_to_end(&mut head);
                    }
                    (head, len)
                }
                None => return Ok(run),
            };
            run.output_bytes = len as i64;
            run.output_truncated = len > OUTPUT_TEXT_LIMIT;
            run.output = Some(output_text(&head, run.output_bytes));
        }
        Ok(run)
    }

    /// The whole output of a run: so far while it runs, else as stored
    /// (in its incident's artifact, or in the run's row when it has none).
    /// Concurrent readers of one stored output share one copy.
    pub fn run_output(&self, id: i64) -> WbResult<Output> {
        match self.live_output(id) {
            Some(Live::Stdout(b)) => {
                let b = b.lock().unwrap_or_else(|e| e.into_inner());
                return Ok(Output::Chunks(b.chunks.clone()));
            }
            Some(Live::File(f)) => return Ok(Output::File(f, self.policy.max_output_bytes)),
            None => {}
        }
        let mut cache = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = cache.get(&id).and_then(|w| w.upgrade()) {
            return Ok(Output::Stored(Bytes::from_owner(SharedOutput(shared))));
        }
        let data = db::stored_output(&self.db(), id)?
            .ok_or_else(|| Error::not_found(format!("no run {id}")))?;
        let shared = Arc::new(data);
        cache.insert(id, Arc::downgrade(&shared));
        Ok(Output::Stored(Bytes::from_owner(SharedOutput(shared))))
    }

    /// The runs of one request, oldest first, without output.
    pub fn list_runs(&self, request_id: i64) -> WbResult<Vec<Run>> {
        self.get_request(request_id)?;
        Ok(db::of_request(&self.db(), request_id)?)
    }

    /// The latest runs (of one incident, if given), newest first, without
    /// output.
    pub fn recent_runs(&self, incident: Option<i64>, limit: i64) -> WbResult<Vec<Run>> {
        let limit = limit.clamp(1, 1000);
        Ok(db::recent(&self.db(), incident, limit)?)
    }

    /// Stops a running run now (the requester or an approver) and returns
    /// it once it has ended `stopped_by_user` (or as it is after 5 s).
    pub async fn stop_run(self: &Arc<Self>, actor: &User, id: i64) -> WbResult<Run> {
        let run = self.get_run_off_worker(id).await?;
        let wb = self.clone();
        let request_id = run.request_id;
        let req = crate::api::blocking(move || wb.get_request(request_id)).await?;
        if req.requester != actor.name && actor.role < crate::Role::Approver {
            return Err(Error::forbidden(format!(
                "only the requester ({}) or an approver may stop run {id}",
                req.requester
            )));
        }
        if run.status == RunStatus::Running && !is_this_host(&req.input.host) {
            // Its agent stops it at its next heartbeat.
            let (wb, who) = (self.clone(), actor.name.clone());
            crate::api::blocking(move || Ok(db::request_stop(&wb.db(), id, &who)?)).await?;
        } else if self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
            .and_then(|a| a.stop.take())
            .is_none_or(|tx| tx.send(actor.name.clone()).is_err())
        {
            return Err(Error::conflict(format!(
                "run {id} is {}, not running",
                run.status
            )));
        }
        // The watcher signals the probe and records the end: SIGINT, at
        // most KILL_GRACE, then SIGKILL.
        let t0 = std::time::Instant::now();
        loop {
            let run = self.get_run_off_worker(id).await?;
            if run.status != RunStatus::Running
                || t0.elapsed() > KILL_GRACE + Duration::from_secs(3)
            {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a run of request `id`: the run gate ([`Workbench::gate`])
    /// and the reservation of the run in one transaction, then the probe
    /// in its own process group, watched by a task that enforces the
    /// approved duration, the policy's max_output_bytes and the overhead
    /// budget of the probe's class. A script runs from the bytes the gate
    /// cleared (the copy kept with the approval), written to a new file in
    /// the private scratch directory; `run.started` records their sha256.
    ///
    /// Blocking (store, files, process start): call it off the async
    /// workers, inside the runtime (the watcher is a tokio task).
    pub fn start_run(self: &Arc<Self>, actor: &User, id: i64) -> WbResult<Run> {
        let req = self.get_request(id)?;
        if !is_this_host(&req.input.host) {
            return self.dispatch_run(actor, id, &req.input.host);
        }
        if req.input.target_kind == TargetKind::Pid {
            // The pid may have been reused since approval.
            self.check_pid_target(&req.input.target)?;
        }
        // Without BPF stats the budget cannot be enforced: refuse, rather
        // than run unmetered.
        let stats = overhead::StatsGuard::enable().map_err(|e| {
            Error::new(ErrorKind::Unavailable,
                format!("cannot measure the run's overhead: enabling BPF stats failed ({e}); run the workbench as root (CAP_SYS_ADMIN)"),
            )
        })?;
        let (cleared, run_id) = self.reserve_run(actor, id, None)?;
        match self.spawn_run(actor, run_id, cleared, stats) {
            Ok(()) => self.get_run(run_id),
            Err(e) => {
                let _ = self.end_unstarted(run_id, &e.message);
                Err(e)
            }
        }
    }

    /// The run gate and the reservation of a run of request `id` (for the
    /// agent of `agent_host`, or here), in one transaction, audited
    /// `run.authorized`; a refusal is audited too.
    pub(crate) fn reserve_run(
        &self,
        actor: &User,
        id: i64,
        agent_host: Option<&str>,
    ) -> WbResult<(crate::Cleared, i64)> {
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let cleared = match self.gate(&tx, actor, id) {
            Ok(c) => c,
            Err(e) => {
                drop(tx);
                drop(conn);
                self.refuse_run(actor, id, &e);
                return Err(e);
            }
        };
        let started = now();
        let deadline = started + cleared.req.input.duration_s as i64;
        let run_id = match agent_host {
            Some(host) => db::reserve_for_agent(&tx, id, &actor.name, started, deadline, host)?,
            None => db::reserve(&tx, id, &actor.name, started, deadline)?,
        };
        audit::append(
            &tx,
            now(),
            &actor.name,
            "run.authorized",
            &json!({"request": id, "run": run_id, "script_sha256": cleared.req.script_sha256, "agent": agent_host}),
        )?;
        tx.commit()?;
        Ok((cleared, run_id))
    }

    /// Marks a reserved run whose probe could not be started as failed.
    fn end_unstarted(&self, run_id: i64, why: &str) -> WbResult<()> {
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        db::end_without_output(
            &tx,
            run_id,
            RunStatus::Failed,
            now(),
            &format!("the probe could not be started: {why}"),
        )?;
        audit::append(
            &tx,
            now(),
            "system",
            "run.stopped",
            &json!({"run": run_id, "status": "failed", "reason": why}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Starts the probe of a reserved run and its watcher.
    fn spawn_run(
        self: &Arc<Self>,
        actor: &User,
        run_id: i64,
        cleared: crate::Cleared,
        stats: overhead::StatsGuard,
    ) -> WbResult<()> {
        let req = &cleared.req;
        let id = req.id;
        let internal = |e: std::io::Error, what: &str| Error::internal(format!("{what}: {e}"));
        let dir = self
            .scratch
            .create_dir(&format!("run-{run_id}"))
            .map_err(|e| internal(e, "run directory"))?;
        let pid_target = (req.input.target_kind == "pid").then(|| req.input.target.clone());
        let mut recording = None;
        let mut ran_sha = None;
        let (mut cmd, ext) = if let Some(bytes) = &cleared.script {
            let file = dir.join("script.bt");
            crate::scratch::write_new(&file, bytes).map_err(|e| internal(e, "script file"))?;
            ran_sha = Some(crate::sha256_hex(bytes));
            let bin = std::env::var("HOLDUP_BPFTRACE").unwrap_or_else(|_| "bpftrace".into());
            let mut c = tokio::process::Command::new(bin);
            c.arg("-f").arg("json").arg(&file);
            if let Some(p) = &pid_target {
                c.arg(p);
            }
            (c, "json")
        } else {
            let probe = crate::BUILTIN_PROBES
                .iter()
                .find(|b| b.name == req.input.probe)
                .ok_or_else(|| {
                    Error::not_found(format!("no catalog probe {:?}", req.input.probe))
                })?;
            let bin = match std::env::var_os("HOLDUP_BIN") {
                Some(b) => std::path::PathBuf::from(b),
                None => std::env::current_exe().map_err(|e| internal(e, "holdup binary"))?,
            };
            if !bin.exists() {
                return Err(Error::new(ErrorKind::Unavailable,
                    format!("cannot run {}: the holdup binary {} is gone (replaced or deleted since the server started?); restart the server or set HOLDUP_BIN", req.input.probe, bin.display()),
                ));
            }
            let file = dir.join("recording.rec");
            let target = match req.input.target_kind {
                TargetKind::Pid => RecordTarget::Pid(
                    req.input
                        .target
                        .parse()
                        .map_err(|_| Error::bad_request("target must be a numeric pid"))?,
                ),
                TargetKind::Cgroup => RecordTarget::Cgroup(req.input.target.clone()),
                TargetKind::Host => RecordTarget::All,
            };
            let record = RecordCommand {
                target,
                sched_only: probe.sched_only,
                duration: Duration::from_secs(req.input.duration_s),
                output: file.clone(),
            };
            let mut c = tokio::process::Command::new(bin);
            c.args(record.args());
            recording = Some(file);
            (c, "rec")
        };
        let class = cleared.overhead;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // If the server process dies (even SIGKILL), the kernel kills the
        // probe: the parent-death signal fires when the forking thread exits,
        // and tokio's worker threads live as long as the runtime.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| internal(e, "starting the probe"))?;
        let pid = child.id().map(i64::from).unwrap_or(0);
        let start = proc_start_time(pid);
        let limit = self.policy.overhead_budget_percent.for_class(class);
        {
            let mut conn = self.db();
            let tx = store::begin(&mut conn)?;
            db::set_process(&tx, run_id, pid, start)?;
            audit::append(
                &tx,
                now(),
                &actor.name,
                "run.started",
                &json!({"run": run_id, "request": id, "probe": req.input.probe, "script_sha256": ran_sha, "pid": pid, "deadline": now() + req.input.duration_s as i64, "overhead_class": class, "overhead_budget_percent": limit}),
            )?;
            tx.commit()?;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let stdout_buf = Arc::new(std::sync::Mutex::new(LiveBuf::default()));
        let live = match &recording {
            Some(f) => Live::File(f.clone()),
            None => Live::Stdout(stdout_buf.clone()),
        };
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                run_id,
                ActiveRun {
                    stop: Some(stop_tx),
                    live,
                },
            );
        let w = Watch {
            run_id,
            child,
            pgid: pid,
            bound: Duration::from_secs(req.input.duration_s),
            max_output: self.policy.max_output_bytes as usize,
            budget: overhead::Budget::new(limit),
            stop_rx,
            stdout_buf,
            recording,
            attach: req
                .input
                .incident_id
                .map(|i| (i, format!("run-{run_id}.{ext}"))),
            dir,
            _stats: stats,
        };
        let wb = Arc::clone(self);
        tokio::spawn(async move { wb.watch(w).await });
        Ok(())
    }

    async fn watch(self: Arc<Self>, mut w: Watch) {
        let started = std::time::Instant::now();
        let mut stdout = w.child.stdout.take();
        let mut stderr = w.child.stderr.take();
        let err_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = e.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    if buf.len() < STDERR_KEPT {
                        buf.extend_from_slice(&chunk[..n.min(STDERR_KEPT - buf.len())]);
                    }
                }
            }
            buf
        });
        let deadline = tokio::time::sleep(w.bound);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(OUTPUT_CHECK);
        let mut meter = tokio::time::interval(OVERHEAD_INTERVAL);
        let mut bpf = overhead::GroupStats::default();
        let max = w.max_output;
        let buf = w.stdout_buf.clone();
        // Appends within the output bound; false once over it.
        let append = |data: &[u8]| {
            buf.lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(data, max)
        };
        let mut chunk = vec![0u8; 16384];
        let mut exited = None;
        let stop = loop {
            tokio::select! {
                st = w.child.wait() => break match st {
                    Ok(s) => {
                        exited = Some(s);
                        Stop::Exited { success: s.success(), how: s.to_string() }
                    }
                    Err(_) => Stop::Duration,
                },
                _ = &mut deadline => break Stop::Duration,
                who = &mut w.stop_rx => if let Ok(who) = who { break Stop::User(who) },
                n = async {
                    match stdout.as_mut() {
                        Some(s) => s.read(&mut chunk).await.ok(),
                        None => std::future::pending().await,
                    }
                } => match n {
                    Some(0) | None => stdout = None,
                    Some(n) => {
                        if !append(&chunk[..n]) {
                            break Stop::Output;
                        }
                    }
                },
                _ = tick.tick() => {
                    if let Some(f) = &w.recording {
                        let len = std::fs::metadata(f).map(|m| m.len() as usize).unwrap_or(0);
                        if len > max {
                            break Stop::Output;
                        }
                    }
                }
                at = meter.tick() => {
                    let pgid = w.pgid;
                    let now_stats = tokio::task::spawn_blocking(move || overhead::group_stats(pgid))
                        .await
                        .unwrap_or_default();
                    // Programs are unloaded when the probe exits; keep the
                    // last reading that still saw them.
                    if now_stats.programs > 0 {
                        bpf = now_stats;
                    }
                    let (pct, over) = w.budget.sample(now_stats.run_time_ns, at.into_std());
                    if over {
                        break Stop::Overhead(pct.unwrap_or(0.0));
                    }
                }
            }
        };
        let exit = match stop {
            Stop::Exited { .. } => exited,
            _ => {
                kill_group(w.pgid, libc::SIGINT);
                match tokio::time::timeout(KILL_GRACE, w.child.wait()).await {
                    Ok(Ok(s)) => Some(s),
                    _ => {
                        kill_group(w.pgid, libc::SIGKILL);
                        w.child.wait().await.ok()
                    }
                }
            }
        };
        let elapsed = started.elapsed();
        // Anything still in the pipe after the stop, within the bound.
        if let Some(s) = stdout.as_mut() {
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await
            {
                if n == 0 || !append(&chunk[..n]) {
                    break;
                }
            }
        }
        let err = tokio::time::timeout(Duration::from_secs(1), err_task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let code = exit.and_then(|s| s.code()).map(i64::from);
        let err_text = String::from_utf8_lossy(&err).trim().to_string();
        let limit = w.budget.limit_percent;
        let (status, reason) = stop.verdict(w.bound, max, limit, &err_text);
        let cpu_percent = holdup_runner::average_percent(bpf.run_time_ns, elapsed);
        // Storing is blocking work (file, SQLite): off the async workers.
        let wb = Arc::clone(&self);
        let _ = tokio::task::spawn_blocking(move || {
            let out = match &w.recording {
                Some(f) => {
                    use std::io::Read;
                    let mut data = Vec::new();
                    if let Ok(file) = std::fs::File::open(f) {
                        let _ = file.take(max as u64).read_to_end(&mut data);
                    }
                    data
                }
                None => buf.lock().unwrap_or_else(|e| e.into_inner()).concat(),
            };
            // A busy store (another process writing) must not lose the end.
            let mut res = wb.store_end(&w, &out, status, &reason, code, bpf, cpu_percent);
            for _ in 0..3 {
                if res.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
                res = wb.store_end(&w, &out, status, &reason, code, bpf, cpu_percent);
            }
            // Only now: until the end is stored, readers see the live output.
            wb.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&w.run_id);
            if let Err(e) = res {
                eprintln!(
                    "holdup workbench: recording the end of run {} failed: {e}",
                    w.run_id
                );
            }
            let _ = std::fs::remove_dir_all(&w.dir);
        })
        .await;
    }

    /// Stores how a run this server watched ended.
    #[allow(clippy::too_many_arguments)]
    fn store_end(
        &self,
        w: &Watch,
        out: &[u8],
        status: RunStatus,
        reason: &str,
        code: Option<i64>,
        bpf: overhead::GroupStats,
        cpu_percent: Option<f64>,
    ) -> WbResult<()> {
        self.finish_run(&Finish {
            run_id: w.run_id,
            attach: w.attach.as_ref().map(|(i, n)| (*i, n.as_str())),
            out,
            status,
            reason,
            code,
            bpf_run_time_ns: bpf.run_time_ns,
            bpf_programs: bpf.programs,
            cpu_percent,
            peak_percent: w.budget.peak_percent,
            agent: None,
        })
    }

    /// Stores how a run ended and its output: once, in its incident's
    /// artifact when it has one, else in the run's row; audited
    /// `run.stopped`.
    pub(crate) fn finish_run(&self, f: &Finish<'_>) -> WbResult<()> {
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let out = f.out;
        let sha = crate::sha256_hex(out);
        // The incident may have been deleted meanwhile: then there is
        // nothing to attach to.
        let attach = match f.attach {
            Some((inc, name)) => crate::store::incidents::exists(&tx, inc)?.then_some((inc, name)),
            None => None,
        };
        let in_row: &[u8] = if attach.is_some() { &[] } else { out };
        let end = db::End {
            status: f.status,
            output_in_row: in_row,
            output_bytes: out.len() as i64,
            exit_status: f.code,
            reason: f.reason,
            bpf_run_time_ns: f.bpf_run_time_ns as i64,
            bpf_cpu_percent: f.cpu_percent,
            artifact: attach.map(|a| a.1),
        };
        db::end(&tx, f.run_id, &end, now())?;
        let mut details = json!({"run": f.run_id, "status": f.status, "output_bytes": out.len(), "output_sha256": sha, "exit_status": f.code, "reason": f.reason, "bpf_run_time_ns": f.bpf_run_time_ns, "bpf_programs": f.bpf_programs, "bpf_cpu_percent": f.cpu_percent, "peak_interval_percent": f.peak_percent});
        if let Some(host) = f.agent {
            details["agent"] = json!(host);
        }
        audit::append(&tx, now(), "system", "run.stopped", &details)?;
        if let Some((inc, name)) = attach {
            crate::store_artifact(&tx, "system", inc, name, out, json!({"run": f.run_id}))?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// How a run ended, to store.
pub(crate) struct Finish<'a> {
    pub run_id: i64,
    /// The incident and artifact name its output goes to.
    pub attach: Option<(i64, &'a str)>,
    pub out: &'a [u8],
    pub status: RunStatus,
    pub reason: &'a str,
    pub code: Option<i64>,
    pub bpf_run_time_ns: u64,
    pub bpf_programs: usize,
    pub cpu_percent: Option<f64>,
    pub peak_percent: f64,
    /// The host of the agent that ran it.
    pub agent: Option<&'a str>,
}
