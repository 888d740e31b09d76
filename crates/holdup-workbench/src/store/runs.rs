//! Runs: reserved, started, ended, interrupted; read with their request's
//! probe and incident, and their output where it is stored.

use crate::{Run, RunStatus};
use rusqlite::{params, Connection, OptionalExtension};

/// A run's stored output: its incident's artifact when it has one (the
/// output is stored once), else the run row's.
const STORED_OUTPUT: &str = "COALESCE((SELECT a.data FROM artifacts a WHERE a.incident_id = q.incident_id AND a.name = r.artifact), r.output)";

/// The start of [`STORED_OUTPUT`], for the text view.
const STORED_OUTPUT_HEAD: &str = "COALESCE((SELECT substr(a.data, 1, 65536) FROM artifacts a WHERE a.incident_id = q.incident_id AND a.name = r.artifact), substr(r.output, 1, 65536))";

/// Columns of [`row_to_run`], over `runs r JOIN requests q`.
const RUN_COLS: &str = "r.id, r.request_id, r.started_by, r.status, r.started_at, r.deadline, r.ended_at, r.pid, r.pgid, r.output_bytes, r.exit_status, r.reason, q.probe, q.incident_id, r.bpf_run_time_ns, r.bpf_cpu_percent, r.artifact";
const RUN_FROM: &str = "FROM runs r JOIN requests q ON q.id = r.request_id";

fn row_to_run(r: &rusqlite::Row<'_>, with_output: bool) -> rusqlite::Result<Run> {
    let out: Vec<u8> = if with_output {
        r.get::<_, Option<Vec<u8>>>(17)?.unwrap_or_default()
    } else {
        vec![]
    };
    let bytes: i64 = r.get(9)?;
    Ok(Run {
        id: r.get(0)?,
        request_id: r.get(1)?,
        started_by: r.get(2)?,
        status: super::named(r, 3, RunStatus::parse)?,
        started_at: r.get(4)?,
        deadline: r.get(5)?,
        ended_at: r.get(6)?,
        pid: r.get(7)?,
        pgid: r.get(8)?,
        output_bytes: bytes,
        exit_status: r.get(10)?,
        reason: r.get(11)?,
        probe: r.get(12)?,
        incident_id: r.get(13)?,
        bpf_run_time_ns: r.get(14)?,
        bpf_cpu_percent: r.get(15)?,
        artifact: r.get(16)?,
        output: with_output.then(|| crate::runs::output_text(&out, bytes)),
        output_truncated: bytes as usize > crate::runs::OUTPUT_TEXT_LIMIT,
    })
}

/// Runs matching `filter` (a `WHERE`/`ORDER BY` clause over `runs r JOIN
/// requests q` with `args`), with the start of their output if
/// `with_output`.
fn query(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
    with_output: bool,
) -> rusqlite::Result<Vec<Run>> {
    let out_col = if with_output {
        format!(", {STORED_OUTPUT_HEAD}")
    } else {
        String::new()
    };
    let mut st = conn.prepare(&format!("SELECT {RUN_COLS}{out_col} {RUN_FROM} {filter}"))?;
    let rows = st.query_map(args, |r| row_to_run(r, with_output))?;
    rows.collect()
}

/// Run `id` with the start of its stored output.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Run>> {
    Ok(query(conn, "WHERE r.id = ?1", [id], true)?.pop())
}

/// The runs of one request, oldest first, without output.
pub fn of_request(conn: &Connection, request_id: i64) -> rusqlite::Result<Vec<Run>> {
    query(
        conn,
        "WHERE r.request_id = ?1 ORDER BY r.id",
        [request_id],
        false,
    )
}

/// The latest `limit` runs (of one incident, if given), newest first, without output.
pub fn recent(conn: &Connection, incident: Option<i64>, limit: i64) -> rusqlite::Result<Vec<Run>> {
    match incident {
        Some(i) => query(
            conn,
            "WHERE q.incident_id = ?1 ORDER BY r.id DESC LIMIT ?2",
            params![i, limit],
            false,
        ),
        None => query(conn, "ORDER BY r.id DESC LIMIT ?1", [limit], false),
    }
}

