// Package snapshote2e boots the bundled guests with a qcow2 disk, drives
// internal snapshots over QMP (snapshot-save / snapshot-load jobs) and checks
// from the guests' serial output that a restored guest continues exactly
// from the saved point: the ticker's next tick, diskcheck's and memfill's
// self-checks. The same checks run against qemu-system-riscv64 and snapvm;
// memfill on snapvm, the slow one, needs the snapvm_e2e build tag.
package snapshote2e
