//! Runs: executing an approved request on this host, bounded in time and
//! output, and never outliving its bound across a server restart.

use crate::{audit, now, ApiError, ApiResult, User, Workbench};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::json;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How much output `GET` returns as text.
pub const OUTPUT_TEXT_LIMIT: usize = 64 * 1024;
/// Grace between SIGINT and SIGKILL when a run is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub request_id: i64,
    pub started_by: String,
    pub status: String,
    pub started_at: i64,
    pub deadline: i64,
    pub ended_at: Option<i64>,
    pub pid: Option<i64>,
    pub pgid: Option<i64>,
    pub output_bytes: i64,
    pub exit_status: Option<i64>,
    pub reason: Option<String>,
    /// The output as (lossy UTF-8) text, at most [`OUTPUT_TEXT_LIMIT`] bytes.
    pub output: String,
    pub output_truncated: bool,
}

/// Start time of process `pid` (field 22 of /proc/PID/stat, clock ticks
/// since boot), or None if it does not exist. Used against pid reuse.
pub fn proc_start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and ')': split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn kill_group(pgid: i64, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), sig);
        }
    }
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let out: Vec<u8> = r.get(12)?;
    let truncated = out.len() > OUTPUT_TEXT_LIMIT;
    let text = String::from_utf8_lossy(&out[..out.len().min(OUTPUT_TEXT_LIMIT)]).into_owned();
    Ok(Run {
        id: r.get(0)?,
        request_id: r.get(1)?,
        started_by: r.get(2)?,
        status: r.get(3)?,
        started_at: r.get(4)?,
        deadline: r.get(5)?,
        ended_at: r.get(6)?,
        pid: r.get(7)?,
        pgid: r.get(8)?,
        output_bytes: r.get(9)?,
        exit_status: r.get(10)?,
        reason: r.get(11)?,
        output: text,
        output_truncated: truncated,
    })
}

const RUN_COLS: &str = "id, request_id, started_by, status, started_at, deadline, ended_at, pid, pgid, output_bytes, exit_status, reason, output";

