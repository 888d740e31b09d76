//! `shmfutex`: a process-shared lock. Two processes contend for one mutex on
//! a raw futex word in a `MAP_SHARED` memfd mapping, with shared (not
//! `FUTEX_PRIVATE_FLAG`) futex calls, as a process-shared pthread mutex or a
//! lock table in shared memory does. The kernel keys such a futex by the
//! memfd's inode and the word's offset in it, so a wait in one process is
//! ended by a wake from the other.
//!
//! The parent's threads `hw-shf-0..K-1` and the forked child's single thread
//! `hw-shf-child` run the same loop: lock; spin `hold`; unlock; spin `pause`.
//! The child is forked before any thread exists, so it may use all of libc.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::obj;
use crate::sys::{check, fstat, spin_for, Error, Result};
use crate::worker::{spawn_worker, Part};

/// Byte offset of the futex word in the memfd (not 0, so a key that forgot
/// the offset is caught).
pub const FUTEX_OFFSET: usize = 256;
/// Where the child leaves its counters: [acquisitions, wake_calls, woken].
const CHILD_STATS_OFFSET: usize = 512;
const MAP_LEN: usize = 4096;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Counters of one thread's use of the shared lock.
#[derive(Default, Clone, Copy)]
struct Counts {
    acquisitions: u64,
    wake_calls: u64,
    woken: u64,
}

/// Drepper's three-state mutex (as in `futex.rs`), with shared futex calls.
struct SharedLock<'a> {
    word: &'a AtomicU32,
}

impl SharedLock<'_> {
    fn lock(&self, c: &mut Counts) -> Result<()> {
        let mut s =
            match self
                .word
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    c.acquisitions += 1;
                    return Ok(());
                }
                Err(s) => s,
            };
        if s != CONTENDED {
            s = self.word.swap(CONTENDED, Ordering::Acquire);
        }
        while s != UNLOCKED {
            // SAFETY: the word is a live, aligned u32 in the shared mapping;
            // a null timeout waits without a limit.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.word.as_ptr(),
                    libc::FUTEX_WAIT,
                    CONTENDED,
                    std::ptr::null::<libc::timespec>(),
                )
            };
            if r == -1 {
                let e = std::io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                    return Err(Error::call("futex(FUTEX_WAIT) on the shared word", e));
                }
            }
            s = self.word.swap(CONTENDED, Ordering::Acquire);
        }
        c.acquisitions += 1;
        Ok(())
    }

    fn unlock(&self, c: &mut Counts) -> Result<()> {
        if self.word.fetch_sub(1, Ordering::Release) != LOCKED {
            self.word.store(UNLOCKED, Ordering::Release);
            // SAFETY: the word is a live, aligned u32 in the shared mapping.
            let r =
                unsafe { libc::syscall(libc::SYS_futex, self.word.as_ptr(), libc::FUTEX_WAKE, 1) };
            let woken = check(r, "futex(FUTEX_WAKE) on the shared word")?;
            c.wake_calls += 1;
            c.woken += woken as u64;
        }
        Ok(())
    }
}

/// The shared mapping; unmapped when the last owner drops it.
struct Shm {
    base: *mut u8,
    _fd: OwnedFd,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: FUTEX_OFFSET is 4-aligned and inside the live mapping.
        unsafe { &*(self.base.add(FUTEX_OFFSET) as *const AtomicU32) }
    }

    fn child_stat(&self, i: usize) -> &AtomicU64 {
        // SAFETY: 8-aligned slots inside the live mapping.
        unsafe { &*(self.base.add(CHILD_STATS_OFFSET + 8 * i) as *const AtomicU64) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: our own mapping of MAP_LEN bytes; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), MAP_LEN) };
    }
}

fn lock_loop(
    lock: &SharedLock,
    deadline: Instant,
    hold: Duration,
    pause: Duration,
) -> Result<Counts> {
    let mut c = Counts::default();
    while Instant::now() < deadline {
        lock.lock(&mut c)?;
        spin_for(hold);
        lock.unlock(&mut c)?;
        spin_for(pause);
    }
    Ok(c)
}

