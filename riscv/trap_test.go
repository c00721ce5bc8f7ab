package riscv

import (
	"testing"
	"time"
)

func TestEcallMRET(t *testing.T) {
	r := newRig(t)
	// Handler: a0 = mcause, a1 = mepc, a2 = mtval; skip the ecall.
	r.load(handler, prog(CSRR(a0, csrMcause), CSRR(a1, csrMepc), CSRR(a2, csrMtval),
		ADDI(t1, a1, 4), CSRW(csrMepc, t1), MRET))
	p := prog(li(t0, handler), CSRW(csrMtvec, t0), LI12(a2, 99), ECALL, LI12(a3, 1), HALT())
	r.runProg(p)
	r.expectReg(a0, excEcallM)
	r.expectReg(a1, ramBase+uint64(4*(len(p)-3)))
	r.expectReg(a2, 0)
	r.expectReg(a3, 1)
}

func TestTrapFromUToM(t *testing.T) {
	r := newRig(t)
	p := prog(r.withHandler(), li(t0, msMIE), CSRRS(zero, csrMstatus, t0), enterMode(0), ECALL, HALT())
	r.runProg(p)
	if r.h.csr.mcause != excEcallU {
		t.Fatalf("mcause %d", r.h.csr.mcause)
	}
	ms := r.h.csr.mstatus
	// MRET set MIE from MPIE (0), so MPIE records MIE=0 from U.
	if ms&msMPP != 0 || ms&msMPIE != 0 || ms&msMIE != 0 {
		t.Errorf("mstatus %#x: want MPP=U, MPIE=0, MIE=0", ms)
	}
	if r.h.Priv() != privM {
		t.Errorf("priv %d", r.h.Priv())
	}
}

func TestDelegationAndSRET(t *testing.T) {
	r := newRig(t)
	const shandler = ramBase + 0xc00
	// S handler: record scause/sepc/sstatus, skip the ecall, return to U.
	r.load(shandler, prog(CSRR(a0, csrScause), CSRR(a1, csrSepc), CSRR(a2, csrSstatus),
		ADDI(t1, a1, 4), CSRW(csrSepc, t1), SRET))
	p := prog(r.withHandler(),
		li(t0, shandler), CSRW(csrStvec, t0),
		li(t0, 1<<excEcallU|1<<excIllegal), CSRW(csrMedeleg, t0),
		enterMode(0),         // to U
		ECALL,                // -> S handler, back
		CSRR(a4, csrMstatus), // illegal in U -> delegated to S: S handler skips it too
		ECALL,                // second ecall with SPP etc.
		LI12(a5, 5),
		HALT())
	r.runProg(p)
	r.expectReg(a0, excEcallU)
	r.expectReg(a5, 5)
	if r.h.Priv() != privU {
		t.Errorf("priv %d, want U", r.h.Priv())
	}
	if r.reg(a2)&msSPP != 0 {
		t.Errorf("sstatus %#x: SPP should be U", r.reg(a2))
	}
	if r.h.csr.mcause != 0 {
		t.Errorf("an exception reached M: mcause %d", r.h.csr.mcause)
	}
	// An ecall from S is not delegated (only bit 8): goes to M.
	r = newRig(t)
	r.runProg(prog(r.withHandler(), li(t0, 1<<excEcallS), CSRW(csrMedeleg, t0), li(t0, ramBase+0xc00), CSRW(csrStvec, t0),
		enterMode(1), ECALL, HALT()))
	_ = r
}

func TestTrapsNeverGoDown(t *testing.T) {
	r := newRig(t)
	r.load(ramBase+0xc00, prog(HALT()))
	r.runProg(prog(r.withHandler(), li(t0, ramBase+0xc00), CSRW(csrStvec, t0), li(t0, 0xb3ff), CSRW(csrMedeleg, t0), EBREAK, HALT()))
	if r.h.PC() != handler || r.h.csr.mcause != excBreakpoint || r.h.csr.mtval != 0 {
		t.Errorf("M-mode ebreak went to pc %#x mcause %d mtval %#x", r.h.PC(), r.h.csr.mcause, r.h.csr.mtval)
	}
}

func TestIllegalInstruction(t *testing.T) {
	for _, insn := range []uint32{0xffffffff, 0x00000007 /* flw */, 0x02000053 /* fadd.d */, 0x00001073 | 0x7c0<<20} {
		r := newRig(t)
		r.runProg(prog(r.withHandler(), insn, HALT()))
		if r.h.csr.mcause != excIllegal || r.h.csr.mtval != uint64(insn) {
			t.Errorf("%#x: mcause %d mtval %#x", insn, r.h.csr.mcause, r.h.csr.mtval)
		}
	}
}

