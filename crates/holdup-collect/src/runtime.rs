//! Which language runtime a target process runs on, read once per process
//! from its executable's ELF section table. It changes what some waits mean
//! (a Go program's threads park on futexes when idle; goroutines contending
//! for a sync.Mutex never block a thread), so the diagnosis needs it.

use holdup_model::{ProcessRuntime, Runtime};
use object::read::ReadCache;
use object::{Object, ObjectSection};
use std::collections::HashMap;
use std::fs::File;

/// Sections only the Go toolchain writes.
const GO_SECTIONS: &[&str] = &[".go.buildinfo", ".gopclntab", ".note.go.buildid"];

/// The runtime of an executable, from its section names (None: native or unknown).
pub fn runtime_of_exe(file: &File) -> Option<Runtime> {
    let cache = ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    obj.sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .any(|n| GO_SECTIONS.contains(&n.as_str()))
        .then_some(Runtime::Go)
}

/// Remembers each target process's runtime, looked up the first time the
/// process is seen (a few KB read from its executable).
#[derive(Default)]
pub struct RuntimeCache {
    known: HashMap<u32, Option<Runtime>>,
}

impl RuntimeCache {
    /// The runtimes of the given processes that have one.
    pub fn runtimes(&mut self, tgids: impl IntoIterator<Item = u32>) -> Vec<ProcessRuntime> {
        let mut out: Vec<ProcessRuntime> = tgids
            .into_iter()
            .filter_map(|tgid| {
                let r = *self.known.entry(tgid).or_insert_with(|| {
                    File::open(format!("/proc/{tgid}/exe"))
                        .ok()
                        .and_then(|f| runtime_of_exe(&f))
                });
                r.map(|runtime| ProcessRuntime { tgid, runtime })
            })
            .collect();
        out.sort_by_key(|p| p.tgid);
        out.dedup();
        out
    }

    /// Forgets processes not in `alive` (their pids may be reused).
    pub fn retain(&mut self, alive: &std::collections::BTreeSet<u32>) {
        self.known.retain(|tgid, _| alive.contains(tgid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_executable_has_no_runtime() {
        let exe = File::open("/proc/self/exe").unwrap();
        assert_eq!(runtime_of_exe(&exe), None);
        let not_elf = File::open("/proc/self/status").unwrap();
        assert_eq!(runtime_of_exe(&not_elf), None);
    }

    #[test]
    fn a_go_program_is_go() {
        // etcd (Debian's etcd-server, installed by scripts/setup.sh) is built with Go.
        let Ok(exe) = File::open("/usr/bin/etcd") else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true: /usr/bin/etcd is missing (scripts/setup.sh installs etcd-server)"
            );
            eprintln!("skipping: no /usr/bin/etcd (apt-get install etcd-server)");
            return;
        };
        assert_eq!(runtime_of_exe(&exe), Some(Runtime::Go));
    }
}
