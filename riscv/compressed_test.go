package riscv

import (
	"hash/crc32"
	"testing"
)

// TestCompressedMatchesExpansion runs every compressed form next to its
// 32-bit expansion (both produced by the GNU assembler) from the same
// state and compares registers, pc, memory and trap CSRs.
func TestCompressedMatchesExpansion(t *testing.T) {
	const at = ramBase + 0x1000
	patterns := []func(i int) uint64{
		func(i int) uint64 { return ramBase + 0x20000 + uint64(i)*0x100 },
		func(i int) uint64 {
			if i%2 == 0 {
				return 0
			}
			return ramBase + 0x20000 + uint64(i)*0x100 + 0x80
		},
	}
	type result struct {
		x             [32]uint64
		next          bool // pc is the following instruction
		pc            uint64
		mcause, mtval uint64
		mem           uint32
	}
	exec := func(t *testing.T, pat func(int) uint64, put func(r *rig)) result {
		r := newRig(t)
		mem := make([]byte, 0x4000)
		for i := range mem {
			mem[i] = byte(i*7 + i>>8)
		}
		r.ram.WriteAt(mem, ramBase+0x20000)
		put(r)
		for i := 1; i < 32; i++ {
			r.h.SetReg(i, pat(i))
		}
		r.h.SetPC(at)
		r.h.Run(1)
		var res result
		for i := 1; i < 32; i++ {
			res.x[i] = r.h.Reg(i)
		}
		res.pc = r.h.PC()
		res.mcause, res.mtval = r.h.csr.mcause, r.h.csr.mtval
		r.ram.ReadAt(mem, ramBase+0x20000)
		res.mem = crc32.ChecksumIEEE(mem)
		return res
	}
	for _, v := range compressedVectors {
		for pi, pat := range patterns {
			c := exec(t, pat, func(r *rig) { r.load16(at, v.c) })
			w := exec(t, pat, func(r *rig) { r.load(at, []uint32{v.w}) })
			// Normalise values that differ only by the instruction length.
			for i := range c.x {
				if c.x[i] == at+2 && w.x[i] == at+4 {
					c.x[i] = w.x[i]
				}
			}
			c.next, w.next = c.pc == at+2, w.pc == at+4
			if c.next && w.next {
				c.pc, w.pc = 0, 0
			}
			if c != w {
				t.Errorf("%q (%#04x vs %#08x) pattern %d:\n compressed %+v\n expanded   %+v", v.text, v.c, v.w, pi, c, w)
			}
		}
	}
}

func TestCompressedIllegal(t *testing.T) {
	for _, c := range []uint16{
		0x0000, // all-zero parcel
		0x2000, // c.fld
		0xa000, // c.fsd
		0x6002, // c.ldsp x0
		0x4002, // c.lwsp x0
		0x8002, // c.jr x0
		0x2001, // c.addiw x0
		0x6101, // c.addi16sp 0
		0x6501, // c.lui a0,0
		0x9c41, // reserved CA (funct 100 11 10)
		0x2002, // c.fldsp
	} {
		r := newRig(t)
		r.load16(ramBase, c)
		r.h.Run(1)
		if r.h.csr.mcause != excIllegal || r.h.csr.mtval != uint64(c) {
			t.Errorf("%#04x: mcause %d mtval %#x, want illegal with tval %#x", c, r.h.csr.mcause, r.h.csr.mtval, c)
		}
	}
}

// TestDecodeTotal: every 16-bit parcel and a sample of 32-bit words
// decode to something (never the "not decoded" marker, which would make
// the interpreter decode forever).
func TestDecodeTotal(t *testing.T) {
	for c := uint32(0); c < 1<<16; c++ {
		if c&3 == 3 {
			continue
		}
		if d := decode16(c); d.op == opDecode || d.op == opStraddle || d.size() != 2 {
			t.Fatalf("decode16(%#04x) = %+v", c, d)
		}
	}
	x := uint32(2463534242)
	for i := 0; i < 1<<20; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		w := x | 3
		if d := decode32(w); d.op == opDecode || d.op == opStraddle || d.size() != 4 {
			t.Fatalf("decode32(%#08x) = %+v", w, d)
		}
	}
}
