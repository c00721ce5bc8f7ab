package riscv

import "testing"

const (
	ptRoot = ramBase + 0x100000
	ptL1   = ramBase + 0x101000
	ptL0   = ramBase + 0x102000

	vaHigh  = 0xffffffffc0000000 // VPN2 = 511, through ptL1
	vaPage  = vaHigh + 0x1000    // 4K page -> pa4K (RW, A=D=0)
	vaRO    = vaHigh + 0x2000    // read-only
	vaNone  = vaHigh + 0x3000    // invalid PTE
	vaUser  = vaHigh + 0x4000    // U page
	vaXOnly = vaHigh + 0x5000    // execute-only
	vaMega  = vaHigh + 0x200000  // 2 MiB page -> ramBase+0x200000
	vaBadMP = vaHigh + 0x400000  // misaligned megapage
	vaGiga  = 0x40000000         // 1 GiB page -> ramBase

	pa4K = ramBase + 0x30000
)

func pte(pa uint64, flags uint64) uint64 { return pa>>12<<10 | flags }

// setupSv39 writes the page tables and returns code that enables Sv39 and
// drops to S-mode (code runs through the identity gigapage at ramBase).
func (r *rig) setupSv39() []uint32 {
	r.wr64(ptRoot+1*8, pte(ramBase, pteV|pteR|pteW|pteX))                  // 0x40000000 -> ramBase, A/D clear
	r.wr64(ptRoot+2*8, pte(ramBase, pteV|pteR|pteW|pteX|pteA|pteD))        // identity
	r.wr64(ptRoot+511*8, pte(ptL1, pteV))                                  // high half
	r.wr64(ptL1+0*8, pte(ptL0, pteV))                                      // vaHigh + 0..2M
	r.wr64(ptL1+1*8, pte(ramBase+0x200000, pteV|pteR|pteW|pteX|pteA|pteD)) // megapage
	r.wr64(ptL1+2*8, pte(ramBase+0x201000, pteV|pteR|pteW|pteA|pteD))      // misaligned megapage
	r.wr64(ptL0+1*8, pte(pa4K, pteV|pteR|pteW))                            // A/D clear
	r.wr64(ptL0+2*8, pte(pa4K+0x1000, pteV|pteR|pteA))                     // read-only
	r.wr64(ptL0+3*8, pte(pa4K+0x2000, pteR|pteW))                          // V=0
	r.wr64(ptL0+4*8, pte(pa4K+0x3000, pteV|pteR|pteW|pteX|pteU|pteA|pteD)) // user
	r.wr64(ptL0+5*8, pte(pa4K+0x4000, pteV|pteX|pteA))                     // execute-only
	return prog(r.withHandler(), pmpAll(), li(t0, satpModeSv39<<60|ptRoot>>12), CSRW(csrSatp, t0), SFENCEVMA(0, 0), enterMode(1))
}

func TestSv39Translation(t *testing.T) {
	r := newRig(t)
	r.wr64(pa4K, 0x1111)
	r.wr64(ramBase+0x200000+0x10, 0x2222)
	r.wr64(ramBase+0x1234, 0x3333)
	r.runProg(prog(r.setupSv39(),
		li(s0, vaPage), LD(a0, s0, 0), li(t1, 0x4444), SD(t1, s0, 8),
		li(s0, vaMega+0x10), LD(a1, s0, 0),
		li(s0, vaGiga+0x1234), LD(a2, s0, 0),
		HALT()))
	r.expectReg(a0, 0x1111)
	r.expectReg(a1, 0x2222)
	r.expectReg(a2, 0x3333)
	if got := r.rd64(pa4K + 8); got != 0x4444 {
		t.Errorf("store through the 4K page: %#x", got)
	}
	if r.h.Priv() != privS || r.h.csr.mcause != 0 {
		t.Errorf("priv %d mcause %d", r.h.Priv(), r.h.csr.mcause)
	}
	// Hardware A/D: the 4K PTE was read and written, the gigapage read only.
	if p := r.rd64(ptL0 + 8); p&(pteA|pteD) != pteA|pteD {
		t.Errorf("4K PTE %#x: want A and D set", p)
	}
	if p := r.rd64(ptRoot + 8); p&(pteA|pteD) != pteA {
		t.Errorf("gigapage PTE %#x: want A only", p)
	}
}

