//! The generators `holdup reproduce` starts, each as a process of its own
//! (holdup started again with a hidden `--generator SPEC`), which first
//! moves itself into its cgroup, names itself (`hl-cpu-hog`,
//! `hl-disk-writer`, `hl-delay-proxy`: that is how the lab run's diagnosis
//! names it), and dies with holdup (PR_SET_PDEATHSIG) or after `secs`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a generator process does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GeneratorSpec {
    /// Spins on one of `cpus` (its affinity).
    CpuHog {
        /// CPUs it may run on.
        cpus: Vec<usize>,
    },
    /// O_DIRECT writes of `block_bytes` at `bytes_per_s` to `file`, an
    /// fsync after every `fsync_every` writes.
    DiskWriter {
        /// The file (created; kept under 256 MiB by writing around).
        file: PathBuf,
        /// Rate.
        bytes_per_s: f64,
        /// Size of each write.
        block_bytes: u64,
        /// Writes between fsyncs.
        fsync_every: u32,
    },
    /// Listens on `listen` and forwards to `upstream`, delaying each chunk
    /// of the answers by `delay_ms` (from SIGUSR1 on, when `on_signal`).
    DelayProxy {
        /// Loopback address to listen on.
        listen: SocketAddr,
        /// Loopback address to forward to.
        upstream: SocketAddr,
        /// Delay per answer chunk, ms.
        delay_ms: f64,
        /// Wait for SIGUSR1 before delaying (the baseline runs undelayed).
        on_signal: bool,
    },
}

/// A generator with its cgroups and time limit (the `--generator` argument).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratorRun {
    /// What to do.
    pub spec: GeneratorSpec,
    /// `cgroup.procs` files to join first.
    pub cgroup_procs: Vec<PathBuf>,
    /// Ends by itself after this long.
    pub secs: f64,
}

impl GeneratorSpec {
    /// The process name it takes.
    pub fn comm(&self) -> &'static str {
        match self {
            GeneratorSpec::CpuHog { .. } => "hl-cpu-hog",
            GeneratorSpec::DiskWriter { .. } => "hl-disk-writer",
            GeneratorSpec::DelayProxy { .. } => "hl-delay-proxy",
        }
    }
}

static DELAYING: AtomicBool = AtomicBool::new(false);

extern "C" fn start_delaying(_: libc::c_int) {
    DELAYING.store(true, Ordering::SeqCst);
}

fn set_comm(name: &str) {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Runs a generator (the body of `holdup reproduce --generator JSON`).
pub fn run_generator(json: &str) -> Result<()> {
    let run: GeneratorRun =
        serde_json::from_str(json).context("--generator takes the JSON holdup itself writes")?;
    // SAFETY: asks for SIGKILL when the parent (holdup reproduce) dies.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    for p in &run.cgroup_procs {
        std::fs::write(p, std::process::id().to_string())
            .with_context(|| format!("cannot join the cgroup {}", p.display()))?;
    }
    set_comm(run.spec.comm());
    let until = Instant::now() + Duration::from_secs_f64(run.secs);
    match run.spec {
        GeneratorSpec::CpuHog { cpus } => {
            set_affinity(&cpus)?;
            let mut x = 0u64;
            while Instant::now() < until {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            Ok(())
        }
        GeneratorSpec::DiskWriter {
            file,
            bytes_per_s,
            block_bytes,
            fsync_every,
        } => disk_writer(&file, bytes_per_s, block_bytes, fsync_every.max(1), until),
        GeneratorSpec::DelayProxy {
            listen,
            upstream,
            delay_ms,
            on_signal,
        } => {
            if on_signal {
                // SAFETY: the handler only stores to an atomic.
                unsafe {
                    libc::signal(
                        libc::SIGUSR1,
                        start_delaying as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    )
                };
            } else {
                DELAYING.store(true, Ordering::SeqCst);
            }
            delay_proxy(
                listen,
                upstream,
                Duration::from_secs_f64(delay_ms / 1e3),
                until,
            )
        }
    }
}

/// Pins the calling process to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it for
    // CPU numbers below CPU_SETSIZE, checked here.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                bail!("CPU {c} is beyond what an affinity mask holds");
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "cannot pin to CPUs {cpus:?}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// CPUs a process may run on.
pub fn affinity_of(pid: u32) -> Result<Vec<usize>> {
    // SAFETY: sched_getaffinity fills a cpu_set_t of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        ) != 0
        {
            bail!(
                "cannot read the CPUs of pid {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect())
    }
}

/// Most the writer's file grows to.
const WRITER_FILE_BYTES: u64 = 256 << 20;

fn disk_writer(
    file: &std::path::Path,
    bytes_per_s: f64,
    block: u64,
    fsync_every: u32,
    until: Instant,
) -> Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let open = |flags: i32| {
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .custom_flags(flags)
            .open(file)
    };
    // O_DIRECT (past the page cache, as a database's own writes); a
    // filesystem without it (tmpfs) gets buffered writes and fsyncs.
    let f = open(libc::O_DIRECT)
        .or_else(|_| open(0))
        .with_context(|| format!("cannot write {}", file.display()))?;
    let layout = std::alloc::Layout::from_size_align(block as usize, 4096)
        .context("block size for O_DIRECT")?;
    // SAFETY: a non-zero size, freed below; written before it is read.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        bail!("cannot allocate a {block}-byte buffer");
    }
    // SAFETY: ptr holds `block` initialised (zeroed) bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, block as usize) };
    buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    let start = Instant::now();
    let (mut written, mut offset, mut n) = (0u64, 0u64, 0u32);
    let result = (|| -> Result<()> {
        while Instant::now() < until {
            let due = start.elapsed().as_secs_f64() * bytes_per_s;
            if (written as f64) > due {
                let ahead = (written as f64 - due) / bytes_per_s;
                std::thread::sleep(Duration::from_secs_f64(ahead.min(0.05)));
                continue;
            }
            f.write_all_at(buf, offset)
                .with_context(|| format!("write {}", file.display()))?;
            written += block;
            offset = (offset + block) % WRITER_FILE_BYTES;
            n += 1;
            if n % fsync_every == 0 {
                f.sync_data()
                    .with_context(|| format!("fsync {}", file.display()))?;
            }
        }
        Ok(())
    })();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    let _ = std::fs::remove_file(file);
    result
}

fn is_loopback(a: &SocketAddr) -> bool {
    a.ip().is_loopback()
}

fn delay_proxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    delay: Duration,
    until: Instant,
) -> Result<()> {
    if !is_loopback(&listen) || !is_loopback(&upstream) {
        bail!("the delay proxy runs on loopback only ({listen} → {upstream})");
    }
    let l = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    l.set_nonblocking(true)?;
    while Instant::now() < until {
        match l.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false)?;
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (c2, u2) = (client.try_clone()?, up.try_clone()?);
                std::thread::spawn(move || pump(client, up, None));
                std::thread::spawn(move || pump(u2, c2, Some(delay)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

/// Copies `from` to `to`, each chunk after `delay` once delaying started.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Option<Duration>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(d) = delay {
            if DELAYING.load(Ordering::SeqCst) {
                std::thread::sleep(d);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}
