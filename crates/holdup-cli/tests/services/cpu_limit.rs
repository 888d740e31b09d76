//! Redis in a cgroup whose CPU quota is cut: throttled by its own limit.

use super::*;

/// A cgroup whose CPU quota the test sets (cgroup v1's cpu controller, or
/// v2 with the cpu controller); removed when dropped.
struct CpuLimit {
    cg: TestCgroup,
    v2: bool,
}

impl CpuLimit {
    fn new(tag: &str) -> Option<CpuLimit> {
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let cg = TestCgroup::create(v1, tag).ok()?;
            return Some(CpuLimit { cg, v2: false });
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            return None;
        }
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
        let cg = TestCgroup::create(v2, tag).ok()?;
        Some(CpuLimit { cg, v2: true })
    }

    /// Lifts the limit.
    fn unlimit(&self) {
        let r = if self.v2 {
            std::fs::write(self.cg.dir.join("cpu.max"), "max 100000")
        } else {
            std::fs::write(self.cg.dir.join("cpu.cfs_quota_us"), "-1")
        };
        r.expect("setup: lift the cgroup's CPU quota");
    }

    /// Limits the cgroup to `percent` of one CPU.
    fn limit(&self, percent: u32) {
        let r = if self.v2 {
            std::fs::write(
                self.cg.dir.join("cpu.max"),
                format!("{} 100000", percent * 1000),
            )
        } else {
            std::fs::write(
                self.cg.dir.join("cpu.cfs_quota_us"),
                (percent * 1000).to_string(),
            )
        };
        r.expect("setup: set the cgroup's CPU quota");
    }
}

#[test]
fn redis_in_a_cpu_limited_cgroup_is_throttled_by_its_own_limit() {
    const NAME: &str = "redis-cpu-limit";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(
        NAME,
        &["redis-server", "redis-benchmark", "redis-cli", "taskset"],
    ) {
        return;
    }
    let Some(cg) = CpuLimit::new(NAME) else {
        skip_unless_ci(NAME, "no cgroup with a cpu controller to limit");
        return;
    };
    let expect = Expect {
        kind: "cpu_throttled",
        culprit: Box::new(|v, _| {
            if culprits(v, "cgroup").is_empty() {
                Err("no cgroup named".into())
            } else {
                Ok(())
            }
        }),
    };
    check(NAME, expect, || {
        let dir = TempDir::new("redis-limit");
        let port = free_port();
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "1", "redis-server", "--port", &port.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&dir.0);
        let redis = Guard::spawn("redis-server", quiet(&mut cmd));
        wait_for_port(port, "redis-server", Duration::from_secs(10));
        cg.unlimit();
        cg.cg.add(redis.pid());
        let mut bench = None;
        let run = watch(NAME, redis.pid(), |phase, _| match phase {
            Phase::Watching => {}
            Phase::Load => {
                let mut b = Command::new("taskset");
                b.args(["-c", "0", "redis-benchmark", "-p", &port.to_string()])
                    .args(["-c", "20", "-n", "100000000", "-t", "get,set", "-q"]);
                bench = Some(Guard::spawn("redis-benchmark", quiet(&mut b)));
            }
            Phase::Fault => cg.limit(20),
        });
        assert!(
            bench.as_mut().is_some_and(|b| b.running()),
            "setup: redis-benchmark stopped early"
        );
        let facts = json!({
            "redis_pid": redis.pid(),
            "cgroup": cg.cg.dir.display().to_string(),
            "load_at": run.load_at,
            "fault_at": run.fault_at,
        });
        (run, facts)
    });
}
