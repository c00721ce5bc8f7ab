// Package difftest runs the bundled guests on qemu-system-riscv64 and on
// snapvm (built from ./cmd/snapvm) and compares what they print: hello's
// and cpubench's whole output (cpubench's instret against QEMU with
// -icount shift=0), and the same behavioural checks for the endless guests
// (ticker, diskcheck, memfill) on both machines.
package difftest
