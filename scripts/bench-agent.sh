#!/usr/bin/env bash
# The agent's own cost with N threads watched: user and system CPU of the
# agent process and its resident memory (sampled from /proc/PID/stat and
# /proc/PID/status), the run time of its BPF programs and its loss counters
# (from its own /metrics), over a measured stretch after a warm-up.
#
#   scripts/bench-agent.sh [WORKERS] [SECS] [RUNS]     (defaults 500 60 1)
#
# Watched: holdup-workload lock managers with WORKERS worker threads in all
# (50 per process), each loaded by a holdup-workload load generator with as
# many connections (one thread each, a request every ~100 ms: THINK_US), all
# matched by the agent's comm service: about 2 x WORKERS threads, each
# switching ~10 times a second. Every SAMPLE_S seconds (default 15, a
# Prometheus-like scrape interval) the script reads the agent's /proc and
# scrapes /metrics; it prints the totals over the stretch, the RSS median
# and maximum, the watched threads (the agent's count and /proc's), each
# loss counter's rate, and how busy the host was (/proc/stat, all CPUs).
# Release binaries (HOLDUP=, WORKLOAD= to override); run as root, holding
# the machine-wide measurement lock:
#   flock /tmp/holdup-measure.lock scripts/bench-agent.sh 500 600
set -euo pipefail
WORKERS=${1:-500}; SECS=${2:-60}; RUNS=${3:-1}; WARMUP=${WARMUP:-10}; SAMPLE_S=${SAMPLE_S:-15}
# Pause of each load thread between requests: 100 ms keeps 1,000 threads
# under the 2 CPUs of the test machine (an overloaded load generator gives up).
THINK_US=${THINK_US:-100000}
cd "$(dirname "$0")/.."
HOLDUP=${HOLDUP:-target/release/holdup}
WORKLOAD=${WORKLOAD:-target/release/holdup-workload}
[ -x "$HOLDUP" ] && [ -x "$WORKLOAD" ] || {
  echo "build first: cargo build --release -p holdup-cli -p holdup-workload" >&2; exit 1; }
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

run_once() {
  local total=$((WARMUP + SECS + 30))
  local left=$WORKERS i=0 workload_pids=()
  while [ "$left" -gt 0 ]; do
    local n=$(( left < 50 ? left : 50 )); left=$((left - n)); i=$((i + 1))
    "$WORKLOAD" lockmgr --secs "$total" --workers "$n" --rows 1000 --work-us 50 --hold-work-us 10 --hold-io-us 0 \
      > "$TMP/lm$i.json" & PIDS+=($!); workload_pids+=($!)
    for _ in $(seq 100); do grep -q server_port "$TMP/lm$i.json" 2>/dev/null && break; sleep 0.1; done
    local port; port=$(grep -o '"server_port":[0-9]*' "$TMP/lm$i.json" | cut -d: -f2)
    "$WORKLOAD" loadgen --secs "$total" --server "127.0.0.1:$port" --connections "$n" --think-us "$THINK_US" \
      > /dev/null & PIDS+=($!); workload_pids+=($!)
  done
  "$HOLDUP" agent --listen 127.0.0.1:0 --comm 'bench=^holdup-workloa' 2> "$TMP/agent.err" &
  local agent=$!; PIDS+=($agent)
  for _ in $(seq 300); do grep -q serving "$TMP/agent.err" && break; sleep 0.1; done
  local url; url=$(grep -o 'http://[^ ]*/metrics' "$TMP/agent.err")
  sleep "$WARMUP"
  python3 - "$agent" "$url" "$SECS" "$SAMPLE_S" "${workload_pids[@]}" <<'PY'
import os, re, statistics, sys, time, urllib.request
agent, url, secs, every = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
workload = [int(p) for p in sys.argv[5:]]
tick = os.sysconf('SC_CLK_TCK')

def proc():
    """The agent's user and system CPU seconds and RSS bytes, from /proc."""
    f = open(f'/proc/{agent}/stat').read().rsplit(')', 1)[1].split()
    rss = next(int(l.split()[1]) * 1024 for l in open(f'/proc/{agent}/status') if l.startswith('VmRSS:'))
    return int(f[11]) / tick, int(f[12]) / tick, rss

def host():
    """All CPUs' busy and total jiffies (/proc/stat)."""
    v = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)

