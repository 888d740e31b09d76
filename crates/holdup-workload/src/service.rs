//! Small request/reply services with a knob that changes their behaviour
//! mid-run, for holdup's diagnosis scenarios:
//!
//! - `backend`: echo server whose reply delay goes up after a while;
//! - `frontend`: thread-per-connection service that does a little work and
//!   calls a backend for every request;
//! - `lockknob`: thread-per-connection service whose workers start to
//!   serialise on one mutex after a while;
//! - `loadgen`: closed-loop clients for any of them, optionally logging the
//!   p99 latency of every second (an SLO series for `holdup diagnose --slo`).
//!
//! Wire protocol: a request is [`REQUEST_BYTES`] bytes; the reply echoes them.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::futex::{FutexMutex, LockStats};
use crate::obj;
use crate::sys::{check, spin_for, Error, IoContext, Result};
use crate::worker::{spawn_worker, Part};

/// Size of one request and of its reply.
pub const REQUEST_BYTES: usize = 16;

/// A knob that turns at a fixed time after the run starts.
#[derive(Clone, Copy)]
pub struct Knob {
    /// Seconds after the start of the run; None: never.
    pub after: Option<Duration>,
}

impl Knob {
    pub(crate) fn turned(&self, started: Instant) -> bool {
        self.after.is_some_and(|a| started.elapsed() >= a)
    }

    pub(crate) fn secs(&self) -> Option<f64> {
        self.after.map(|a| a.as_secs_f64())
    }
}

/// Waits up to `timeout` (at most 1 s) for `fd` to become readable.
fn poll_readable(fd: i32, timeout: Duration) -> Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: pfd is one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => Ok(false),
        ret => Ok(check(ret, "poll(listener)")? > 0),
    }
}

/// Accept loop shared by the servers: until the deadline, accepts clients and
/// starts `serve(conn, index)` on a thread named `conn_name(index)`.
pub(crate) fn accept_loop<F>(
    listener: TcpListener,
    deadline: Instant,
    conn_name: fn(u64) -> String,
    connections: Arc<AtomicU64>,
    serve: F,
) -> Result<()>
where
    F: Fn(TcpStream, u64) + Send + Sync + 'static,
{
    let serve = Arc::new(serve);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        if !poll_readable(listener.as_raw_fd(), deadline - now)? {
            continue;
        }
        let Some(conn) = accept_client(&listener)? else {
            continue;
        };
        let index = connections.fetch_add(1, Ordering::Relaxed);
        let serve = Arc::clone(&serve);
        std::thread::Builder::new()
            .name(conn_name(index))
            .spawn(move || serve(conn, index))
            .ctx("spawning a connection thread")?;
    }
}

/// One client from a listener that poll found readable, blocking and with
/// TCP_NODELAY; None when there was none after all (another thread took it,
/// a signal, or the client gave up).
pub(crate) fn accept_client(listener: &TcpListener) -> Result<Option<TcpStream>> {
    match listener.accept() {
        Ok((c, _)) => {
            c.set_nonblocking(false)
                .ctx("fcntl(connection, ~O_NONBLOCK)")?;
            c.set_nodelay(true).ctx("setsockopt(TCP_NODELAY)")?;
            Ok(Some(c))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::call("accept", e)),
    }
}

/// A non-blocking listener on `bind:port`, and the port it got.
pub(crate) fn listen(bind: IpAddr, port: u16) -> Result<(TcpListener, u16)> {
    let listener = TcpListener::bind((bind, port)).ctx(format!("bind({bind}:{port})"))?;
    let port = listener.local_addr().ctx("getsockname(listener)")?.port();
    listener
        .set_nonblocking(true)
        .ctx("fcntl(listener, O_NONBLOCK)")?;
    Ok((listener, port))
}

