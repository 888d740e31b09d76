//! Named worker threads with a start gate, and the driver that prints the
//! startup line, releases the workers, joins them and prints the final line.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::sys::{gettid, Error, IoContext, Result};

/// A spawned, named thread that has reported its kernel tid and now waits for
/// the deadline before it starts its behaviour.
pub struct Worker {
    name: String,
    tid: i32,
    go: mpsc::Sender<Instant>,
    handle: JoinHandle<()>,
}

impl Worker {
    pub fn tid(&self) -> i32 {
        self.tid
    }
}

/// Spawns thread `name` (the kernel comm; at most 15 bytes). The thread sends
/// its tid back, waits until the driver hands it the run's deadline, then runs
/// `body(deadline)`. If `body` fails, the whole process exits with status 1.
pub fn spawn_worker<F>(name: &str, body: F) -> Result<Worker>
where
    F: FnOnce(Instant) -> Result<()> + Send + 'static,
{
    assert!(name.len() <= 15, "thread name {name:?} exceeds 15 bytes");
    let (tid_tx, tid_rx) = mpsc::channel::<i32>();
    let (go_tx, go_rx) = mpsc::channel::<Instant>();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // std has already set the thread's name (comm) at this point.
            if tid_tx.send(gettid()).is_err() {
                return;
            }
            drop(tid_tx);
            // A closed channel means setup failed elsewhere: just return.
            let Ok(deadline) = go_rx.recv() else { return };
            if let Err(e) = body(deadline) {
                crate::fatal(&e);
            }
        })
        .ctx(format!("spawning thread {name}"))?;
    let tid = tid_rx
        .recv()
        .map_err(|_| Error::msg(format!("thread {name} exited before reporting its tid")))?;
    Ok(Worker {
        name: name.to_owned(),
        tid,
        go: go_tx,
        handle,
    })
}

pub type Finish = Box<dyn FnOnce() -> Map<String, Value>>;

/// One piece of behaviour: its threads, what the startup line says about it,
/// and what the final line says once its threads have finished.
pub struct Part {
    pub workers: Vec<Worker>,
    pub info: Map<String, Value>,
    pub finish: Finish,
}

/// Builds a JSON object from `key => value` pairs.
#[macro_export]
macro_rules! obj {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = serde_json::Map::new();
        $( m.insert(String::from($k), serde_json::json!($v)); )*
        m
    }};
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        let dup = into.insert(k.clone(), v);
        debug_assert!(dup.is_none(), "duplicate JSON key {k}");
    }
}

fn print_line(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

/// Prints the startup line, runs all parts for `secs`, joins their threads and
/// prints the final line.
pub fn run(scenario: &str, secs: f64, parts: Vec<Part>) -> Result<()> {
    let mut threads = Map::new();
    let mut startup = Map::new();
    startup.insert("scenario".into(), json!(scenario));
    startup.insert("pid".into(), json!(std::process::id()));
    startup.insert("secs".into(), json!(secs));
    let mut workers = Vec::new();
    let mut finishes = Vec::new();
    for part in parts {
        for w in &part.workers {
            let dup = threads.insert(w.name.clone(), json!(w.tid));
            debug_assert!(dup.is_none(), "duplicate thread name {}", w.name);
        }
        workers.extend(part.workers);
        merge(&mut startup, part.info);
        finishes.push(part.finish);
    }
    startup.insert("threads".into(), Value::Object(threads));
    print_line(&Value::Object(startup)).ctx("writing the startup line to stdout")?;

    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    for w in &workers {
        // A worker only drops its receiver by exiting, which it cannot do
        // before this send; ignore the impossible error.
        let _ = w.go.send(deadline);
    }
    for w in workers {
        w.handle
            .join()
            .map_err(|_| Error::msg(format!("thread {} panicked", w.name)))?;
    }

    let mut fin = Map::new();
    fin.insert("scenario".into(), json!(scenario));
    for f in finishes {
        merge(&mut fin, f());
    }
    match print_line(&json!({ "final": fin })) {
        // The reader only wanted the startup line and has gone away: fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.ctx("writing the final line to stdout"),
    }
}
