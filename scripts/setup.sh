#!/usr/bin/env bash
# Installs everything holdup needs on a fresh Debian 12 machine: the BPF
# toolchain, and the real services and load generators the tests drive.
set -euo pipefail
PKGS=(
  clang-19 llvm-19 libelf-dev zlib1g-dev pkg-config   # compile and link the BPF programs
  bpftool                                              # scripts/gen-vmlinux.sh
  bpftrace                                             # the peer in BENCHMARKS.md, the workbench
  redis-server redis-tools                             # demo, benchmarks, scenario tests
  stress-ng fio procps                                 # load and contention generators
  haproxy etcd-server etcd-client util-linux coreutils # real-service matrix (tests/services/)
  postgresql postgresql-contrib                        # ... PostgreSQL and pgbench
  mariadb-server mariadb-client sysbench               # ... MariaDB and sysbench
  chromium chromium-driver fonts-dejavu-core           # the workbench UI's browser test
  prometheus python3-pip                               # the agent's scrape test; pip for DuckDB
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Services must not start on install: tests start their own, on loopback.
  echo exit 101 | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q --break-system-packages duckdb  # the Parquet export test
command -v cargo >/dev/null || { echo "holdup needs a Rust toolchain (cargo): install it with rustup" >&2; exit 1; }
echo "setup: all packages present"
