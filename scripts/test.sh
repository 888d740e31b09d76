#!/usr/bin/env bash
# Runs every test. Tests that load BPF need root; with CI=true a missing
# capability fails them instead of skipping. Test binaries that load BPF or
# measure contention run their tests one at a time (two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=1
