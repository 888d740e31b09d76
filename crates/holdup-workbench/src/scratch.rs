//! The server's private scratch space: where run files live.
//!
//! A fixed name such as `/tmp/holdup-workbench-<pid>` can be created first
//! by any local user, with symlinks in it, and root would then write
//! wherever they point. This directory is made by `mkdtemp` (a fresh random
//! name, created atomically, mode 0700, owned by the server's user) and
//! checked after creation; files and directories in it are created new
//! (`O_EXCL`, `O_NOFOLLOW`), never reused.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A private directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates a new private directory under the system temp dir.
    pub fn new() -> io::Result<Scratch> {
        let template = std::env::temp_dir().join("holdup-workbench-XXXXXX");
        let c = CString::new(template.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in TMPDIR"))?;
        let mut buf = c.into_bytes_with_nul();
        // SAFETY: buf is a NUL-terminated template that mkdtemp rewrites in place.
        let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        buf.pop();
        let dir = PathBuf::from(OsString::from_vec(buf));
        let md = std::fs::symlink_metadata(&dir)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !md.is_dir() || md.uid() != me || md.mode() & 0o777 != 0o700 {
            return Err(io::Error::other(format!(
                "scratch directory {} is not a private directory of this user",
                dir.display()
            )));
        }
        Ok(Scratch(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates a new directory `name` in it, mode 0700; fails if it exists.
    pub fn create_dir(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&p)?;
        Ok(p)
    }
}

/// Writes `data` to a new file at `path` (mode 0600): never through an
/// existing file or symlink.
pub fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_fresh_and_never_reused() {
        let a = Scratch::new().unwrap();
        let b = Scratch::new().unwrap();
        assert_ne!(a.path(), b.path());
        let md = std::fs::symlink_metadata(a.path()).unwrap();
        assert_eq!(md.mode() & 0o777, 0o700);
        let d = a.create_dir("run-1").unwrap();
        assert!(
            a.create_dir("run-1").is_err(),
            "an existing name is never reused"
        );
        let f = d.join("script.bt");
        write_new(&f, b"x").unwrap();
        assert!(write_new(&f, b"y").is_err());
        // a symlink planted at the name is not followed
        let g = d.join("planted");
        std::os::unix::fs::symlink("/dev/null", &g).unwrap();
        assert!(write_new(&g, b"z").is_err());
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }
}
