#!/usr/bin/env bash
# Runs every test. Tests that load BPF need root; with CI=true a missing
# capability fails them instead of skipping. Test binaries that load BPF or
# measure contention run their tests one at a time (two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh   # a no-op when every package is already there
cargo build --workspace --all-targets
# The tracer alone, without the workbench server (no axum, tokio, SQLite).
cargo build -p holdup-cli --no-default-features --all-targets
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -- --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i; if ($(i+1) ~ /^ignored;/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
