#!/usr/bin/env bash
# Overhead of holdup on a real service: Redis under redis-benchmark, with no
# tracing, with `holdup record --pid`, and with the bpftrace peer
# bench/peer-sched-futex.bt (the classic way to collect the same scheduling
# and futex metrics). Modes are interleaved and the order rotates each round.
#
# Usage: sudo scripts/bench-redis.sh [--runs N] [--secs S] [--out DIR]
#                                    [--port P] [--clients C] [--no-pin]
#   --runs N     rounds; each round runs every mode once (default 5)
#   --secs S     target length of one untraced load run, in seconds (default 8);
#                the request count is sized once, untraced, at the start
#   --out DIR    where results go (default target/bench-redis/<UTC time>)
#   --port P     first port to try for the private redis-server (default 6390)
#   --clients C  redis-benchmark connections (default 50)
#   --no-pin     do not pin redis-server to CPU 0 and redis-benchmark to CPU 1
# Environment: HOLDUP=path/to/holdup (default target/release/holdup).
# Writes $OUT/results.csv (one row per run), $OUT/results.md (ready for
# BENCHMARKS.md), $OUT/holdup-overhead.json and the recording it came from.
set -euo pipefail

cmdline="scripts/bench-redis.sh${*:+ $*}"
cd "$(dirname "$0")/.."
repo="$(pwd)"

runs=5 secs=8 out="" port=6390 clients=50 pin=1
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench-redis: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --secs) secs="${2:?--secs needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    --port) port="${2:?--port needs a value}"; shift 2 ;;
    --clients) clients="${2:?--clients needs a value}"; shift 2 ;;
    --no-pin) pin=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
for v in runs secs port clients; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer, got '${!v}'"
done

pin_server="" pin_load="" pin_note="nothing pinned"
if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0" pin_load="taskset -c 1"
  pin_note="redis-server pinned to CPU 0, redis-benchmark to CPU 1"
fi
clk_tck="$(getconf CLK_TCK)"

# ---- prerequisites ---------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "must run as root (holdup and bpftrace load BPF programs): sudo $cmdline"
holdup="${HOLDUP:-$repo/target/release/holdup}"
[ -x "$holdup" ] || die "holdup binary not found at $holdup: build it with 'cargo build --release -p holdup-cli' (or set HOLDUP=path)"
for c in redis-server redis-cli redis-benchmark bpftrace; do
  command -v "$c" >/dev/null || die "$c is missing: run scripts/setup.sh"
done
peer="$repo/bench/peer-sched-futex.bt"
[ -f "$peer" ] || die "missing $peer"
if command -v jq >/dev/null; then json=jq
elif command -v python3 >/dev/null; then json=python3
else json=""; echo "bench-redis: neither jq nor python3 found: holdup's per-program cost will be skipped" >&2
fi

if [ "$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null || echo 0)" != 0 ]; then
  echo "bench-redis: note: kernel.bpf_stats_enabled is 1, so every BPF program (the bpftrace peer too) pays for run-time stats" >&2
fi

[ -n "$out" ] || out="$repo/target/bench-redis/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
tmp="$(mktemp -d /tmp/bench-redis.XXXXXX)"

