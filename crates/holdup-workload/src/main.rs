//! `holdup-workload`: a workload with KNOWN behaviour, for holdup's
//! integration tests.
//!
//! Each subcommand starts a few threads with fixed names (the kernel comm, so
//! holdup sees them), each doing one precise thing: busy-looping, fighting for
//! one CPU, contending on a futex whose address is known, blocking on a pipe,
//! a TCP recv, `epoll_wait`, or O_DIRECT writes + fsync, or just sleeping.
//!
//! Protocol: once every thread exists and is named, the process prints ONE
//! JSON object line to stdout (and flushes): `scenario`, `pid`, `secs`,
//! `threads` (name -> tid) and whatever else a test needs to match (futex
//! address, pipe inodes, ports, paths). The threads start their behaviour
//! right after that line and run for `--secs`; then the process prints a
//! final line `{"final": {...}}` with counters and exits 0. Failures print
//! which call failed and why to stderr and exit 1.

#![warn(missing_docs)]

mod cpu;
mod disk;
mod etcd;
mod futex;
mod lock;
mod lockmgr;
mod net;
mod pipe;
mod service;
mod shmfutex;
mod sys;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::sys::{Error, Result};
use crate::worker::{run, Part};

#[derive(Parser)]
#[command(
    name = "holdup-workload",
    version,
    about = "A workload with known behaviour, for holdup's integration tests",
    long_about = "A workload with known behaviour, for holdup's integration tests.\n\n\
        Prints one JSON line at startup (pid, thread tids and everything needed to \
        match the behaviour), runs for --secs, prints {\"final\": {...}} and exits 0."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Copy)]
