#!/usr/bin/env bash
# External snapshot figures, snapvm against QEMU 7.2 in the same run:
#  1. blockdev-snapshot-sync latency (request sent -> reply) on a running
#     diskcheck guest, $SNAPS snapshots stacked on one disk, same command line
#     and QMP conversation for both VMs (tests/externale2e/cmd/benchext),
#     $SNAP_RUNS runs per VM, latencies pooled;
#  2. read throughput through backing chains of depth 1, 10 and 50 made by
#     qemu-img/qemu-io: snapvm-img bench against qemu-img bench on the same
#     files, best of $REPS.
# Prints markdown (also written to $OUT, default bin/bench-external.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SNAPVM=${SNAPVM:-bin/snapvm}
SNAPVM_IMG=${SNAPVM_IMG:-bin/snapvm-img}
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
QEMU=${QEMU:-qemu-system-riscv64}
REPS=${REPS:-3}
SNAPS=${SNAPS:-20}
SNAP_RUNS=${SNAP_RUNS:-3}
DEPTHS=${DEPTHS:-"1 10 50"}
BENCH_ARGS=${BENCH_ARGS:-"-c 20000 -s 4096"}
OUT=${OUT:-bin/bench-external.md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-external.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for t in "$QEMU_IMG" "$QEMU_IO" "$QEMU" "$SNAPVM" "$SNAPVM_IMG"; do
	command -v "$t" >/dev/null || { echo "missing $t (run make build; install QEMU with scripts/setup.sh)" >&2; exit 1; }
done
go build -o bin/benchext ./tests/externale2e/cmd/benchext

{
echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr); $("$QEMU" --version | head -1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "blockdev-snapshot-sync on a running diskcheck guest: \`bin/benchext -n $SNAPS\` ($SNAPS snapshots stacked on node disk0, one every ~150 ms), $SNAP_RUNS runs per VM alternating, latencies pooled ($((SNAPS * SNAP_RUNS)) per VM):"
echo
echo "| VM | min (ms) | median (ms) | p90 (ms) | max (ms) | STOP/RESUME events | generations verified meanwhile (per run) | diskcheck |"
echo "|---|---|---|---|---|---|---|---|"
for _ in $(seq "$SNAP_RUNS"); do
	for vm in "$SNAPVM" "$QEMU"; do
		bin/benchext -bin "$vm" -n "$SNAPS" >>"$WORK/$(basename "$vm").jsonl"
	done
done
python3 - "$WORK/$(basename "$SNAPVM").jsonl" "$WORK/$(basename "$QEMU").jsonl" <<'PY'
import json, sys
med = []
for path in sys.argv[1:]:
    runs = [json.loads(l) for l in open(path)]
    lat = sorted(x for r in runs for x in r["latency_ms"])
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    med.append(q(0.5))
    print("| %s | %.1f | %.1f | %.1f | %.1f | %d/%d | %s | %s |" % (
        runs[0]["vm"], lat[0], q(0.5), q(0.9), lat[-1],
        sum(r["stop_events"] for r in runs), sum(r["resume_events"] for r in runs),
        " ".join(str(r["generations_verified_during"]) for r in runs),
        "ok" if all(r["diskcheck_ok"] for r in runs) else "MISMATCH"))
print()
print("Median latency snapvm / QEMU: %.2f" % (med[0] / med[1]))
print()
PY
# Chains: a 128 MiB base with 64 MiB written (pattern 1), then DEPTH
# overlays, overlay i holding 1 MiB (pattern i+1) at offset i MiB mod 64.
# The bench reads the top image from offset 0, so most reads fall through
# the chain to the base and the last ~14 MiB are holes in every image.
mkchain() { # mkchain DEPTH -> prints the top image
	local d=$1 dir="$WORK/chain$1" prev i
	mkdir -p "$dir"
	"$QEMU_IMG" create -q -f qcow2 "$dir/l0.qcow2" 128M
	"$QEMU_IO" -f qcow2 -c "write -P 1 0 64M" "$dir/l0.qcow2" >/dev/null
	prev="$dir/l0.qcow2"
	for i in $(seq 1 "$d"); do
		"$QEMU_IMG" create -q -f qcow2 -b "$prev" -F qcow2 "$dir/l$i.qcow2"
		"$QEMU_IO" -f qcow2 -c "write -P $(( (i % 250) + 1 )) $(( (i % 64) ))M 1M" "$dir/l$i.qcow2" >/dev/null
		prev="$dir/l$i.qcow2"
	done
	echo "$prev"
}
bench_time() { "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'; }
best() { sort -g | head -1; }

echo "Read through a backing chain (\`bench -f qcow2 $BENCH_ARGS\` on the top image, best of $REPS; seconds, lower is better):"
echo
echo "| chain depth (overlays over the base) | qemu-img (s) | snapvm-img (s) | qemu-img / snapvm-img |"
echo "|---|---|---|---|"
for d in $DEPTHS; do
	top=$(mkchain "$d")
	q=() s=()
	for _ in $(seq "$REPS"); do
		q+=("$(bench_time "$QEMU_IMG" bench -f qcow2 $BENCH_ARGS "$top")")
		s+=("$(bench_time "$SNAPVM_IMG" bench -f qcow2 $BENCH_ARGS "$top")")
	done
	qb=$(printf '%s\n' "${q[@]}" | best)
	sb=$(printf '%s\n' "${s[@]}" | best)
	echo "| $d | $(printf '%.3f' "$qb") | $(printf '%.3f' "$sb") | $(printf '%.2f' "$(echo "$qb / $sb" | bc -l)") |"
done
} | tee "$OUT"