/// Run `id`'s whole stored output, if the run exists.
pub fn stored_output(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        &format!("SELECT {STORED_OUTPUT} {RUN_FROM} WHERE r.id = ?1"),
        [id],
        |r| r.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()
    .map(|o| o.map(Option::unwrap_or_default))
}

/// Runs going now: of request `request_id`, and in all.
pub fn running_counts(conn: &Connection, request_id: i64) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT COALESCE(SUM(request_id = ?1), 0), COUNT(*) FROM runs WHERE status = 'running'",
        [request_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// A run still marked running: its id, pid, process group and the
/// process's start time.
pub struct Going {
    /// Run id.
    pub id: i64,
    /// Its probe's pid.
    pub pid: Option<i64>,
    /// Its process group.
    pub pgid: Option<i64>,
    /// The probe's start time (`/proc/PID/stat` field 22).
    pub proc_start: Option<i64>,
}

/// Every run still marked running.
pub fn going(conn: &Connection) -> rusqlite::Result<Vec<Going>> {
    let mut st =
        conn.prepare("SELECT id, pid, pgid, proc_start FROM runs WHERE status = 'running'")?;
    let rows = st.query_map([], |r| {
        Ok(Going {
            id: r.get(0)?,
            pid: r.get(1)?,
            pgid: r.get(2)?,
            proc_start: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Reserves a run of request `request_id`: status running; its id.
pub fn reserve(
    conn: &Connection,
    request_id: i64,
    started_by: &str,
    started_at: i64,
    deadline: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO runs (request_id, started_by, status, started_at, deadline) VALUES (?1, ?2, 'running', ?3, ?4)",
        params![request_id, started_by, started_at, deadline],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records the probe process of run `id`.
pub fn set_process(
    conn: &Connection,
    id: i64,
    pid: i64,
    proc_start: Option<i64>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET pid = ?2, pgid = ?2, proc_start = ?3 WHERE id = ?1",
        params![id, pid, proc_start],
    )?;
    Ok(())
}

/// Ends run `id` without output (`failed` to start, `interrupted`); only a
/// run still running, so an end is never overwritten: whether it was.
pub fn end_without_output(
    conn: &Connection,
    id: i64,
    status: RunStatus,
    now: i64,
    reason: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE runs SET status = ?2, ended_at = ?3, reason = ?4 WHERE id = ?1 AND status = 'running'",
        params![id, status.as_str(), now, reason],
    )? > 0)
}

/// How a run ended.
pub struct End<'a> {
    /// Final status.
    pub status: RunStatus,
    /// Output kept in the row (empty when it is an incident's artifact).
    pub output_in_row: &'a [u8],
    /// The whole output's size.
    pub output_bytes: i64,
    /// Exit status.
    pub exit_status: Option<i64>,
    /// Why it ended.
    pub reason: &'a str,
    /// BPF run time of its programs.
    pub bpf_run_time_ns: i64,
    /// That over its wall time.
    pub bpf_cpu_percent: Option<f64>,
    /// The incident artifact holding the output.
    pub artifact: Option<&'a str>,
}

/// Records how run `id` ended.
pub fn end(conn: &Connection, id: i64, e: &End<'_>, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET status = ?2, ended_at = ?3, output = ?4, output_bytes = ?5, exit_status = ?6, reason = ?7, bpf_run_time_ns = ?8, bpf_cpu_percent = ?9, artifact = ?10 WHERE id = ?1",
        params![id, e.status.as_str(), now, e.output_in_row, e.output_bytes, e.exit_status, e.reason, e.bpf_run_time_ns, e.bpf_cpu_percent, e.artifact],
    )?;
    Ok(())
}

/// Reserves a run of request `request_id` for the agent of `agent_host`:
/// running, not yet claimed; its id.
pub fn reserve_for_agent(
    conn: &Connection,
    request_id: i64,
    started_by: &str,
    started_at: i64,
    deadline: i64,
    agent_host: &str,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO runs (request_id, started_by, status, started_at, deadline, agent_host) VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
        params![request_id, started_by, started_at, deadline, agent_host],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The oldest run reserved for `agent_host`'s agent and not claimed yet:
/// its id and request.
pub fn next_unclaimed(conn: &Connection, agent_host: &str) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row(
        "SELECT id, request_id FROM runs WHERE agent_host = ?1 AND status = 'running' AND claimed_at IS NULL ORDER BY id LIMIT 1",
        [agent_host],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Marks run `id` claimed by its agent at `now` (its first heartbeat);
/// whether it was still unclaimed.
pub fn claim(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE runs SET claimed_at = ?2, heartbeat = ?2 WHERE id = ?1 AND claimed_at IS NULL AND status = 'running'",
        params![id, now],
    )? > 0)
}

/// A run as its agent's side sees it.
pub struct AgentRun {
    /// The host whose agent runs it (None: this server runs it).
    pub agent_host: Option<String>,
    /// Whether its agent claimed it.
    pub claimed: bool,
    /// Its status.
    pub status: RunStatus,
    /// Who asked it to stop, if someone did.
    pub stop_by: Option<String>,
    /// Its request's incident.
    pub incident_id: Option<i64>,
}

/// How run `id` stands with its agent.
pub fn agent_run(conn: &Connection, id: i64) -> rusqlite::Result<Option<AgentRun>> {
    conn.query_row(
        "SELECT r.agent_host, r.claimed_at IS NOT NULL, r.status, r.stop_by, q.incident_id FROM runs r JOIN requests q ON q.id = r.request_id WHERE r.id = ?1",
        [id],
        |r| {
            Ok(AgentRun {
                agent_host: r.get(0)?,
                claimed: r.get(1)?,
                status: super::named(r, 2, RunStatus::parse)?,
                stop_by: r.get(3)?,
                incident_id: r.get(4)?,
            })
        },
    )
    .optional()
}

/// Records a heartbeat of run `id`'s agent.
pub fn heartbeat(
    conn: &Connection,
    id: i64,
    pid: Option<i64>,
    bpf_run_time_ns: u64,
    output_bytes: u64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET heartbeat = ?2, pid = COALESCE(?3, pid), bpf_run_time_ns = ?4, output_bytes = ?5 WHERE id = ?1",
        params![id, now, pid, bpf_run_time_ns as i64, output_bytes as i64],
    )?;
    Ok(())
}

/// Asks run `id`'s agent to stop it (at its next heartbeat).
pub fn request_stop(conn: &Connection, id: i64, by: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET stop_by = COALESCE(stop_by, ?2) WHERE id = ?1",
        params![id, by],
    )?;
    Ok(())
}