func TestInterruptTaken(t *testing.T) {
	r := newRig(t)
	r.load(handler, prog(CSRR(a0, csrMcause), CSRR(a1, csrMepc), HALT()))
	p := prog(li(t0, handler), CSRW(csrMtvec, t0), li(t0, mipMTIP), CSRW(csrMie, t0), CSRRSI(zero, csrMstatus, msMIE),
		ADDI(a2, a2, 1), JAL(zero, -4))
	r.load(ramBase, p)
	r.h.SetPC(ramBase)
	r.h.Run(1000)
	if r.h.PC() == handler {
		t.Fatal("interrupt taken without a pending line")
	}
	r.h.SetInterrupt(IRQ_MTIP, true)
	r.h.Run(1000)
	r.expectReg(a0, 1<<63|IRQ_MTIP)
	if m := r.reg(a1); m != ramBase+uint64(4*(len(p)-2)) && m != ramBase+uint64(4*(len(p)-1)) {
		t.Errorf("mepc %#x is not in the loop", m)
	}
}

func TestInterruptVectoredAndPriority(t *testing.T) {
	r := newRig(t)
	// Vector table: entry n halts with a0 = n.
	var vt []uint32
	for n := 0; n < 12; n++ {
		vt = append(vt, JAL(zero, int32(4*(12-n)+8*n)))
	}
	for n := 0; n < 12; n++ {
		vt = append(vt, LI12(a0, int32(n)), HALT())
	}
	r.load(handler, vt)
	r.runProg(prog(li(t0, handler|1), CSRW(csrMtvec, t0), HALT()))
	r.h.SetInterrupt(IRQ_MTIP, true)
	r.h.SetInterrupt(IRQ_MSIP, true)
	r.h.csr.mie = mieMask
	r.h.csr.mstatus |= msMIE
	r.h.Run(100)
	r.expectReg(a0, IRQ_MSIP) // MSI before MTI
	r.h.SetInterrupt(IRQ_MEIP, true)
	r.h.csr.mstatus |= msMIE
	r.h.Run(100)
	r.expectReg(a0, IRQ_MEIP)
}

func TestDelegatedInterrupt(t *testing.T) {
	r := newRig(t)
	const shandler = ramBase + 0xc00
	r.load(shandler, prog(CSRR(a0, csrScause), HALT()))
	// M sets mideleg.STIP, enables STIE and SIE, writes mip.STIP, then drops
	// to S; the interrupt must not be taken in M but at once in S.
	r.load(ramBase, prog(r.withHandler(), li(t0, shandler), CSRW(csrStvec, t0),
		li(t0, mipSTIP), CSRW(csrMideleg, t0), CSRW(csrMie, t0), CSRRSI(zero, csrMstatus, msSIE|msMIE),
		CSRRS(zero, csrMip, t0), LI12(a1, 1),
		enterMode(1), LI12(a2, 2), HALT()))
	r.h.SetPC(ramBase)
	r.runToHalt(1000)
	r.expectReg(a1, 1)
	r.expectReg(a0, 1<<63|IRQ_STIP)
	if r.reg(a2) == 2 {
		t.Error("S code ran before the pending S interrupt")
	}
	if r.h.Priv() != privS {
		t.Errorf("priv %d", r.h.Priv())
	}
}

func TestWFI(t *testing.T) {
	r := newRig(t)
	r.load(handler, prog(CSRR(a0, csrMcause), HALT()))
	r.load(ramBase, prog(li(t0, handler), CSRW(csrMtvec, t0), li(t0, mipMTIP), CSRW(csrMie, t0),
		CSRRSI(zero, csrMstatus, msMIE), WFI, LI12(a1, 1), HALT()))
	r.h.SetPC(ramBase)
	if got := r.h.Run(1000); got != StopWFI {
		t.Fatalf("Run = %v, want wfi", got)
	}
	if got := r.h.Run(1000); got != StopWFI {
		t.Fatalf("second Run = %v, want wfi", got)
	}
	start := time.Now()
	r.h.WaitForInterrupt(20 * time.Millisecond)
	if time.Since(start) < 10*time.Millisecond {
		t.Error("WaitForInterrupt returned early with nothing pending")
	}
	go func() {
		time.Sleep(5 * time.Millisecond)
		r.h.SetInterrupt(IRQ_MTIP, true)
	}()
	r.h.WaitForInterrupt(10 * time.Second)
	if !r.h.wfiWakeable() {
		t.Fatal("woke without an interrupt")
	}
	r.h.Run(1000)
	r.expectReg(a0, 1<<63|IRQ_MTIP)
	if r.reg(a1) != 0 {
		t.Error("instruction after WFI ran before the handler")
	}
}

func TestWFIWakesWithInterruptsDisabled(t *testing.T) {
	r := newRig(t)
	r.load(ramBase, prog(li(t0, mipMSIP), CSRW(csrMie, t0), WFI, LI12(a1, 1), HALT()))
	r.h.SetPC(ramBase)
	if got := r.h.Run(1000); got != StopWFI {
		t.Fatalf("Run = %v", got)
	}
	r.h.SetInterrupt(IRQ_MSIP, true)
	r.h.WaitForInterrupt(time.Second)
	r.runToHalt(100)
	r.expectReg(a1, 1) // MIE=0: no trap, execution continues after WFI
}

