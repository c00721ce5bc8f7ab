package riscv

import (
	"encoding/binary"
	"testing"
)

const dataAddr = ramBase + 0x10000

func TestLoadsSignExtension(t *testing.T) {
	r := newRig(t)
	r.wr64(dataAddr, 0x8081828384858687)
	r.runProg(prog(li(s0, dataAddr),
		LB(a0, s0, 0), LBU(a1, s0, 0), LH(a2, s0, 0), LHU(a3, s0, 0),
		LW(a4, s0, 4), LWU(a5, s0, 4), LD(a6, s0, 0), LB(a7, s0, 7),
		HALT()))
	r.expectReg(a0, 0xffffffffffffff87)
	r.expectReg(a1, 0x87)
	r.expectReg(a2, 0xffffffffffff8687)
	r.expectReg(a3, 0x8687)
	r.expectReg(a4, 0xffffffff80818283)
	r.expectReg(a5, 0x80818283)
	r.expectReg(a6, 0x8081828384858687)
	r.expectReg(a7, 0xffffffffffffff80)
}

func TestStores(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(li(s0, dataAddr), li(a0, 0x1122334455667788),
		SD(a0, s0, 0), SW(a0, s0, 8), SH(a0, s0, 12), SB(a0, s0, 14), SB(zero, s0, 15),
		HALT()))
	if got := r.rd64(dataAddr); got != 0x1122334455667788 {
		t.Errorf("sd: %#x", got)
	}
	if got := r.rd64(dataAddr + 8); got != 0x0088778855667788 {
		t.Errorf("sw/sh/sb: %#x", got)
	}
	pg := uint64(dataAddr-ramBase) / 4096
	if !r.ram.Dirty(pg) || !r.ram.Written(pg) {
		t.Error("store did not mark the page dirty")
	}
}

func TestDirtyTrackingAfterClear(t *testing.T) {
	r := newRig(t)
	r.load(ramBase, prog(li(s0, dataAddr), SD(s0, s0, 0), SD(s0, s0, 8), SD(s0, s0, 16), HALT()))
	r.h.SetPC(ramBase)
	// Warm the write TLB with the first store, then clear dirty bits and
	// check that later stores still mark the page.
	for !r.atHalt() {
		r.h.Run(1)
		if r.h.PC() == ramBase+uint64(4*len(li(s0, dataAddr)))+4 {
			r.ram.ClearDirty()
		}
	}
	if !r.ram.Dirty(uint64(dataAddr-ramBase) / 4096) {
		t.Error("store through a warm TLB entry did not mark the page dirty")
	}
}

func TestMisaligned(t *testing.T) {
	r := newRig(t)
	// Within a page and across a page boundary.
	for _, addr := range []uint64{dataAddr + 1, dataAddr + 0xffd, dataAddr + 0xfff} {
		r = newRig(t)
		r.runProg(prog(li(s0, addr), li(a0, 0x0123456789abcdef),
			SD(a0, s0, 0), LD(a1, s0, 0), LW(a2, s0, 1), LHU(a3, s0, 3), SW(a0, s0, 9), LWU(a4, s0, 9),
			HALT()))
		r.expectReg(a1, 0x0123456789abcdef)
		r.expectReg(a2, 0x6789abcd)
		r.expectReg(a3, 0x6789)
		r.expectReg(a4, 0x89abcdef)
		b := make([]byte, 8)
		r.ram.ReadAt(b, addr)
		if binary.LittleEndian.Uint64(b) != 0x0123456789abcdef {
			t.Errorf("misaligned sd at %#x stored %x", addr, b)
		}
		if r.h.csr.mcause != 0 {
			t.Errorf("unexpected trap %d", r.h.csr.mcause)
		}
	}
}

func TestMMIOAndAccessFaults(t *testing.T) {
	r := newRig(t)
	r.bus.regs = map[uint64]uint64{mmioBase + 8: 0xfeedface}
	r.runProg(prog(li(s0, mmioBase), LWU(a0, s0, 8), li(a1, 0x55), SW(a1, s0, 4), HALT()))
	r.expectReg(a0, 0xfeedface)
	if r.bus.regs[mmioBase+4] != 0x55 {
		t.Error("MMIO store not seen")
	}
	for _, c := range []struct {
		insn  uint32
		cause uint64
	}{
		{LD(a0, s0, 0), excLoadAccess},
		{SD(a0, s0, 0), excStoreAccess},
		{JALR(zero, s0, 0), excInsnAccess},
	} {
		r := newRig(t)
		r.load(ramBase+0x400, []uint32{HALT()})
		r.runProg(prog(li(t0, ramBase+0x400), CSRW(csrMtvec, t0), li(s0, 0x40000000), c.insn, HALT()))
		if r.h.csr.mcause != c.cause || r.h.csr.mtval != 0x40000000 {
			t.Errorf("insn %#x: mcause %d mtval %#x, want %d 0x40000000", c.insn, r.h.csr.mcause, r.h.csr.mtval, c.cause)
		}
		if c.cause != excInsnAccess && r.h.csr.mepc != ramBase+uint64(4*(len(li(t0, ramBase+0x400))+1+len(li(s0, 0x40000000)))) {
			t.Errorf("mepc %#x", r.h.csr.mepc)
		}
	}
}

