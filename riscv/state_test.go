package riscv

import (
	"bytes"
	"testing"

	"github.com/snapvm/snapvm/vmstate"
)

type hartResult struct {
	x       [32]uint64
	pc      uint64
	instret uint64
	mstatus uint64
	ram     []byte
}

func (r *rig) result() hartResult {
	var res hartResult
	for i := range res.x {
		res.x[i] = r.h.Reg(i)
	}
	res.pc, res.instret, res.mstatus = r.h.PC(), r.h.Instret(), r.h.csr.mstatus
	res.ram = bytes.Clone(r.ram.Data[:0x300000])
	return res
}

func TestStateRoundTripMidProgram(t *testing.T) {
	r := newRig(t)
	// An S-mode program under Sv39 with loads, stores, AMOs, an LR/SC loop
	// and ecalls to an M handler that counts them.
	code := r.setupSv39()
	r.load(handler, prog(ADDI(s2, s2, 1), CSRR(t0, csrMepc), ADDI(t0, t0, 4), CSRW(csrMepc, t0), MRET))
	loop := prog(
		li(s0, vaPage), LI12(a0, 0), li(a1, 20000),
		LD(t1, s0, 0), ADD(t1, t1, a0), SD(t1, s0, 0), // loop:
		LI12(t2, 1), AMO(0, 3, zero, s0, t2), // amoadd.d to +0? use offset via s0
		AMO(2, 3, t3, s0, 0), ADDI(t3, t3, 1), AMO(3, 3, t4, s0, t3), // lr/sc
		ANDI(t5, a0, 255), BNE(t5, zero, 8), ECALL,
		ADDI(a0, a0, 1), BNE(a0, a1, -4*12),
		HALT())
	r.load(ramBase, prog(code, loop))
	r.h.SetPC(ramBase)
	r.h.Run(50000)
	// Save mid-program (hart + RAM), then finish.
	var e vmstate.Encoder
	r.h.SaveSection(&e)
	ramSnap := bytes.Clone(r.ram.Data)
	r.runToHalt(1 << 22)
	want := r.result()
	if want.x[s2] == 0 {
		t.Fatal("program made no ecalls")
	}
	// Restore and finish again.
	copy(r.ram.Data, ramSnap)
	if err := r.h.LoadSection(vmstate.NewDecoder(e.Bytes()), r.h.SectionVersion()); err != nil {
		t.Fatal(err)
	}
	r.runToHalt(1 << 22)
	got := r.result()
	if got.x != want.x || got.pc != want.pc || got.instret != want.instret || got.mstatus != want.mstatus {
		t.Errorf("after restore:\n got  %x pc %#x instret %d\n want %x pc %#x instret %d", got.x, got.pc, got.instret, want.x, want.pc, want.instret)
	}
	if !bytes.Equal(got.ram, want.ram) {
		t.Error("RAM differs after restore")
	}
	// Restore into a fresh hart on a copy of RAM as well.
	r2 := newRig(t)
	copy(r2.ram.Data, ramSnap)
	if err := r2.h.LoadSection(vmstate.NewDecoder(e.Bytes()), 1); err != nil {
		t.Fatal(err)
	}
	r2.runToHalt(1 << 22)
	if got2 := r2.result(); got2.x != want.x || !bytes.Equal(got2.ram, want.ram) {
		t.Error("fresh hart differs after restore")
	}
}

func TestStateRejectsBadValues(t *testing.T) {
	r := newRig(t)
	var e vmstate.Encoder
	r.h.SaveSection(&e)
	good := e.Bytes()
	if err := r.h.LoadSection(vmstate.NewDecoder(good), 1); err != nil {
		t.Fatalf("own state rejected: %v", err)
	}
	if err := r.h.LoadSection(vmstate.NewDecoder(good), 2); err == nil {
		t.Error("version 2 accepted")
	}
	if err := r.h.LoadSection(vmstate.NewDecoder(good[:len(good)-1]), 1); err == nil {
		t.Error("truncated state accepted")
	}
	privOff := 8 + 31*8
	bad := bytes.Clone(good)
	bad[privOff] = 2
	if err := r.h.LoadSection(vmstate.NewDecoder(bad), 1); err == nil {
		t.Error("priv 2 accepted")
	}
	mstatusOff := privOff + 1 + 1 + 1 + 8 + 8 + 8
	bad = bytes.Clone(good)
	bad[mstatusOff] = 0xff // sets FS-adjacent bits outside the writable mask? bit 0 (WPRI)
	if err := r.h.LoadSection(vmstate.NewDecoder(bad), 1); err == nil {
		t.Error("bad mstatus accepted")
	}
	r.h.SetReg(a0, 5)
	if err := r.h.LoadSection(vmstate.NewDecoder(bad), 1); err == nil || r.h.Reg(a0) != 5 {
		t.Error("failed load changed the hart")
	}
	if r.h.SectionName() != "hart0" {
		t.Errorf("name %q", r.h.SectionName())
	}
}

func FuzzLoadSection(f *testing.F) {
	ram, err := newFuzzRAM()
	if err != nil {
		f.Fatal(err)
	}
	h := NewHart(0, ram, nil, nil)
	var e vmstate.Encoder
	h.SaveSection(&e)
	f.Add(e.Bytes())
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, len(e.Bytes())))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := h.LoadSection(vmstate.NewDecoder(b), 1); err == nil {
			// A state that loads must save back identically.
			var e2 vmstate.Encoder
			h.SaveSection(&e2)
			if !bytes.Equal(e2.Bytes(), b[:len(e2.Bytes())]) {
				t.Error("round trip changed the state")
			}
			h.Run(10)
		}
	})
}

type vmstateEncoder struct{ vmstate.Encoder }

func (e *vmstateEncoder) decoder() *vmstate.Decoder { return vmstate.NewDecoder(e.Bytes()) }
