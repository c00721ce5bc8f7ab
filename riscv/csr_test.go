package riscv

import "testing"

const handler = ramBase + 0x800

// withHandler returns code installing a halting M-mode trap handler.
func (r *rig) withHandler() []uint32 {
	r.load(handler, prog(HALT()))
	return prog(li(t0, handler), CSRW(csrMtvec, t0))
}

func TestResetCSRs(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(CSRR(a0, csrMisa), CSRR(a1, csrMstatus), CSRR(a2, csrMhartid), CSRR(a3, csrMarchid),
		CSRR(a4, csrMvendorid), CSRR(a5, csrSatp), CSRR(a6, csrMtvec), HALT()))
	r.expectReg(a0, 0x8000000000141105)
	r.expectReg(a1, 0xa00000000)
	r.expectReg(a2, 0)
	r.expectReg(a3, 0x070216)
	r.expectReg(a4, 0)
	r.expectReg(a5, 0)
	r.expectReg(a6, 0)
	if r.h.Priv() != privM {
		t.Errorf("priv %d", r.h.Priv())
	}
}

func TestCSRReadWrite(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(
		LI12(t0, -1),
		CSRRW(a0, csrMscratch, t0), CSRR(a1, csrMscratch),
		CSRRCI(zero, csrMscratch, 0x1f), CSRR(a2, csrMscratch),
		CSRRSI(a3, csrMscratch, 0x3), CSRR(a3, csrMscratch),
		CSRW(csrMstatus, t0), CSRR(a4, csrMstatus), CSRR(a5, csrSstatus),
		CSRW(csrMstatus, zero),
		CSRW(csrPmpaddr0, t0), CSRR(a6, csrPmpaddr0),
		li(t1, 0xf<<60), CSRW(csrSatp, t1), CSRR(a7, csrSatp), // Sv64/unsupported: ignored
		LI12(t1, 2), CSRW(csrMtvec, t1), CSRR(s2, csrMtvec), // mode 2 ignored
		CSRW(csrMedeleg, t0), CSRR(t3, csrMedeleg),
		CSRW(csrMideleg, t0), CSRR(t4, csrMideleg),
		CSRW(csrMie, t0), CSRR(t5, csrMie),
		HALT()))
	r.expectReg(a0, 0)
	r.expectReg(a1, ^uint64(0))
	r.expectReg(a2, ^uint64(0x1f))
	r.expectReg(a3, ^uint64(0x1c))
	r.expectReg(a4, 0xa007e19aa)
	r.expectReg(a5, 0x2000c0122)
	r.expectReg(a6, 1<<54-1)
	r.expectReg(a7, 0)
	r.expectReg(s2, 0)
	r.expectReg(t3, 0xb3ff)
	r.expectReg(t4, 0x222)
	r.expectReg(t5, 0xaaa)
}

func TestCSRIllegal(t *testing.T) {
	cases := []struct {
		name string
		insn uint32
	}{
		{"unimplemented", CSRR(a0, 0x7c0)},
		{"fcsr (no F)", CSRR(a0, csrFcsr)},
		{"pmpcfg1 on RV64", CSRR(a0, csrPmpcfg0+1)},
		{"write mhartid", CSRW(csrMhartid, t0)},
		{"write cycle", CSRRS(a0, csrCycle, t0)},
		{"stimecmp (no Sstc)", CSRR(a0, 0x14d)},
	}
	for _, c := range cases {
		r := newRig(t)
		r.runProg(prog(r.withHandler(), LI12(t0, 1), c.insn, HALT()))
		if r.h.csr.mcause != excIllegal || r.h.csr.mtval != uint64(c.insn) {
			t.Errorf("%s: mcause %d mtval %#x, want 2 %#x", c.name, r.h.csr.mcause, r.h.csr.mtval, c.insn)
		}
	}
	// Reading a read-only CSR with csrrs x0 is fine.
	r := newRig(t)
	r.runProg(prog(r.withHandler(), CSRRS(a0, csrMhartid, zero), HALT()))
	if r.h.csr.mcause != 0 || r.h.PC() == handler {
		t.Error("csrr mhartid trapped")
	}
}