func TestSv39Faults(t *testing.T) {
	cases := []struct {
		name  string
		code  []uint32
		cause uint64
		tval  uint64
	}{
		{"store to read-only", prog(li(s0, vaRO), SD(zero, s0, 0)), excStorePage, vaRO},
		{"load invalid", prog(li(s0, vaNone+8), LD(a0, s0, 0)), excLoadPage, vaNone + 8},
		{"store invalid", prog(li(s0, vaNone), SW(a0, s0, 4)), excStorePage, vaNone + 4},
		{"non-canonical", prog(li(s0, 1<<39), LD(a0, s0, 0)), excLoadPage, 1 << 39},
		{"unmapped root entry", prog(li(s0, 0x1000), LD(a0, s0, 0)), excLoadPage, 0x1000},
		{"misaligned megapage", prog(li(s0, vaBadMP), LD(a0, s0, 0)), excLoadPage, vaBadMP},
		{"S load from U page without SUM", prog(li(s0, vaUser), LD(a0, s0, 0)), excLoadPage, vaUser},
		{"load from execute-only without MXR", prog(li(s0, vaXOnly), LD(a0, s0, 0)), excLoadPage, vaXOnly},
		{"fetch from non-executable", prog(li(s0, vaPage), JALR(zero, s0, 0)), excInsnPage, vaPage},
		{"fetch from invalid", prog(li(s0, vaNone), JALR(zero, s0, 0)), excInsnPage, vaNone},
		{"S fetch from U page (even with SUM)", prog(li(t0, msSUM), CSRRS(zero, csrSstatus, t0), li(s0, vaUser), JALR(zero, s0, 0)), excInsnPage, vaUser},
		{"AMO on read-only", prog(li(s0, vaRO), AMO(0, 3, a0, s0, a1)), excStorePage, vaRO},
		{"LR on invalid", prog(li(s0, vaNone), AMO(2, 3, a0, s0, 0)), excLoadPage, vaNone},
	}
	for _, c := range cases {
		r := newRig(t)
		r.runProg(prog(r.setupSv39(), c.code, HALT()))
		if r.h.csr.mcause != c.cause || r.h.csr.mtval != c.tval {
			t.Errorf("%s: mcause %d mtval %#x, want %d %#x", c.name, r.h.csr.mcause, r.h.csr.mtval, c.cause, c.tval)
		}
	}
}

func TestSv39PermissionBits(t *testing.T) {
	r := newRig(t)
	r.wr64(pa4K+0x3000, 0x55)
	r.wr64(pa4K+0x4000, 0x66)
	r.runProg(prog(r.setupSv39(),
		li(t0, msSUM), CSRRS(zero, csrSstatus, t0), li(s0, vaUser), LD(a0, s0, 0),
		li(t0, msMXR), CSRRS(zero, csrSstatus, t0), li(s0, vaXOnly), LD(a1, s0, 0),
		HALT()))
	r.expectReg(a0, 0x55)
	r.expectReg(a1, 0x66)
}

func TestUModeCannotTouchSPages(t *testing.T) {
	r := newRig(t)
	// U code lives in the U page (pa4K+0x3000), reached at vaUser.
	r.load(pa4K+0x3000, prog(li(s0, vaPage), LD(a0, s0, 0), HALT()))
	r.runProg(prog(r.setupSv39()[:len(r.setupSv39())-len(enterMode(1))],
		li(t0, 3<<11), CSRRC(zero, csrMstatus, t0), li(t0, vaUser), CSRW(csrMepc, t0), MRET))
	if r.h.csr.mcause != excLoadPage || r.h.csr.mtval != vaPage {
		t.Errorf("mcause %d mtval %#x", r.h.csr.mcause, r.h.csr.mtval)
	}
}