/// The child: named, tied to the parent's life, released by one 8-byte
/// message on `go` (the nanoseconds left to run).
fn child_main(shm: &Shm, go: i32, hold: Duration, pause: Duration) -> ! {
    // SAFETY: plain syscalls on our own process and fds.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_NAME, c"hw-shf-child".as_ptr());
        let mut left = [0u8; 8];
        if libc::read(go, left.as_mut_ptr().cast(), 8) != 8 {
            libc::_exit(0); // the parent gave up before the start
        }
        let deadline = Instant::now() + Duration::from_nanos(u64::from_ne_bytes(left));
        let lock = SharedLock { word: shm.word() };
        match lock_loop(&lock, deadline, hold, pause) {
            Ok(c) => {
                shm.child_stat(0).store(c.acquisitions, Ordering::Release);
                shm.child_stat(1).store(c.wake_calls, Ordering::Release);
                shm.child_stat(2).store(c.woken, Ordering::Release);
                libc::_exit(0)
            }
            Err(e) => {
                eprintln!("holdup-workload (shmfutex child): {e}");
                libc::_exit(1)
            }
        }
    }
}

/// Builds the scenario: the memfd, the child, and `threads` parent workers.
/// Must run before any other thread of the process exists (it forks).
pub fn shmfutex(threads: u32, hold: Duration, pause: Duration) -> Result<Part> {
    // SAFETY: memfd_create with a valid name; the fd is ours.
    let fd = check(
        unsafe { libc::memfd_create(c"holdup-shmfutex".as_ptr(), libc::MFD_CLOEXEC) },
        "memfd_create(holdup-shmfutex)",
    )?;
    // SAFETY: fd was just created and is owned only here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    check(
        // SAFETY: resizing our own memfd.
        unsafe { libc::ftruncate(fd.as_raw_fd(), MAP_LEN as libc::off_t) },
        "ftruncate(memfd)",
    )?;
    // SAFETY: a fresh shared mapping of the whole memfd.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            MAP_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Error::last("mmap(memfd, MAP_SHARED)"));
    }
    let st = fstat(fd.as_raw_fd(), "memfd")?;
    let shm = Arc::new(Shm {
        base: base.cast(),
        _fd: fd,
    });

    let mut pipe = [0i32; 2];
    // SAFETY: a valid array of two fds.
    check(unsafe { libc::pipe(pipe.as_mut_ptr()) }, "pipe")?;
    // SAFETY: no other thread exists yet (see the doc line), so the child may
    // run ordinary code until it exits.
    let child = check(unsafe { libc::fork() }, "fork")?;
    if child == 0 {
        // SAFETY: closing the child's copy of the write end.
        unsafe { libc::close(pipe[1]) };
        child_main(&shm, pipe[0], hold, pause);
    }
    // SAFETY: the parent's copy of the read end.
    unsafe { libc::close(pipe[0]) };
    let go = pipe[1];

    let names: Vec<String> = (0..threads).map(|i| format!("hw-shf-{i}")).collect();
    let results = Arc::new(Mutex::new(vec![Counts::default(); names.len()]));
    let mut workers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (shm, res) = (Arc::clone(&shm), Arc::clone(&results));
        workers.push(spawn_worker(name, move |deadline| {
            if i == 0 {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .as_nanos() as u64;
                // SAFETY: writing 8 bytes to our pipe; the child reads them.
                let n = unsafe { libc::write(go, left.to_ne_bytes().as_ptr().cast(), 8) };
                check(n, "write(start pipe to the shmfutex child)")?;
            }
            let c = lock_loop(&SharedLock { word: shm.word() }, deadline, hold, pause)?;
            res.lock().unwrap_or_else(|e| e.into_inner())[i] = c;
            Ok(())
        })?);
    }
    let info = obj! {
        "futex_offset" => FUTEX_OFFSET,
        "futex_ino" => st.st_ino,
        "futex_dev_major" => libc::major(st.st_dev),
        "futex_dev_minor" => libc::minor(st.st_dev),
        "child_pid" => child,
        "hold_us" => hold.as_micros() as u64,
        "pause_us" => pause.as_micros() as u64,
    };
    Ok(Part {
        workers,
        info,
        finish: Box::new(move || {
            let mut status = 0;
            // SAFETY: reaping our own child (it runs to the same deadline).
            unsafe {
                libc::close(go);
                libc::waitpid(child, &mut status, 0);
            }
            let per = results.lock().unwrap_or_else(|e| e.into_inner());
            let (mut acq, mut calls, mut woken) = (0u64, 0u64, 0u64);
            for c in per.iter() {
                acq += c.acquisitions;
                calls += c.wake_calls;
                woken += c.woken;
            }
            let child_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            obj! {
                "parent_acquisitions" => acq,
                "parent_wake_calls" => calls,
                "parent_woken" => woken,
                "child_acquisitions" => shm.child_stat(0).load(Ordering::Acquire),
                "child_wake_calls" => shm.child_stat(1).load(Ordering::Acquire),
                "child_woken" => shm.child_stat(2).load(Ordering::Acquire),
                "child_ok" => Value::Bool(child_ok),
            }
        }),
    })
}
