// Package difftest runs the bundled guests on qemu-system-riscv64 and on
// snapvm and compares what they print. The QEMU-only checks (each guest
// behaves as intended on the reference) always run; the comparison with
// snapvm is built with the snapvm_e2e tag:
//
//	go test -tags snapvm_e2e ./tests/difftest
package difftest
