#!/usr/bin/env bash
# Regenerates crates/holdup-bpf/src/bpf/vmlinux.h from the running kernel's BTF.
# CO-RE relocations make the committed header work on other kernels too; regenerate
# only to reach kernel types that the committed header lacks.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
btf="${1:-/sys/kernel/btf/vmlinux}"
bpftool="${BPFTOOL:-$(command -v bpftool || echo /usr/sbin/bpftool)}"
[ -r "$btf" ] || { echo "no BTF at $btf: holdup needs a kernel built with CONFIG_DEBUG_INFO_BTF=y" >&2; exit 1; }
"$bpftool" btf dump file "$btf" format c > "$here/crates/holdup-bpf/src/bpf/vmlinux.h.tmp"
mv "$here/crates/holdup-bpf/src/bpf/vmlinux.h.tmp" "$here/crates/holdup-bpf/src/bpf/vmlinux.h"
echo "wrote crates/holdup-bpf/src/bpf/vmlinux.h from $btf"
