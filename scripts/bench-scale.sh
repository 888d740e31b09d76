#!/usr/bin/env bash
# User-space cost of holdup at scale: N target threads x a recording's
# length. For each N, N/3 `holdup-workload pipe --delay-us 10000` processes
# (three threads each; two ping-pong a byte over pipes every 10 ms, so
# every thread blocks and is woken ~100 times a second: thread, resource
# and wake-edge records for all of them every window) run as the command
# of `holdup record --duration S -- sh -c ...`; the recording process's
# user + system CPU and its peak RSS come from GNU time, its kernel-side
# (BPF) time from the recording's statistics. Binaries interleave; the
# order rotates each round. Prints medians per binary and N.
#
# Usage: sudo scripts/bench-scale.sh [--threads "100 500 1000"] [--secs S]
#                                    [--runs R] [--interval-ms MS] HOLDUP...
set -euo pipefail
cd "$(dirname "$0")/.."
threads="100 500 1000" secs=30 runs=3 interval_ms=1000
bins=()
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench-scale: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="${2:?--threads needs a value}"; shift 2 ;;
    --secs) secs="${2:?--secs needs a value}"; shift 2 ;;
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --interval-ms) interval_ms="${2:?--interval-ms needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown argument: $1" ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ "${#bins[@]}" -ge 1 ] || { usage >&2; die "give at least one holdup binary"; }
for v in secs runs interval_ms; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v//_/-} must be a positive integer, got '${!v}'"
done
for n in $threads; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--threads takes positive integers, got '$n'"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (BPF)"
[ -x /usr/bin/time ] || die "GNU time is missing: apt-get install time"
workload=target/release/holdup-workload
[ -x "$workload" ] || workload=target/debug/holdup-workload
[ -x "$workload" ] || die "no holdup-workload: cargo build -p holdup-workload"

tmp="$(mktemp -d)"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

for r in $(seq "$runs"); do
  for n in $threads; do
    nb=${#bins[@]}
    for i in $(seq 0 $((nb - 1))); do
      b="${bins[$(( (i + r) % nb ))]}"
      # N threads: N/3 processes of three threads (main, hw-pipe-a, hw-pipe-b)
      # ping-ponging a byte every 10 ms, started as holdup's command so
      # every one is traced from its first instruction; they end by
      # themselves 3 s after the recording
      procs=$(( (n + 2) / 3 ))
      /usr/bin/time -f "%U %S %M" -o "$tmp/time" \
        "$b" record --duration "${secs}s" --interval "${interval_ms}ms" -o "$tmp/r.rec" -- \
        sh -c "for i in \$(seq $procs); do $workload pipe --secs $((secs + 3)) --delay-us 10000 >/dev/null & done; wait" \
        >/dev/null 2>&1 || true
      sleep 4 # the workloads end
      read -r u s m < <(tail -1 "$tmp/time")
      "$b" inspect --json "$tmp/r.rec" | python3 -c '
import json, sys
d = json.load(sys.stdin)
b, n, u, s, m = sys.argv[1:]
span = d["windows_ns"] / 1e9
cpu = (float(u) + float(s)) / span * 100
print(b, n, "user_cpu_pct", cpu)
print(b, n, "user_s_per_s", float(u) / span)
print(b, n, "sys_s_per_s", float(s) / span)
print(b, n, "rss_mib", int(m) / 1024)
print(b, n, "bpf_cpu_pct", d["overhead"]["cpu_fraction"] * 100)
print(b, n, "threads_seen", d["thread_count"])
print(b, n, "culprit_loss_per_s", d["loss"]["culprit_map_full"] / span)' "$b" "$n" "$u" "$s" "$m" >>"$tmp/vals"
      echo "round $r, $n threads, $b: $(tail -7 "$tmp/vals" | awk '{printf "%s=%.3g ", $3, $4}')" >&2
    done
  done
done
python3 - "$tmp/vals" "$runs" "$secs" "$interval_ms" "${bins[@]}" <<'PY'
import sys, statistics
from collections import defaultdict
vals = defaultdict(list)
for line in open(sys.argv[1]):
    b, n, k, v = line.split()
    vals[(b, int(n), k)].append(float(v))
runs, secs, interval, bins = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
ns = sorted({n for (_, n, _) in vals})
med = lambda b, n, k: statistics.median(vals[(b, n, k)])
print("| binary | threads | holdup CPU, % of a core (user + sys) | user / sys s per s | peak RSS MiB | BPF, % of a CPU | threads recorded | culprit losses/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for b in bins:
    for n in ns:
        print(f"| {b} | {n} | {med(b, n, 'user_cpu_pct'):.2f}% | {med(b, n, 'user_s_per_s'):.4f} / {med(b, n, 'sys_s_per_s'):.4f}"
              f" | {med(b, n, 'rss_mib'):.1f} | {med(b, n, 'bpf_cpu_pct'):.2f}% | {med(b, n, 'threads_seen'):.0f}"
              f" | {med(b, n, 'culprit_loss_per_s'):.0f} |")
print(f"\nmedians of {runs} interleaved rounds; `holdup record -- sh -c` of N/3 `holdup-workload pipe --delay-us 10000` processes, {secs} s, {interval} ms windows")
PY
