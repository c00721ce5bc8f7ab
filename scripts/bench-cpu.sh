#!/usr/bin/env bash
# CPU benchmark: the cpubench guest on snapvm and on qemu-system-riscv64
# (TCG) in the same run, plus the host CPU an idle guest (parked in WFI)
# costs on each. Prints a Markdown section for BENCHMARKS.md.
#   ROUNDS=N   cpubench rounds (default 200, the guest's default)
#   TRIALS=N   runs of each VM, interleaved; the fastest of each counts
#              (default 5: the host is shared, and noise only slows runs)
#   IDLE_SECS  seconds of idle measurement (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-200}
TRIALS=${TRIALS:-5}
IDLE_SECS=${IDLE_SECS:-5}
SNAPVM=${SNAPVM:-bin/snapvm}
QEMU=${QEMU:-qemu-system-riscv64}
ELF=guests/build/cpubench.elf
# QEMU's CPU trimmed to snapvm's RV64IMAC hart.
QEMU_CPU="rv64,h=false,f=false,d=false,zba=false,zbb=false,zbc=false,zbs=false,sstc=false,Zihintpause=false"

[ -x "$SNAPVM" ] || go build -o bin/ ./cmd/snapvm
command -v "$QEMU" >/dev/null || { echo "bench-cpu: $QEMU not found: install it with scripts/setup.sh (Debian package qemu-system-misc)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

run_timed() { # name cmd... ; writes $tmp/name.out, echoes wall seconds
	local name=$1; shift
	local t0 t1
	t0=$(now)
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null
	t1=$(now)
	calc "$t1 - $t0"
}

boot=(-M virt -bios none -nographic -kernel "$ELF" -append "rounds=$ROUNDS")
s_walls=() q_walls=()
for _ in $(seq "$TRIALS"); do
	s_walls+=("$(run_timed snapvm "$SNAPVM" "${boot[@]}")")
	q_walls+=("$(run_timed qemu "$QEMU" "${boot[@]}" -cpu "$QEMU_CPU")")
done
fastest() { printf '%s\n' "$@" | sort -g | head -1; }
s_wall=$(fastest "${s_walls[@]}")
q_wall=$(fastest "${q_walls[@]}")

s_sum=$(grep -o 'checksum 0x[0-9a-f]*' "$tmp/snapvm.out" || true)
q_sum=$(grep -o 'checksum 0x[0-9a-f]*' "$tmp/qemu.out" || true)
instret=$(sed -n 's/^cpubench: instret \([0-9]*\).*/\1/p' "$tmp/snapvm.out" | tr -d '\r')
if [ -z "$instret" ] || [ "$s_sum" != "$q_sum" ]; then
	echo "bench-cpu: runs disagree or failed: snapvm '$s_sum' qemu '$q_sum'" >&2
	cat "$tmp/snapvm.err" >&2
	exit 1
fi
s_mips=$(calc "$instret / $s_wall / 1000000")
q_mips=$(calc "$instret / $q_wall / 1000000")
ratio=$(calc "$s_wall / $q_wall")

# Idle guest: a raw image that parks in WFI with no interrupt enabled.
printf '\x73\x00\x50\x10\x6f\x00\x00\x00' >"$tmp/idle.bin"
ticks=$(getconf CLK_TCK)
idle_cpu() { # cmd... ; echoes CPU seconds used over IDLE_SECS
	"$@" >/dev/null 2>&1 </dev/null &
	local pid=$!
	sleep 1
	local a b
	a=$(awk '{print $14+$15}' "/proc/$pid/stat")
	sleep "$IDLE_SECS"
	b=$(awk '{print $14+$15}' "/proc/$pid/stat")
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
	calc "($b - $a) / $ticks"
}
idle=(-M virt -bios none -nographic -kernel "$tmp/idle.bin")
s_idle=$(idle_cpu "$SNAPVM" "${idle[@]}")
q_idle=$(idle_cpu "$QEMU" "${idle[@]}" -cpu "$QEMU_CPU")

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
printf '## CPU (cpubench)\n\n'
printf 'Measured %s on %s (%s cores, load average %s), `ROUNDS=%s TRIALS=%s make bench-cpu`\n(scripts/bench-cpu.sh); wall times are the fastest of the interleaved trials.\n\n' \
	"$(date -u '+%Y-%m-%d %H:%M UTC')" "$cpu" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$ROUNDS" "$TRIALS"
printf '| | snapvm | qemu-system-riscv64 7.2 (TCG) |\n|---|---|---|\n'
printf '| cpubench wall time | %.2f s | %.2f s |\n' "$s_wall" "$q_wall"
printf '| guest instructions (minstret) | %s | same program, checksum %s |\n' "$instret" "${q_sum#checksum }"
printf '| instructions / second | %.0f M | %.0f M |\n' "$s_mips" "$q_mips"
printf '| snapvm time / QEMU time | %.2f | 1 |\n' "$ratio"
printf '| all %s wall times (s) | %s| %s|\n' "$TRIALS" "$(printf '%.2f ' "${s_walls[@]}")" "$(printf '%.2f ' "${q_walls[@]}")"
printf '| host CPU of an idle guest (WFI), %s s | %.3f s (%.1f %%) | %.3f s (%.1f %%) |\n' "$IDLE_SECS" \
	"$s_idle" "$(calc "100 * $s_idle / $IDLE_SECS")" "$q_idle" "$(calc "100 * $q_idle / $IDLE_SECS")"
