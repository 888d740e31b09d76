#!/usr/bin/env bash
# Times `holdup diagnose` on a long recording of many threads (BENCHMARKS.md,
# "holdup diagnose of a long recording"). As root:
#   bash scripts/bench-diagnose.sh [THREADS] [SECS] [RUNS]
# Records THREADS Python threads (each sleeps 20-200 ms, then takes one
# shared lock) for SECS seconds, then diagnoses the recording RUNS times with
# the release build and prints wall time and peak RSS of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-500}; secs=${2:-120}; runs=${3:-3}
cargo build --release -p holdup-cli -q
holdup=target/release/holdup
dir=$(mktemp -d); trap 'kill "$load" 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 - "$threads" "$((secs + 10))" <<'PY' &
import random, sys, threading, time
n, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs
lock = threading.Lock()
def work(k):
    r = random.Random(k)
    while time.time() < end:
        time.sleep(r.uniform(0.02, 0.2))
        with lock:
            sum(range(200))
for k in range(n):
    threading.Thread(target=work, args=(k,), daemon=True).start()
time.sleep(secs)
PY
load=$!
sleep 2
"$holdup" record --pid "$load" -o "$dir/long.rec" --duration "${secs}s"
ls -l "$dir/long.rec"
for i in $(seq "$runs"); do
  /usr/bin/time -f "run $i: %e s wall, %M KB peak RSS" "$holdup" diagnose "$dir/long.rec" > /dev/null
done
