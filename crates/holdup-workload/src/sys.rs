//! Error type and thin wrappers around the raw syscalls the scenarios need.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A failure that ends the workload with exit status 1.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn msg(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }

    /// `call` failed with `err` (an errno-carrying `io::Error`).
    pub fn call(call: impl fmt::Display, err: io::Error) -> Self {
        Error(format!("{call} failed: {err}"))
    }

    /// `call` failed; the reason is the current `errno`.
    pub fn last(call: impl fmt::Display) -> Self {
        Self::call(call, io::Error::last_os_error())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks a libc return value where -1 means failure (errno set).
pub fn check<T: Copy + PartialEq + From<i8>>(ret: T, call: impl fmt::Display) -> Result<T> {
    if ret == T::from(-1) {
        Err(Error::last(call))
    } else {
        Ok(ret)
    }
}

/// Adds context to an `io::Error` from std.
pub trait IoContext<T> {
    fn ctx(self, call: impl fmt::Display) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, call: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::call(call, e))
    }
}

/// Kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd, what: &str) -> Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st points to writable memory of the right size.
    check(
        unsafe { libc::fstat(fd, st.as_mut_ptr()) },
        format!("fstat({what})"),
    )?;
    // SAFETY: fstat succeeded, so it filled st.
    Ok(unsafe { st.assume_init() })
}

/// Pins thread `tid` to the single CPU `cpu`.
pub fn pin_to_cpu(tid: i32, cpu: usize) -> Result<()> {
    let call = format!("sched_setaffinity(tid {tid}, cpu {cpu})");
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= max {
        return Err(Error::msg(format!(
            "{call} failed: cpu must be below {max}"
        )));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is a valid cpu_set_t of the given size.
    let ret = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if ret == -1 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EINVAL) {
            format!(" (is CPU {cpu} online and allowed for this process?)")
        } else {
            String::new()
        };
        return Err(Error::msg(format!("{call} failed: {e}{hint}")));
    }
    Ok(())
}

/// Busy-waits (no syscalls: `Instant::now` goes through the vDSO) until `end`.
pub fn spin_until(end: Instant) -> u64 {
    let mut iterations = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        iterations += 1;
    }
    iterations
}

/// Busy-waits for `d`.
pub fn spin_for(d: Duration) -> u64 {
    spin_until(Instant::now() + d)
}

/// Sleeps (nanosleep) until `end`; returns immediately if it has passed.
pub fn sleep_until(end: Instant) {
    let now = Instant::now();
    if end > now {
        std::thread::sleep(end - now);
    }
}