/// At open: every run still `running` belongs to a previous server process.
/// Kill its process group if it is still the same process (pid and start
/// time match), and mark it `interrupted`, audited.
pub(crate) fn interrupt_stale(conn: &mut Connection) -> anyhow::Result<()> {
    // (run id, pid, pgid, process start time)
    type Stale = (i64, Option<i64>, Option<i64>, Option<i64>);
    let stale: Vec<Stale> = {
        let mut st =
            conn.prepare("SELECT id, pid, pgid, proc_start FROM runs WHERE status = 'running'")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, pid, pgid, start) in stale {
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
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE runs SET status = 'interrupted', ended_at = ?2, reason = ?3 WHERE id = ?1",
            params![id, now(), reason],
        )?;
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

/// What ended a run's wait loop.
enum Stop {
    Exited(std::process::ExitStatus),
    Duration,
    Output,
}

impl Workbench {
    pub fn get_run(&self, id: i64) -> ApiResult<Run> {
        self.db()
            .query_row(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                [id],
                row_to_run,
            )
            .optional()?
            .ok_or_else(|| ApiError::not_found(format!("no run {id}")))
    }

    pub fn list_runs(&self, request_id: i64) -> ApiResult<Vec<Run>> {
        self.get_request(request_id)?;
        let conn = self.db();
        let mut st = conn.prepare(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE request_id = ?1 ORDER BY id"
        ))?;
        let rows = st.query_map([request_id], row_to_run)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Starts a run of request `id`: the [`Workbench::authorize_run`] gate,
    /// then the probe in its own process group, watched by a task that
    /// enforces the approved duration and the policy's max_output_bytes.
    pub async fn start_run(self: &Arc<Self>, actor: &User, id: i64) -> ApiResult<Run> {
        self.authorize_run(actor, id)?;
        let req = self.get_request(id)?;
        let internal = |e: std::io::Error, what: &str| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("{what}: {e}"),
            )
        };
        let dir = self.scratch.join(format!("run-{id}-{}", now_nanos()));
        std::fs::create_dir_all(&dir).map_err(|e| internal(e, "scratch dir"))?;
        let pid_target = (req.input.target_kind == "pid").then(|| req.input.target.clone());
        let mut artifact = None;
        let mut cmd = if let Some(sid) = req.script_id {
            let s = self.get_script(sid)?;
            let file = dir.join("script.bt");
            std::fs::write(&file, s.body.as_bytes()).map_err(|e| internal(e, "script file"))?;
            let bin = std::env::var("HOLDUP_BPFTRACE").unwrap_or_else(|_| "bpftrace".into());
            let mut c = tokio::process::Command::new(bin);
            c.arg("-f").arg("json").arg(&file);
            if let Some(p) = &pid_target {
                c.arg(p);
            }
            c
        } else {
            let bin = match std::env::var_os("HOLDUP_BIN") {
                Some(b) => std::path::PathBuf::from(b),
                None => std::env::current_exe().map_err(|e| internal(e, "holdup binary"))?,
            };
            let file = dir.join("recording.rec");
            let mut c = tokio::process::Command::new(bin);
            c.arg("record");
            if let Some(p) = &pid_target {
                c.arg("--pid").arg(p);
            }
            c.arg("--duration")
                .arg(format!("{}s", req.input.duration_s))
                .arg("-o")
                .arg(&file);
            artifact = Some(file);
            c
        };
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
        let started = now();
        let deadline = started + req.input.duration_s as i64;
        let run_id = {
            let mut conn = self.db();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO runs (request_id, started_by, status, started_at, deadline, pid, pgid, proc_start) VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?5, ?6)",
                params![id, actor.name, started, deadline, pid, start],
            )?;
            let run_id = tx.last_insert_rowid();
            audit::append(
                &tx,
                now(),
                &actor.name,
                "run.started",
                &json!({"run": run_id, "request": id, "probe": req.input.probe, "script_sha256": req.script_sha256, "pid": pid, "deadline": deadline}),
            )?;
            tx.commit()?;
            run_id
        };
        let wb = Arc::clone(self);
        let bound = Duration::from_secs(req.input.duration_s);
        let max = self.policy.max_output_bytes as usize;
        tokio::spawn(async move {
            wb.watch(run_id, child, pid, bound, max, artifact, dir)
                .await;
        });
        self.get_run(run_id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn watch(
        &self,
        run_id: i64,
        mut child: tokio::process::Child,
        pgid: i64,
        bound: Duration,
        max: usize,
        artifact: Option<std::path::PathBuf>,
        dir: std::path::PathBuf,
    ) {
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let err_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = e.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    if buf.len() < 8192 {
                        buf.extend_from_slice(&chunk[..n.min(8192 - buf.len())]);
                    }
                }
            }
            buf
        });
        let deadline = tokio::time::sleep(bound);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut out: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16384];
        let stop = loop {
            tokio::select! {
                st = child.wait() => break match st {
                    Ok(s) => Stop::Exited(s),
                    Err(_) => Stop::Duration,
                },
                _ = &mut deadline => break Stop::Duration,
                n = async {
                    match stdout.as_mut() {
                        Some(s) => s.read(&mut chunk).await.ok(),
                        None => std::future::pending().await,
                    }
                } => match n {
                    Some(0) | None => stdout = None,
                    Some(n) => {
                        let room = max.saturating_sub(out.len());
                        out.extend_from_slice(&chunk[..n.min(room)]);
                        if n > room {
                            break Stop::Output;
                        }
                    }
                },
                _ = tick.tick() => {
                    if let Some(f) = &artifact {
                        let len = std::fs::metadata(f).map(|m| m.len() as usize).unwrap_or(0);
                        if len > max {
                            break Stop::Output;
                        }
                    }
                }
            }
        };
        let exit = match stop {
            Stop::Exited(s) => Some(s),
            _ => {
                kill_group(pgid, libc::SIGINT);
                match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(Ok(s)) => Some(s),
                    _ => {
                        kill_group(pgid, libc::SIGKILL);
                        child.wait().await.ok()
                    }
                }
            }
        };
        // Anything still in the pipe after the stop, within the bound.
        if let Some(s) = stdout.as_mut() {
            while out.len() < max {
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let room = max - out.len();
                        out.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    _ => break,
                }
            }
        }
        let err = tokio::time::timeout(Duration::from_secs(1), err_task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        if let Some(f) = &artifact {
            if let Ok(mut data) = std::fs::read(f) {
                data.truncate(max);
                out = data;
            }
        }
        let code = exit.and_then(|s| s.code()).map(i64::from);
        let err_text = String::from_utf8_lossy(&err).trim().to_string();
        let (status, reason) = match stop {
            Stop::Duration => (
                "stopped_duration",
                format!("stopped at the approved duration of {} s", bound.as_secs()),
            ),
            Stop::Output => (
                "stopped_output",
                format!("output exceeded the policy's max_output_bytes ({max}); the first {max} bytes are kept"),
            ),
            Stop::Exited(s) if s.success() => ("finished", "exited with status 0".to_string()),
            Stop::Exited(s) => ("failed", format!("exited with {s}; stderr: {err_text}")),
        };
        let res: ApiResult<()> = (|| {
            let mut conn = self.db();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, output = ?4, output_bytes = ?5, exit_status = ?6, reason = ?7 WHERE id = ?1",
                params![run_id, status, now(), out, out.len() as i64, code, reason],
            )?;
            audit::append(
                &tx,
                now(),
                "system",
                "run.stopped",
                &json!({"run": run_id, "status": status, "output_bytes": out.len(), "output_sha256": crate::sha256_hex(&out), "exit_status": code, "reason": reason}),
            )?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = res {
            eprintln!("holdup workbench: recording the end of run {run_id} failed: {e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
