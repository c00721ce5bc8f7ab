package riscv

import (
	"math/rand/v2"
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

// twoRigs returns a rig that translates and one that only interprets.
func twoRigs(t *testing.T) (jit, interp *rig) {
	if jitDisabled {
		t.Skip("translation turned off by SNAPVM_JIT=0")
	}
	jit, interp = newRig(t), newRig(t)
	interp.h.SetJIT(false)
	if jitSupported && !jit.h.JITActive() {
		t.Fatal("translation is not active on a host that supports it")
	}
	return jit, interp
}

// randomBody returns a straight-line mix of ALU, multiply/divide, load,
// store and forward-branch instructions over x1..x7 and x9..x17, with s0
// (x8) pointing into the data area and s1 (x9) left free for results.
func randomBody(rng *rand.Rand, n int) []uint32 {
	return randomCode(rng, n, []uint32{1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17}, true)
}

// randomCode is randomBody over the given registers, with or without
// branches and jumps.
func randomCode(rng *rand.Rand, n int, regs []uint32, branches bool) []uint32 {
	reg := func() uint32 { return regs[rng.IntN(len(regs))] }
	src := func() uint32 {
		if rng.IntN(8) == 0 {
			return zero
		}
		return reg()
	}
	imm := func() int32 { return int32(rng.IntN(4096)) - 2048 }
	sh := func(bits int) int32 { return int32(rng.IntN(bits)) }
	memOff := func() int32 { return int32(rng.IntN(512)) - 256 }
	var out []uint32
	for len(out) < n {
		rd := reg()
		if rng.IntN(16) == 0 {
			rd = zero
		}
		kinds := 14
		if !branches {
			kinds = 12
		}
		switch rng.IntN(kinds) {
		case 0:
			out = append(out, []func(uint32, uint32, uint32) uint32{ADD, SUB, SLL, SLT, SLTU, XOR, SRL, SRA, OR, AND}[rng.IntN(10)](rd, src(), src()))
		case 1:
			out = append(out, []uint32{ADDW(rd, src(), src()), SUBW(rd, src(), src()), SLLW(rd, src(), src()),
				SRLW(rd, src(), src()), SRAW(rd, src(), src())}[rng.IntN(5)])
		case 2:
			out = append(out, []func(uint32, uint32, int32) uint32{ADDI, SLTI, SLTIU, XORI, ORI, ANDI, ADDIW}[rng.IntN(7)](rd, src(), imm()))
		case 3:
			out = append(out, []uint32{SLLI(rd, src(), sh(64)), SRLI(rd, src(), sh(64)), SRAI(rd, src(), sh(64)),
				SLLIW(rd, src(), sh(32)), SRLIW(rd, src(), sh(32)), SRAIW(rd, src(), sh(32))}[rng.IntN(6)])
		case 4, 5:
			out = append(out, MULop(uint32(rng.IntN(8)), rd, src(), src()))
		case 6:
			f3 := []uint32{0, 4, 5, 6, 7}[rng.IntN(5)]
			out = append(out, MULWop(f3, rd, src(), src()))
		case 7:
			out = append(out, LUI(rd, int32(rng.Uint32())&^0xfff), AUIPC(rd, int32(rng.Uint32())&^0xfff))
		case 8, 9:
			out = append(out, []func(uint32, uint32, int32) uint32{LB, LH, LW, LD, LBU, LHU, LWU}[rng.IntN(7)](rd, s0, memOff()))
		case 10, 11:
			out = append(out, []func(uint32, uint32, int32) uint32{SB, SH, SW, SD}[rng.IntN(4)](src(), s0, memOff()))
		case 12:
			// Skip 1..3 instructions forward.
			skip := int32(rng.IntN(3)+2) * 4
			out = append(out, []func(uint32, uint32, int32) uint32{BEQ, BNE, BLT, BGE, BLTU, BGEU}[rng.IntN(6)](src(), src(), skip))
		case 13:
			out = append(out, JAL(rd, int32(rng.IntN(3)+1)*4))
		}
	}
	return out
}

// compareRigs fails when the two harts or their data areas differ.
func compareRigs(t *testing.T, what string, a, b *rig) {
	t.Helper()
	for i := 1; i < 32; i++ {
		if a.h.Reg(i) != b.h.Reg(i) {
			t.Errorf("%s: x%d = %#x translated, %#x interpreted", what, i, a.h.Reg(i), b.h.Reg(i))
		}
	}
	if a.h.PC() != b.h.PC() || a.h.instret != b.h.instret {
		t.Errorf("%s: pc %#x instret %d translated, pc %#x instret %d interpreted",
			what, a.h.PC(), a.h.instret, b.h.PC(), b.h.instret)
	}
	for off := uint64(0); off < 1024; off += 8 {
		if x, y := a.rd64(dataAddr-512+off), b.rd64(dataAddr-512+off); x != y {
			t.Errorf("%s: memory at %#x = %#x translated, %#x interpreted", what, dataAddr-512+off, x, y)
		}
	}
	for pg := uint64(0); pg < ramSize/4096; pg++ {
		if a.ram.Dirty(pg) != b.ram.Dirty(pg) || a.ram.Written(pg) != b.ram.Written(pg) {
			t.Errorf("%s: page %d dirty/written bits differ", what, pg)
		}
	}
}

// TestJITMatchesInterpreter runs random programs (a loop around a random
// body) on a translating and an interpreting hart and compares registers,
// memory, dirty bits, pc and retired-instruction counts.
func TestJITMatchesInterpreter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		if !runBothWays(t, rng) {
			t.Logf("program %d", i)
			return
		}
	}
}

