//! What to watch, and how it maps to the kernel-side filter maps.
//!
//! The filter itself runs in the kernel (a tgid set, a cgroup-id set, or
//! "all"); user space only resolves names (cgroup paths, comm regexes) into
//! those sets and keeps them fresh each window.

use crate::CollectError;
use regex::Regex;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A target as the user gave it.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// A process (all its threads, and children it creates).
    Pid(u32),
    /// A cgroup v2 directory and its descendants.
    Cgroup(PathBuf),
    /// Processes whose name matches.
    Comm(Regex),
    /// Everything.
    All,
    /// A command to start and follow; holds its argv.
    Command(Vec<String>),
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones; read from the mount table.
pub fn cgroup_root() -> PathBuf {
    fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
                (fstype == "cgroup2").then(|| PathBuf::from(dir))
            })
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// The thread-group id of a pid (a thread id resolves to its process).
pub fn tgid_of(pid: u32) -> Result<u32, CollectError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| CollectError::NoSuchPid(pid))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(CollectError::NoSuchPid(pid))
}

/// Whether a process exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// All live processes: (pid, ppid, comm).
pub fn processes() -> Vec<(u32, u32, String)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may contain spaces and parentheses: it ends at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, comm));
    }
    out
}

/// A process and all its living descendants.
pub fn with_descendants(root: u32) -> BTreeSet<u32> {
    let procs = processes();
    let mut set = BTreeSet::from([root]);
    loop {
        let before = set.len();
        for (pid, ppid, _) in &procs {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Processes whose comm matches `re`.
pub fn matching_comm(re: &Regex) -> BTreeSet<u32> {
    processes()
        .into_iter()
        .filter(|(_, _, comm)| re.is_match(comm))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Resolves a user-given cgroup path (absolute, or relative to the v2 root).
pub fn resolve_cgroup(path: &Path) -> Result<PathBuf, CollectError> {
    let root = cgroup_root();
    let full = if path.starts_with(&root) {
        path.to_path_buf()
    } else {
        root.join(path.strip_prefix("/").unwrap_or(path))
    };
    if !full.join("cgroup.procs").exists() {
        return Err(CollectError::NoSuchCgroup(path.display().to_string()));
    }
    Ok(full)
}

/// The cgroup ids (directory inode numbers) of a cgroup and its descendants.
pub fn cgroup_ids(dir: &Path) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(md) = fs::metadata(&d) {
            ids.insert(md.ino());
        }
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    ids
}

/// Maps cgroup ids to paths below the v2 root, for naming culprits.
#[derive(Default)]
pub struct CgroupNames {
    names: std::collections::HashMap<u64, String>,
}

impl CgroupNames {
    /// The path of cgroup `id`, rescanning the hierarchy once on a miss.
    pub fn name(&mut self, id: u64) -> String {
        if id == 0 {
            return String::new();
        }
        if !self.names.contains_key(&id) {
            self.rescan();
        }
        self.names.get(&id).cloned().unwrap_or_default()
    }

    fn rescan(&mut self) {
        let root = cgroup_root();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(md) = fs::metadata(&d) {
                let rel = d.strip_prefix(&root).unwrap_or(&d).display().to_string();
                self.names.insert(md.ino(), format!("/{rel}"));
            }
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_resolves() {
        let me = std::process::id();
        assert_eq!(tgid_of(me).unwrap(), me);
        assert!(pid_alive(me));
        assert!(with_descendants(me).contains(&me));
    }

    #[test]
    fn missing_pid_is_an_error() {
        // pid_max is at most 4194304, so this pid cannot exist.
        assert!(matches!(
            tgid_of(4_999_999),
            Err(CollectError::NoSuchPid(4_999_999))
        ));
        assert!(!pid_alive(4_999_999));
    }

    #[test]
    fn missing_cgroup_is_an_error() {
        let e = resolve_cgroup(Path::new("/no/such/holdup/cgroup")).unwrap_err();
        assert!(e.to_string().contains("/no/such/holdup/cgroup"));
    }
}