/// Keeps the output an agent sent for run `id` in its row, until its end.
pub fn put_output(conn: &Connection, id: i64, data: &[u8]) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET output = ?2 WHERE id = ?1",
        params![id, data],
    )?;
    Ok(())
}

/// The output kept in run `id`'s row.
pub fn row_output(conn: &Connection, id: i64) -> rusqlite::Result<Vec<u8>> {
    conn.query_row("SELECT output FROM runs WHERE id = ?1", [id], |r| {
        r.get::<_, Option<Vec<u8>>>(0)
    })
    .map(Option::unwrap_or_default)
}

/// A run of an agent that has gone quiet.
pub struct Silent {
    /// The run.
    pub id: i64,
    /// Its agent's host.
    pub agent_host: String,
    /// Its last heartbeat (None: never claimed).
    pub heartbeat: Option<i64>,
}

/// Runs of agents whose last heartbeat is before `cutoff`, and runs never
/// claimed whose deadline is before `cutoff`.
pub fn silent(conn: &Connection, cutoff: i64) -> rusqlite::Result<Vec<Silent>> {
    let mut st = conn.prepare(
        "SELECT id, agent_host, heartbeat FROM runs WHERE agent_host IS NOT NULL AND status = 'running' AND ((claimed_at IS NOT NULL AND heartbeat < ?1) OR (claimed_at IS NULL AND deadline < ?1))",
    )?;
    let v = st
        .query_map([cutoff], |r| {
            Ok(Silent {
                id: r.get(0)?,
                agent_host: r.get(1)?,
                heartbeat: r.get(2)?,
            })
        })?
        .collect();
    v
}
