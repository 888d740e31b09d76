#!/usr/bin/env bash
# Sets everything up, then records a real Redis server under redis-benchmark
# load for 10 s with holdup and prints the recording's summary.
# Usage: sudo scripts/demo.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
bash scripts/setup.sh
cargo build --release -p holdup-cli
port=6399
dir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$port" -c 50 -n 100000000 -t get,set -q >/dev/null 2>&1 &
bench_pid=$!
out="${HOLDUP_DEMO_OUT:-holdup-redis-demo.rec}"
./target/release/holdup record --pid "$redis_pid" --duration "${secs}s" -o "$out" --summary
kill "$bench_pid" 2>/dev/null || true
echo "recording kept in $out; look again with: ./target/release/holdup inspect $out"
