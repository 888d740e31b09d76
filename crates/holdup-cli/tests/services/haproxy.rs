//! HAProxy (mode tcp) in front of a backend of the workload: a slowed backend, a CPU hog on
//! HAProxy's CPU, a CPU hog on the backend's CPU (found through the local peer), an unchanged run.

use super::*;

const HAPROXY_TOOLS: &[&str] = &["haproxy", "taskset", "timeout", "sha256sum"];

/// HAProxy's fault in a run.
#[derive(Clone, Copy, PartialEq)]
enum ProxyFault {
    SlowBackend,
    CpuHog,
    /// The hog on the backend's CPU: HAProxy's peer is slow, and why.
    BackendCpuHog,
    None,
}

/// HAProxy (mode tcp, one thread, on CPU 1) in front of `holdup-workload
/// backend` (CPU 0), loaded by `holdup-workload loadgen` (CPU 0; CPU 1 when
/// the hog is on the backend's CPU). Only HAProxy is watched: holdup follows
/// the backend as its local peer.
fn haproxy_run(name: &str, fault: ProxyFault) -> (Run, Value) {
    let dir = TempDir::new("haproxy");
    let (fport, bport) = (free_port(), free_port());
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 1\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
             frontend fe\n    bind 127.0.0.1:{fport}\n    default_backend be\n\
             backend be\n    server b1 127.0.0.1:{bport}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "haproxy", "-db", "-f"]).arg(&cfg);
    let hap = Guard::spawn("haproxy", quiet(&mut cmd));
    wait_for_port(fport, "haproxy", Duration::from_secs(10));
    // The CPU-hog run loads HAProxy harder (a fast backend, short think
    // time), so that it needs its CPU.
    let (delay, think) = match fault {
        ProxyFault::CpuHog => ("0.1", "100"),
        ProxyFault::BackendCpuHog => ("0", "200"),
        _ => ("1", "1000"),
    };
    let (mut backend, mut load, mut hog) = (None, None, None);
    let run = watch(name, hap.pid(), |phase, t0| match phase {
        Phase::Watching => {
            // Started with the watch, so its knob is on the watch's clock.
            let mut args = vec![
                "backend".to_string(),
                "--secs".into(),
                (RUN_SECS + 5).to_string(),
                "--port".into(),
                bport.to_string(),
                "--delay-ms".into(),
                delay.into(),
                "--slow-delay-ms".into(),
                "15".into(),
            ];
            if fault == ProxyFault::BackendCpuHog {
                // A backend that needs its CPU: what the hog takes from it
                // slows every answer.
                args.extend(["--work-us".into(), "100".into()]);
            }
            if fault == ProxyFault::SlowBackend {
                let left = FAULT_AT as f64 - t0.elapsed().as_secs_f64();
                args.push("--slow-after-secs".into());
                args.push(format!("{left:.3}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            backend = Some(Workload::start_on_cpu(0, &args));
        }
        Phase::Load => {
            // Two connections keep the backend under its CPU on its own
            // (six queue behind each other), so what the hog takes shows.
            let (cpu, conns) = if fault == ProxyFault::BackendCpuHog {
                (1, "2")
            } else {
                (0, "6")
            };
            load = Some(Workload::start_on_cpu(
                cpu,
                &[
                    "loadgen",
                    "--secs",
                    &(RUN_SECS - LOAD_AT).to_string(),
                    "--server",
                    &format!("127.0.0.1:{fport}"),
                    "--connections",
                    conns,
                    "--think-us",
                    think,
                ],
            ));
        }
        Phase::Fault => {
            if matches!(fault, ProxyFault::CpuHog | ProxyFault::BackendCpuHog) {
                let cpu = if fault == ProxyFault::CpuHog {
                    "1"
                } else {
                    "0"
                };
                let mut cmd = Command::new("timeout");
                cmd.arg((RUN_SECS - FAULT_AT + 5).to_string()).args([
                    "taskset",
                    "-c",
                    cpu,
                    "sha256sum",
                    "/dev/zero",
                ]);
                hog = Some(Guard::spawn("sha256sum", quiet(&mut cmd)));
            }
        }
    });
    if let Some(h) = &mut hog {
        assert!(h.running(), "setup: the CPU hog (sha256sum) stopped early");
    }
    let lf = check_load(load.expect("load started"), 1000);
    drop(backend);
    let facts = json!({
        "haproxy_pid": hap.pid(),
        "backend": format!("127.0.0.1:{bport}"),
        "load": lf,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    (run, facts)
}

/// The top verdict names the backend's address (facts.backend) first
/// among its peers.
fn names_backend() -> Culprit {
    Box::new(|v, facts| {
        let addr = facts["backend"].as_str().unwrap_or("?");
        let peers = culprits(v, "peer");
        if peers.first().map(String::as_str) == Some(addr) {
            Ok(())
        } else {
            Err(format!(
                "first named peer {peers:?}, not the backend {addr}"
            ))
        }
    })
}

#[test]
fn haproxy_with_a_slowed_backend_is_slow_external_service_naming_the_backend() {
    const NAME: &str = "haproxy-slow-backend";
    let Some(_g) = prepare(NAME, HAPROXY_TOOLS) else {
        return;
    };
    let expect = Expect {
        kind: "slow_external_service",
        culprit: names_backend(),
    };
    check(NAME, expect, || haproxy_run(NAME, ProxyFault::SlowBackend));
}

#[test]
fn haproxy_with_a_cpu_hog_on_its_cpu_is_cpu_contention_naming_the_hog() {
    const NAME: &str = "haproxy-cpu-hog";
    let Some(_g) = prepare(NAME, HAPROXY_TOOLS) else {
        return;
    };
    let expect = Expect {
        kind: "cpu_contention",
        culprit: names_process("sha256sum"),
    };
    check(NAME, expect, || haproxy_run(NAME, ProxyFault::CpuHog));
}

#[test]
#[ignore = "new and not yet steady: passed 4 of 6 runs on 2026-12-01; in the fresh-clone CI run the true ranges (4s..13s vs 14s..24s) gave no significant change while the other four ways named sha256sum through the peer (the hog's effect on HAProxy is small, see docs/DIAGNOSE.md)"]
fn haproxy_whose_backend_loses_its_cpu_is_cpu_contention_found_through_the_peer() {
    const NAME: &str = "haproxy-backend-cpu-hog";
    let Some(_g) = prepare(NAME, HAPROXY_TOOLS) else {
        return;
    };
    let expect = Expect {
        kind: "cpu_contention",
        culprit: names_process("sha256sum"),
    };
    check(NAME, expect, || {
        haproxy_run(NAME, ProxyFault::BackendCpuHog)
    });
}

#[test]
fn haproxy_unchanged_raises_no_alarm() {
    const NAME: &str = "haproxy-unchanged";
    let Some(_g) = prepare(NAME, HAPROXY_TOOLS) else {
        return;
    };
    check(NAME, unchanged(), || haproxy_run(NAME, ProxyFault::None));
}