// TestSelfModifyingCode: a store over an already executed (decoded)
// instruction is seen the next time it runs, with and without FENCE.I.
func TestSelfModifyingCode(t *testing.T) {
	for _, fence := range []bool{false, true} {
		r := newRig(t)
		// 0: li s0, &target ; li t1, 2
		// loop: target: addi a0, a0, 1  (patched to addi a0, a0, 100)
		//       sw t2, 0(s0) ; [fence.i] ; addi t1,t1,-1 ; bne t1, zero, loop
		pre := prog(li(s0, ramBase+0x100), li(t2, uint64(ADDI(a0, a0, 100))), LI12(t1, 2), JAL(zero, 0))
		jmp := len(pre) - 1
		pre[jmp] = JAL(zero, int32(0x100-4*jmp))
		r.load(ramBase, pre)
		body := []uint32{ADDI(a0, a0, 1), SW(t2, s0, 0)}
		if fence {
			body = append(body, FENCEI)
		}
		body = append(body, ADDI(t1, t1, -1), 0, HALT())
		body[len(body)-2] = BNE(t1, zero, -int32(4*(len(body)-2)))
		r.load(ramBase+0x100, body)
		r.h.SetPC(ramBase)
		r.runToHalt(1000)
		r.expectReg(a0, 101)
	}
}

// TestStoreToSamePageCode: code that patches the very next instruction.
func TestStoreToNextInstruction(t *testing.T) {
	r := newRig(t)
	p := prog(AUIPC(s0, 0), li(t2, uint64(ADDI(a0, zero, 42))), SW(t2, s0, 0), ADDI(a0, zero, 1), HALT())
	at := 4 * (len(p) - 2)
	p[len(p)-3] = SW(t2, s0, int32(at))
	// Run it once to have the target decoded, then rewind and rerun.
	r.runProg(p)
	r.expectReg(a0, 42)
}

// TestInvalidateCode: RAM written behind the hart's back (device DMA)
// and announced with InvalidateCode is executed fresh.
func TestInvalidateCode(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(LI12(a0, 1), HALT()))
	r.expectReg(a0, 1)
	r.load(ramBase, prog(LI12(a0, 2), HALT()))
	r.h.InvalidateCode(ramBase, 8)
	r.h.SetPC(ramBase)
	r.runToHalt(100)
	r.expectReg(a0, 2)
}

// TestStraddlingInstruction: a 32-bit instruction crossing a page boundary.
func TestStraddlingInstruction(t *testing.T) {
	r := newRig(t)
	at := uint64(ramBase + 0x1ffe)
	r.load(ramBase, prog(li(t0, at), JALR(zero, t0, 0)))
	b := binary.LittleEndian.AppendUint32(nil, ADDI(a0, zero, 77))
	b = binary.LittleEndian.AppendUint32(b, HALT())
	r.ram.WriteAt(b, at)
	r.h.SetPC(ramBase)
	r.runToHalt(100)
	r.expectReg(a0, 77)
}

// TestMisalignedStoreAcrossFaultingPage: a store whose second page
// faults writes nothing.
func TestMisalignedStoreAcrossFaultingPage(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(r.setupSv39(), li(s0, vaPage+0xffc), LI12(a0, -1), SD(a0, s0, 0), HALT()))
	if r.h.csr.mcause != excStorePage || r.h.csr.mtval != vaRO {
		t.Fatalf("mcause %d mtval %#x", r.h.csr.mcause, r.h.csr.mtval)
	}
	if got := r.rd64(pa4K + 0xff8); got != 0 {
		t.Errorf("partial write: %#x", got)
	}
}

// TestFenceIAfterForeignWrite: code rewritten behind the hart's back (as
// DMA would) runs fresh after FENCE.I, and unchanged code keeps running.
func TestFenceIAfterForeignWrite(t *testing.T) {
	r := newRig(t)
	const sub = ramBase + 0x2000
	r.load(sub, prog(LI12(a0, 1), JALR(zero, ra, 0)))
	// Call sub, then wait at a self-loop for the test to patch sub, then
	// FENCE.I and call it again.
	r.load(ramBase, prog(li(t0, sub), JALR(ra, t0, 0), ADD(a1, a0, zero),
		BNE(s1, zero, 8), JAL(zero, -4), // spin until s1 != 0
		FENCEI, JALR(ra, t0, 0), ADD(a2, a0, zero), HALT()))
	r.h.SetPC(ramBase)
	r.h.Run(200)
	r.load(sub, prog(LI12(a0, 2))) // no InvalidateCode
	r.h.SetReg(s1, 1)
	r.runToHalt(1000)
	r.expectReg(a1, 1)
	r.expectReg(a2, 2)
}
