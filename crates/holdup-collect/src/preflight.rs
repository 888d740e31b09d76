//! Checks made before loading anything, so that the common setup problems
//! end in a message that says what to do rather than a libbpf errno.

use crate::CollectError;
use std::ffi::CString;
use std::path::Path;

/// Kernel BTF, needed for CO-RE and tp_btf programs.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// Where tracefs is expected (classic tracepoints resolve their ids there).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Capabilities holdup needs: CAP_BPF (39) and CAP_PERFMON (38), or CAP_SYS_ADMIN (21).
fn has_capabilities() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    has(21) || (has(39) && has(38))
}

/// Everything that must hold before the BPF programs can load.
pub fn check() -> Result<(), CollectError> {
    if !has_capabilities() {
        return Err(CollectError::NotPrivileged);
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(CollectError::NoBtf);
    }
    ensure_tracefs()?;
    raise_memlock();
    Ok(())
}

/// Mounts tracefs when it is missing, as bpftrace does. Returns whether it mounted it.
pub fn ensure_tracefs() -> Result<bool, CollectError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(false);
    }
    if Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(false);
    }
    let target = CString::new(TRACEFS).unwrap();
    let fstype = CString::new("tracefs").unwrap();
    let source = CString::new("nodev").unwrap();
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(CollectError::NoTracefs(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    tracing::info!("tracefs was not mounted: mounted it at {TRACEFS}");
    eprintln!("holdup: tracefs was not mounted; mounted it at {TRACEFS}");
    Ok(true)
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; lift it (harmless on newer ones).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}
