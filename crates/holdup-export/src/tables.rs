//! The tables of an export, built from a recording's windows. This file is
//! the schema's one definition; docs/EXPORT.md describes every column.

use holdup_model::{Histogram, Resource, Snapshot, WaitKind, Waker};
use serde::Serialize;

/// A column's type (Parquet physical type + annotation in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// INT64.
    I64,
    /// INT64 (INTEGER(64,false)): ids that use all 64 bits (cgroup ids, resource ids).
    U64,
    /// Optional unsigned 64-bit.
    OptU64,
    /// DOUBLE.
    F64,
    /// BOOLEAN.
    Bool,
    /// BYTE_ARRAY (STRING).
    Str,
    /// Optional BYTE_ARRAY (STRING).
    OptStr,
}

/// A column.
#[derive(Clone, Debug)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Signed integer.
    I(i64),
    /// Unsigned integer.
    U(u64),
    /// Float.
    F(f64),
    /// Boolean.
    B(bool),
    /// Text.
    S(String),
    /// Missing (optional columns only).
    Null,
}

impl Value {
    /// The integer, bit for bit (unsigned values above i64::MAX wrap).
    pub fn as_i64(&self) -> i64 {
        match self {
            Value::I(n) => *n,
            Value::U(n) => *n as i64,
            _ => 0,
        }
    }
}

/// A table: columns and rows.
#[derive(Clone, Debug)]
pub struct Table {
    /// File name stem: `threads` → `threads.parquet`.
    pub name: &'static str,
    /// Columns, in file order.
    pub columns: Vec<Column>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    fn new(name: &'static str, cols: &[(&'static str, Type)]) -> Table {
        Table {
            name,
            columns: cols.iter().map(|&(name, ty)| Column { name, ty }).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, r: Vec<Value>) {
        debug_assert_eq!(r.len(), self.columns.len(), "table {}", self.name);
        self.rows.push(r);
    }
}

fn i(v: impl Into<i64>) -> Value {
    Value::I(v.into())
}
fn iu(v: u64) -> Value {
    // Counts and nanoseconds fit i64 (292 years of ns).
    Value::I(v.min(i64::MAX as u64) as i64)
}
fn u(v: u64) -> Value {
    Value::U(v)
}
fn s(v: impl Into<String>) -> Value {
    Value::S(v.into())
}
fn json(v: &impl Serialize) -> Value {
    Value::S(serde_json::to_string(v).unwrap_or_default())
}

/// The snake_case name of a wait kind, as in the snapshot JSON.
pub fn kind_name(k: WaitKind) -> &'static str {
    match k {
        WaitKind::Futex => "futex",
        WaitKind::FileRead => "file_read",
        WaitKind::FileWrite => "file_write",
        WaitKind::SockRecv => "sock_recv",
        WaitKind::SockSend => "sock_send",
        WaitKind::Accept => "accept",
        WaitKind::Connect => "connect",
        WaitKind::Mux => "mux",
        WaitKind::Other => "other",
    }
}

fn resource_type(r: &Resource) -> &'static str {
    match r {
        Resource::Futex { .. } => "futex",
        Resource::SharedFutex { .. } => "shared_futex",
        Resource::File { .. } => "file",
        Resource::Socket(_) => "socket",
        Resource::Mux { .. } => "mux",
    }
}

use Type::*;