func TestMPRV(t *testing.T) {
	r := newRig(t)
	r.wr64(pa4K, 0x77)
	setup := r.setupSv39()
	setup = setup[:len(setup)-len(enterMode(1))]
	// Stay in M, set MPP=S and MPRV: loads translate, fetches do not.
	r.runProg(prog(setup, li(t0, 3<<11), CSRRC(zero, csrMstatus, t0), li(t0, 1<<11|msMPRV), CSRRS(zero, csrMstatus, t0),
		li(s0, vaPage), LD(a0, s0, 0),
		li(t0, msMPRV), CSRRC(zero, csrMstatus, t0),
		li(s0, pa4K), LD(a1, s0, 0),
		HALT()))
	r.expectReg(a0, 0x77)
	r.expectReg(a1, 0x77)
	if r.h.Priv() != privM || r.h.csr.mcause != 0 {
		t.Errorf("priv %d mcause %d", r.h.Priv(), r.h.csr.mcause)
	}
}

func TestSfenceVMA(t *testing.T) {
	r := newRig(t)
	r.wr64(pa4K, 1)
	r.wr64(pa4K+0x1000, 2)
	// Load through vaPage, then (from S, via the identity map) retarget
	// its PTE to the next page, sfence, load again.
	r.runProg(prog(r.setupSv39(),
		li(s0, vaPage), LD(a0, s0, 0),
		li(s1, ptL0+8), li(t1, pte(pa4K+0x1000, pteV|pteR|pteW|pteA|pteD)), SD(t1, s1, 0),
		SFENCEVMA(0, 0),
		LD(a1, s0, 0),
		HALT()))
	r.expectReg(a0, 1)
	r.expectReg(a1, 2)
}

// TestExecuteThroughMapping runs code at a virtual address mapped to a
// different physical page, including code that crosses into another page.
func TestExecuteThroughMapping(t *testing.T) {
	r := newRig(t)
	r.load(ramBase+0x200000+0xff8, prog(LI12(a0, 1), LI12(a1, 2), LI12(a2, 3), HALT()))
	r.runProg(prog(r.setupSv39(), li(s0, vaMega+0xff8), JALR(zero, s0, 0)))
	r.expectReg(a0, 1)
	r.expectReg(a2, 3)
	if r.h.PC() != vaMega+0xff8+12 {
		t.Errorf("pc %#x", r.h.PC())
	}
}

// TestTLBPerPrivilege: a translation cached for S must not serve U, and
// clearing SUM must revoke S's cached access to a U page.
func TestTLBPerPrivilege(t *testing.T) {
	r := newRig(t)
	r.load(pa4K+0x3000, prog(li(s0, vaPage), LD(a0, s0, 0), HALT())) // U code
	r.runProg(prog(r.setupSv39(),
		li(s0, vaPage), LD(a1, s0, 0), // S caches vaPage
		li(t0, 1<<8), CSRRC(zero, csrSstatus, t0), // SPP = U
		li(t0, vaUser), CSRW(csrSepc, t0), SRET))
	if r.h.csr.mcause != excLoadPage || r.h.csr.mtval != vaPage {
		t.Errorf("U load of an S page: mcause %d mtval %#x", r.h.csr.mcause, r.h.csr.mtval)
	}
	r = newRig(t)
	r.runProg(prog(r.setupSv39(),
		li(t0, msSUM), CSRRS(zero, csrSstatus, t0), li(s0, vaUser), LD(a0, s0, 0),
		CSRRC(zero, csrSstatus, t0), LD(a1, s0, 0), HALT()))
	if r.h.csr.mcause != excLoadPage || r.h.csr.mtval != vaUser {
		t.Errorf("S load of a U page after clearing SUM: mcause %d mtval %#x", r.h.csr.mcause, r.h.csr.mtval)
	}
}
