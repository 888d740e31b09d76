#!/usr/bin/env bash
# The agent's own cost with N threads watched: user and system CPU of the
# agent process, its resident memory, and the run time of its BPF programs,
# read from its own /metrics over a measured stretch after a warm-up.
#
#   scripts/bench-agent.sh [WORKERS] [SECS] [RUNS]     (defaults 500 60 1)
#
# Watched: holdup-workload lock managers with WORKERS worker threads in all
# (50 per process), each loaded by a holdup-workload load generator with as
# many connections (one thread each, a request every ~100 ms: THINK_US), all matched by
# the agent's comm service: about 2 x WORKERS threads, each switching ~10
# times a second.
# Release binaries (HOLDUP=, WORKLOAD= to override); run as root, holding
# the machine-wide measurement lock:
#   flock /tmp/holdup-measure.lock scripts/bench-agent.sh 500 60
set -euo pipefail
WORKERS=${1:-500}; SECS=${2:-60}; RUNS=${3:-1}; WARMUP=${WARMUP:-10}
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

metric() { # metric FILE REGEX -> sum of the matching samples
  grep -E "^$2" "$1" | awk '{s += $NF} END {printf "%.6f", s}'; }

run_once() {
  local total=$((WARMUP + SECS + 30))
  local left=$WORKERS i=0
  while [ "$left" -gt 0 ]; do
    local n=$(( left < 50 ? left : 50 )); left=$((left - n)); i=$((i + 1))
    "$WORKLOAD" lockmgr --secs "$total" --workers "$n" --rows 1000 --work-us 50 --hold-work-us 10 --hold-io-us 0 \
      > "$TMP/lm$i.json" & PIDS+=($!)
    for _ in $(seq 100); do grep -q server_port "$TMP/lm$i.json" 2>/dev/null && break; sleep 0.1; done
    local port; port=$(grep -o '"server_port":[0-9]*' "$TMP/lm$i.json" | cut -d: -f2)
    "$WORKLOAD" loadgen --secs "$total" --server "127.0.0.1:$port" --connections "$n" --think-us "$THINK_US" \
      > /dev/null & PIDS+=($!)
  done
  "$HOLDUP" agent --listen 127.0.0.1:0 --comm 'bench=^holdup-workloa' 2> "$TMP/agent.err" & PIDS+=($!)
  for _ in $(seq 300); do grep -q serving "$TMP/agent.err" && break; sleep 0.1; done
  local url; url=$(grep -o 'http://[^ ]*/metrics' "$TMP/agent.err")
  sleep "$WARMUP"
  curl -s "$url" > "$TMP/m1"; local t1; t1=$(date +%s.%N)
  sleep "$SECS"
  curl -s "$url" > "$TMP/m2"; local t2; t2=$(date +%s.%N)
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
  python3 - "$TMP/m1" "$TMP/m2" "$t1" "$t2" <<'PY'
import sys, re
def load(p):
    m = {}
    for l in open(p):
        if l.startswith('#') or not l.strip(): continue
        k, v = l.rsplit(' ', 1); m[k] = float(v)
    return m
a, b = load(sys.argv[1]), load(sys.argv[2]); dt = float(sys.argv[4]) - float(sys.argv[3])
d = lambda pat: sum(v - a.get(k, 0) for k, v in b.items() if re.match(pat, k))
user = d(r'holdup_agent_cpu_seconds_total\{mode="user"') / dt
sysc = d(r'holdup_agent_cpu_seconds_total\{mode="system"') / dt
bpf = d(r'holdup_bpf_cpu_seconds_total') / dt
runs = d(r'holdup_bpf_runs_total') / dt
threads = sum(v for k, v in b.items() if k.startswith('holdup_service_threads'))
rss = b.get('holdup_agent_resident_memory_bytes', 0) / 2**20
lost = d(r'holdup_lost_total')
print(f"threads={threads:.0f} secs={dt:.1f} user_cpu={100*user:.2f}% system_cpu={100*sysc:.2f}% "
      f"bpf_cpu={100*bpf:.2f}% bpf_runs_per_s={runs:.0f} rss_mib={rss:.1f} lost={lost:.0f}")
PY
}

for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS: $WORKERS workers + $WORKERS load threads, ${WARMUP}s warm-up, ${SECS}s measured"
  run_once
done
