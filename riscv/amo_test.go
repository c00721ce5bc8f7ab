package riscv

import "testing"

func TestAMO(t *testing.T) {
	const m1 = ^uint64(0)
	cases := []struct {
		name     string
		f5, f3   uint32
		mem, src uint64
		wantMem  uint64 // 64-bit word after (W ops touch the low half)
		wantRd   uint64
	}{
		{"amoadd.w", 0, 2, 0xffffffff_7fffffff, 1, 0xffffffff_80000000, 0x7fffffff},
		{"amoswap.w", 1, 2, 0x11111111_80000000, 5, 0x11111111_00000005, 0xffffffff80000000},
		{"amoxor.w", 4, 2, 0xf0, 0xff, 0x0f, 0xf0},
		{"amoor.w", 8, 2, 0xf0, 0x0f, 0xff, 0xf0},
		{"amoand.w", 12, 2, 0xf0, 0x3c, 0x30, 0xf0},
		{"amomin.w", 16, 2, 0x80000000, 1, 0x80000000, 0xffffffff80000000},
		{"amomax.w", 20, 2, 0x80000000, 1, 1, 0xffffffff80000000},
		{"amominu.w", 24, 2, 0x80000000, 1, 1, 0xffffffff80000000},
		{"amomaxu.w", 28, 2, 0x80000000, 1, 0x80000000, 0xffffffff80000000},
		{"amoadd.d", 0, 3, m1, 2, 1, m1},
		{"amoswap.d", 1, 3, 7, 9, 9, 7},
		{"amomin.d", 16, 3, 1 << 63, 1, 1 << 63, 1 << 63},
		{"amomax.d", 20, 3, 1 << 63, 1, 1, 1 << 63},
		{"amominu.d", 24, 3, 1 << 63, 1, 1, 1 << 63},
		{"amomaxu.d", 28, 3, 1 << 63, 1, 1 << 63, 1 << 63},
	}
	for _, c := range cases {
		r := newRig(t)
		r.wr64(dataAddr, c.mem)
		r.runProg(prog(li(s0, dataAddr), li(a1, c.src), AMO(c.f5, c.f3, a0, s0, a1), HALT()))
		if got := r.rd64(dataAddr); got != c.wantMem {
			t.Errorf("%s: memory %#x, want %#x", c.name, got, c.wantMem)
		}
		if got := r.reg(a0); got != c.wantRd {
			t.Errorf("%s: rd %#x, want %#x", c.name, got, c.wantRd)
		}
	}
}

func TestLRSC(t *testing.T) {
	r := newRig(t)
	r.wr64(dataAddr, 5)
	r.runProg(prog(li(s0, dataAddr), LI12(a1, 9),
		AMO(2, 3, a0, s0, 0),                   // lr.d a0
		AMO(3, 3, a2, s0, a1),                  // sc.d a2 -> 0
		AMO(3, 3, a3, s0, a1),                  // sc.d again -> 1 (reservation gone)
		AMO(2, 2, a4, s0, 0),                   // lr.w
		SW(zero, s0, 0),                        // a store changing the reserved value
		AMO(3, 2, a5, s0, a1),                  // sc.w -> 1
		AMO(2, 2, a6, s0, 0),                   // lr.w
		ADDI(s1, s0, 8), AMO(3, 2, a7, s1, a1), // sc.w at another address -> 1
		HALT()))
	r.expectReg(a0, 5)
	r.expectReg(a2, 0)
	r.expectReg(a3, 1)
	r.expectReg(a4, 9)
	r.expectReg(a5, 1)
	r.expectReg(a7, 1)
	if got := r.rd64(dataAddr); got != 0 {
		t.Errorf("memory %#x, want 0", got)
	}
}

func TestLRSCClearedByTrap(t *testing.T) {
	r := newRig(t)
	r.load(ramBase+0x400, prog(CSRR(t0, csrMepc), ADDI(t0, t0, 4), CSRW(csrMepc, t0), MRET))
	r.runProg(prog(li(t0, ramBase+0x400), CSRW(csrMtvec, t0), li(s0, dataAddr), LI12(a1, 1),
		AMO(2, 3, a0, s0, 0), ECALL, AMO(3, 3, a2, s0, a1), HALT()))
	r.expectReg(a2, 1)
}

func TestAMOMisaligned(t *testing.T) {
	for _, insn := range []uint32{AMO(0, 3, a0, s0, a1), AMO(2, 2, a0, s0, 0), AMO(1, 2, a0, s0, a1)} {
		r := newRig(t)
		r.load(ramBase+0x400, prog(HALT()))
		r.runProg(prog(li(t0, ramBase+0x400), CSRW(csrMtvec, t0), li(s0, dataAddr+2), insn, HALT()))
		if r.h.csr.mcause != excLoadMisaligned || r.h.csr.mtval != dataAddr+2 {
			t.Errorf("%#x: mcause %d mtval %#x (QEMU 7.2 reports 4 with the address)", insn, r.h.csr.mcause, r.h.csr.mtval)
		}
	}
	// A misaligned SC without a reservation fails without trapping.
	r := newRig(t)
	r.runProg(prog(li(s0, dataAddr+2), AMO(3, 3, a0, s0, a1), HALT()))
	r.expectReg(a0, 1)
}

// TestAtomicsAcrossHarts: two harts on their own goroutines increment one
// counter with amoadd.w and another with an LR/SC loop; no update is lost.
func TestAtomicsAcrossHarts(t *testing.T) {
	r := newRig(t)
	const n = 20000
	p := prog(
		li(s0, dataAddr), li(a1, n), LI12(t2, 1),
		AMO(0, 2, zero, s0, t2), // loop: amoadd.w zero, t2, (s0)
		ADDI(s1, s0, 8),
		AMO(2, 3, t3, s1, 0),  // retry: lr.d t3, (s1)
		ADDI(t3, t3, 1),       //
		AMO(3, 3, t4, s1, t3), // sc.d t4, t3, (s1)
		BNE(t4, zero, -12),    // -> retry
		ADDI(a1, a1, -1),
		BNE(a1, zero, -28), // -> loop
		HALT())
	r.load(ramBase, p)
	haltAt := uint64(ramBase + 4*(len(p)-1))
	h2 := NewHart(1, r.ram, r.bus, r.clk)
	h2.SetPC(ramBase)
	r.h.SetPC(ramBase)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000 && h2.PC() != haltAt; i++ {
			h2.Run(1 << 16)
		}
	}()
	r.runToHalt(1 << 26)
	<-done
	if got := r.rd64(dataAddr) & 0xffffffff; got != 2*n {
		t.Errorf("amoadd counter %d, want %d", got, 2*n)
	}
	if got := r.rd64(dataAddr + 8); got != 2*n {
		t.Errorf("lr/sc counter %d, want %d", got, 2*n)
	}
}
