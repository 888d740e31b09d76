//! Which configured service a thread belongs to, and how the services map
//! onto collectors: the comm services share one collector (one regex that
//! is the alternation of theirs); each cgroup and each slice has its own,
//! since one collector watches one cgroup subtree.

use crate::config::{Selector, Service};
use holdup_collect::target::{cgroup_ids, resolve_cgroup};
use holdup_collect::TargetSpec;
use holdup_model::{Snapshot, ThreadWindow};
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;

/// One collector's target and the rule that names each of its threads' service.
pub struct Group {
    /// Short name for logs and the `collector` label.
    pub label: String,
    /// What the collector watches.
    pub target: TargetSpec,
    classify: Classify,
}

enum Classify {
    /// Processes by name; first matching service wins.
    Comm {
        services: Vec<(String, Regex)>,
        process_names: HashMap<u32, String>,
    },
    /// Everything is this one service.
    One(String),
    /// Each child cgroup of the slice is a service; ids are rescanned on a miss.
    Slice {
        dir: PathBuf,
        name: String,
        ids: HashMap<u64, String>,
    },
}

/// Groups the configured services into collectors.
pub fn groups(services: &[Service]) -> anyhow::Result<Vec<Group>> {
    let mut out = Vec::new();
    let comm: Vec<(String, Regex)> = services
        .iter()
        .filter_map(|s| match &s.selector {
            Selector::Comm(re) => Some((s.name.clone(), re.clone())),
            _ => None,
        })
        .collect();
    if !comm.is_empty() {
        let alternation = comm
            .iter()
            .map(|(_, re)| format!("(?:{})", re.as_str()))
            .collect::<Vec<_>>()
            .join("|");
        out.push(Group {
            label: "comm".into(),
            target: TargetSpec::Comm(Regex::new(&alternation)?),
            classify: Classify::Comm {
                services: comm,
                process_names: HashMap::new(),
            },
        });
    }
    for s in services {
        match &s.selector {
            Selector::Comm(_) => {}
            Selector::Cgroup(p) => out.push(Group {
                label: format!("cgroup:{}", s.name),
                target: TargetSpec::Cgroup(p.clone()),
                classify: Classify::One(s.name.clone()),
            }),
            Selector::Slice(p) => {
                let dir =
                    resolve_cgroup(p).map_err(|e| anyhow::anyhow!("slice {}: {e}", p.display()))?;
                out.push(Group {
                    label: format!("slice:{}", s.name),
                    target: TargetSpec::Cgroup(p.clone()),
                    classify: Classify::Slice {
                        dir,
                        name: s.name.clone(),
                        ids: HashMap::new(),
                    },
                });
            }
        }
    }
    Ok(out)
}

impl Group {
    /// The service of every thread of `snap`, in `snap.threads` order (None:
    /// a thread no service claims, e.g. a comm service's process renamed).
    pub fn classify(&mut self, snap: &Snapshot) -> Vec<Option<String>> {
        match &mut self.classify {
            Classify::One(name) => snap.threads.iter().map(|_| Some(name.clone())).collect(),
            Classify::Comm {
                services,
                process_names,
            } => {
                // Forget processes that are gone, so the cache stays bounded.
                if process_names.len() > 4096 {
                    process_names.clear();
                }
                snap.threads
                    .iter()
                    .map(|t| {
                        let pname = process_names
                            .entry(t.tgid)
                            .or_insert_with(|| process_name(snap, t));
                        services
                            .iter()
                            .find(|(_, re)| re.is_match(pname))
                            .map(|(n, _)| n.clone())
                    })
                    .collect()
            }
            Classify::Slice { dir, name, ids } => {
                if snap
                    .threads
                    .iter()
                    .any(|t| t.cgroup_id != 0 && !ids.contains_key(&t.cgroup_id))
                {
                    *ids = slice_children(dir, name);
                }
                snap.threads
                    .iter()
                    .map(|t| Some(ids.get(&t.cgroup_id).unwrap_or(name).clone()))
                    .collect()
            }
        }
    }
}

/// The process's name as the comm filter saw it: `/proc/PID/comm`, else the
/// main thread's name in the window, else the thread's own.
fn process_name(snap: &Snapshot, t: &ThreadWindow) -> String {
    std::fs::read_to_string(format!("/proc/{}/comm", t.tgid))
        .map(|s| s.trim_end().to_string())
        .ok()
        .or_else(|| snap.thread(t.tgid).map(|m| m.comm.clone()))
        .unwrap_or_else(|| t.comm.clone())
}

/// cgroup id → service name for every cgroup under the slice: a child
/// directory and everything below it carry the child's name; the slice's
/// own id carries the slice's name. A child that is itself a slice of
/// slices is looked through (`kubepods.slice/kubepods-burstable.slice/
/// kubepods-burstable-podX.slice`: the pod is the service, not its QoS class).
fn slice_children(dir: &std::path::Path, slice_name: &str) -> HashMap<u64, String> {
    let mut ids = HashMap::new();
    for id in cgroup_ids(dir) {
        ids.insert(id, slice_name.to_string());
    }
    name_children(dir, &mut ids);
    ids
}

fn subdirs(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default()
}

fn name_children(dir: &std::path::Path, ids: &mut HashMap<u64, String>) {
    for (name, path) in subdirs(dir) {
        let nested =
            name.ends_with(".slice") && subdirs(&path).iter().any(|(n, _)| n.ends_with(".slice"));
        for id in cgroup_ids(&path) {
            ids.insert(id, name.clone());
        }
        if nested {
            name_children(&path, ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_of_slices_is_looked_through_to_its_services() {
        let root = std::env::temp_dir().join(format!("holdup-agent-slice-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-a.scope",
            "kubepods-pod2.slice/cri-b.scope",
            "nginx.service/worker",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let ids = slice_children(&root, "top");
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(ids.len(), 8, "{ids:?}");
        let by_name = |n: &str| ids.values().filter(|v| *v == n).count();
        assert_eq!(by_name("top"), 1, "the slice itself");
        assert_eq!(
            by_name("kubepods-burstable.slice"),
            1,
            "the QoS slice alone"
        );
        assert_eq!(
            by_name("kubepods-burstable-pod1.slice"),
            2,
            "the pod and its container"
        );
        assert_eq!(
            by_name("kubepods-pod2.slice"),
            2,
            "a pod slice directly below"
        );
        assert_eq!(by_name("nginx.service"), 2, "a service and its child");
    }
}