# ---- cleanup: stop everything this script started ---------------------------
redis_pid="" tracer_pid="" load_pid=""
stats0="$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null || echo "")"
stop_pid() { # pid signal seconds: signal, wait up to seconds, then SIGKILL
  local p="$1" sig="$2" t="$3" i
  [ -n "$p" ] || return 0
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
  kill "-$sig" "$p" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$p" 2>/dev/null; then
    echo "bench-redis: pid $p ignored SIG$sig for ${t}s; killing it" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$load_pid" TERM 5
  stop_pid "$tracer_pid" INT 15
  stop_pid "$redis_pid" TERM 10
  if [ -n "$stats0" ] && [ "$(cat /proc/sys/kernel/bpf_stats_enabled)" != "$stats0" ]; then
    echo "$stats0" >/proc/sys/kernel/bpf_stats_enabled || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench-redis: interrupted" >&2; exit 130' INT TERM

# ---- private redis-server ------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((p = port; p < port + 100; p++)); do port_busy "$p" || break; done
port_busy "$p" && die "no free port in $port..$((port + 99))"
port=$p
# Redis on CPU 0, the load generator on CPU 1 (with --no-pin, anywhere): on a
# shared two-core machine this keeps run-to-run noise down.
$pin_server redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
  redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
  kill -0 "$redis_pid" 2>/dev/null || { cat "$tmp/redis.log" >&2; die "redis-server failed to start"; }
  sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 || die "redis-server did not answer on port $port"
[ "$(cat "/proc/$redis_pid/comm")" = redis-server ] || die "pid $redis_pid is not redis-server"
echo "bench-redis: redis-server pid $redis_pid on 127.0.0.1:$port; results in $out"

# ---- load ----------------------------------------------------------------------
# run_load N FILE: redis-benchmark SET then GET, N requests each; sets res to
# "set_rps get_rps set_p50 get_p50 set_p99 get_p99 seconds". Functions here run
# in the main shell (no subshells), so the cleanup trap knows every pid.
run_load() {
  local n="$1" f="$2" t0 t1 c0 c1 rc=0
  t0=$(date +%s.%N)
  c0=$(redis_cpu_ticks)
  timeout "$((secs * 10 + 60))" $pin_load redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" \
    -n "$n" -t set,get --csv >"$f" 2>"$f.err" &
  load_pid=$!
  wait "$load_pid" || rc=$?
  load_pid=""
  t1=$(date +%s.%N)
  c1=$(redis_cpu_ticks)
  [ "$rc" -eq 0 ] || { cat "$f.err" >&2; die "redis-benchmark failed (exit $rc; 124 = timed out)"; }
  res="$(awk -F, -v t0="$t0" -v t1="$t1" -v cpu="$(((c1 - c0)))" -v hz="$clk_tck" -v n="$n" '
    { gsub(/"/, "") }
    $1 == "SET" { s = $2; s50 = $5; s99 = $7 }
    $1 == "GET" { g = $2; g50 = $5; g99 = $7 }
    END {
      if (s == "" || g == "") exit 1
      printf "%s %s %s %s %s %s %.2f %.3f\n", s, g, s50, g50, s99, g99, t1 - t0, cpu / hz / (2 * n) * 1e6
    }' "$f")" || die "could not parse redis-benchmark output in $f"
}

# Redis's CPU time (user + system) in clock ticks: per request, it shows the
# tracers' cost inside Redis's context even when throughput noise hides it.
redis_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$redis_pid/stat"; }

# wait_line PID FILE REGEX SECONDS: wait until FILE matches REGEX while PID lives.
wait_line() {
  local p="$1" f="$2" re="$3" t="$4" i
  for ((i = 0; i < t * 10; i++)); do
    grep -Eq "$re" "$f" 2>/dev/null && return 0
    kill -0 "$p" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Size the request count from one untraced run (it is also the warm-up).
echo "bench-redis: sizing the load (untraced, 100000 requests per test)"
run_load 100000 "$tmp/calibrate.csv"
read -r cs cg _ _ _ _ ct _ <<<"$res"
requests=$(awk -v s="$cs" -v g="$cg" -v S="$secs" 'BEGIN {
  n = S / (1 / s + 1 / g); n = int(n / 10000 + 0.5) * 10000; if (n < 10000) n = 10000; print n }')
echo "bench-redis: untraced: SET $cs rps, GET $cg rps (${ct}s); using -n $requests per test for ~${secs}s"

# ---- one run ---------------------------------------------------------------------
# run_mode MODE ROUND: runs the load with MODE's tracer attached; sets res as
# run_load does.
run_mode() {
  local mode="$1" r="$2" base="$tmp/r$2-$1" rc=0
  case "$mode" in
    none) ;;
    holdup)
      "$holdup" record --pid "$redis_pid" -o "$base.rec" >"$base.out" 2>"$base.err" &
      tracer_pid=$!
      wait_line "$tracer_pid" "$base.err" '^holdup: recording' 120 ||
        { cat "$base.err" >&2; die "holdup did not start recording"; }
      ;;
    bpftrace)
      bpftrace "$peer" "$redis_pid" >"$base.out" 2>"$base.err" &
      tracer_pid=$!
      wait_line "$tracer_pid" "$base.out" '^peer-sched-futex: .*ready' 120 ||
        { cat "$base.out" "$base.err" >&2; die "bpftrace did not attach"; }
      ;;
  esac
  sleep 1
  run_load "$requests" "$base.csv"
  if [ -n "$tracer_pid" ]; then
    kill -INT "$tracer_pid" 2>/dev/null || true
    wait_pid_exit "$tracer_pid" 30 || rc=$?
    tracer_pid=""
    if [ "$rc" -ne 0 ]; then
      cat "$base.err" >&2
      die "$mode exited with status $rc after SIGINT"
    fi
  fi
  if [ -n "$stats0" ] && [ "$(cat /proc/sys/kernel/bpf_stats_enabled)" != "$stats0" ]; then
    echo "bench-redis: kernel.bpf_stats_enabled changed during the $mode run; restoring it" >&2
    echo "$stats0" >/proc/sys/kernel/bpf_stats_enabled
  fi
}
# wait_pid_exit PID SECONDS: wait for a child to exit; its status, or SIGKILL.
wait_pid_exit() {
  local p="$1" t="$2" i
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$p" 2>/dev/null; then
    echo "bench-redis: pid $p still running ${t}s after SIGINT; killing it" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  local rc=0
  wait "$p" || rc=$?
  return "$rc"
}

modes=(none holdup bpftrace)
csv="$out/results.csv"
echo "round,position,mode,requests,set_rps,get_rps,set_p50_ms,get_p50_ms,set_p99_ms,get_p99_ms,load_seconds,redis_cpu_us_per_req" >"$csv"
last_rec="" last_rec_secs=""
for ((r = 1; r <= runs; r++)); do
  for ((i = 0; i < ${#modes[@]}; i++)); do
    mode="${modes[$(((r - 1 + i) % ${#modes[@]}))]}"
    run_mode "$mode" "$r"
    read -r s g s50 g50 s99 g99 t cpu <<<"$res"
    [ -n "${t:-}" ] || die "run $r ($mode) failed"
    printf 'bench-redis: round %d/%d  %-8s  SET %10s rps  GET %10s rps  redis CPU %s us/req  (%ss)\n' \
      "$r" "$runs" "$mode" "$s" "$g" "$cpu" "$t"
    echo "$r,$((i + 1)),$mode,$requests,$s,$g,$s50,$g50,$s99,$g99,$t,$cpu" >>"$csv"
    if [ "$mode" = holdup ]; then last_rec="$tmp/r$r-holdup.rec" last_rec_secs="$t"; fi
    if [ "$mode" = bpftrace ]; then cp "$tmp/r$r-bpftrace.out" "$out/peer-output.txt"; fi
  done
done

# ---- results -----------------------------------------------------------------------
# summary: one line per mode and test: mode test median ratio run1 run2 ...
summary="$(awk -F, '
  NR == 1 { next }
  { m = $3; n[m]++; set[m, n[m]] = $5; get[m, n[m]] = $6; cpu[m, n[m]] = $12; if (!(m in seen)) { seen[m] = 1; order[++k] = m } }
  function median(a, m, cnt,   i, j, t, v) {
    for (i = 1; i <= cnt; i++) v[i] = a[m, i] + 0
    for (i = 2; i <= cnt; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
  }
  END {
    split("none holdup bpftrace", want, " ")
    for (w = 1; w <= 3; w++) {
      m = want[w]; if (!(m in n)) continue
      ms[m] = median(set, m, n[m]); mg[m] = median(get, m, n[m]); mc[m] = median(cpu, m, n[m])
    }
    for (w = 1; w <= 3; w++) {
      m = want[w]; if (!(m in n)) continue
      line = sprintf("%s SET %.2f %.3f", m, ms[m], ms[m] / ms["none"])
      for (i = 1; i <= n[m]; i++) line = line " " set[m, i]
      print line
      line = sprintf("%s GET %.2f %.3f", m, mg[m], mg[m] / mg["none"])
      for (i = 1; i <= n[m]; i++) line = line " " get[m, i]
      print line
      line = sprintf("%s CPU/req %.3f %.3f", m, mc[m], mc[m] / mc["none"])
      for (i = 1; i <= n[m]; i++) line = line " " cpu[m, i]
      print line
    }
  }' "$csv")"

echo
printf '%-9s %-7s %12s %8s   %s\n' mode test "median" "vs none" "per run, round order (rps; CPU/req: Redis CPU us per request)"
while read -r m t med ratio rest; do
  printf '%-9s %-7s %12s %8s   %s\n' "$m" "$t" "$med" "$ratio" "$rest"
done <<<"$summary"

# holdup's own BPF cost, from the last holdup run's recording.
progs=""
if [ -n "$json" ] && [ -n "$last_rec" ]; then
  "$holdup" inspect --json "$last_rec" >"$out/holdup-overhead.json"
  cp "$last_rec" "$out/holdup.rec"
  if [ "$json" = jq ]; then
    progs="$(jq -r '"total \(.windows_ns) \(.overhead.total_run_time_ns) \(.overhead.cpu_fraction)",
      (.overhead.programs[] | "\(.name) \(.run_cnt) \(.run_time_ns) \(.ns_per_run)")' "$out/holdup-overhead.json")"
  else
    progs="$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); o = d["overhead"]
print("total", d["windows_ns"], o["total_run_time_ns"], o["cpu_fraction"])
for p in o["programs"]: print(p["name"], p["run_cnt"], p["run_time_ns"], p["ns_per_run"])
' "$out/holdup-overhead.json")"
  fi
  # Reduce holdup-overhead.json to the overhead section and what it is relative to.
  if [ "$json" = jq ]; then
    jq '{target, kernel, holdup_version, windows, windows_ns, interval_ms, overhead}' \
      "$out/holdup-overhead.json" >"$tmp/o.json" && mv "$tmp/o.json" "$out/holdup-overhead.json"
  fi
fi
overhead_table() { # markdown rows: program | runs | runs/s | ns/run | ns per request
  awk -v req="$((requests * 2))" -v secs="$last_rec_secs" '
    $1 == "total" { wns = $2; tot = $3; frac = $4; next }
    { printf "| `%s` | %d | %.0f | %.0f | %.1f |\n", $1, $2, (wns ? $2 / (wns / 1e9) : 0), $4, $3 / req }
    END {
      printf "\nTotal BPF run time: %.1f ms over %.1f s of recording (%.2f%% of one CPU), %.0f ns per request.\n",
        tot / 1e6, wns / 1e9, frac * 100, tot / req
    }' <<<"$progs"
}
if [ -n "$progs" ]; then
  echo
  echo "holdup's BPF programs (last holdup run; runs/s over the recording, which starts 1 s before the load):"
  printf '  %-28s %12s %12s %10s %12s\n' program runs runs/s ns/run "ns/request"
  overhead_table | awk -F' *\\| *' '/^\|/ { gsub(/`/, "", $2); printf "  %-28s %12s %12s %10s %12s\n", $2, $3, $4, $5, $6; next } NF { print "  " $0 }'
fi

# ---- markdown snippet -----------------------------------------------------------------
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$commit" != unknown ] && [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes)"
fi
cpu="$(lscpu 2>/dev/null | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }')"
ncpu="$(nproc)"
{
  echo "### Redis under redis-benchmark: no tracing vs holdup vs bpftrace"
  echo
  echo "- Command: \`sudo $cmdline\`"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Kernel: $(uname -r); CPU: ${cpu:-unknown} ($ncpu CPUs)"
  echo "- holdup commit: $commit; $(redis-server --version | awk '{ sub(/^v=/, "", $3); print "Redis", $3 }'); $(bpftrace --version)"
  echo "- Load: \`redis-benchmark -h 127.0.0.1 -p $port -c $clients -n $requests -t set,get --csv\` ($requests requests per test, sized for ~${secs} s untraced); rounds: $runs, mode order rotated each round; $pin_note"
  echo "- Modes: \`none\`; \`holdup\` = \`holdup record --pid <redis> -o x.rec\`; \`bpftrace\` = \`bpftrace bench/peer-sched-futex.bt <redis>\`; each tracer attached 1 s before the load and stopped with SIGINT after it"
  echo
  echo "| mode | test | median (rps; CPU/req in us) | vs none | per run (round order) |"
  echo "|---|---|---:|---:|---|"
  while read -r m t med ratio rest; do
    echo "| $m | $t | $med | $ratio | ${rest// /, } |"
  done <<<"$summary"
  if [ -n "$progs" ]; then
    echo
    echo "holdup's own BPF cost in the last holdup run (\`holdup inspect --json\`, \`overhead\`; runs/s averaged over the recording, which starts 1 s before the load; ns/request = run time / $((requests * 2)) requests):"
    echo
    echo "| program | runs | runs/s | ns/run | ns/request |"
    echo "|---|---:|---:|---:|---:|"
    overhead_table
  fi
} >"$out/results.md"
echo
echo "bench-redis: wrote $csv and $out/results.md"
