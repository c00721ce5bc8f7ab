package riscv

import "testing"

// When the code buffer fills up, every block is dropped and translation
// starts over without changing what the guest computes.
func TestJITCodeBufferRefill(t *testing.T) {
	if !jitSupported || jitDisabled {
		t.Skip("no translation on this host or in this run")
	}
	r := newRig(t)
	// Many distinct blocks: a chain of 2000 small blocks ending in a loop back.
	var body []uint32
	for range 2000 {
		body = append(body, ADDI(a0, a0, 1), BEQ(zero, zero, 4))
	}
	// The loop closes with JAL: the body is beyond a branch's reach.
	p := prog(li(t6, 4), body, ADDI(t6, t6, -1), BEQ(t6, zero, 8), JAL(0, -4*int32(len(body)+2)), HALT())
	r.load(ramBase, p)
	r.h.SetPC(ramBase)
	j := r.h.jitState()
	j.code = j.code[:jitBlockRoom*3] // room for three blocks at a time
	r.runToHalt(1 << 20)
	r.expectReg(a0, 4*2000)
	if j.refills == 0 {
		t.Error("the code buffer never filled up")
	}
}