/// Reads one request; false at end-of-file.
fn read_request(conn: &mut TcpStream, buf: &mut [u8; REQUEST_BYTES]) -> io::Result<bool> {
    match conn.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// `backend`: "hw-be-acc" accepts; each connection gets a "hw-be-conn"
/// thread that answers every request after `work` of busy work and
/// sleeping `delay` (or `slow_delay` once the knob has turned).
pub fn backend(
    bind: IpAddr,
    port: u16,
    work: Duration,
    delay: Duration,
    slow_delay: Duration,
    knob: Knob,
) -> Result<Part> {
    let (listener, port) = listen(bind, port)?;
    let started = Instant::now();
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
    let acc = spawn_worker("hw-be-acc", move |deadline| {
        accept_loop(
            listener,
            deadline,
            |_| "hw-be-conn".into(),
            conns,
            move |mut conn, _| {
                let mut buf = [0u8; REQUEST_BYTES];
                while let Ok(true) = read_request(&mut conn, &mut buf) {
                    let d = if knob.turned(started) {
                        slow_delay
                    } else {
                        delay
                    };
                    spin_for(work);
                    std::thread::sleep(d);
                    if conn.write_all(&buf).is_err() {
                        return;
                    }
                    reqs.fetch_add(1, Ordering::Relaxed);
                }
            },
        )
    })?;
    Ok(Part {
        workers: vec![acc],
        info: obj! {
            "addr" => bind.to_string(),
            "server_port" => port,
            "delay_ms" => delay.as_secs_f64() * 1e3,
            "slow_delay_ms" => slow_delay.as_secs_f64() * 1e3,
            "slow_after_secs" => knob.secs(),
        },
        finish: Box::new(move || {
            obj! {
                "connections" => connections.load(Ordering::Relaxed),
                "requests" => requests.load(Ordering::Relaxed),
            }
        }),
    })
}

/// `frontend`: "hw-fe-acc" accepts; each client connection gets a
/// "hw-fe-w-N" thread with its own connection to the backend. Per request it
/// busy-works `work`, asks the backend, and replies with the backend's answer.
pub fn frontend(bind: IpAddr, port: u16, backend: SocketAddr, work: Duration) -> Result<Part> {
    // Fail early (before the startup line) when the backend is not there.
    TcpStream::connect(backend).ctx(format!("connect(backend {backend})"))?;
    let (listener, port) = listen(bind, port)?;
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let backend_errors = Arc::new(AtomicU64::new(0));
    let (conns, reqs, errs) = (
        Arc::clone(&connections),
        Arc::clone(&requests),
        Arc::clone(&backend_errors),
    );
    let acc = spawn_worker("hw-fe-acc", move |deadline| {
        accept_loop(
            listener,
            deadline,
            |i| format!("hw-fe-w-{i}"),
            conns,
            move |mut client, _| {
                let Ok(mut be) = TcpStream::connect(backend) else {
                    errs.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let _ = be.set_nodelay(true);
                let mut buf = [0u8; REQUEST_BYTES];
                while let Ok(true) = read_request(&mut client, &mut buf) {
                    spin_for(work);
                    if be.write_all(&buf).is_err() || be.read_exact(&mut buf).is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if client.write_all(&buf).is_err() {
                        return;
                    }
                    reqs.fetch_add(1, Ordering::Relaxed);
                }
            },
        )
    })?;
    Ok(Part {
        workers: vec![acc],
        info: obj! {
            "addr" => bind.to_string(),
            "server_port" => port,
            "backend" => backend.to_string(),
            "work_us" => work.as_micros() as u64,
        },
        finish: Box::new(move || {
            obj! {
                "connections" => connections.load(Ordering::Relaxed),
                "requests" => requests.load(Ordering::Relaxed),
                "backend_errors" => backend_errors.load(Ordering::Relaxed),
            }
        }),
    })
}

/// `lockknob`: "hw-kn-acc" accepts; each client connection gets a
/// "hw-kn-w-N" thread that, per request, busy-works `work` then sleeps `io`
/// (standing in for a storage call). Before the knob turns, both run outside
/// the shared mutex (held only to count the request); after, both run under
/// it, so the workers serialise.
pub fn lockknob(bind: IpAddr, port: u16, work: Duration, io: Duration, knob: Knob) -> Result<Part> {
    let (listener, port) = listen(bind, port)?;
    let started = Instant::now();
    let mutex = Arc::new(FutexMutex::new());
    let addr = mutex.addr();
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Mutex::new(LockStats::default()));
    let (conns, reqs, st) = (
        Arc::clone(&connections),
        Arc::clone(&requests),
        Arc::clone(&stats),
    );
    let m = Arc::clone(&mutex);
    let acc = spawn_worker("hw-kn-acc", move |deadline| {
        accept_loop(
            listener,
            deadline,
            |i| format!("hw-kn-w-{i}"),
            conns,
            move |mut conn, _| {
                let mut mine = LockStats::default();
                let mut buf = [0u8; REQUEST_BYTES];
                while let Ok(true) = read_request(&mut conn, &mut buf) {
                    let serialised = knob.turned(started);
                    let serve = || {
                        spin_for(work);
                        if !io.is_zero() {
                            std::thread::sleep(io);
                        }
                    };
                    if !serialised {
                        serve();
                    }
                    if m.lock(&mut mine).is_err() {
                        break;
                    }
                    if serialised {
                        serve();
                    }
                    reqs.fetch_add(1, Ordering::Relaxed);
                    if m.unlock(&mut mine).is_err() || conn.write_all(&buf).is_err() {
                        break;
                    }
                }
                st.lock().unwrap_or_else(|e| e.into_inner()).add(&mine);
            },
        )
    })?;
    Ok(Part {
        workers: vec![acc],
        info: obj! {
            "addr" => bind.to_string(),
            "server_port" => port,
            "futex_addr" => addr,
            "futex_addr_hex" => format!("{addr:#x}"),
            "work_us" => work.as_micros() as u64,
            "io_us" => io.as_micros() as u64,
            "serialise_after_secs" => knob.secs(),
        },
        finish: Box::new(move || {
            drop(mutex);
            let s = *stats.lock().unwrap_or_else(|e| e.into_inner());
            obj! {
                "connections" => connections.load(Ordering::Relaxed),
                "requests" => requests.load(Ordering::Relaxed),
                "futex_wait_blocked" => s.wait_blocked,
                "futex_wake_calls" => s.wake_calls,
            }
        }),
    })
}

/// Per-second request latencies, keyed by Unix second.
type LatencyLog = Arc<Mutex<BTreeMap<u64, Vec<u32>>>>;

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a load generator's connection speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 16-byte requests echoed back (the servers of this crate).
    Echo,
    /// The Redis inline command PING, answered +PONG.
    RedisPing,
    /// Keep-alive HTTP/1.1 `POST /v3/kv/put` to etcd's JSON gateway.
    EtcdPut,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::RedisPing => "redis-ping",
            Protocol::EtcdPut => "etcd-put",
        }
    }
}