struct Secs {
    /// How long the behaviour runs, in seconds (fractions allowed).
    #[arg(long, value_parser = parse_secs)]
    secs: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Thread "hw-spin" busy-loops (no syscalls) for --secs.
    Spin {
        #[command(flatten)]
        secs: Secs,
    },
    /// Threads "hw-runq-a" and "hw-runq-b" busy-loop pinned to one CPU: each
    /// gets ~50% on-CPU and ~50% run-queue wait behind the other.
    Runq {
        #[command(flatten)]
        secs: Secs,
        /// The CPU both threads are pinned to.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
    },
    /// Threads "hw-lock-0".."hw-lock-{K-1}" contend for one raw-futex mutex
    /// (its address is printed as futex_addr), holding it --hold-us each time.
    Futex {
        #[command(flatten)]
        secs: Secs,
        /// Number of contending threads (K).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        /// Busy-spin this many microseconds while holding the lock.
        #[arg(long, default_value_t = 1000)]
        hold_us: u64,
        /// Busy-spin this many microseconds after unlocking, before locking
        /// again (lets a woken waiter take the lock; busy, so it adds no
        /// off-CPU time).
        #[arg(long, default_value_t = 100)]
        pause_us: u64,
    },
    /// Threads "hw-pipe-a" and "hw-pipe-b" ping-pong one byte over two pipes;
    /// b sleeps --delay-us before answering, so a's read() blocks ~that long.
    Pipe {
        #[command(flatten)]
        secs: Secs,
        /// hw-pipe-b's sleep before each answer, in microseconds.
        #[arg(long, default_value_t = 1000)]
        delay_us: u64,
    },
    /// Loopback request/reply: "hw-tcp-cli" sends 4 bytes and blocks in recv;
    /// "hw-tcp-srv" sleeps --delay-ms then echoes them.
    Tcp {
        #[command(flatten)]
        secs: Secs,
        /// Server's sleep before each reply, in milliseconds.
        #[arg(long, default_value_t = 10)]
        delay_ms: u64,
    },
    /// Standalone slow echo server: "hw-tcp-srv" accepts clients, one
    /// "hw-tcp-conn" thread each; every read (up to 64 bytes) is echoed after
    /// --delay-ms.
    TcpServer {
        #[command(flatten)]
        secs: Secs,
        /// Port to listen on (0: an ephemeral port, printed as server_port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Sleep before each reply, in milliseconds.
        #[arg(long, default_value_t = 10)]
        delay_ms: u64,
    },
    /// "hw-epoll" waits in epoll_wait(-1) on a loopback socket; "hw-feeder"
    /// writes one byte to the other end every --interval-ms.
    Epoll {
        #[command(flatten)]
        secs: Secs,
        /// Feeder's interval between bytes, in milliseconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
    },
    /// "hw-disk" writes --block-kb KiB blocks with O_DIRECT + fsync into a file
    /// in --dir (which must be on a disk-backed filesystem).
    Disk {
        #[command(flatten)]
        secs: Secs,
        /// Directory for the scratch file holdup-workload-disk.<pid> (deleted
        /// at exit).
        #[arg(long)]
        dir: PathBuf,
        /// Block size in KiB: a multiple of 4, at most 65536.
        #[arg(long, default_value_t = 64, value_parser = parse_block_kb)]
        block_kb: u32,
    },
    /// "hw-idle" sleeps in 100 ms steps.
    Idle {
        #[command(flatten)]
        secs: Secs,
    },
    /// Echo server for `frontend`: "hw-be-acc" accepts, one "hw-be-conn"
    /// thread per client answers each 16-byte request after --delay-ms, or
    /// after --slow-delay-ms once --slow-after-secs have passed.
    Backend {
        #[command(flatten)]
        secs: Secs,
        /// Port to listen on (0: an ephemeral port, printed as server_port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Delay before each reply, in milliseconds (fractions allowed).
        #[arg(long, default_value_t = 1.0, value_parser = parse_ms)]
        delay_ms: f64,
        /// Delay once the knob has turned, in milliseconds.
        #[arg(long, default_value_t = 20.0, value_parser = parse_ms)]
        slow_delay_ms: f64,
        /// Turn the knob this many seconds after the start (default: never).
        #[arg(long, value_parser = parse_secs)]
        slow_after_secs: Option<f64>,
    },
    /// Thread-per-connection service: "hw-fe-acc" accepts, each client gets a
    /// "hw-fe-w-N" thread that busy-works --work-us per 16-byte request, then
    /// asks --backend over its own connection and replies with the answer.
    Frontend {
        #[command(flatten)]
        secs: Secs,
        /// Port to listen on (0: an ephemeral port, printed as server_port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// The backend's address (e.g. 127.0.0.1:7000).
        #[arg(long)]
        backend: SocketAddr,
        /// Busy work per request, in microseconds.
        #[arg(long, default_value_t = 100)]
        work_us: u64,
    },
    /// Thread-per-connection service whose workers serialise on one mutex
    /// when the knob turns: "hw-kn-acc" accepts, each client gets a
    /// "hw-kn-w-N" thread that per 16-byte request busy-works --work-us and
    /// sleeps --io-us, outside the mutex (printed as futex_addr) before
    /// --serialise-after-secs, inside it after.
    Lockknob {
        #[command(flatten)]
        secs: Secs,
        /// Port to listen on (0: an ephemeral port, printed as server_port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Busy work per request, in microseconds.
        #[arg(long, default_value_t = 50)]
        work_us: u64,
        /// Sleep per request (standing in for a storage call), in microseconds.
        #[arg(long, default_value_t = 300)]
        io_us: u64,
        /// Turn the knob this many seconds after the start (default: never).
        #[arg(long, value_parser = parse_secs)]
        serialise_after_secs: Option<f64>,
    },
    /// A service built like a database's lock manager: --workers workers
    /// "hw-lm-w-N" each serve one client connection at a time; per 16-byte
    /// request a worker busy-works --work-us, takes a row lock (a random row
    /// of --rows; row 0 for every request from --hot-after-secs after the
    /// first request on), busy-works --hold-work-us and sleeps --hold-io-us holding it,
    /// releases it and replies. Waiters queue in the lock table and sleep
    /// on their own semaphore (a futex word each, addresses printed as
    /// waiter_sem_addrs); the releasing holder wakes the next one. With
    /// --prefork the workers are processes sharing the table in a memfd
    /// (process-shared futexes); their pids are printed as worker_pids.
    Lockmgr {
        #[command(flatten)]
        secs: Secs,
        /// Port to listen on (0: an ephemeral port, printed as server_port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Workers (threads, or processes with --prefork); give the load
        /// generator as many connections.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=i64::from(lockmgr::MAX_WORKERS)))]
        workers: u32,
        /// Rows in the lock table.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=i64::from(lockmgr::MAX_ROWS)))]
        rows: u32,
        /// Busy work per request before taking the row lock, in microseconds.
        #[arg(long, default_value_t = 50)]
        work_us: u64,
        /// Busy work while holding the row lock, in microseconds.
        #[arg(long, default_value_t = 50)]
        hold_work_us: u64,
        /// Sleep while holding the row lock (the update's storage call), in
        /// microseconds.
        #[arg(long, default_value_t = 300)]
        hold_io_us: u64,
        /// Every request takes row 0 from this many seconds after the first
        /// request on (default: never).
        #[arg(long, value_parser = parse_secs)]
        hot_after_secs: Option<f64>,
        /// Workers are forked processes sharing the lock table in shared memory.
        #[arg(long)]
        prefork: bool,
    },
    /// Closed-loop load: --connections threads "hw-load-N", each sending a
    /// 16-byte request to --server, waiting for the reply, then pausing
    /// --think-us. With --latency-log FILE, writes "unix_second p99_us" lines
    /// (an SLO series for `holdup diagnose --slo`) at the end.
    Loadgen {
        #[command(flatten)]
        secs: Secs,
        /// The server's address (e.g. 127.0.0.1:7000).
        #[arg(long)]
        server: SocketAddr,
        /// Connections (one thread each).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        connections: u32,
        /// Pause between a reply and the next request, in microseconds.
        #[arg(long, default_value_t = 1000)]
        think_us: u64,
        /// Send the Redis inline command PING and expect +PONG (to load a
        /// redis-server) instead of 16-byte echo requests.
        #[arg(long, conflicts_with = "etcd_put")]
        redis_ping: bool,
        /// Send etcd puts over keep-alive HTTP/1.1 (`POST /v3/kv/put` to the
        /// v3 JSON gateway, 64 keys per connection, 96-byte values) and
        /// expect 200 answers; --server is etcd's client URL's host:port.
        #[arg(long)]
        etcd_put: bool,
        /// Write per-second p99 latencies here at the end.
        #[arg(long)]
        latency_log: Option<PathBuf>,
    },
    /// Process-shared lock: threads "hw-shf-0".."hw-shf-{K-1}" and a forked
    /// child process "hw-shf-child" contend for one mutex on a shared (not
    /// private) futex in a MAP_SHARED memfd (its inode and the word's offset
    /// printed as futex_ino and futex_offset; the child as child_pid).
    Shmfutex {
        #[command(flatten)]
        secs: Secs,
        /// Contending threads in the parent process (K).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        /// Busy-spin this many microseconds while holding the lock.
        #[arg(long, default_value_t = 1000)]
        hold_us: u64,
        /// Busy-spin this many microseconds after unlocking.
        #[arg(long, default_value_t = 100)]
        pause_us: u64,
    },
    /// Smoke-test mix: "hw-spin" spinning, "hw-lock-0"/"hw-lock-1" contending
    /// on a futex (hold 1000 us, pause 100 us), "hw-pipe-a"/"hw-pipe-b"
    /// ping-ponging with a 1000 us delay.
    Mixed {
        #[command(flatten)]
        secs: Secs,
    },
}

fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e8 {
        return Err("must be a positive number of seconds (at most 1e8)".into());
    }
    Ok(v)
}

fn parse_ms(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() || !(0.0..=1e7).contains(&v) {
        return Err("must be a number of milliseconds between 0 and 1e7".into());
    }
    Ok(v)
}

fn parse_block_kb(s: &str) -> std::result::Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if v == 0 || v % 4 != 0 || u64::from(v) * 1024 > disk::WRAP_BYTES {
        return Err("must be a multiple of 4 between 4 and 65536".into());
    }
    Ok(v)
}

/// Reports a failure and exits with status 1 (also used by worker threads).
pub fn fatal(e: &Error) -> ! {
    eprintln!("holdup-workload: {e}");
    std::process::exit(1)
}

fn main_inner(cmd: Cmd) -> Result<()> {
    let (name, secs, parts): (&str, Secs, Vec<Part>) = match cmd {
        Cmd::Spin { secs } => ("spin", secs, vec![cpu::spin("hw-spin")?]),
        Cmd::Runq { secs, cpu } => ("runq", secs, vec![cpu::runq(cpu)?]),
        Cmd::Futex {
            secs,
            threads,
            hold_us,
            pause_us,
        } => {
            let p = lock::FutexParams {
                threads,
                hold: Duration::from_micros(hold_us),
                pause: Duration::from_micros(pause_us),
            };
            ("futex", secs, vec![lock::futex(&p)?])
        }
        Cmd::Pipe { secs, delay_us } => (
            "pipe",
            secs,
            vec![pipe::pipe_pair(Duration::from_micros(delay_us))?],
        ),
        Cmd::Tcp { secs, delay_ms } => (
            "tcp",
            secs,
            vec![net::tcp(Duration::from_millis(delay_ms))?],
        ),
        Cmd::TcpServer {
            secs,
            port,
            bind,
            delay_ms,
        } => (
            "tcp-server",
            secs,
            vec![net::tcp_server(
                bind,
                port,
                Duration::from_millis(delay_ms),
            )?],
        ),
        Cmd::Epoll { secs, interval_ms } => (
            "epoll",
            secs,
            vec![net::epoll(Duration::from_millis(interval_ms))?],
        ),
        Cmd::Disk {
            secs,
            dir,
            block_kb,
        } => ("disk", secs, vec![disk::disk(&dir, block_kb)?]),
        Cmd::Idle { secs } => ("idle", secs, vec![cpu::idle()?]),
        Cmd::Backend {
            secs,
            port,
            bind,
            delay_ms,
            slow_delay_ms,
            slow_after_secs,
        } => (
            "backend",
            secs,
            vec![service::backend(
                bind,
                port,
                Duration::from_secs_f64(delay_ms / 1e3),
                Duration::from_secs_f64(slow_delay_ms / 1e3),
                service::Knob {
                    after: slow_after_secs.map(Duration::from_secs_f64),
                },
            )?],
        ),
        Cmd::Frontend {
            secs,
            port,
            bind,
            backend,
            work_us,
        } => (
            "frontend",
            secs,
            vec![service::frontend(
                bind,
                port,
                backend,
                Duration::from_micros(work_us),
            )?],
        ),
        Cmd::Lockknob {
            secs,
            port,
            bind,
            work_us,
            io_us,
            serialise_after_secs,
        } => (
            "lockknob",
            secs,
            vec![service::lockknob(
                bind,
                port,
                Duration::from_micros(work_us),
                Duration::from_micros(io_us),
                service::Knob {
                    after: serialise_after_secs.map(Duration::from_secs_f64),
                },
            )?],
        ),
        Cmd::Lockmgr {
            secs,
            port,
            bind,
            workers,
            rows,
            work_us,
            hold_work_us,
            hold_io_us,
            hot_after_secs,
            prefork,
        } => {
            let p = lockmgr::LockMgrParams {
                workers,
                rows,
                work: Duration::from_micros(work_us),
                hold_work: Duration::from_micros(hold_work_us),
                hold_io: Duration::from_micros(hold_io_us),
                hot: service::Knob {
                    after: hot_after_secs.map(Duration::from_secs_f64),
                },
                prefork,
            };
            ("lockmgr", secs, vec![lockmgr::lockmgr(bind, port, &p)?])
        }
        Cmd::Loadgen {
            secs,
            server,
            connections,
            think_us,
            redis_ping,
            etcd_put,
            latency_log,
        } => (
            "loadgen",
            secs,
            vec![service::loadgen(
                server,
                connections,
                Duration::from_micros(think_us),
                if etcd_put {
                    service::Protocol::EtcdPut
                } else if redis_ping {
                    service::Protocol::RedisPing
                } else {
                    service::Protocol::Echo
                },
                latency_log,
            )?],
        ),
        Cmd::Shmfutex {
            secs,
            threads,
            hold_us,
            pause_us,
        } => (
            "shmfutex",
            secs,
            vec![shmfutex::shmfutex(
                threads,
                Duration::from_micros(hold_us),
                Duration::from_micros(pause_us),
            )?],
        ),
        Cmd::Mixed { secs } => {
            let p = lock::FutexParams {
                threads: 2,
                hold: Duration::from_micros(1000),
                pause: Duration::from_micros(100),
            };
            (
                "mixed",
                secs,
                vec![
                    cpu::spin("hw-spin")?,
                    lock::futex(&p)?,
                    pipe::pipe_pair(Duration::from_micros(1000))?,
                ],
            )
        }
    };
    run(name, secs.secs, parts)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_inner(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}
