package riscv

import (
	"testing"
	"unsafe"
)

// jit_amd64.s loads these fields at fixed offsets.
func TestJITContextLayout(t *testing.T) {
	var c jitCtx
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"regs", unsafe.Offsetof(c.regs), 0},
		{"mem", unsafe.Offsetof(c.mem), 8},
		{"dtlb", unsafe.Offsetof(c.dtlb), 16},
		{"dirty", unsafe.Offsetof(c.dirty), 32},
		{"written", unsafe.Offsetof(c.written), 40},
		{"budget", unsafe.Offsetof(c.budget), 48},
	} {
		if f.got != f.want {
			t.Errorf("jitCtx.%s at offset %d, the assembly expects %d", f.name, f.got, f.want)
		}
	}
}
