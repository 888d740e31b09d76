//! `lockmgr`: a service built like a database's lock manager, so that row-lock
//! contention looks to the kernel as it does in a real database.
//!
//! N workers ("hw-lm-w-N") each accept a client connection on one shared
//! listener and serve it until it closes. Per 16-byte request a worker
//! busy-works `work` (parsing, planning), then takes a row lock from the lock
//! table, and while holding it busy-works `hold_work` and sleeps `hold_io`
//! (the update and its storage call), releases it and replies. The row is
//! random among `rows` — until the knob turns (`hot` seconds after the first
//! request, so a run that starts idle still has a known stretch of normal
//! operation): then every request updates the same hot row 0, and the
//! workers queue on its lock.
//!
//! The lock table is the point. Its bookkeeping is guarded by a spinlock (no
//! sleeps on it, like a database's spinlock-protected lock partition). A
//! worker that finds its row held appends its own waiter slot to the row's
//! queue and sleeps on its OWN semaphore (a futex word per waiter); the
//! holder, on release, hands the row to the first waiter and wakes that
//! waiter's semaphore. So no waiter ever sleeps on a futex that anyone else
//! sleeps on, and the thread that wakes it is the previous holder.
//!
//! With `prefork` the workers are processes (fork, one per worker, like a
//! database with one process per connection), the lock table lives in a
//! `MAP_SHARED` mapping of a memfd, and the semaphores are process-shared
//! futexes (no FUTEX_PRIVATE_FLAG), keyed by the kernel by the memfd's inode
//! and the word's offset. Without it the workers are threads, the table is
//! private memory and the semaphores use FUTEX_WAIT_PRIVATE.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::obj;
use crate::service::{accept_client, listen, Knob, REQUEST_BYTES};
use crate::sys::{check, spin_for, Error, IoContext, Result};
use crate::worker::{spawn_worker, Part};

/// Most workers (waiter slots) a table has.
pub const MAX_WORKERS: u32 = 64;
/// Most rows a table has.
pub const MAX_ROWS: u32 = 4096;
/// "No slot" in a row's holder and queue links.
const NONE: u32 = u32::MAX;

/// The lock manager's knobs.
pub struct LockMgrParams {
    pub workers: u32,
    pub rows: u32,
    pub work: Duration,
    pub hold_work: Duration,
    pub hold_io: Duration,
    pub hot: Knob,
    pub prefork: bool,
}

/// One row's lock: who holds it and the FIFO of waiter slots.
#[repr(C)]
struct Row {
    holder: AtomicU32,
    head: AtomicU32,
    tail: AtomicU32,
}

/// One worker's waiter slot: its semaphore (a futex word: 1 = the row was
/// handed to it) and its link in a row's queue; plus its counters.
#[repr(C, align(64))]
struct Waiter {
    sem: AtomicU32,
    next: AtomicU32,
    requests: AtomicU64,
    lock_waits: AtomicU64,
    wait_ns: AtomicU64,
}

/// The whole table, laid out for shared memory (no pointers).
#[repr(C)]
struct Table {
    spin: AtomicU32,
    /// CLOCK_MONOTONIC ns of the first request served (0: none yet); the
    /// hot-row knob counts from it.
    first_request_ns: AtomicU64,
    waiters: [Waiter; MAX_WORKERS as usize],
    rows: [Row; MAX_ROWS as usize],
}

/// The table's mapping (shared or private) and how its futexes are called.
struct Mapping {
    table: *const Table,
    shared: bool,
    memfd: Option<libc::c_int>,
}