/// Every table of the export, from a recording's windows.
pub fn tables(windows: &[Snapshot]) -> Vec<Table> {
    let mut win = Table::new(
        "windows",
        &[
            ("window_index", I64),
            ("start_ns", I64),
            ("end_ns", I64),
            ("duration_ns", I64),
            ("wall_start_ms", I64),
            ("threads", I64),
            ("bpf_ns", I64),
            ("lost", I64),
        ],
    );
    let mut threads = Table::new(
        "threads",
        &[
            ("window_index", I64),
            ("tgid", I64),
            ("tid", I64),
            ("comm", Str),
            ("cgroup_id", U64),
            ("on_cpu_ns", I64),
            ("runq_ns", I64),
            ("iowait_ns", I64),
            ("other_d_ns", I64),
            ("sleep_ns", I64),
            ("observed_ns", I64),
            ("runq_count", I64),
            ("runq_unattributed_ns", I64),
            ("preempted", I64),
            ("exited", Bool),
        ],
    );
    let mut thread_waits = Table::new(
        "thread_waits",
        &[
            ("window_index", I64),
            ("tgid", I64),
            ("tid", I64),
            ("kind", Str),
            ("wait_ns", I64),
            ("waits", I64),
        ],
    );
    let mut resources = Table::new(
        "resource_waits",
        &[
            ("window_index", I64),
            ("tgid", I64),
            ("tid", I64),
            ("kind", Str),
            ("resource_type", Str),
            ("resource", Str),
            ("resource_json", Str),
            ("futex_wake_id", OptU64),
            ("wait_ns", I64),
            ("waits", I64),
            ("ended_waits", I64),
            ("calls", I64),
            ("bytes", I64),
        ],
    );
    let mut futex_wakes = Table::new(
        "futex_wakes",
        &[
            ("window_index", I64),
            ("waker_tgid", I64),
            ("waker_tid", I64),
            ("futex", Str),
            ("futex_json", Str),
            ("calls", I64),
            ("woken", I64),
        ],
    );
    let mut wakes = Table::new(
        "wake_edges",
        &[
            ("window_index", I64),
            ("wakee_tgid", I64),
            ("wakee_tid", I64),
            ("wait_kind", OptStr),
            ("resource_id", U64),
            ("waker_type", Str),
            ("waker_tgid", OptU64),
            ("waker_tid", OptU64),
            ("waker_comm", OptStr),
            ("waker_socket", OptStr),
            ("wakeups", I64),
            ("sleep_ns", I64),
        ],
    );
    let mut culprits = Table::new(
        "culprits",
        &[
            ("window_index", I64),
            ("victim_tgid", I64),
            ("victim_tid", I64),
            ("tgid", I64),
            ("tid", I64),
            ("comm", Str),
            ("cgroup_id", U64),
            ("cgroup", Str),
            ("ns", I64),
        ],
    );
    let mut disks = Table::new(
        "disks",
        &[
            ("window_index", I64),
            ("disk", Str),
            ("dev", Str),
            ("tgid", I64),
            ("tid", I64),
            ("comm", Str),
            ("is_target", Bool),
            ("requests", I64),
            ("bytes", I64),
            ("write_bytes", I64),
            ("latency_ns", I64),
            ("share", F64),
        ],
    );
    let mut hist = Table::new(
        "histograms",
        &[
            ("window_index", I64),
            ("source", Str),
            ("tgid", I64),
            ("tid", I64),
            ("key", Str),
            ("bucket", I64),
            ("low_us", I64),
            ("high_us", I64),
            ("count", I64),
        ],
    );
    let mut programs = Table::new(
        "bpf_programs",
        &[
            ("window_index", I64),
            ("program", Str),
            ("runs", I64),
            ("run_time_ns", I64),
        ],
    );
    let mut loss = Table::new(
        "loss",
        &[("window_index", I64), ("kind", Str), ("count", I64)],
    );
    let add_hist =
        |t: &mut Table, w: i64, source: &str, tgid: u32, tid: u32, key: &str, h: &Histogram| {
            for (b, &n) in h.buckets.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let low = if b == 0 { 0 } else { 1u64 << b };
                t.row(vec![
                    i(w),
                    s(source),
                    i(tgid),
                    i(tid),
                    s(key),
                    i(b as i64),
                    iu(low),
                    iu(1u64 << (b + 1)),
                    iu(n),
                ]);
            }
        };

    for snap in windows {
        let w = snap.window.index as i64;
        win.row(vec![
            i(w),
            iu(snap.window.start_ns),
            iu(snap.window.end_ns),
            iu(snap.window.duration_ns()),
            iu(snap.window.wall_start_ms),
            iu(snap.threads.len() as u64),
            iu(snap.overhead_ns()),
            iu(snap.loss.total()),
        ]);
        for t in &snap.threads {
            let st = &t.states;
            threads.row(vec![
                i(w),
                i(t.tgid),
                i(t.tid),
                s(&t.comm),
                u(t.cgroup_id),
                iu(st.on_cpu_ns),
                iu(st.runq_ns),
                iu(st.iowait_ns),
                iu(st.other_d_ns),
                iu(st.sleep_ns),
                iu(st.total_ns()),
                iu(t.runq_count),
                iu(t.runq_unattributed_ns),
                iu(t.preempted),
                Value::B(t.exited),
            ]);
            for wt in &t.waits {
                thread_waits.row(vec![
                    i(w),
                    i(t.tgid),
                    i(t.tid),
                    s(kind_name(wt.kind)),
                    iu(wt.ns),
                    iu(wt.count),
                ]);
            }
            add_hist(&mut hist, w, "runq", t.tgid, t.tid, "", &t.runq_hist);
        }
        for r in &snap.resources {
            let name = r.resource.to_string();
            resources.row(vec![
                i(w),
                i(r.tgid),
                i(r.tid),
                s(kind_name(r.kind)),
                s(resource_type(&r.resource)),
                s(&name),
                json(&r.resource),
                r.resource.futex_wake_id().map_or(Value::Null, u),
                iu(r.wait_ns),
                iu(r.waits),
                iu(r.hist.count()),
                iu(r.calls),
                iu(r.bytes),
            ]);
            let key = format!("{} {name}", kind_name(r.kind));
            add_hist(&mut hist, w, "resource", r.tgid, r.tid, &key, &r.hist);
        }
        for f in &snap.futex_wakes {
            futex_wakes.row(vec![
                i(w),
                i(f.waker_tgid),
                i(f.waker_tid),
                s(f.futex.to_string()),
                json(&f.futex),
                iu(f.calls),
                iu(f.woken),
            ]);
        }
        for e in &snap.wakeups {
            let (ty, tgid, tid, comm, sock) = match &e.waker {
                Waker::Thread { tgid, tid, comm } => (
                    "thread",
                    u(*tgid as u64),
                    u(*tid as u64),
                    s(comm),
                    Value::Null,
                ),
                Waker::Socket(a) => (
                    "socket",
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    s(a.to_string()),
                ),
                Waker::Kernel => ("kernel", Value::Null, Value::Null, Value::Null, Value::Null),
            };
            wakes.row(vec![
                i(w),
                i(e.wakee_tgid),
                i(e.wakee_tid),
                e.wait_kind.map_or(Value::Null, |k| s(kind_name(k))),
                u(e.resource_id),
                s(ty),
                tgid,
                tid,
                comm,
                sock,
                iu(e.count),
                iu(e.sleep_ns),
            ]);
        }
        for c in &snap.culprits {
            culprits.row(vec![
                i(w),
                i(c.victim_tgid),
                i(c.victim_tid),
                i(c.tgid),
                i(c.tid),
                s(&c.comm),
                u(c.cgroup_id),
                s(&c.cgroup),
                iu(c.ns),
            ]);
        }
        for d in &snap.disks {
            disks.row(vec![
                i(w),
                s(&d.disk),
                s(&d.dev),
                i(d.tgid),
                i(d.tid),
                s(&d.comm),
                Value::B(d.is_target),
                iu(d.requests),
                iu(d.bytes),
                iu(d.write_bytes),
                iu(d.latency_ns),
                Value::F(d.share),
            ]);
            add_hist(
                &mut hist,
                w,
                "disk",
                d.tgid,
                d.tid,
                &d.disk,
                &d.latency_hist,
            );
        }
        for p in &snap.overhead {
            programs.row(vec![i(w), s(&p.name), iu(p.run_cnt), iu(p.run_time_ns)]);
        }
        let l = &snap.loss;
        for (kind, n) in [
            ("thread_map_full", l.thread_map_full),
            ("resource_map_full", l.resource_map_full),
            ("wake_map_full", l.wake_map_full),
            ("culprit_map_full", l.culprit_map_full),
            ("disk_map_full", l.disk_map_full),
            ("threads_untracked", l.threads_untracked),
            ("bio_inflight_full", l.bio_inflight_full),
            ("ringbuf_drops", l.ringbuf_drops),
            ("threads_missed", l.threads_missed),
        ] {
            if n > 0 {
                loss.row(vec![i(w), s(kind), iu(n)]);
            }
        }
    }
    vec![
        win,
        threads,
        thread_waits,
        resources,
        futex_wakes,
        wakes,
        culprits,
        disks,
        hist,
        programs,
        loss,
    ]
}
