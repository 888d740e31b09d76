#!/usr/bin/env bash
# What the workbench's built-in probes cost, to set the overhead classes and
# the policy's default budgets on data: `holdup record --pid <redis>` with
# --sched-only (holdup-sched, class low) and with every program (holdup-full,
# class medium), each measured by the kernel's BPF stats (the same numbers a
# workbench run is held to), on an idle Redis and on a Redis under
# redis-benchmark. Modes interleave; the order rotates each round.
#
# Usage: sudo scripts/bench-probe-classes.sh [--runs N] [--secs S]
# Environment: HOLDUP=path/to/holdup (default target/release/holdup).
# Prints one markdown table of medians (percent of one CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 secs=5 port=6395
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?}"; shift 2 ;;
    --secs) secs="${2:?}"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--secs S]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "must run as root (BPF)" >&2; exit 1; }
holdup="${HOLDUP:-target/release/holdup}"
[ -x "$holdup" ] || { echo "build holdup first: cargo build --release -p holdup-cli" >&2; exit 1; }
tmp="$(mktemp -d)"
taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no >"$tmp/redis.log" 2>&1 &
redis=$!
load=""
cleanup() { [ -n "$load" ] && kill "$load" 2>/dev/null; kill "$redis" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

# percent of one CPU used by the recording's BPF programs
measure() { # mode loaded
  local args=()
  [ "$1" = sched ] && args=(--sched-only)
  "$holdup" record --pid "$redis" "${args[@]}" --duration "${secs}s" -o "$tmp/r.rec" >/dev/null 2>&1
  "$holdup" inspect --json "$tmp/r.rec" | python3 -c 'import json,sys; print(json.load(sys.stdin)["overhead"]["cpu_fraction"]*100)'
}

declare -A vals
for r in $(seq "$runs"); do
  for load_state in idle loaded; do
    if [ "$load_state" = loaded ]; then
      taskset -c 1 redis-benchmark -p "$port" -c 50 -n 100000000 -t set,get -q >/dev/null 2>&1 &
      load=$!
      sleep 1
    fi
    modes=(sched full); [ $((r % 2)) = 0 ] && modes=(full sched)
    for m in "${modes[@]}"; do
      v="$(measure "$m" "$load_state")"
      vals[$m-$load_state]+="$v "
      echo "round $r $load_state $m: $v% of a CPU" >&2
    done
    if [ -n "$load" ]; then kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true; load=""; fi
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| probe | Redis idle | Redis under redis-benchmark (50 clients) |"
echo "|---|---|---|"
for m in sched full; do
  name="holdup-sched (--sched-only)"; [ "$m" = full ] && name="holdup-full"
  printf '| %s | %.3f%% | %.3f%% |\n' "$name" "$(echo "${vals[$m-idle]}" | median)" "$(echo "${vals[$m-loaded]}" | median)"
done
echo "medians of $runs interleaved rounds, ${secs} s recordings; command: $0 --runs $runs --secs $secs"
