package riscv

import (
	"encoding/binary"
	"testing"

	"github.com/snapvm/snapvm/memory"
)

// FuzzExec runs arbitrary bytes as code in every privilege mode, with and
// without Sv39, from arbitrary register values: the interpreter must never
// panic, and x0 must stay zero.
func FuzzExec(f *testing.F) {
	ram, err := memory.New(ramBase, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	seed := func(words ...uint32) []byte {
		var b []byte
		for _, w := range words {
			b = binary.LittleEndian.AppendUint32(b, w)
		}
		return b
	}
	f.Add(seed(ADDI(a0, a0, 1), SD(a0, a1, 0), LD(a2, a1, 8), JAL(zero, -12)), uint64(0x80001000), uint8(3), false)
	f.Add(seed(CSRRW(a0, csrSatp, a1), SFENCEVMA(0, 0), ECALL, MRET, SRET, WFI), uint64(0x80000000), uint8(1), true)
	f.Add(seed(AMO(2, 3, a0, a1, 0), AMO(3, 3, a2, a1, a3), AMO(0, 2, a4, a1, a5), FENCEI), uint64(0x80010004), uint8(0), false)
	f.Add([]byte{0x01, 0x45, 0x85, 0x05, 0xb2, 0x96, 0x8e, 0x06, 0x7d, 0xf9}, uint64(0x80002002), uint8(3), false)
	bus := &testBus{}
	f.Fuzz(func(t *testing.T, code []byte, reg uint64, priv uint8, sv39 bool) {
		if len(code) > 4096 {
			code = code[:4096]
		}
		ram.Zero()
		ram.WriteAt(code, ramBase)
		h := NewHart(0, ram, bus, &testClock{t: reg})
		for i := 1; i < 32; i++ {
			h.SetReg(i, reg*uint64(i)^uint64(i)<<40)
		}
		h.SetReg(a1, ramBase+reg%(1<<20))
		// Let every mode reach all of RAM through PMP, with a root table
		// in the second half of RAM for Sv39.
		h.csr.pmpaddr[0] = 1<<54 - 1
		h.csr.pmpcfg[0] = pmpNAPOT<<3 | pmpR | pmpW | pmpX
		h.updatePMP()
		if sv39 {
			root := uint64(ramBase + 0x80000)
			binary.LittleEndian.PutUint64(ram.Data[root-ramBase+2*8:], pte(ramBase, pteV|pteR|pteW|pteX|pteU))
			h.csr.satp = satpModeSv39<<60 | root>>12
		}
		h.priv = priv % 4
		if h.priv == 2 {
			h.priv = privS
		}
		h.csr.mtvec = ramBase + reg%64*4
		h.csr.stvec = ramBase + reg%32*8
		h.selectTLBs()
		h.flushAll()
		h.SetPC(ramBase)
		for i := 0; i < 20; i++ {
			if h.Run(100) == StopWFI {
				h.SetInterrupt(IRQ_MTIP, true)
				h.csr.mie |= mipMTIP
			}
		}
		if h.x[0] != 0 {
			t.Fatal("x0 was written")
		}
		var e vmstateEncoder
		h.SaveSection(&e.Encoder)
		if err := h.LoadSection(e.decoder(), 1); err != nil {
			t.Fatalf("state reached by execution does not load: %v", err)
		}
	})
}