// pmpAll returns code giving S and U access to everything through PMP
// entry 0 (as OpenSBI's last entry does).
func pmpAll() []uint32 {
	return prog(LI12(t0, -1), CSRW(csrPmpaddr0, t0), LI12(t0, pmpNAPOT<<3|pmpR|pmpW|pmpX), CSRW(csrPmpcfg0, t0))
}

// enterMode returns code that drops from M to priv p at the code that
// follows it.
func enterMode(p uint64) []uint32 {
	c := prog(pmpAll(), li(t0, 3<<11), CSRRC(zero, csrMstatus, t0), li(t0, p<<11), CSRRS(zero, csrMstatus, t0), AUIPC(t0, 0))
	c = append(c, ADDI(t0, t0, 16), CSRW(csrMepc, t0), MRET)
	return c
}

func TestCSRPrivilege(t *testing.T) {
	cases := []struct {
		name  string
		priv  uint64
		setup []uint32 // M-mode code before entering the mode
		insn  uint32
		trap  bool
	}{
		{"S reads mstatus", 1, nil, CSRR(a0, csrMstatus), true},
		{"S reads sstatus", 1, nil, CSRR(a0, csrSstatus), false},
		{"U reads sstatus", 0, nil, CSRR(a0, csrSstatus), true},
		{"S rdtime without mcounteren", 1, nil, CSRR(a0, csrTime), true},
		{"S rdtime with mcounteren", 1, prog(CSRRSI(zero, csrMcounten, 2)), CSRR(a0, csrTime), false},
		{"U rdcycle with mcounteren only", 0, prog(CSRRSI(zero, csrMcounten, 1)), CSRR(a0, csrCycle), true},
		{"U rdcycle with both", 0, prog(CSRRSI(zero, csrMcounten, 1), CSRRSI(zero, csrScounten, 1)), CSRR(a0, csrCycle), false},
		{"S satp with TVM", 1, prog(li(t0, msTVM), CSRRS(zero, csrMstatus, t0)), CSRR(a0, csrSatp), true},
		{"S sfence.vma with TVM", 1, prog(li(t0, msTVM), CSRRS(zero, csrMstatus, t0)), SFENCEVMA(0, 0), true},
		{"S sfence.vma", 1, nil, SFENCEVMA(0, 0), false},
		{"U sfence.vma", 0, nil, SFENCEVMA(0, 0), true},
		{"S wfi with TW", 1, prog(li(t0, msTW), CSRRS(zero, csrMstatus, t0)), WFI, true},
		{"U wfi", 0, nil, WFI, true},
		{"S sret with TSR", 1, prog(li(t0, msTSR), CSRRS(zero, csrMstatus, t0)), SRET, true},
		{"U sret", 0, nil, SRET, true},
		{"S mret", 1, nil, MRET, true},
	}
	for _, c := range cases {
		r := newRig(t)
		r.clk.t = 1234
		// An interrupt-free WFI wait would stop the run: enable a pending one.
		r.runProg(prog(r.withHandler(), c.setup, enterMode(c.priv), c.insn, HALT()))
		trapped := r.h.csr.mcause == excIllegal && r.h.PC() == handler
		if trapped != c.trap {
			t.Errorf("%s: trapped=%v (mcause %d), want %v", c.name, trapped, r.h.csr.mcause, c.trap)
		}
		if trapped && r.h.csr.mtval != uint64(c.insn) {
			t.Errorf("%s: mtval %#x, want %#x", c.name, r.h.csr.mtval, c.insn)
		}
		if c.name == "S rdtime with mcounteren" && r.reg(a0) != 1234 {
			t.Errorf("time = %d", r.reg(a0))
		}
	}
}

func TestCounters(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(CSRR(a0, csrMinstret), NOP, NOP, CSRR(a1, csrMinstret), CSRR(a2, csrInstret),
		CSRRSI(zero, csrMcountin, 4), CSRR(a3, csrMinstret), NOP, NOP, CSRR(a4, csrMinstret),
		CSRRCI(zero, csrMcountin, 4), LI12(t0, 100), CSRW(csrMinstret, t0), NOP, CSRR(a5, csrMinstret),
		HALT()))
	r.expectReg(a1, r.reg(a0)+3)
	r.expectReg(a2, r.reg(a1)+1)
	r.expectReg(a4, r.reg(a3))
	if d := r.reg(a5) - 100; d < 1 || d > 3 {
		t.Errorf("minstret after write = %d", r.reg(a5))
	}
}