// SAFETY: the table is only touched through atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(shared: bool) -> Result<Mapping> {
        let len = std::mem::size_of::<Table>();
        let (flags, fd, memfd) = if shared {
            // SAFETY: a valid NUL-terminated name.
            let fd = check(
                unsafe { libc::memfd_create(c"holdup-lock-table".as_ptr(), libc::MFD_CLOEXEC) },
                "memfd_create(holdup-lock-table)",
            )?;
            // SAFETY: fd is our memfd.
            check(
                unsafe { libc::ftruncate(fd, len as libc::off_t) },
                "ftruncate(lock table)",
            )?;
            (libc::MAP_SHARED, fd, Some(fd))
        } else {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, None)
        };
        // SAFETY: a fresh mapping of len bytes; zero-filled by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last("mmap(lock table)"));
        }
        let m = Mapping {
            table: p.cast(),
            shared,
            memfd,
        };
        for r in &m.table().rows {
            r.holder.store(NONE, Ordering::Relaxed);
            r.head.store(NONE, Ordering::Relaxed);
            r.tail.store(NONE, Ordering::Relaxed);
        }
        for w in &m.table().waiters {
            w.next.store(NONE, Ordering::Relaxed);
        }
        Ok(m)
    }

    fn table(&self) -> &Table {
        // SAFETY: mapped in `new` for the process's lifetime, and only
        // accessed through atomics.
        unsafe { &*self.table }
    }

    fn addr(&self) -> u64 {
        self.table as u64
    }

    fn sem_addr(&self, slot: u32) -> u64 {
        self.table().waiters[slot as usize].sem.as_ptr() as u64
    }

    fn spin_lock(&self) {
        let s = &self.table().spin;
        let mut tries = 0u32;
        while s
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            tries += 1;
            if tries % 64 == 0 {
                // The holder may be preempted on this 2-CPU machine: let it run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn spin_unlock(&self) {
        self.table().spin.store(0, Ordering::Release);
    }

    fn futex_op(&self, op: libc::c_int) -> libc::c_int {
        if self.shared {
            op
        } else {
            op | libc::FUTEX_PRIVATE_FLAG
        }
    }

    /// Takes row `row` for waiter slot `slot`; returns whether it had to wait.
    fn acquire(&self, row: u32, slot: u32) -> io::Result<bool> {
        let t = self.table();
        let r = &t.rows[row as usize];
        let me = &t.waiters[slot as usize];
        self.spin_lock();
        if r.holder.load(Ordering::Relaxed) == NONE {
            r.holder.store(slot, Ordering::Relaxed);
            self.spin_unlock();
            return Ok(false);
        }
        me.sem.store(0, Ordering::Relaxed);
        me.next.store(NONE, Ordering::Relaxed);
        match r.tail.load(Ordering::Relaxed) {
            NONE => r.head.store(slot, Ordering::Relaxed),
            tail => t.waiters[tail as usize].next.store(slot, Ordering::Relaxed),
        }
        r.tail.store(slot, Ordering::Relaxed);
        self.spin_unlock();
        while me.sem.load(Ordering::Acquire) == 0 {
            // SAFETY: the word is a live, aligned u32 in the table.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    me.sem.as_ptr(),
                    self.futex_op(libc::FUTEX_WAIT),
                    0u32,
                    std::ptr::null::<libc::timespec>(),
                )
            };
            if ret == -1 {
                let e = io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Releases row `row` held by `slot`: hands it to the first waiter and
    /// wakes that waiter's semaphore, or frees it.
    fn release(&self, row: u32, slot: u32) -> io::Result<()> {
        let t = self.table();
        let r = &t.rows[row as usize];
        self.spin_lock();
        debug_assert_eq!(r.holder.load(Ordering::Relaxed), slot);
        let head = r.head.load(Ordering::Relaxed);
        if head == NONE {
            r.holder.store(NONE, Ordering::Relaxed);
            self.spin_unlock();
            return Ok(());
        }
        let next_waiter = &t.waiters[head as usize];
        let after = next_waiter.next.load(Ordering::Relaxed);
        r.head.store(after, Ordering::Relaxed);
        if after == NONE {
            r.tail.store(NONE, Ordering::Relaxed);
        }
        r.holder.store(head, Ordering::Relaxed);
        next_waiter.sem.store(1, Ordering::Release);
        self.spin_unlock();
        // SAFETY: the word is a live, aligned u32 in the table.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                next_waiter.sem.as_ptr(),
                self.futex_op(libc::FUTEX_WAKE),
                1,
            )
        };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is writable; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The memfd's inode and device (as the kernel's dev_t), for shared futexes.
fn memfd_identity(fd: libc::c_int) -> Result<(u64, u64)> {
    let st = crate::sys::fstat(fd, "lock table memfd")?;
    Ok((st.st_ino, st.st_dev))
}

/// What every worker shares.
struct Shared {
    map: Mapping,
    listener: TcpListener,
    rows: u32,
    work: Duration,
    hold_work: Duration,
    hold_io: Duration,
    hot: Knob,
}