/// One connection's request/reply exchange.
enum Exchange {
    Fixed {
        request: &'static [u8],
        reply: [u8; REQUEST_BYTES],
        reply_len: usize,
    },
    Etcd(crate::etcd::PutClient),
}

impl Exchange {
    fn new(protocol: Protocol, conn: u32, server: SocketAddr) -> Exchange {
        match protocol {
            Protocol::Echo => Exchange::Fixed {
                request: &[0u8; REQUEST_BYTES],
                reply: [0; REQUEST_BYTES],
                reply_len: REQUEST_BYTES,
            },
            Protocol::RedisPing => Exchange::Fixed {
                request: b"PING\r\n",
                reply: [0; REQUEST_BYTES],
                reply_len: b"+PONG\r\n".len(),
            },
            Protocol::EtcdPut => {
                Exchange::Etcd(crate::etcd::PutClient::new(conn, &server.to_string()))
            }
        }
    }

    /// One request and its reply; Ok(false) when the server answered with an
    /// error (etcd: not 200).
    fn once(&mut self, conn: &mut TcpStream) -> io::Result<bool> {
        match self {
            Exchange::Fixed {
                request,
                reply,
                reply_len,
            } => {
                conn.write_all(request)?;
                conn.read_exact(&mut reply[..*reply_len])?;
                Ok(true)
            }
            Exchange::Etcd(c) => c.put(conn),
        }
    }

