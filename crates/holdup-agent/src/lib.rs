//! `holdup agent`: a long-running daemon per host. It watches the configured
//! services continuously (one collector per group of services, each running
//! the one window loop, [`holdup_collect::Collector::windows`]), folds every
//! window into counters and histograms per service and role, and serves
//! them on `/metrics` in the Prometheus text format or OpenMetrics.
//!
//! # Extension points
//!
//! Other parts of holdup run inside the agent without touching its loop:
//!
//! - [`Agent::add_worker`]: a thread started after the collectors, given the
//!   agent's [`StopFlag`]; it must return soon after the flag is set. The
//!   workbench's run puller (`holdup wb agent`) is meant to run here.
//! - [`Agent::add_window_sink`]: a function called with every window of
//!   every collector (the flight recorder's ring writer plugs in here;
//!   `[flight_recorder]` in the config is kept for it).

#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod metrics;
pub mod services;

pub use config::{Config, Selector, Service};

use anyhow::{Context, Result};
use holdup_collect::{Collector, Options};
use holdup_diagnose::states::SourceFacts;
use holdup_model::Snapshot;
use metrics::{Registry, WindowInput};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Set once the agent is to stop (SIGTERM, SIGINT, or a collector that failed).
pub type StopFlag = Arc<AtomicBool>;

/// Extra work run on its own thread for the agent's life (see [`Agent::add_worker`]).
pub type Worker = Box<dyn FnOnce(StopFlag) -> Result<()> + Send>;

/// Called with each window of each collector: the collector's label and its snapshot.
pub type WindowSink = Box<dyn FnMut(&str, &Snapshot) -> Result<()> + Send>;

/// Windows the category facts (ports, locks, entry threads) are learned from.
const FACT_WINDOWS: usize = 10;
/// Relearn the facts every this many windows (learning scans every window kept).
const RELEARN_EVERY: u64 = 5;

/// The daemon, configured but not yet started.
pub struct Agent {
    config: Config,
    workers: Vec<(String, Worker)>,
    sinks: Arc<Mutex<Vec<WindowSink>>>,
}

impl Agent {
    /// An agent for `config`.
    pub fn new(config: Config) -> Agent {
        Agent {
            config,
            workers: Vec::new(),
            sinks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `worker` on its own thread (named `name`) once the collectors
    /// are up. An error it returns is logged; the agent goes on.
    pub fn add_worker(&mut self, name: &str, worker: Worker) {
        self.workers.push((name.to_string(), worker));
    }

    /// Feeds every window to `sink` (on the collector's thread: keep it quick).
    /// An error it returns is logged once per window; the agent goes on.
    pub fn add_window_sink(&mut self, sink: WindowSink) {
        if let Ok(mut s) = self.sinks.lock() {
            s.push(sink);
        }
    }

    /// Serves `/metrics` and collects until `stop` is set. `ready` is told
    /// the address actually bound (a port 0 in the config picks a free one)
    /// once every collector is running.
    pub fn run(self, stop: StopFlag, ready: impl FnOnce(std::net::SocketAddr)) -> Result<()> {
        let cfg = self.config;
        let registry = Arc::new(Mutex::new(Registry::new(cfg.top_culprits, cfg.max_roles)));
        let server = http::MetricsServer::bind(cfg.listen, registry.clone())?;
        let addr = server.addr();
        let groups = services::groups(&cfg.services)?;
        let mut threads: Vec<(String, JoinHandle<Result<()>>)> = Vec::new();
        let mut failure = None;
        for group in groups {
            let label = group.label.clone();
            let (started_tx, started_rx) = mpsc::channel();
            let opts = Options {
                target: group.target.clone(),
                interval: cfg.interval,
                follow_children: true,
                socket_calls: false,
                sched_only: cfg.sched_only,
            };
            let (registry, stop2, sinks) = (registry.clone(), stop.clone(), self.sinks.clone());
            let handle = std::thread::Builder::new()
                .name(format!("collect {label}"))
                .spawn(move || collect(group, opts, registry, stop2, sinks, started_tx))
                .context("cannot start a collector thread")?;
            let started = started_rx
                .recv()
                .unwrap_or_else(|_| Err("the collector thread ended at start".into()));
            threads.push((label.clone(), handle));
            if let Err(e) = started {
                failure = Some(anyhow::anyhow!("collector {label}: {e}"));
                break;
            }
        }
        if failure.is_none() {
            ready(addr);
            for (name, w) in self.workers {
                let s = stop.clone();
                let handle = std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || w(s))
                    .context("cannot start a worker thread")?;
                threads.push((name, handle));
            }
            let http_stop = stop.clone();
            let http = std::thread::Builder::new()
                .name("metrics http".into())
                .spawn(move || {
                    server.serve(&http_stop);
                    Ok(())
                })
                .context("cannot start the HTTP thread")?;
            threads.push(("metrics http".into(), http));
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                // A collector that died takes the agent down (systemd restarts it).
                if threads
                    .iter()
                    .any(|(n, h)| n.starts_with("collect") && h.is_finished())
                {
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for (name, h) in threads {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) if name.starts_with("collect") => {
                    failure.get_or_insert(e.context(format!("collector {name}")));
                }
                Ok(Err(e)) => tracing::warn!("worker {name} failed: {e:#}"),
                Err(_) => {
                    failure.get_or_insert(anyhow::anyhow!("thread {name} panicked"));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One collector's thread: start (saying how that went), then fold windows
/// into the registry until told to stop.
fn collect(
    mut group: services::Group,
    opts: Options,
    registry: Arc<Mutex<Registry>>,
    stop: StopFlag,
    sinks: Arc<Mutex<Vec<WindowSink>>>,
    started: mpsc::Sender<Result<(), String>>,
) -> Result<()> {
    let mut c = match Collector::start(opts) {
        Ok(c) => {
            let _ = started.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return Ok(());
        }
    };
    let mut recent: VecDeque<Snapshot> = VecDeque::with_capacity(FACT_WINDOWS + 1);
    let mut facts = SourceFacts::default();
    for (n, snap) in (0u64..).zip(c.windows(&stop, None)) {
        let snap = snap?;
        let services = group.classify(&snap);
        recent.push_back(snap);
        if recent.len() > FACT_WINDOWS {
            recent.pop_front();
        }
        if n % RELEARN_EVERY == 0 {
            facts = SourceFacts::learn(recent.make_contiguous());
        }
        let snap = recent.back().expect("just pushed");
        if let Ok(mut r) = registry.lock() {
            r.add(&WindowInput {
                collector: &group.label,
                snap,
                services: &services,
                facts: &facts,
            });
        }
        if let Ok(mut sinks) = sinks.lock() {
            for s in sinks.iter_mut() {
                if let Err(e) = s(&group.label, snap) {
                    tracing::warn!("window sink failed: {e:#}");
                }
            }
        }
    }
    Ok(())
}