impl Shared {
    /// Whether requests now go to the hot row: --hot-after-secs after the
    /// first request (shared by all workers, threads or processes).
    fn hot(&self) -> bool {
        let Some(after) = self.hot.after else {
            return false;
        };
        let now = monotonic_ns();
        let first = &self.map.table().first_request_ns;
        let t0 = match first.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => now,
            Err(t0) => t0,
        };
        now.saturating_sub(t0) >= after.as_nanos() as u64
    }
}

/// A worker's life: accept a client, serve it until it closes, again, until
/// `deadline`.
fn work(sh: &Shared, slot: u32, deadline: Instant) -> Result<()> {
    let me = &sh.map.table().waiters[slot as usize];
    let mut rng =
        0x9E37_79B9_7F4A_7C15u64 ^ (u64::from(slot) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    while Instant::now() < deadline {
        let Some(mut conn) = accept_one(&sh.listener, deadline)? else {
            continue;
        };
        let mut buf = [0u8; REQUEST_BYTES];
        while read_request(&mut conn, &mut buf) {
            spin_for(sh.work);
            let row = if sh.hot() {
                0
            } else {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % u64::from(sh.rows)) as u32
            };
            let t0 = Instant::now();
            let waited = sh
                .map
                .acquire(row, slot)
                .ctx("futex(FUTEX_WAIT, waiter semaphore)")?;
            if waited {
                me.lock_waits.fetch_add(1, Ordering::Relaxed);
                me.wait_ns
                    .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            spin_for(sh.hold_work);
            if !sh.hold_io.is_zero() {
                std::thread::sleep(sh.hold_io);
            }
            sh.map
                .release(row, slot)
                .ctx("futex(FUTEX_WAKE, waiter semaphore)")?;
            me.requests.fetch_add(1, Ordering::Relaxed);
            if conn.write_all(&buf).is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn read_request(conn: &mut TcpStream, buf: &mut [u8; REQUEST_BYTES]) -> bool {
    conn.read_exact(buf).is_ok()
}

/// Waits (polling, so the deadline is kept) for a client on the shared
/// listener; None when another worker took it or nothing came.
fn accept_one(listener: &TcpListener, deadline: Instant) -> Result<Option<TcpStream>> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: pfd is one valid pollfd.
    let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ret == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(None);
        }
        return Err(Error::call("poll(listener)", e));
    }
    if ret == 0 {
        return Ok(None);
    }
    accept_client(listener)
}

fn worker_name(i: u32) -> String {
    format!("hw-lm-w-{i}")
}

/// Builds the lock manager; with `prefork`, forks the worker processes now
/// (the caller must not have started any thread yet).
pub fn lockmgr(bind: IpAddr, port: u16, p: &LockMgrParams) -> Result<Part> {
    if p.workers == 0 || p.workers > MAX_WORKERS {
        return Err(Error::msg(format!(
            "--workers must be between 1 and {MAX_WORKERS}"
        )));
    }
    if p.rows == 0 || p.rows > MAX_ROWS {
        return Err(Error::msg(format!(
            "--rows must be between 1 and {MAX_ROWS}"
        )));
    }
    let (listener, port) = listen(bind, port)?;
    let map = Mapping::new(p.prefork)?;
    let sem_addrs: Vec<u64> = (0..p.workers).map(|i| map.sem_addr(i)).collect();
    let table_addr = map.addr();
    let table_bytes = std::mem::size_of::<Table>() as u64;
    let sem_offsets: Vec<u64> = sem_addrs.iter().map(|a| a - table_addr).collect();
    let memfd = match map.memfd {
        Some(fd) => Some(memfd_identity(fd)?),
        None => None,
    };
    let shared = std::sync::Arc::new(Shared {
        map,
        listener,
        rows: p.rows,
        work: p.work,
        hold_work: p.hold_work,
        hold_io: p.hold_io,
        hot: p.hot,
    });
    let mut info = obj! {
        "addr" => bind.to_string(),
        "server_port" => port,
        "workers" => p.workers,
        "rows" => p.rows,
        "hot_row" => 0,
        "hot_after_secs" => p.hot.secs(),
        "prefork" => p.prefork,
        "table_addr" => table_addr,
        "table_addr_hex" => format!("{table_addr:#x}"),
        "table_bytes" => table_bytes,
        "waiter_sem_addrs" => sem_addrs,
        "waiter_sem_offsets" => sem_offsets,
    };
    if let Some((ino, dev)) = memfd {
        info.insert("table_memfd_ino".into(), ino.into());
        info.insert("table_memfd_dev".into(), dev.into());
    }
    let workers = if p.prefork {
        prefork(&shared, p.workers, &mut info)?
    } else {
        (0..p.workers)
            .map(|i| {
                let sh = std::sync::Arc::clone(&shared);
                spawn_worker(&worker_name(i), move |deadline| work(&sh, i, deadline))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let nworkers = p.workers;
    Ok(Part {
        workers,
        info,
        finish: Box::new(move || {
            let t = shared.map.table();
            let w = &t.waiters[..nworkers as usize];
            let sum = |f: fn(&Waiter) -> u64| w.iter().map(f).sum::<u64>();
            obj! {
                "requests" => sum(|w| w.requests.load(Ordering::Relaxed)),
                "lock_waits" => sum(|w| w.lock_waits.load(Ordering::Relaxed)),
                "lock_wait_ms" => sum(|w| w.wait_ns.load(Ordering::Relaxed)) as f64 / 1e6,
            }
        }),
    })
}

/// Forks one process per worker, each named `hw-lm-w-N` (its comm), waiting
/// on a pipe for the go signal; returns the parent's thread "hw-lm-parent",
/// which gives the signal with the deadline and reaps the children. Their
/// pids go into the startup line as `worker_pids` (and under `threads`).
fn prefork(
    shared: &std::sync::Arc<Shared>,
    workers: u32,
    info: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<crate::worker::Worker>> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2(go signal)",
    )?;
    let (go_read, go_write) = (fds[0], fds[1]);
    let mut pids = Vec::new();
    for i in 0..workers {
        // SAFETY: this process has a single thread here (main_inner builds
        // this part before starting any thread), so the child may do anything.
        let pid = check(unsafe { libc::fork() }, "fork(lock manager worker)")?;
        if pid == 0 {
            child(shared, i, go_read, go_write);
        }
        pids.push(pid);
    }
    // SAFETY: the parent does not read the go pipe.
    unsafe { libc::close(go_read) };
    let mut threads = serde_json::Map::new();
    for (i, pid) in pids.iter().enumerate() {
        threads.insert(worker_name(i as u32), (*pid).into());
    }
    info.insert("worker_pids".into(), pids.clone().into());
    info.insert("worker_processes".into(), threads.into());
    let parent = spawn_worker("hw-lm-parent", move |deadline| {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = (left.as_nanos() as u64).to_le_bytes();
        for _ in &pids {
            // SAFETY: msg is 8 readable bytes; go_write is our pipe end.
            let n = unsafe { libc::write(go_write, msg.as_ptr().cast(), msg.len()) };
            if n != msg.len() as isize {
                return Err(Error::last("write(go signal)"));
            }
        }
        let mut failed = Vec::new();
        for pid in &pids {
            let mut status = 0;
            // SAFETY: pid is our child; status is writable.
            check(
                unsafe { libc::waitpid(*pid, &mut status, 0) },
                "waitpid(worker)",
            )?;
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                failed.push(*pid);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::msg(format!(
                "lock manager workers {failed:?} failed"
            )))
        }
    })?;
    Ok(vec![parent])
}

/// A forked worker: names itself, dies with its parent, waits for the go
/// signal (the nanoseconds left to run), works, and exits.
fn child(shared: &Shared, i: u32, go_read: libc::c_int, go_write: libc::c_int) -> ! {
    let name = std::ffi::CString::new(worker_name(i)).expect("no NUL in the name");
    // SAFETY: plain prctl calls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::close(go_write);
    }
    let mut msg = [0u8; 8];
    // SAFETY: msg is 8 writable bytes.
    let n = unsafe { libc::read(go_read, msg.as_mut_ptr().cast(), msg.len()) };
    if n != msg.len() as isize {
        // The parent went away before the start: nothing to do.
        // SAFETY: ends this child only.
        unsafe { libc::_exit(0) };
    }
    let deadline = Instant::now() + Duration::from_nanos(u64::from_le_bytes(msg));
    let code = match work(shared, i, deadline) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("holdup-workload: {} : {e}", worker_name(i));
            1
        }
    };
    // SAFETY: ends this child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}