func TestKick(t *testing.T) {
	r := newRig(t)
	r.load(ramBase, prog(JAL(zero, 0)))
	r.h.SetPC(ramBase)
	done := make(chan StopReason)
	go func() { done <- r.h.Run(1 << 62) }()
	time.Sleep(2 * time.Millisecond)
	r.h.Kick()
	select {
	case s := <-done:
		if s != StopKicked {
			t.Errorf("Run = %v, want kicked", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Kick did not stop Run")
	}
	// A Kick wakes WaitForInterrupt too.
	r.load(ramBase, prog(WFI))
	r.h.flushCode()
	r.h.SetPC(ramBase)
	if s := r.h.Run(10); s != StopWFI {
		t.Fatalf("Run = %v", s)
	}
	go func() { time.Sleep(2 * time.Millisecond); r.h.Kick() }()
	r.h.WaitForInterrupt(0)
	if s := r.h.Run(10); s != StopKicked {
		t.Errorf("Run after kick = %v", s)
	}
}

// TestConcurrentInputs drives the goroutine-safe inputs while the hart
// runs; run with -race.
func TestConcurrentInputs(t *testing.T) {
	r := newRig(t)
	// Handler: count, then clear mie.MSIE until the main loop re-enables it.
	r.load(handler, prog(ADDI(s2, s2, 1), li(t1, mipMSIP), CSRRC(zero, csrMie, t1), MRET))
	r.load(ramBase, prog(li(t0, handler), CSRW(csrMtvec, t0), CSRRSI(zero, csrMstatus, msMIE),
		li(t1, mipMSIP), CSRRS(zero, csrMie, t1), ADDI(a0, a0, 1), JAL(zero, -8)))
	r.h.SetPC(ramBase)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.h.SetInterrupt(IRQ_MSIP, i%2 == 0)
			r.h.InvalidateCode(ramBase, 64)
			if i%16 == 0 {
				r.h.Kick()
			}
			_ = r.h.Instret()
			time.Sleep(50 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		r.h.Run(100000)
	}
	close(stop)
	<-done
	if r.reg(a0) == 0 || r.reg(s2) == 0 {
		t.Errorf("loop iterations %d, interrupts %d", r.reg(a0), r.reg(s2))
	}
}

func TestInterruptCSRViews(t *testing.T) {
	r := newRig(t)
	r.h.SetInterrupt(IRQ_SEIP, true)
	r.h.SetInterrupt(IRQ_MTIP, true)
	r.runProg(prog(
		li(t0, mipSSIP|mipSTIP|mipSEIP), CSRW(csrMideleg, t0),
		li(t0, mieMask), CSRW(csrMie, t0),
		CSRR(a0, csrSie), // delegated bits of mie
		li(t1, mipSSIP), CSRRS(zero, csrMip, t1),
		CSRR(a1, csrMip),                     // SSIP | MTIP | SEIP
		CSRR(a2, csrSip),                     // SSIP | SEIP
		CSRW(csrSip, zero), CSRR(a3, csrSip), // clears SSIP only; SEIP is the line
		li(t1, mipSEIP), CSRRC(zero, csrMip, t1), CSRR(a4, csrMip), // line still high
		li(t1, mipMTIP), CSRRS(zero, csrMip, t1), CSRR(a5, csrMip), // MTIP is read-only
		li(t1, ^uint64(0)), CSRW(csrSie, t1), CSRR(a6, csrMie),
		HALT()))
	r.expectReg(a0, mipSSIP|mipSTIP|mipSEIP)
	r.expectReg(a1, mipSSIP|mipMTIP|mipSEIP)
	r.expectReg(a2, mipSSIP|mipSEIP)
	r.expectReg(a3, mipSEIP)
	r.expectReg(a4, mipMTIP|mipSEIP)
	r.expectReg(a5, mipMTIP|mipSEIP)
	r.expectReg(a6, mieMask)
}

func TestVectoredSTrapAndSRET(t *testing.T) {
	r := newRig(t)
	const svec = ramBase + 0xc00
	// S vector table: the STI entry (5) records sstatus and disables the
	// timer source, then returns.
	r.load(svec+4*5, prog(CSRR(a0, csrSstatus), CSRR(a1, csrScause), li(t1, mipSTIP), CSRRC(zero, csrSie, t1), SRET))
	r.runProg(prog(r.withHandler(),
		li(t0, svec|1), CSRW(csrStvec, t0),
		li(t0, mipSTIP), CSRW(csrMideleg, t0), CSRW(csrMie, t0), CSRRS(zero, csrMip, t0),
		enterMode(1),
		CSRRSI(zero, csrSstatus, msSIE), // taken right after this
		CSRR(a2, csrSstatus),
		HALT()))
	r.expectReg(a1, 1<<63|IRQ_STIP)
	if r.reg(a0)&(msSIE|msSPIE|msSPP) != msSPIE|msSPP {
		t.Errorf("sstatus in the handler %#x: want SPIE=1 SPP=S SIE=0", r.reg(a0))
	}
	if r.reg(a2)&(msSIE|msSPIE) != msSIE|msSPIE {
		t.Errorf("sstatus after SRET %#x: want SIE=1 SPIE=1", r.reg(a2))
	}
}
