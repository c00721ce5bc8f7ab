package riscv

import "testing"

func napot(base, size uint64) uint64 { return (base | (size/2 - 1)) >> 2 }

func TestPMP(t *testing.T) {
	cfg := func(i int, c uint64) uint64 { return c << (8 * i) }
	const A = 3 // shift of the A field
	cases := []struct {
		name    string
		pmp     []uint32 // M-mode code programming PMP
		mode    uint64
		code    []uint32
		cause   uint64 // 0: no trap expected
		tval    uint64
		noEnter bool
	}{
		{
			name:  "mret to S without PMP is illegal (QEMU 7.2)",
			mode:  1,
			cause: excIllegal, tval: MRET,
			noEnter: true,
		},
		{
			name: "TOR code region, NAPOT data without X",
			pmp: prog(li(t0, ramBase>>2), CSRW(csrPmpaddr0, t0), li(t0, (ramBase+0x10000)>>2), CSRW(csrPmpaddr0+1, t0),
				LI12(t0, -1), CSRW(csrPmpaddr0+2, t0),
				li(t0, cfg(1, pmpTOR<<A|pmpR|pmpX)|cfg(2, pmpNAPOT<<A|pmpR|pmpW)), CSRW(csrPmpcfg0, t0)),
			mode:  1,
			code:  prog(li(s0, ramBase+0x20000), LD(a0, s0, 0), SD(a0, s0, 0), JALR(zero, s0, 0)),
			cause: excInsnAccess, tval: ramBase + 0x20000,
		},
		{
			name: "NA4 read-only word",
			pmp: prog(li(t0, dataAddr>>2), CSRW(csrPmpaddr0, t0), LI12(t0, -1), CSRW(csrPmpaddr0+1, t0),
				li(t0, cfg(0, pmpNA4<<A|pmpR)|cfg(1, pmpNAPOT<<A|pmpR|pmpW|pmpX)), CSRW(csrPmpcfg0, t0)),
			mode:  1,
			code:  prog(li(s0, dataAddr), SD(a0, s0, 8), SW(a0, s0, 4), LW(a0, s0, 0), SW(a0, s0, 0)),
			cause: excStoreAccess, tval: dataAddr,
		},
		{
			name: "access straddling two entries fails",
			pmp: prog(li(t0, dataAddr>>2), CSRW(csrPmpaddr0, t0), LI12(t0, -1), CSRW(csrPmpaddr0+1, t0),
				li(t0, cfg(0, pmpNA4<<A|pmpR|pmpW)|cfg(1, pmpNAPOT<<A|pmpR|pmpW|pmpX)), CSRW(csrPmpcfg0, t0)),
			mode:  1,
			code:  prog(li(s0, dataAddr), LW(a0, s0, 0), LD(a0, s0, 0)),
			cause: excLoadAccess, tval: dataAddr,
		},
		{
			name: "locked entry binds M-mode",
			pmp: prog(li(t0, napot(dataAddr, 4096)), CSRW(csrPmpaddr0, t0),
				li(t0, cfg(0, pmpL|pmpNAPOT<<A|pmpR)), CSRW(csrPmpcfg0, t0),
				LI12(t0, -1), CSRW(csrPmpcfg0, t0)), // ignored: locked
			mode:  3,
			code:  prog(li(s0, dataAddr), LD(a0, s0, 0), SD(a0, s0, 0)),
			cause: excStoreAccess, tval: dataAddr,
		},
		{
			name: "S without a matching entry",
			pmp: prog(li(t0, napot(ramBase, 1<<20)), CSRW(csrPmpaddr0, t0),
				li(t0, cfg(0, pmpNAPOT<<A|pmpR|pmpW|pmpX)), CSRW(csrPmpcfg0, t0)),
			mode:  1,
			code:  prog(li(s0, ramBase+(2<<20)), LD(a0, s0, 0)),
			cause: excLoadAccess, tval: ramBase + (2 << 20),
		},
	}
	for _, c := range cases {
		r := newRig(t)
		p := prog(r.withHandler(), c.pmp)
		if c.mode != 3 {
			// Like enterMode, without its PMP setup.
			p = prog(p, li(t0, 3<<11), CSRRC(zero, csrMstatus, t0), li(t0, c.mode<<11), CSRRS(zero, csrMstatus, t0),
				AUIPC(t0, 0), ADDI(t0, t0, 16), CSRW(csrMepc, t0), MRET)
		}
		r.runProg(prog(p, c.code, HALT()))
		if r.h.csr.mcause != c.cause || r.h.csr.mtval != c.tval {
			t.Errorf("%s: mcause %d mtval %#x, want %d %#x", c.name, r.h.csr.mcause, r.h.csr.mtval, c.cause, c.tval)
		}
	}
}

func TestPMPCSRs(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(LI12(t0, -1),
		CSRW(csrPmpaddr0+16, t0), CSRR(a0, csrPmpaddr0+16),
		CSRW(csrPmpcfg0+4, t0), CSRR(a1, csrPmpcfg0+4),
		CSRW(csrPmpaddr0+15, t0), CSRR(a2, csrPmpaddr0+15),
		LI12(t1, pmpW), CSRW(csrPmpcfg0, t1), CSRR(a3, csrPmpcfg0), // W without R is reserved
		HALT()))
	r.expectReg(a0, 0)
	r.expectReg(a1, 0)
	r.expectReg(a2, 1<<54-1)
	r.expectReg(a3, 0)
}