    fn first_error(&self) -> Option<String> {
        match self {
            Exchange::Fixed { .. } => None,
            Exchange::Etcd(c) => c.first_error.clone(),
        }
    }
}

/// `loadgen`: `connections` threads "hw-load-N", each a closed loop on its
/// own connection: send a request, wait for the reply, pause `think`.
/// Requests are 16 bytes echoed back, the Redis inline command "PING"
/// answered "+PONG" (a light, paced load for redis-server), or etcd puts
/// (see [`Protocol`]). A connection stops at its first transport error (its
/// reason is in the final line); error answers are counted and it goes on.
/// With `latency_log`, writes "unix_second p99_us" for every second at the end.
pub fn loadgen(
    server: SocketAddr,
    connections: u32,
    think: Duration,
    protocol: Protocol,
    latency_log: Option<PathBuf>,
) -> Result<Part> {
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let error_answers = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let log: LatencyLog = Arc::new(Mutex::new(BTreeMap::new()));
    let mut workers = Vec::new();
    for i in 0..connections {
        let mut conn = TcpStream::connect(server).ctx(format!("connect({server})"))?;
        conn.set_nodelay(true).ctx("setsockopt(TCP_NODELAY)")?;
        let (reqs, errs, answers, first, log) = (
            Arc::clone(&requests),
            Arc::clone(&errors),
            Arc::clone(&error_answers),
            Arc::clone(&first_error),
            Arc::clone(&log),
        );
        let mut exchange = Exchange::new(protocol, i, server);
        workers.push(spawn_worker(&format!("hw-load-{i}"), move |deadline| {
            let mut mine: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
            let mut failure = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match exchange.once(&mut conn) {
                    Ok(true) => {}
                    Ok(false) => {
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                        failure = Some(format!("connection {i}: {e}"));
                        break;
                    }
                }
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                mine.entry(unix_secs()).or_default().push(us);
                reqs.fetch_add(1, Ordering::Relaxed);
                if !think.is_zero() {
                    std::thread::sleep(think);
                }
            }
            if let Some(f) = failure.or_else(|| exchange.first_error()) {
                first
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(f);
            }
            let mut all = log.lock().unwrap_or_else(|e| e.into_inner());
            for (sec, v) in mine {
                all.entry(sec).or_default().extend(v);
            }
            Ok(())
        })?);
    }
    Ok(Part {
        workers,
        info: obj! {
            "server" => server.to_string(),
            "connections" => connections,
            "think_us" => think.as_micros() as u64,
            "protocol" => protocol.name(),
        },
        finish: Box::new(move || {
            let all = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
            let mut p99s = Vec::new();
            for (sec, mut v) in all {
                v.sort_unstable();
                let idx = ((v.len() as f64) * 0.99).ceil() as usize;
                p99s.push((sec, v[idx.clamp(1, v.len()) - 1]));
            }
            let mut written = serde_json::Value::Null;
            if let Some(path) = latency_log {
                let text: String = p99s.iter().map(|(s, us)| format!("{s} {us}\n")).collect();
                written = match std::fs::write(&path, text) {
                    Ok(()) => path.display().to_string().into(),
                    Err(e) => format!("failed: {e}").into(),
                };
            }
            obj! {
                "requests" => requests.load(Ordering::Relaxed),
                "errors" => errors.load(Ordering::Relaxed),
                "error_answers" => error_answers.load(Ordering::Relaxed),
                "first_error" => first_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                "latency_log" => written,
            }
        }),
    })
}
