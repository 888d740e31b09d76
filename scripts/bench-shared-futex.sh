#!/usr/bin/env bash
# What keying a shared futex by its backing object (bpf_find_vma at the
# switch-out) adds to sched_switch: two holdup binaries, one with the lookup
# and one built without it, record the same workload (holdup-workload
# shmfutex: three lockers in two processes on one shared futex), interleaved.
# Prints, per binary, the median over rounds of sched_switch's mean ns/run
# and of sched_switch's total ns per blocking futex wait.
#
# Usage: sudo scripts/bench-shared-futex.sh HOLDUP_WITH HOLDUP_WITHOUT [--runs N] [--secs S]
# Environment: WORKLOAD=path/to/holdup-workload (default target/debug/holdup-workload).
set -euo pipefail
cd "$(dirname "$0")/.."
with="${1:?usage: $0 HOLDUP_WITH HOLDUP_WITHOUT [--runs N] [--secs S]}"
without="${2:?usage: $0 HOLDUP_WITH HOLDUP_WITHOUT [--runs N] [--secs S]}"
shift 2
runs=5 secs=4
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?}"; shift 2 ;;
    --secs) secs="${2:?}"; shift 2 ;;
    *) echo "usage: $0 HOLDUP_WITH HOLDUP_WITHOUT [--runs N] [--secs S]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "must run as root (BPF)" >&2; exit 1; }
workload="${WORKLOAD:-target/debug/holdup-workload}"
tmp="$(mktemp -d)"
wl=""
cleanup() { [ -n "$wl" ] && kill "$wl" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

measure() { # holdup-binary -> "ns_per_switch ns_per_wait"
  "$workload" shmfutex --secs "$((secs + 2))" >"$tmp/wl.json" &
  wl=$!
  for _ in $(seq 50); do [ -s "$tmp/wl.json" ] && break; sleep 0.1; done
  local pid; pid="$(head -1 "$tmp/wl.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
  "$1" record --pid "$pid" --duration "${secs}s" -o "$tmp/r.rec" >/dev/null 2>&1
  wait "$wl"; wl=""
  "$1" inspect --json "$tmp/r.rec" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sw = next(p for p in d["overhead"]["programs"] if p["name"] == "handle_sched_switch")
waits = sum(r["waits"] for r in d["resources"] if r["kind"] == "futex")
print(sw["ns_per_run"], sw["run_time_ns"] / max(waits, 1))'
}

declare -A vals
for r in $(seq "$runs"); do
  order=(with without); [ $((r % 2)) = 0 ] && order=(without with)
  for m in "${order[@]}"; do
    bin="$with"; [ "$m" = without ] && bin="$without"
    v="$(measure "$bin")"
    vals[$m-switch]+="${v% *} "; vals[$m-wait]+="${v#* } "
    echo "round $r $m: sched_switch ns/run, ns per futex wait: $v" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| build | sched_switch ns/run | sched_switch ns per shared futex wait |"
echo "|---|---|---|"
for m in with without; do
  printf '| %s | %.0f | %.0f |\n' "$m lookup" "$(echo "${vals[$m-switch]}" | median)" "$(echo "${vals[$m-wait]}" | median)"
done
echo "medians of $runs interleaved rounds, ${secs} s recordings; command: $0 $with $without --runs $runs --secs $secs"
