//! A mutex on a raw futex word, so that the futex address the kernel sees is
//! known exactly (std's `Mutex` hides it).
//!
//! This is the classic three-state mutex from Ulrich Drepper's "Futexes Are
//! Tricky" (mutex2): 0 = unlocked, 1 = locked, 2 = locked with (possible)
//! waiters. Uncontended lock/unlock make no syscalls; a contended lock sleeps in
//! `FUTEX_WAIT_PRIVATE` on the word and an unlock that sees state 2 issues one
//! `FUTEX_WAKE_PRIVATE` for one waiter.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

// libc does not export the *_PRIVATE combinations.
const FUTEX_WAIT_PRIVATE: libc::c_int = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
const FUTEX_WAKE_PRIVATE: libc::c_int = libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// What one thread did with a [`FutexMutex`]: counts of lock acquisitions and
/// of the futex syscalls it issued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LockStats {
    /// Successful `lock` calls.
    pub acquisitions: u64,
    /// `FUTEX_WAIT` calls that returned 0: the thread slept and was woken.
    pub wait_blocked: u64,
    /// `FUTEX_WAIT` calls that returned EAGAIN (the word changed before the
    /// kernel queued the thread; it did not sleep).
    pub wait_eagain: u64,
    /// `FUTEX_WAIT` calls interrupted by a signal (EINTR).
    pub wait_eintr: u64,
    /// `FUTEX_WAKE` syscalls issued by `unlock`.
    pub wake_calls: u64,
    /// Sum of `FUTEX_WAKE` return values: waiters actually woken.
    pub woken: u64,
}

impl LockStats {
    pub fn add(&mut self, o: &LockStats) {
        self.acquisitions += o.acquisitions;
        self.wait_blocked += o.wait_blocked;
        self.wait_eagain += o.wait_eagain;
        self.wait_eintr += o.wait_eintr;
        self.wake_calls += o.wake_calls;
        self.woken += o.woken;
    }
}

/// Drepper's three-state futex mutex. It guards no data itself; callers pair
/// `lock` and `unlock`.
#[derive(Debug, Default)]
pub struct FutexMutex {
    word: AtomicU32,
}

impl FutexMutex {
    pub const fn new() -> Self {
        FutexMutex {
            word: AtomicU32::new(UNLOCKED),
        }
    }

    /// The futex word's address, as passed to the `futex` syscall.
    pub fn addr(&self) -> u64 {
        self.word.as_ptr() as u64
    }

    /// Acquires the mutex, sleeping in `FUTEX_WAIT_PRIVATE` while it is held.
    /// Fails only if the futex syscall fails unexpectedly (not EAGAIN/EINTR).
    pub fn lock(&self, stats: &mut LockStats) -> io::Result<()> {
        let mut c =
            match self
                .word
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    stats.acquisitions += 1;
                    return Ok(());
                }
                Err(c) => c,
            };
        if c != CONTENDED {
            c = self.word.swap(CONTENDED, Ordering::Acquire);
        }
        while c != UNLOCKED {
            match self.futex_wait(CONTENDED) {
                Ok(()) => stats.wait_blocked += 1,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => stats.wait_eagain += 1,
                    Some(libc::EINTR) => stats.wait_eintr += 1,
                    _ => return Err(e),
                },
            }
            c = self.word.swap(CONTENDED, Ordering::Acquire);
        }
        stats.acquisitions += 1;
        Ok(())
    }

    /// Releases the mutex; if it was contended, wakes one waiter with
    /// `FUTEX_WAKE_PRIVATE`. Must only be called by the thread holding it.
    pub fn unlock(&self, stats: &mut LockStats) -> io::Result<()> {
        if self.word.fetch_sub(1, Ordering::Release) != LOCKED {
            self.word.store(UNLOCKED, Ordering::Release);
            let woken = self.futex_wake(1)?;
            stats.wake_calls += 1;
            stats.woken += woken;
        }
        Ok(())
    }

    fn futex_wait(&self, expected: u32) -> io::Result<()> {
        // SAFETY: the word is a live, aligned u32; a null timeout means wait
        // without a time limit.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                FUTEX_WAIT_PRIVATE,
                expected,
                std::ptr::null::<libc::timespec>(),
            )
        };
        if ret == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn futex_wake(&self, n: i32) -> io::Result<u64> {
        // SAFETY: the word is a live, aligned u32.
        let ret =
            unsafe { libc::syscall(libc::SYS_futex, self.word.as_ptr(), FUTEX_WAKE_PRIVATE, n) };
        if ret == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    struct Guarded {
        lock: FutexMutex,
        counter: UnsafeCell<u64>,
    }
    // SAFETY: `counter` is only touched while `lock` is held.
    unsafe impl Sync for Guarded {}

    #[test]
    fn uncontended_makes_no_syscalls() {
        let m = FutexMutex::new();
        let mut st = LockStats::default();
        for _ in 0..1000 {
            m.lock(&mut st).unwrap();
            m.unlock(&mut st).unwrap();
        }
        assert_eq!(
            st,
            LockStats {
                acquisitions: 1000,
                ..LockStats::default()
            }
        );
        assert_eq!(m.word.load(Ordering::Relaxed), UNLOCKED);
    }

    #[test]
    fn four_threads_count_exactly() {
        const THREADS: usize = 4;
        const ITERS: u64 = 100_000;
        let g = Arc::new(Guarded {
            lock: FutexMutex::new(),
            counter: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let g = Arc::clone(&g);
                std::thread::spawn(move || {
                    let mut st = LockStats::default();
                    for _ in 0..ITERS {
                        g.lock.lock(&mut st).unwrap();
                        // SAFETY: the lock is held.
                        unsafe { *g.counter.get() += 1 };
                        g.lock.unlock(&mut st).unwrap();
                    }
                    st
                })
            })
            .collect();
        let mut total = LockStats::default();
        for h in handles {
            total.add(&h.join().unwrap());
        }
        // SAFETY: all other threads have exited.
        assert_eq!(unsafe { *g.counter.get() }, THREADS as u64 * ITERS);
        assert_eq!(total.acquisitions, THREADS as u64 * ITERS);
        // A waker can wake at most one waiter per call.
        assert!(total.woken <= total.wake_calls);
        assert_eq!(g.lock.word.load(Ordering::Relaxed), UNLOCKED);
    }

    #[test]
    fn addr_is_the_word() {
        let m = FutexMutex::new();
        assert_eq!(m.addr(), &m.word as *const AtomicU32 as u64);
        assert_eq!(m.addr() % 4, 0);
    }
}
