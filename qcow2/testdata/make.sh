#!/bin/sh
# Regenerates the seed images in this directory with QEMU 7.2's qemu-img and qemu-io.
# They seed the fuzz targets (FuzzOpen, FuzzL2) and are read by TestSeedImages.
set -eu
cd "$(dirname "$0")"
img() { qemu-img "$@"; }
io() { qemu-io -f qcow2 "$@" >/dev/null; }

# v3, 512-byte clusters, one internal snapshot with vm state, then a COW write.
img create -q -f qcow2 -o cluster_size=512 qemu-img-7.2-v3-c512-snap.qcow2 64k
io -c 'write -P 1 0 2k' -c 'write -b -P 9 0 1k' qemu-img-7.2-v3-c512-snap.qcow2
img snapshot -c s1 qemu-img-7.2-v3-c512-snap.qcow2
io -c 'write -P 2 1k 1k' -c 'write -z 8k 1k' qemu-img-7.2-v3-c512-snap.qcow2

# v2 (compat=0.10), 512-byte clusters, two snapshots.
img create -q -f qcow2 -o compat=0.10,cluster_size=512 qemu-img-7.2-v2-c512-snap.qcow2 64k
io -c 'write -P 3 512 3k' qemu-img-7.2-v2-c512-snap.qcow2
img snapshot -c a qemu-img-7.2-v2-c512-snap.qcow2
io -c 'write -P 4 0 1k' qemu-img-7.2-v2-c512-snap.qcow2
img snapshot -c b qemu-img-7.2-v2-c512-snap.qcow2

# 1-bit and 64-bit refcounts.
img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 qemu-img-7.2-v3-c512-rc1.qcow2 32k
io -c 'write -P 5 0 1500' qemu-img-7.2-v3-c512-rc1.qcow2
img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 qemu-img-7.2-v3-c512-rc64.qcow2 32k
io -c 'write -P 6 100 1500' qemu-img-7.2-v3-c512-rc64.qcow2

# Compressed clusters, zlib and zstd (qemu-img convert -c).
awk 'BEGIN { for (i = 0; i < 2048; i++) printf "line %05d of the seed file\n", i }' | head -c 32768 > seed.raw
img convert -c -f raw -O qcow2 -o cluster_size=4096 seed.raw qemu-img-7.2-v3-c4k-zlib.qcow2
img convert -c -f raw -O qcow2 -o cluster_size=4096,compression_type=zstd seed.raw qemu-img-7.2-v3-c4k-zstd.qcow2

# Overlay with a backing file name and format extension (backing opened by name).
img create -q -f qcow2 -o cluster_size=512 -b seed.raw -F raw qemu-img-7.2-v3-c512-backing.qcow2
io -c 'write -P 7 1000 100' qemu-img-7.2-v3-c512-backing.qcow2
