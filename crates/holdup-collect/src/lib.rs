//! holdup's collector: loads the BPF programs, keeps the kernel-side target
//! filter up to date, and turns each window's kernel aggregates into a
//! [`holdup_model::Snapshot`].
//!
//! Windows are cut by user space: it moves `window_start` (whose low bit
//! selects which of two map slots the kernel writes), runs the `window_cut`
//! task iterator so every in-flight state is accounted up to the boundary,
//! then drains the old slot. See docs/ARCHITECTURE.md.
//!
//! Why this file is long (~870 lines): the window cut and the drain of each
//! map into the snapshot are one sequence over shared collector state;
//! target filters, preflight, runtimes, throttling and the window loop live
//! in their own modules.

#![warn(missing_docs)]

mod convert;
pub mod preflight;
pub mod runtime;
pub mod target;
pub mod throttle;
pub mod windows;

use holdup_bpf::{types, HoldupSkel, HoldupSkelBuilder};
use holdup_model::{
    Culprit, DiskIo, FutexWake, Loss, ProgCost, ResourceWait, Snapshot, StateTimes, Target,
    ThreadWindow, WaitKind, WaitTotal, WakeEdge, Waker, WindowInfo,
};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Iter, Link, MapCore, MapFlags, MapHandle, RingBuffer, RingBufferBuilder};
use regex::Regex;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use target::TargetSpec;

/// Errors a user can hit starting or running the collector; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Not root and no CAP_BPF + CAP_PERFMON.
    #[error(
        "holdup needs root (or CAP_BPF and CAP_PERFMON) to load its eBPF programs: run it with sudo"
    )]
    NotPrivileged,
    /// No kernel BTF.
    #[error(
        "this kernel has no BTF at /sys/kernel/btf/vmlinux: holdup needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2021 are)"
    )]
    NoBtf,
    /// tracefs missing and could not be mounted.
    #[error(
        "tracefs is not mounted and holdup could not mount it ({0}): run \
         `mount -t tracefs nodev /sys/kernel/tracing` as root"
    )]
    NoTracefs(String),
    /// A pid that is not there.
    #[error("no process with pid {0}: check the pid with `ps -p {0}` (it may have exited)")]
    NoSuchPid(u32),
    /// A cgroup path that is not there.
    #[error(
        "no cgroup v2 directory at {0}: give a path relative to the cgroup v2 \
         mount (e.g. system.slice/redis-server.service); `systemctl status <unit>` shows a unit's cgroup"
    )]
    NoSuchCgroup(String),
    /// Command could not start.
    #[error("could not start `{cmd}`: {err}")]
    Spawn {
        /// The command.
        cmd: String,
        /// Why.
        err: std::io::Error,
    },
    /// Loading or attaching failed.
    #[error("loading holdup's eBPF programs failed at {stage}: {err}")]
    Bpf {
        /// What was being done.
        stage: &'static str,
        /// libbpf's error.
        err: libbpf_rs::Error,
    },
}

fn bpf_err(stage: &'static str) -> impl FnOnce(libbpf_rs::Error) -> CollectError {
    move |err| CollectError::Bpf { stage, err }
}

