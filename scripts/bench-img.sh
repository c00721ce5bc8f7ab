#!/usr/bin/env bash
# Image I/O benchmark: snapvm-img against qemu-img on the same machine in the
# same run, with the same parameters. Prints a markdown table (also written
# to $OUT, default bin/bench-img.md).
#
#   make bench-img            # builds bin/snapvm-img first
#   REPS=5 ./scripts/bench-img.sh
#
# Rows: 4 KiB scattered writes and reads (qemu-img bench has no random mode,
# so requests step 1028 KiB apart, each landing in a different cluster of a
# 4 GiB image), 64 KiB sequential writes and reads (1 GiB), and snapshot -c /
# snapshot -d on a 4 GiB image holding 1 GiB of data and 20 snapshots.
# Each figure is the best of $REPS runs (seconds, lower is better); the
# snapshot rows, which are mostly fsync latency, take the best of $SNAP_REPS.
# For writes the last column is the space the image takes on the host
# afterwards (qemu-img's / snapvm-img's), which shows write amplification.
set -euo pipefail
cd "$(dirname "$0")/.."

SNAPVM_IMG=${SNAPVM_IMG:-bin/snapvm-img}
QEMU_IMG=${QEMU_IMG:-qemu-img}
REPS=${REPS:-3}
SNAP_REPS=${SNAP_REPS:-7}
OUT=${OUT:-bin/bench-img.md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-img.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for t in "$QEMU_IMG" "$SNAPVM_IMG"; do
	command -v "$t" >/dev/null || { echo "missing $t (run make build; install qemu-img with scripts/setup.sh)" >&2; exit 1; }
done

# bench_time TOOL ARGS...: the "Run completed in X seconds." figure.
bench_time() {
	"$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'
}

# wall TOOL ARGS...: wall-clock seconds of one command.
wall() {
	local s e
	s=$(date +%s.%N)
	"$@" >/dev/null
	e=$(date +%s.%N)
	echo "$e - $s" | bc -l
}

best() { sort -g | head -1; }

fresh() { # fresh NAME: an empty 4 GiB qcow2 image made by qemu-img
	rm -f "$WORK/$1"
	"$QEMU_IMG" create -q -f qcow2 "$WORK/$1" 4G
}

rows=()
row() { # row NAME PARAMS QEMU SNAPVM [DISK-USAGE]
	local ratio
	ratio=$(printf '%.2f' "$(echo "$3 / $4" | bc -l)")
	rows+=("| $1 | \`$2\` | $(printf '%.3f' "$3") | $(printf '%.3f' "$4") | $ratio | ${5:--} |")
}
mib() { echo "$(($(du -B1 "$1" | cut -f1) / 1048576)) MiB"; }

# I/O rows: writes go to a fresh image per run; reads read what was written.
io_row() { # io_row NAME BENCH-ARGS
	local name=$1 args=$2 q=() s=() tool img
	for _ in $(seq "$REPS"); do
		for tool in qemu snapvm; do
			img="$tool.qcow2"
			if [[ $args == *-w* ]]; then fresh "$img"; fi
			if [[ $tool == qemu ]]; then
				q+=("$(bench_time "$QEMU_IMG" bench -f qcow2 $args "$WORK/$img")")
			else
				s+=("$(bench_time "$SNAPVM_IMG" bench -f qcow2 $args "$WORK/$img")")
			fi
		done
	done
	local usage=-
	if [[ $args == *-w* ]]; then usage="$(mib "$WORK/qemu.qcow2") / $(mib "$WORK/snapvm.qcow2")"; fi
	row "$name" "bench $args" "$(printf '%s\n' "${q[@]}" | best)" "$(printf '%s\n' "${s[@]}" | best)" "$usage"
}

SCATTER="-c 20000 -d 32 -s 4k -S 1028k"
SEQ="-c 16384 -d 32 -s 64k"
io_row "4 KiB scattered write" "-w $SCATTER"
io_row "4 KiB scattered read" "$SCATTER"
io_row "64 KiB sequential write (1 GiB)" "-w $SEQ"
io_row "64 KiB sequential read (1 GiB)" "$SEQ"

# Snapshot rows: one prepared image (1 GiB written, 20 snapshots), copied
# for every run so each tool starts from the same state.
fresh base.qcow2
"$QEMU_IMG" bench -q -w -f qcow2 -c 16384 -d 32 -s 64k --pattern=7 "$WORK/base.qcow2" >/dev/null
for i in $(seq 20); do "$QEMU_IMG" snapshot -c "old$i" "$WORK/base.qcow2"; done
snap_row() { # snap_row NAME ACTION
	local q=() s=() tool bin
	for _ in $(seq "$SNAP_REPS"); do
		for tool in qemu snapvm; do
			bin=$QEMU_IMG
			[[ $tool == snapvm ]] && bin=$SNAPVM_IMG
			cp --sparse=always "$WORK/base.qcow2" "$WORK/s.qcow2"
			sync "$WORK/s.qcow2"
			if [[ $2 == -d ]]; then
				"$QEMU_IMG" snapshot -c new "$WORK/s.qcow2"
				sync "$WORK/s.qcow2"
			fi
			t=$(wall "$bin" snapshot "$2" new "$WORK/s.qcow2")
			if [[ $tool == qemu ]]; then q+=("$t"); else s+=("$t"); fi
		done
	done
	row "$1" "snapshot $2 new" "$(printf '%s\n' "${q[@]}" | best)" "$(printf '%s\n' "${s[@]}" | best)"
}
snap_row "snapshot -c (4 GiB, 1 GiB data, 20 snapshots)" -c
snap_row "snapshot -d (4 GiB, 1 GiB data, 21 snapshots)" -d

{
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr); $("$QEMU_IMG" --version | head -1); best of $REPS runs ($SNAP_REPS for snapshots)"
	echo
	echo "| benchmark | command | qemu-img (s) | snapvm-img (s) | qemu-img / snapvm-img | image on host after (qemu-img / snapvm-img) |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} | tee "$OUT"
