//! Redis syncing every write (AOF `appendfsync always`) in a cgroup whose
//! write limit is cut: its I/O is held before the device, not at a busy disk.

use super::*;
use std::os::unix::fs::MetadataExt;

/// A cgroup whose block-I/O write limit the test sets on one disk (cgroup
/// v1's blkio controller, or v2 with the io controller); removed when
/// dropped.
struct IoLimit {
    cg: TestCgroup,
    v2: bool,
    /// The whole disk under the service's data, "MAJ:MIN".
    disk: String,
}

/// The whole disk ("MAJ:MIN") that holds `path`'s filesystem: its device,
/// or the disk a partition of it is on; None when it is not a block device
/// (overlay, tmpfs).
fn disk_of(path: &Path) -> Option<String> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        return None;
    }
    if sys.join("partition").exists() {
        let parent = std::fs::canonicalize(&sys).ok()?.parent()?.join("dev");
        return Some(std::fs::read_to_string(parent).ok()?.trim().to_string());
    }
    Some(format!("{major}:{minor}"))
}

impl IoLimit {
    fn new(tag: &str, data: &Path) -> Result<IoLimit, String> {
        let disk =
            disk_of(data).ok_or_else(|| format!("{} is not on a block device", data.display()))?;
        let v1 = Path::new("/sys/fs/cgroup/blkio");
        if v1.join("blkio.throttle.write_iops_device").exists() {
            let cg =
                TestCgroup::create(v1, tag).map_err(|e| format!("create a blkio cgroup: {e}"))?;
            return Ok(IoLimit {
                cg,
                v2: false,
                disk,
            });
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .map_err(|_| "neither cgroup v1 blkio nor cgroup v2 is mounted".to_string())?;
        if !controllers.split_whitespace().any(|c| c == "io") {
            return Err("cgroup v2 has no io controller".into());
        }
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+io");
        let cg = TestCgroup::create(v2, tag).map_err(|e| format!("create a cgroup: {e}"))?;
        Ok(IoLimit { cg, v2: true, disk })
    }

    /// Lifts the limit (a scenario run a second time starts unlimited).
    fn unlimit(&self) {
        self.limit(0, 0);
    }

    /// Limits the cgroup's writes to the disk to `iops` a second and
    /// `bps` bytes a second (0: no limit).
    fn limit(&self, iops: u64, bps: u64) {
        let d = &self.disk;
        let v2 = |x: u64| {
            if x == 0 {
                "max".to_string()
            } else {
                x.to_string()
            }
        };
        let r = if self.v2 {
            std::fs::write(
                self.cg.dir.join("io.max"),
                format!("{d} wiops={} wbps={}", v2(iops), v2(bps)),
            )
        } else {
            std::fs::write(
                self.cg.dir.join("blkio.throttle.write_iops_device"),
                format!("{d} {iops}"),
            )
            .and_then(|_| {
                std::fs::write(
                    self.cg.dir.join("blkio.throttle.write_bps_device"),
                    format!("{d} {bps}"),
                )
            })
        };
        r.expect("setup: set the cgroup's write limit");
    }
}

#[test]
fn redis_in_an_io_limited_cgroup_is_disk_throttled_naming_its_cgroup() {
    const NAME: &str = "redis-io-limit";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, &["redis-server", "redis-benchmark"]) {
        return;
    }
    let data = TempDir::under("/var/tmp", "redis-io-limit");
    let cg = match IoLimit::new(NAME, &data.0) {
        Ok(cg) => cg,
        Err(why) => {
            skip_unless_ci(NAME, &format!("cannot limit a cgroup's disk writes: {why}"));
            return;
        }
    };
    let expect = Expect {
        kind: "disk_throttled",
        culprit: Box::new(|v, _| {
            if culprits(v, "cgroup").is_empty() {
                Err("no cgroup named".into())
            } else if !culprits(v, "process").is_empty() {
                Err(format!("named processes {:?}", culprits(v, "process")))
            } else {
                Ok(())
            }
        }),
    };
    check(NAME, expect, || {
        let dir = TempDir::under("/var/tmp", "redis-io-limit-run");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&dir.0);
        let redis = Guard::spawn("redis-server", quiet(&mut cmd));
        wait_for_port(port, "redis-server", Duration::from_secs(10));
        cg.unlimit();
        cg.cg.add(redis.pid());
        let mut bench = None;
        let run = watch(NAME, redis.pid(), |phase, _| match phase {
            Phase::Watching => {}
            Phase::Load => {
                let mut b = Command::new("redis-benchmark");
                b.args(["-p", &port.to_string()]).args([
                    "-c",
                    "8",
                    "-n",
                    "100000000",
                    "-t",
                    "set",
                    "-d",
                    "512",
                    "-q",
                ]);
                bench = Some(Guard::spawn("redis-benchmark", quiet(&mut b)));
            }
            // 100 writes a second: each fsync waits for its turn.
            Phase::Fault => cg.limit(100, 2 << 20),
        });
        assert!(
            bench.as_mut().is_some_and(|b| b.running()),
            "setup: redis-benchmark stopped early"
        );
        let facts = json!({
            "redis_pid": redis.pid(),
            "cgroup": cg.cg.dir.display().to_string(),
            "disk": cg.disk,
            "load_at": run.load_at,
            "fault_at": run.fault_at,
        });
        drop(redis);
        (run, facts)
    });
}
