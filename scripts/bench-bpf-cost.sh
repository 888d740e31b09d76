#!/usr/bin/env bash
# Kernel cost of holdup's BPF programs on a saturated Redis, A/B: each given
# holdup binary records `--pid <redis>` (default program set) while
# redis-benchmark (50 clients, SET/GET) saturates it; binaries interleave and
# the order rotates each round. BPF stats (run count and run time per
# program) come from the recording, as `holdup inspect` reports them.
# Prints, per binary, medians over rounds of: all programs' share of one CPU,
# and per program ns/run and runs/s.
#
# Usage: sudo scripts/bench-bpf-cost.sh [--runs N] [--secs S] HOLDUP...
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 secs=5 port=6396
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?}"; shift 2 ;;
    --secs) secs="${2:?}"; shift 2 ;;
    -*) echo "usage: $0 [--runs N] [--secs S] HOLDUP..." >&2; exit 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ "${#bins[@]}" -ge 1 ] || { echo "usage: $0 [--runs N] [--secs S] HOLDUP..." >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "must run as root (BPF)" >&2; exit 1; }
tmp="$(mktemp -d)"
taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no >"$tmp/redis.log" 2>&1 &
redis=$!
load=""
cleanup() { [ -n "$load" ] && kill "$load" 2>/dev/null; kill "$redis" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
taskset -c 1 redis-benchmark -p "$port" -c 50 -n 1000000000 -t set,get -q >/dev/null 2>&1 &
load=$!
sleep 1

for r in $(seq "$runs"); do
  n=${#bins[@]}
  for i in $(seq 0 $((n - 1))); do
    b="${bins[$(( (i + r) % n ))]}"
    c0="$(redis-cli -p "$port" info stats | awk -F: '/^total_commands_processed/ {print $2+0}')"
    "$b" record --pid "$redis" --duration "${secs}s" -o "$tmp/r.rec" >/dev/null 2>&1
    c1="$(redis-cli -p "$port" info stats | awk -F: '/^total_commands_processed/ {print $2+0}')"
    echo "$b redis_ops_per_s $(( (c1 - c0) / secs )) 0" >>"$tmp/vals"
    "$b" inspect --json "$tmp/r.rec" | python3 -c '
import json, sys
d = json.load(sys.stdin)
o = d["overhead"]; span = d["windows_ns"] / 1e9
print(sys.argv[1], "all", o["cpu_fraction"] * 100, 0)
for p in o["programs"]:
    print(sys.argv[1], p["name"], p["ns_per_run"], p["run_cnt"] / span)' "$b" >>"$tmp/vals"
    echo "round $r $b: $(grep -c . "$tmp/vals") values" >&2
  done
done
python3 - "$tmp/vals" "$runs" "$secs" "${bins[@]}" <<'PY'
import sys, statistics
from collections import defaultdict
vals = defaultdict(list)
for line in open(sys.argv[1]):
    b, name, a, c = line.split()
    vals[(b, name)].append((float(a), float(c)))
runs, secs, bins = sys.argv[2], sys.argv[3], sys.argv[4:]
names = sorted({n for (_, n) in vals if n not in ("all", "redis_ops_per_s")})
print("| program | " + " | ".join(f"{b} ns/run (runs/s)" for b in bins) + " |")
print("|---|" + "---|" * len(bins))
row = ["all programs, % of one CPU"]
for b in bins:
    row.append(f"{statistics.median(a for a, _ in vals[(b, 'all')]):.2f}%")
print("| " + " | ".join(row) + " |")
row = ["Redis commands/s while recording"]
for b in bins:
    row.append(f"{statistics.median(a for a, _ in vals[(b, 'redis_ops_per_s')]):.0f}")
print("| " + " | ".join(row) + " |")
for n in names:
    row = [n]
    for b in bins:
        v = vals.get((b, n))
        row.append(f"{statistics.median(a for a, _ in v):.0f} ({statistics.median(c for _, c in v):.0f})" if v else "not attached")
    print("| " + " | ".join(row) + " |")
print(f"\nmedians of {runs} interleaved rounds, {secs} s recordings of a redis-server on CPU 0 saturated by redis-benchmark -c 50 -t set,get on CPU 1")
PY