/// How to collect.
#[derive(Clone, Debug)]
pub struct Options {
    /// What to watch.
    pub target: TargetSpec,
    /// Window length.
    pub interval: Duration,
    /// Trace processes the target forks.
    pub follow_children: bool,
    /// Count every socket call and its bytes (sock:sock_{recv,send}_length).
    /// Off by default: these fire on every socket call on the host, which
    /// costs a busy network service several percent of its throughput.
    pub socket_calls: bool,
    /// Attach only the scheduler tracepoints: no block-device or socket
    /// tracepoints. Cheapest; disk and socket wake-ups then count as the
    /// kernel's or the waking thread's, and no per-disk I/O is collected.
    pub sched_only: bool,
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

use convert::NR_LOSS;

/// A running collector. Dropping it detaches every program and restores BPF stats.
pub struct Collector {
    skel: HoldupSkel<'static>,
    iter_link: Link,
    /// `sk_data_ready`'s link while it is attached.
    data_ready_link: Option<Link>,
    /// Whether `sk_data_ready` was loaded (not with --sched-only).
    data_ready_loaded: bool,
    _stats_fd: Option<OwnedFd>,
    exec_rb: Option<RingBuffer<'static>>,
    exec_pending: Arc<Mutex<Vec<(u32, String)>>>,
    spec: TargetSpec,
    model_target: Target,
    cgroup_dir: Option<std::path::PathBuf>,
    child: Option<ChildProc>,
    root_pid: Option<u32>,
    index: u64,
    window_start_ns: u64,
    window_wall_ms: u64,
    interval: Duration,
    prev_loss: [u64; NR_LOSS],
    prev_prog: HashMap<String, (u64, u64)>,
    cgroup_names: target::CgroupNames,
    disk_names: HashMap<u32, String>,
    runtimes: runtime::RuntimeCache,
    throttles: throttle::ThrottleReader,
}

impl Collector {
    /// Checks the system, loads and attaches the programs, resolves the target
    /// and starts the first window.
    pub fn start(opts: Options) -> Result<Collector, CollectError> {
        preflight::check()?;

        // Validate the target before loading anything.
        let mut root_pid = None;
        let mut cgroup_dir = None;
        match &opts.target {
            TargetSpec::Pid(pid) => root_pid = Some(target::tgid_of(*pid)?),
            TargetSpec::Cgroup(p) => cgroup_dir = Some(target::resolve_cgroup(p)?),
            _ => {}
        }

        // The skeleton borrows its object storage for its whole life; a
        // collector lives about as long as the process, so leak the small box.
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = HoldupSkelBuilder::default()
            .open(storage)
            .map_err(bpf_err("open"))?;
        {
            let ro = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("rodata is mmapped");
            ro.self_tgid = std::process::id();
            ro.follow_children = u8::from(opts.follow_children);
            ro.targ_all = u8::from(matches!(opts.target, TargetSpec::All));
            ro.targ_cgroup = u8::from(matches!(opts.target, TargetSpec::Cgroup(_)));
            ro.targ_comm = u8::from(matches!(opts.target, TargetSpec::Comm(_)));
        }
        open.progs.window_cut.set_autoattach(false);
        // Attached only while targets wait in poll or select (see `cut`): it
        // fires for every packet on the host, and epoll and blocking socket
        // waits are named without it.
        open.progs.handle_sk_data_ready.set_autoattach(false);
        if !opts.socket_calls || opts.sched_only {
            open.progs.handle_sock_recv_length.set_autoload(false);
            open.progs.handle_sock_send_length.set_autoload(false);
        }
        if opts.sched_only {
            open.progs.handle_sk_data_ready.set_autoload(false);
            open.progs.handle_block_bio_queue.set_autoload(false);
            open.progs.handle_block_rq_complete.set_autoload(false);
        }
        let skel = open.load().map_err(bpf_err("load (verifier)"))?;

        // Statistics of every program's run time, for the overhead report.
        // SAFETY: plain syscall wrapper; the fd restores the setting when closed.
        let stats_fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        let stats_fd = (stats_fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(stats_fd) });

        let iter_link = skel
            .progs
            .window_cut
            .attach()
            .map_err(bpf_err("attach window iterator"))?;

