//! `disk`: O_DIRECT writes + fsync, so every write is real block IO.

use std::alloc::{self, Layout};
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::obj;
use crate::sys::{check, Error, Result};
use crate::worker::{spawn_worker, Part};

const ALIGN: usize = 4096;
/// Offsets wrap here, so the file never grows beyond this.
pub const WRAP_BYTES: u64 = 64 << 20;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// A zeroed heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf uniquely owns its allocation.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize) -> Result<Self> {
        let layout = Layout::from_size_align(len, ALIGN)
            .map_err(|e| Error::msg(format!("buffer layout ({len} bytes): {e}")))?;
        // SAFETY: len > 0 (checked by the caller's argument validation).
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
            .ok_or_else(|| Error::msg(format!("allocating {len} bytes failed")))?;
        let buf = AlignedBuf { ptr, layout };
        // SAFETY: the allocation is len bytes and exclusively ours.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        Ok(buf)
    }

    fn as_ptr(&self) -> *const libc::c_void {
        self.ptr.as_ptr().cast()
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The open O_DIRECT file; closes and unlinks it when dropped.
struct TempFile {
    fd: libc::c_int,
    path: CString,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // SAFETY: fd is ours; path is a valid C string.
        unsafe {
            libc::close(self.fd);
            libc::unlink(self.path.as_ptr());
        }
    }
}

fn no_odirect(dir: &Path) -> Error {
    Error::msg(format!(
        "the filesystem of {} does not support O_DIRECT (open/write with O_DIRECT \
         returned EINVAL; tmpfs is a common cause); pass --dir on a disk-backed \
         filesystem",
        dir.display()
    ))
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::msg(format!("path {} contains a NUL byte", p.display())))
}

/// Writes `buf` at `offset` with pwrite; errors on a short write.
fn pwrite_all(fd: libc::c_int, buf: &AlignedBuf, offset: u64, dir: &Path) -> Result<()> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr(), buf.len(), offset as libc::off_t) };
    if n == -1 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(no_odirect(dir));
        }
        return Err(Error::call(format!("pwrite(O_DIRECT, offset {offset})"), e));
    }
    if n as usize != buf.len() {
        return Err(Error::msg(format!(
            "pwrite(O_DIRECT, offset {offset}) wrote {n} of {} bytes",
            buf.len()
        )));
    }
    Ok(())
}

/// `hw-disk` writes `block_kb` KiB blocks with O_DIRECT at increasing
/// 4096-aligned offsets (wrapping at 64 MiB) into DIR/holdup-workload-disk.<pid>,
/// fsyncing after each write; the file is deleted at exit.
pub fn disk(dir: &Path, block_kb: u32) -> Result<Part> {
    let cdir = cpath(dir)?;
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: cdir is a valid C string; st is writable.
    check(
        unsafe { libc::stat(cdir.as_ptr(), st.as_mut_ptr()) },
        format!("stat({})", dir.display()),
    )?;
    // SAFETY: stat succeeded.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::msg(format!("{} is not a directory", dir.display())));
    }
    let mut sfs = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: as above.
    check(
        unsafe { libc::statfs(cdir.as_ptr(), sfs.as_mut_ptr()) },
        format!("statfs({})", dir.display()),
    )?;
    // SAFETY: statfs succeeded.
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
    let fs_magic = unsafe { sfs.assume_init() }.f_type as i64;
    if fs_magic == TMPFS_MAGIC || fs_magic == RAMFS_MAGIC {
        return Err(Error::msg(format!(
            "{} is on tmpfs/ramfs, which has no block device (newer kernels accept \
             O_DIRECT there but no block IO happens); pass --dir on a disk-backed \
             filesystem",
            dir.display()
        )));
    }

    let path: PathBuf = dir.join(format!("holdup-workload-disk.{}", std::process::id()));
    let cp = cpath(&path)?;
    // SAFETY: cp is a valid C string.
    let fd = unsafe {
        libc::open(
            cp.as_ptr(),
            libc::O_DIRECT | libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd == -1 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(no_odirect(dir));
        }
        return Err(Error::call(
            format!("open({}, O_DIRECT|O_CREAT|O_WRONLY)", path.display()),
            e,
        ));
    }
    let file = TempFile { fd, path: cp };
    let buf = AlignedBuf::new(block_kb as usize * 1024)?;
    // Probe once now, before the startup line, so that a filesystem refusing
    // O_DIRECT writes fails here with a clear message.
    pwrite_all(file.fd, &buf, 0, dir)?;
    let file_ino = crate::sys::fstat(file.fd, "disk file")?.st_ino;

    let info = obj! {
        "path" => path.display().to_string(),
        "file_ino" => file_ino,
        "dev_major" => libc::major(st.st_dev),
        "dev_minor" => libc::minor(st.st_dev),
        "fs_magic" => format!("{fs_magic:#x}"),
        "block_bytes" => buf.len(),
        "wrap_bytes" => WRAP_BYTES,
    };

    let bytes = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let (by, wr) = (Arc::clone(&bytes), Arc::clone(&writes));
    let dir = dir.to_owned();
    let w = spawn_worker("hw-disk", move |deadline| {
        let len = buf.len() as u64;
        let mut offset = 0u64;
        while Instant::now() < deadline {
            pwrite_all(file.fd, &buf, offset, &dir)?;
            // SAFETY: fd is open.
            check(unsafe { libc::fsync(file.fd) }, "fsync")?;
            by.fetch_add(len, Ordering::Relaxed);
            wr.fetch_add(1, Ordering::Relaxed);
            offset += len;
            if offset + len > WRAP_BYTES {
                offset = 0;
            }
        }
        drop(file); // close + unlink
        Ok(())
    })?;

    Ok(Part {
        workers: vec![w],
        info,
        finish: Box::new(move || {
            let n = writes.load(Ordering::Relaxed);
            obj! {
                "bytes_written" => bytes.load(Ordering::Relaxed),
                "writes" => n,
                "fsyncs" => n,
            }
        }),
    })
}
