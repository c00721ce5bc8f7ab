#!/usr/bin/env bash
# VM snapshot figures, snapvm against QEMU 7.2 in the same run: the memfill
# guest (all RAM written) at each memory size; save, downtime, load, delete,
# image growth. Prints a markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES:-"256M 1G"}
go build -o bin/ ./cmd/snapvm
go build -o bin/benchsnap ./tests/benchsnap
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(qemu-system-riscv64 --version | head -1)"
echo
echo "| RAM | VM | save (s) | save downtime (s) | load (s) | load downtime (s) | delete (s) | image growth (MiB) | VM SIZE (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in $sizes; do
  for vm in bin/snapvm qemu-system-riscv64; do
    out=$(bin/benchsnap -bin "$vm" -m "$m" -kernel guests/build/memfill.elf 2>/dev/null) || { echo "| $m | $(basename $vm) | failed | | | | | | |"; continue; }
    echo "$out" | python3 -c '
import json,sys
r=json.load(sys.stdin)
print("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |" % (r["memory"], r["vm"], r["save_s"], r["save_downtime_s"], r["load_s"], r["load_downtime_s"], r["delete_s"], r["image_growth_bytes"]/2**20, r["vm_state_size"]/2**20))'
  done
done