        let exec_pending = Arc::new(Mutex::new(Vec::new()));
        let exec_rb = if matches!(opts.target, TargetSpec::Comm(_)) {
            let handle: &'static MapHandle = Box::leak(Box::new(
                MapHandle::try_from(&skel.maps.exec_events).map_err(bpf_err("ring buffer"))?,
            ));
            let pending = exec_pending.clone();
            let mut b = RingBufferBuilder::new();
            b.add(handle, move |data: &[u8]| {
                let e: types::exec_event = convert::pod(data);
                if let Ok(mut p) = pending.lock() {
                    p.push((e.tgid, convert::cstr(&e.comm)));
                }
                0
            })
            .map_err(bpf_err("ring buffer"))?;
            Some(b.build().map_err(bpf_err("ring buffer"))?)
        } else {
            None
        };

        let mut c = Collector {
            skel,
            iter_link,
            data_ready_link: None,
            data_ready_loaded: !opts.sched_only,
            _stats_fd: stats_fd,
            exec_rb,
            exec_pending,
            spec: opts.target.clone(),
            model_target: Target::All,
            cgroup_dir,
            child: None,
            root_pid,
            index: 0,
            runtimes: runtime::RuntimeCache::default(),
            throttles: throttle::ThrottleReader::default(),
            window_start_ns: 0,
            window_wall_ms: 0,
            interval: opts.interval,
            prev_loss: [0; NR_LOSS],
            prev_prog: HashMap::new(),
            cgroup_names: Default::default(),
            disk_names: HashMap::new(),
        };
        c.model_target = match &opts.target {
            TargetSpec::Pid(_) => Target::Pid {
                pid: root_pid.unwrap(),
            },
            TargetSpec::Cgroup(p) => Target::Cgroup {
                path: p.display().to_string(),
            },
            TargetSpec::Comm(re) => Target::Comm {
                regex: re.as_str().to_string(),
            },
            TargetSpec::All => Target::All,
            TargetSpec::Command(argv) => Target::Command {
                argv: argv.clone(),
                pid: 0,
            },
        };
        c.refresh_targets(true);

        // Window 0 starts now (even timestamp: slot 0). Seed the state of every
        // existing target thread, then attach the event programs.
        let t0 = monotonic_ns() & !1;
        c.set_window_start(t0);
        c.window_start_ns = t0;
        c.window_wall_ms = wall_ms();
        c.run_iterator()?;
        c.skel.attach().map_err(bpf_err("attach tracepoints"))?;
        c.run_iterator()?;
        c.read_prog_costs(); // baseline for deltas
        c.read_loss();

        if let TargetSpec::Command(argv) = &opts.target {
            let child = c.spawn(argv)?;
            c.model_target = Target::Command {
                argv: argv.clone(),
                pid: child.pid,
            };
            c.root_pid = Some(child.pid);
            c.child = Some(child);
        }
        Ok(c)
    }

    /// The target, as recorded in snapshots' recordings.
    pub fn target(&self) -> &Target {
        &self.model_target
    }

    /// The window length.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the target is still there (always true for cgroup/comm/all).
    pub fn target_alive(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return child.try_wait().is_none();
        }
        match self.root_pid {
            Some(pid) => target::pid_alive(pid),
            None => true,
        }
    }

    /// Exit status (as from waitpid) of a command started with `-- CMD`, once it ended.
    pub fn child_status(&mut self) -> Option<i32> {
        self.child.as_mut().and_then(|c| c.try_wait())
    }

    /// Starts `argv` held at a gate until its pid is in the target set, so
    /// not one of its threads or children is missed. (std's spawn cannot do
    /// this: it waits for the exec, which the gate holds back.)
    fn spawn(&mut self, argv: &[String]) -> Result<ChildProc, CollectError> {
        let cmdline = argv.join(" ");
        let spawn_err = |err: std::io::Error| CollectError::Spawn {
            cmd: cmdline.clone(),
            err,
        };
        let cargs: Vec<std::ffi::CString> = argv
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| spawn_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let (mut gate, mut report) = ([0i32; 2], [0i32; 2]);
        // SAFETY: valid arrays of two fds.
        unsafe {
            if libc::pipe2(gate.as_mut_ptr(), libc::O_CLOEXEC) != 0
                || libc::pipe2(report.as_mut_ptr(), libc::O_CLOEXEC) != 0
            {
                return Err(spawn_err(std::io::Error::last_os_error()));
            }
        }
        // SAFETY: between fork and exec the child only makes async-signal-safe
        // calls (close, read, execvp, write, _exit) on memory prepared before.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_err(std::io::Error::last_os_error()));
        }
        if pid == 0 {
            unsafe {
                libc::close(gate[1]);
                libc::close(report[0]);
                let mut b = 0u8;
                libc::read(gate[0], &mut b as *mut u8 as *mut libc::c_void, 1);
                libc::execvp(ptrs[0], ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(report[1], &errno as *const i32 as *const libc::c_void, 4);
                libc::_exit(127);
            }
        }
        let pid = pid as u32;
        self.add_target(pid);
        let mut errno = 0i32;
        // SAFETY: our own pipe ends; the read returns 0 once exec closed the report pipe.
        let n = unsafe {
            libc::close(gate[0]);
            libc::close(report[1]);
            libc::write(gate[1], b"g".as_ptr() as *const libc::c_void, 1);
            libc::close(gate[1]);
            let n = libc::read(report[0], &mut errno as *mut i32 as *mut libc::c_void, 4);
            libc::close(report[0]);
            n
        };
        let child = ChildProc { pid, status: None };
        if n == 4 {
            let mut child = child;
            child.wait();
            return Err(spawn_err(std::io::Error::from_raw_os_error(errno)));
        }
        Ok(child)
    }

    /// Keeps the kernel's target set in line with the user's target. Cgroup
    /// targets are matched by the kernel itself (fork and the window
    /// iterator); comm targets are matched here on exec events, and at a
    /// window cut on every process (processes rename themselves).
    fn refresh_targets(&mut self, at_cut: bool) {
        match &self.spec {
            TargetSpec::Pid(_) => {
                // Existing descendants too; later ones arrive through fork in the kernel.
                if self.index == 0 {
                    if let Some(pid) = self.root_pid {
                        for p in target::with_descendants(pid) {
                            self.add_target(p);
                        }
                    }
                }
            }
            TargetSpec::Cgroup(_) => {
                if let Some(dir) = &self.cgroup_dir {
                    for id in target::cgroup_ids(dir) {
                        let _ = self.skel.maps.target_cgroups.update(
                            &id.to_ne_bytes(),
                            &[1u8],
                            MapFlags::ANY,
                        );
                    }
                }
            }
            TargetSpec::Comm(re) => {
                let re: Regex = re.clone();
                if let Some(rb) = &self.exec_rb {
                    let _ = rb.consume();
                }
                let pending: Vec<(u32, String)> = self
                    .exec_pending
                    .lock()
                    .map(|mut p| std::mem::take(&mut *p))
                    .unwrap_or_default();
                let mut set: BTreeSet<u32> = pending
                    .into_iter()
                    .filter(|(_, comm)| re.is_match(comm))
                    .map(|(pid, _)| pid)
                    .collect();
                if at_cut {
                    set.extend(target::matching_comm(&re));
                }
                for p in set {
                    self.add_target(p);
                }
            }
            TargetSpec::All | TargetSpec::Command(_) => {}
        }
    }

    /// Sets a process's bit in the kernel's target bitmap (never holdup's own).
    fn add_target(&mut self, tgid: u32) {
        if tgid == std::process::id() {
            return;
        }
        let bits = self
            .skel
            .maps
            .data_targets_data
            .as_deref_mut()
            .expect("the target bitmap is mmapped");
        // Its length is the kernel's (generated from BTF); tgids stop at 2^22.
        let Some(word) = bits.target_bits.get_mut((tgid >> 6) as usize) else {
            return;
        };
        let word = word as *mut u64;
        // SAFETY: an aligned u64 in the mmapped map, which the kernel also
        // updates with atomic ORs (fork): OR atomically here too.
        unsafe { AtomicU64::from_ptr(word) }.fetch_or(1 << (tgid & 63), Ordering::SeqCst);
    }

    fn set_window_start(&mut self, t: u64) {
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("bss is mmapped");
        // SAFETY: aligned u64 in the mmapped .bss; a volatile store is atomic on
        // 64-bit targets, and the kernel reads it with a single load.
        unsafe { std::ptr::write_volatile(&mut bss.window_start, t) };
    }

    fn run_iterator(&mut self) -> Result<(), CollectError> {
        let mut it = Iter::new(&self.iter_link).map_err(bpf_err("window iterator"))?;
        let mut sink = Vec::new();
        let _ = it.read_to_end(&mut sink);
        Ok(())
    }

    /// Waits until the window ends (or `stop` is set) and returns its snapshot.
    pub fn next_window(&mut self, stop: &AtomicBool) -> Result<Snapshot, CollectError> {
        let deadline = Instant::now()
            + Duration::from_nanos(
                (self.window_start_ns + self.interval.as_nanos() as u64)
                    .saturating_sub(monotonic_ns()),
            );
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if let Some(rb) = &self.exec_rb {
                let _ = rb.poll(Duration::from_millis(20));
                if matches!(self.spec, TargetSpec::Comm(_)) {
                    self.refresh_targets(false);
                }
            } else {
                std::thread::sleep(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(20)),
                );
            }
        }
        self.cut()
    }

    /// Closes the current window now and returns its snapshot.
    pub fn cut(&mut self) -> Result<Snapshot, CollectError> {
        self.refresh_targets(true);
        let old_slot = (self.index & 1) as u32;
        let end = (monotonic_ns() & !1) | u64::from(old_slot ^ 1);
        self.set_window_start(end);
        self.run_iterator()?;
        // Handlers that read the old boundary just before the switch finish in
        // microseconds; give them a moment before draining their slot.
        std::thread::sleep(Duration::from_millis(1));

        let window = WindowInfo {
            index: self.index,
            start_ns: self.window_start_ns,
            end_ns: end,
            wall_start_ms: self.window_wall_ms,
        };
        let threads = self.drain_threads(old_slot);
        let (resources, futex_wakes) = self.drain_resources(old_slot);
        self.attach_data_ready_if_polling(&resources);
        let wakeups = self.drain_wakeups(old_slot);
        let culprits = self.drain_culprits(old_slot);
        let disks = self.drain_disks(old_slot);
        let loss = self.read_loss();
        let overhead = self.read_prog_costs();
        let tgids: std::collections::BTreeSet<u32> = threads.iter().map(|t| t.tgid).collect();
        let runtimes = self.runtimes.runtimes(tgids.iter().copied());
        if self.index.is_multiple_of(64) {
            self.runtimes.retain(&tgids);
        }
        let throttles = self.throttles.read(&tgids);

        self.index += 1;
        self.window_start_ns = end;
        self.window_wall_ms = wall_ms();
        Ok(Snapshot {
            window,
            threads,
            resources,
            futex_wakes,
            wakeups,
            culprits,
            disks,
            loss,
            overhead,
            runtimes,
            throttles,
        })
    }

    /// Poll and select waits (unlike epoll's) name the socket that ended them
    /// only from `sk_data_ready` on the waking CPU: attach it while the last
    /// window had such waits by targets, detach it when it had none.
    fn attach_data_ready_if_polling(&mut self, resources: &[ResourceWait]) {
        if !self.data_ready_loaded {
            return;
        }
        let polling = resources.iter().any(|r| {
            r.kind == WaitKind::Mux
                && matches!(r.resource, holdup_model::Resource::Mux { instance: 0, .. })
        });
        if polling && self.data_ready_link.is_none() {
            self.data_ready_link = self.skel.progs.handle_sk_data_ready.attach().ok();
        } else if !polling {
            self.data_ready_link = None;
        }
    }

    fn drain(map: &dyn MapCore, slot: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let keys: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| k.len() >= 4 && u32::from_ne_bytes([k[0], k[1], k[2], k[3]]) == slot)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Ok(Some(v)) = map.lookup_and_delete(&k) {
                out.push((k, v));
            }
        }
        out
    }

    fn drain_threads(&mut self, slot: u32) -> Vec<ThreadWindow> {
        let mut out: Vec<ThreadWindow> = Self::drain(&self.skel.maps.thread_stats, slot)
            .into_iter()
            .map(|(_, v)| {
                let s: types::thread_stats = convert::pod(&v);
                let waits = WaitKind::ALL
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &kind)| {
                        let ns = s.wait_ns[i + 1];
                        let count = s.wait_cnt[i + 1];
                        (ns > 0 || count > 0).then_some(WaitTotal { kind, ns, count })
                    })
                    .collect();
                ThreadWindow {
                    tgid: s.tgid,
                    tid: s.tid,
                    comm: convert::cstr(&s.comm),
                    cgroup_id: s.cgroup_id,
                    states: StateTimes {
                        on_cpu_ns: s.state_ns[0],
                        runq_ns: s.state_ns[1],
                        iowait_ns: s.state_ns[2],
                        other_d_ns: s.state_ns[3],
                        sleep_ns: s.state_ns[4],
                    },
                    runq_count: s.runq_cnt,
                    runq_hist: convert::hist(&s.runq_hist),
                    runq_unattributed_ns: s.runq_unattributed_ns,
                    preempted: s.preempted,
                    waits,
                    exited: s.exited != 0,
                }
            })
            .collect();
        out.sort_by_key(|t| (t.tgid, t.tid));
        out
    }

    fn drain_resources(&mut self, slot: u32) -> (Vec<ResourceWait>, Vec<FutexWake>) {
        let mut waits = Vec::new();
        let mut wakes = Vec::new();
        for (k, v) in Self::drain(&self.skel.maps.res_stats, slot) {
            let key: types::res_key = convert::pod(&k);
            let r: types::res_stats = convert::pod(&v);
            if key.kind == convert::RES_FUTEX_WAKE {
                wakes.push(FutexWake {
                    waker_tgid: r.tgid,
                    waker_tid: key.tid,
                    futex: convert::futex(&r.desc),
                    calls: r.calls,
                    woken: r.woken,
                });
                continue;
            }
            let Some(kind) = WaitKind::from_kernel(key.kind) else {
                continue;
            };
            waits.push(ResourceWait {
                tgid: r.tgid,
                tid: key.tid,
                kind,
                resource: convert::resource(kind, &r.desc),
                wait_ns: r.wait_ns,
                waits: r.waits,
                hist: convert::hist(&r.hist),
                calls: r.calls,
                bytes: r.bytes,
            });
        }
        waits.sort_by(|a, b| b.wait_ns.cmp(&a.wait_ns).then(a.tid.cmp(&b.tid)));
        wakes.sort_by_key(|x| std::cmp::Reverse(x.woken));
        (waits, wakes)
    }

    fn drain_wakeups(&mut self, slot: u32) -> Vec<WakeEdge> {
        let mut out: Vec<WakeEdge> = Self::drain(&self.skel.maps.wake_stats, slot)
            .into_iter()
            .map(|(k, v)| {
                let key: types::wake_key = convert::pod(&k);
                let w: types::wake_stats = convert::pod(&v);
                let waker = match key.cause {
                    convert::CAUSE_THREAD => Waker::Thread {
                        tgid: w.waker_tgid,
                        tid: key.waker_tid,
                        comm: convert::cstr(&w.waker_comm),
                    },
                    convert::CAUSE_SOCKET => Waker::Socket(convert::socket(&w.sock)),
                    _ => Waker::Kernel,
                };
                WakeEdge {
                    wakee_tgid: w.wakee_tgid,
                    wakee_tid: key.wakee_tid,
                    wait_kind: WaitKind::from_kernel(u32::from(key.wait_kind)),
                    resource_id: key.res_id,
                    waker,
                    count: w.count,
                    sleep_ns: w.sleep_ns,
                }
            })
            .collect();
        out.sort_by_key(|x| std::cmp::Reverse(x.sleep_ns));
        out
    }

    fn drain_culprits(&mut self, slot: u32) -> Vec<Culprit> {
        let raw = Self::drain(&self.skel.maps.culprit_stats, slot);
        let mut out: Vec<Culprit> = raw
            .into_iter()
            .map(|(k, v)| {
                let key: types::culprit_key = convert::pod(&k);
                let c: types::culprit_stats = convert::pod(&v);
                Culprit {
                    victim_tgid: c.victim_tgid,
                    victim_tid: key.victim_tid,
                    tgid: c.culprit_tgid,
                    tid: key.culprit_tid,
                    comm: convert::cstr(&c.culprit_comm),
                    cgroup_id: c.culprit_cgroup,
                    cgroup: self.cgroup_names.name(c.culprit_cgroup),
                    ns: c.ns,
                }
            })
            .collect();
        out.sort_by_key(|x| std::cmp::Reverse(x.ns));
        out
    }

    fn drain_disks(&mut self, slot: u32) -> Vec<DiskIo> {
        let raw = Self::drain(&self.skel.maps.disk_stats, slot);
        let mut out: Vec<DiskIo> = raw
            .into_iter()
            .map(|(k, v)| {
                let key: types::disk_io_key = convert::pod(&k);
                let d: types::disk_io_stats = convert::pod(&v);
                let disk = self
                    .disk_names
                    .entry(key.dev)
                    .or_insert_with(|| convert::disk_name(key.dev))
                    .clone();
                DiskIo {
                    disk,
                    dev: convert::dev_string(key.dev),
                    tgid: d.tgid,
                    tid: key.tid,
                    comm: if key.tid == 0 {
                        "[kernel]".into()
                    } else {
                        convert::cstr(&d.comm)
                    },
                    is_target: d.is_target != 0,
                    requests: d.requests,
                    bytes: d.bytes,
                    write_bytes: d.write_bytes,
                    latency_ns: d.lat_ns,
                    latency_hist: convert::hist(&d.hist),
                    share: 0.0,
                }
            })
            .collect();
        let mut totals: HashMap<String, u64> = HashMap::new();
        for d in &out {
            *totals.entry(d.dev.clone()).or_default() += d.bytes;
        }
        for d in &mut out {
            let t = totals[&d.dev];
            d.share = if t == 0 {
                0.0
            } else {
                d.bytes as f64 / t as f64
            };
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.bytes));
        out
    }

    fn read_loss(&mut self) -> Loss {
        let mut now = [0u64; NR_LOSS];
        for (i, slot) in now.iter_mut().enumerate() {
            let key = (i as u32).to_ne_bytes();
            if let Ok(Some(per_cpu)) = self.skel.maps.loss.lookup_percpu(&key, MapFlags::ANY) {
                *slot = per_cpu.iter().map(|v| convert::pod::<u64>(v)).sum();
            }
        }
        let d: Vec<u64> = now
            .iter()
            .zip(self.prev_loss.iter())
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        self.prev_loss = now;
        use types::loss_kind as L;
        let d = |k: L| d[k.0 as usize];
        Loss {
            thread_map_full: d(L::LOSS_THREAD_MAP_FULL),
            resource_map_full: d(L::LOSS_RES_MAP_FULL),
            wake_map_full: d(L::LOSS_WAKE_MAP_FULL),
            culprit_map_full: d(L::LOSS_CULPRIT_MAP_FULL),
            disk_map_full: d(L::LOSS_DISK_MAP_FULL),
            threads_untracked: d(L::LOSS_STATE_MAP_FULL),
            bio_inflight_full: d(L::LOSS_BIO_INFLIGHT_FULL),
            ringbuf_drops: d(L::LOSS_RINGBUF),
            threads_missed: d(L::LOSS_UNKNOWN_STATE),
        }
    }

    fn read_prog_costs(&mut self) -> Vec<ProgCost> {
        let mut out = Vec::new();
        for prog in self.skel.object().progs() {
            let name = prog.name().to_string_lossy().into_owned();
            let mut info: libbpf_rs::libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: info is a zeroed bpf_prog_info and len its size.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                    prog.as_fd().as_raw_fd(),
                    &mut info,
                    &mut len,
                )
            };
            if rc != 0 {
                continue;
            }
            let (prev_cnt, prev_ns) = self.prev_prog.get(&name).copied().unwrap_or((0, 0));
            self.prev_prog
                .insert(name.clone(), (info.run_cnt, info.run_time_ns));
            out.push(ProgCost {
                name,
                run_cnt: info.run_cnt.saturating_sub(prev_cnt),
                run_time_ns: info.run_time_ns.saturating_sub(prev_ns),
            });
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.run_time_ns));
        out
    }
}

/// A command holdup started.
struct ChildProc {
    pid: u32,
    status: Option<i32>,
}

impl ChildProc {
    fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            let mut st = 0;
            // SAFETY: reaping our own child without blocking.
            if unsafe { libc::waitpid(self.pid as i32, &mut st, libc::WNOHANG) } == self.pid as i32
            {
                self.status = Some(st);
            }
        }
        self.status
    }

    fn wait(&mut self) {
        if self.status.is_none() {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid as i32, &mut st, 0) };
            self.status = Some(st);
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // A command holdup started is holdup's to stop.
        if let Some(child) = &mut self.child {
            if child.try_wait().is_none() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.pid as i32, libc::SIGTERM) };
                child.wait();
            }
        }
    }
}