// FuzzJITMatchesInterpreter is TestJITMatchesInterpreter over seeds.
func FuzzJITMatchesInterpreter(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(0xdead), uint64(0xbeef))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		runBothWays(t, rand.New(rand.NewPCG(a, b)))
	})
}

// runBothWays builds one random program from rng, runs it translated and
// interpreted, and reports whether the runs agreed.
func runBothWays(t *testing.T, rng *rand.Rand) bool {
	_, ok := runBodyBothWays(t, rng, randomBody(rng, 10+rng.IntN(80)))
	return ok
}

// runBodyBothWays runs body in a loop, translated and interpreted, and
// returns the translating hart's rig and whether the runs agreed.
func runBodyBothWays(t *testing.T, rng *rand.Rand, body []uint32) (*rig, bool) {
	jit, interp := twoRigs(t)
	var init []uint32
	for _, r := range []uint32{1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17} {
		v := rng.Uint64()
		switch rng.IntN(4) {
		case 0:
			v = uint64(int64(rng.IntN(5)) - 2) // 0, ±1, ±2: division edge cases
		case 1:
			v = 1 << 63
		}
		init = append(init, li(r, v)...)
	}
	// Forward branches may skip up to three instructions: the NOPs keep
	// them inside the loop.
	p := prog(init, li(s0, dataAddr), li(t6, 3),
		body, NOP, NOP, NOP, NOP, ADDI(t6, t6, -1), BNE(t6, zero, -4*int32(len(body)+5)), HALT())
	for _, r := range []*rig{interp, jit} {
		for off := uint64(0); off < 1024; off += 8 {
			r.wr64(dataAddr-512+off, off*0x9e3779b97f4a7c15)
		}
		r.runProg(p)
	}
	compareRigs(t, "random program", jit, interp)
	if t.Failed() {
		t.Logf("body: %#x", body)
		return jit, false
	}
	return jit, true
}

// Loops whose body is one block using few registers are translated in
// loop mode (registers stay in host registers across iterations); they
// must compute exactly what the interpreter does, including when a load
// or store leaves the loop half-way.
func TestJITLoopModeMatchesInterpreter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	loops := 0
	for i := range 300 {
		// s0 (data), t6 (counter) and up to four more registers: at most
		// six, the size of the register cache.
		regs := []uint32{5, 6, 7, 10, 11, 12, 13}
		rng.Shuffle(len(regs), func(a, b int) { regs[a], regs[b] = regs[b], regs[a] })
		body := randomCode(rng, 2+rng.IntN(20), regs[:1+rng.IntN(4)], false)
		jit, ok := runBodyBothWays(t, rng, body)
		if !ok {
			t.Logf("program %d", i)
			return
		}
		loops += jit.h.jitState().loopBlocks
	}
	if jitSupported && loops == 0 {
		t.Error("no block was translated in loop mode")
	}
}

// A budget is exact: the translator leaves what a block cannot finish to
// the interpreter.
func TestJITBudgetIsExact(t *testing.T) {
	r := newRig(t)
	r.load(ramBase, prog(ADDI(a0, a0, 1), ADDI(a1, a1, 1), ADDI(a2, a2, 1), JAL(0, -12)))
	r.h.SetPC(ramBase)
	for _, n := range []uint64{1, 2, 3, 5, 7, 100, 1000, 4097} {
		before := r.h.instret
		r.h.Run(n)
		if got := r.h.instret - before; got != n {
			t.Errorf("Run(%d) retired %d instructions", n, got)
		}
	}
}

// A store into a page whose code was translated takes effect the next
// time that code runs.
func TestJITSelfModifyingCode(t *testing.T) {
	r := newRig(t)
	patch := ADDI(a0, a0, 100)
	// The loop's first instruction sits after three li sequences whose
	// lengths do not depend on the values (all fit in LUI+ADDIW).
	setup := func(target uint64) []uint32 {
		return prog(li(t6, 3), li(s0, target), li(s1, uint64(patch)))
	}
	target := ramBase + 4*uint64(len(setup(ramBase+0x100)))
	p := prog(setup(target),
		ADDI(a0, a0, 1), // rewritten by the store below after the first pass
		SW(s1, s0, 0), ADDI(t6, t6, -1), BNE(t6, zero, -12), HALT())
	if 4*uint64(len(setup(target))) != target-ramBase {
		t.Fatal("test program layout changed")
	}
	r.runProg(p)
	r.expectReg(a0, 1+100+100)
}

// Stores from translated code mark pages dirty again after the bitmap is
// cleared, as MarkDirty does.
func TestJITStoresMarkDirtyAfterClear(t *testing.T) {
	r := newRig(t)
	r.load(ramBase, prog(li(s0, dataAddr), SD(s0, s0, 0), SD(s0, s0, 8), JAL(0, -8)))
	r.h.SetPC(ramBase)
	pg := uint64(dataAddr-ramBase) / 4096
	for range 5 {
		r.h.Run(1000)
		if !r.ram.Dirty(pg) || !r.ram.Written(pg) {
			t.Fatal("stores from translated code did not mark the page")
		}
		r.ram.ClearDirty()
	}
}
