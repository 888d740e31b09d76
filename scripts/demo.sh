#!/usr/bin/env bash
# Sets everything up, then runs holdup's main job on a real service: a Redis
# server under redis-benchmark load is watched for 20 s (default) while,
# halfway through, a CPU hog starts on Redis's CPU; `holdup diagnose` then
# says what held Redis up and who caused it, and keeps the recording.
# Usage (as root): bash scripts/demo.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
bash scripts/setup.sh
cargo build --release -p holdup-cli
port=6399
dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cpus=$(nproc)
redis_cpu=$((cpus - 1))
taskset -c "$redis_cpu" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
bench_cpus=0
[ "$cpus" -gt 2 ] && bench_cpus="0-$((cpus - 2))"
taskset -c "$bench_cpus" redis-benchmark -p "$port" -c 20 -n 100000000 -t get,set -q >/dev/null 2>&1 &
pids+=("$!")
out="${HOLDUP_DEMO_OUT:-holdup-redis-demo.rec}"
# The hog starts halfway through the watch, on Redis's CPU.
( sleep $((secs / 2)); exec stress-ng --cpu 1 --taskset "$redis_cpu" --timeout "$((secs / 2 + 2))s" --quiet ) &
pids+=("$!")
./target/release/holdup diagnose --pid "$redis_pid" --duration "${secs}s" --record "$out"
echo
echo "recording kept in $out; look again with:"
echo "  ./target/release/holdup inspect $out"
echo "  ./target/release/holdup diagnose $out --incident $((secs / 2 + 1))s.. --no-baseline"
