//! `pipe`: two threads ping-pong one byte over two pipes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::obj;
use crate::sys::{check, fstat, Error, IoContext, Result};
use crate::worker::{spawn_worker, Part};

/// `pipe2(O_CLOEXEC)`: (read end, write end).
fn pipe(what: &str) -> Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        format!("pipe2({what})"),
    )?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// `hw-pipe-a` writes one byte into pipe a->b and blocks in `read()` on pipe
/// b->a; `hw-pipe-b` reads it, sleeps `delay` (nanosleep), answers. So each of
/// a's reads blocks ~`delay`.
pub fn pipe_pair(delay: Duration) -> Result<Part> {
    let (ab_r, mut ab_w) = pipe("a->b")?;
    let (mut ba_r, ba_w) = pipe("b->a")?;
    let ab_ino = fstat(ab_r.as_raw_fd(), "pipe a->b")?.st_ino;
    let ba_ino = fstat(ba_r.as_raw_fd(), "pipe b->a")?.st_ino;
    let info = obj! {
        "pipe_ab_ino" => ab_ino,
        "pipe_ba_ino" => ba_ino,
        "pipe_ab_fds" => [ab_r.as_raw_fd(), ab_w.as_raw_fd()],
        "pipe_ba_fds" => [ba_r.as_raw_fd(), ba_w.as_raw_fd()],
        "delay_us" => delay.as_micros() as u64,
    };

    let round_trips = Arc::new(AtomicU64::new(0));
    let replies = Arc::new(AtomicU64::new(0));

    let rt = Arc::clone(&round_trips);
    let a = spawn_worker("hw-pipe-a", move |deadline| {
        let mut buf = [0u8; 1];
        let mut n = 0;
        while Instant::now() < deadline {
            ab_w.write_all(b"x").ctx("write(pipe a->b)")?;
            if ba_r.read(&mut buf).ctx("read(pipe b->a)")? == 0 {
                return Err(Error::msg(
                    "read(pipe b->a): hw-pipe-b closed its end early",
                ));
            }
            n += 1;
        }
        rt.store(n, Ordering::Relaxed);
        // Dropping ab_w here gives hw-pipe-b end-of-file, which ends it.
        Ok(())
    })?;

    let rp = Arc::clone(&replies);
    let (mut ab_r, mut ba_w) = (ab_r, ba_w);
    let b = spawn_worker("hw-pipe-b", move |_deadline| {
        let mut buf = [0u8; 1];
        let mut n = 0;
        while ab_r.read(&mut buf).ctx("read(pipe a->b)")? != 0 {
            std::thread::sleep(delay);
            ba_w.write_all(&buf).ctx("write(pipe b->a)")?;
            n += 1;
        }
        rp.store(n, Ordering::Relaxed);
        Ok(())
    })?;

    Ok(Part {
        workers: vec![a, b],
        info,
        finish: Box::new(move || {
            obj! {
                "pipe_round_trips" => round_trips.load(Ordering::Relaxed),
                "pipe_replies" => replies.load(Ordering::Relaxed),
            }
        }),
    })
}