def threads():
    n = 0
    for p in workload:
        try:
            n += next(int(l.split()[1]) for l in open(f'/proc/{p}/status') if l.startswith('Threads:'))
        except OSError:
            pass
    return n

def workload_cpu():
    """CPU seconds of the watched workload's processes (user + system)."""
    s = 0.0
    for p in workload:
        try:
            f = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()
            s += (int(f[11]) + int(f[12])) / tick
        except OSError:
            pass
    return s

def scrape():
    m = {}
    for l in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if l.startswith('#') or not l.strip():
            continue
        k, v = l.rsplit(' ', 1)
        m[k] = float(v)
    return m

def d(a, b, pat):
    return sum(v - a.get(k, 0) for k, v in b.items() if re.match(pat, k))

t0, p0, h0, w0, m0 = time.time(), proc(), host(), workload_cpu(), scrape()
rss, agent_threads, proc_threads = [p0[2]], [], []
while time.time() - t0 < secs:
    time.sleep(min(every, max(0.0, secs - (time.time() - t0))))
    rss.append(proc()[2])
    m = scrape()
    agent_threads.append(sum(v for k, v in m.items() if k.startswith('holdup_service_threads')))
    proc_threads.append(threads())
t1, p1, h1, w1, m1 = time.time(), proc(), host(), workload_cpu(), m
dt = t1 - t0
user, system = (p1[0] - p0[0]) / dt, (p1[1] - p0[1]) / dt
bpf = d(m0, m1, r'holdup_bpf_cpu_seconds_total') / dt
runs = d(m0, m1, r'holdup_bpf_runs_total') / dt
ru_user = d(m0, m1, r'holdup_agent_cpu_seconds_total\{mode="user"') / dt
ru_sys = d(m0, m1, r'holdup_agent_cpu_seconds_total\{mode="system"') / dt
busy = (h1[0] - h0[0]) / max(1, h1[1] - h0[1]) * os.cpu_count()
print(f"secs={dt:.0f} samples={len(rss)} threads_agent_median={statistics.median(agent_threads):.0f} "
      f"threads_proc_min/median={min(proc_threads)}/{statistics.median(proc_threads):.0f}")
print(f"agent /proc: user_cpu={100*user:.2f}% system_cpu={100*system:.2f}% "
      f"rss_median_mib={statistics.median(rss)/2**20:.1f} rss_max_mib={max(rss)/2**20:.1f}")
print(f"agent getrusage (its /metrics): user_cpu={100*ru_user:.2f}% system_cpu={100*ru_sys:.2f}%")
print(f"bpf: cpu={100*bpf:.2f}% runs_per_s={runs:.0f} (host-wide: every task's scheduler events)")
wl = (w1 - w0) / dt
# BPF programs run in the context of the task whose event fired, so their
# time is inside the workload's and the other tasks' system time already.
others = busy - wl - user - system
print(f"host: busy_cpus={busy:.2f} of {os.cpu_count()}: watched workload {wl:.2f}, agent process "
      f"{user + system:.2f}, everything else {others:.2f} (holdup's BPF runs inside these)")
for k in sorted(k for k in m1 if k.startswith('holdup_lost_total')):
    rate = (m1[k] - m0.get(k, 0)) / dt
    if rate:
        kind = k.split('kind=')[1].strip('"}')
        print(f"lost: {kind}={rate:.0f}/s")
print(f"lost_total={d(m0, m1, r'holdup_lost_total'):.0f}")
PY
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
}

for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS: $WORKERS workers + $WORKERS load threads, ${WARMUP}s warm-up, ${SECS}s measured, sampled every ${SAMPLE_S}s"
  run_once
done
