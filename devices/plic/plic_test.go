package plic

import (
	"testing"

	"github.com/snapvm/snapvm/vmstate"
)

type fakeHart struct{ mip uint64 }

func (h *fakeHart) SetInterrupt(bit uint, level bool) {
	if level {
		h.mip |= 1 << bit
	} else {
		h.mip &^= 1 << bit
	}
}

const (
	ctxM = contextBase
	ctxS = contextBase + contextSize
)

func TestClaimComplete(t *testing.T) {
	h := &fakeHart{}
	d := New([]Hart{h})
	d.Store(10*4, 4, 9) // WARL: 9 mod 8 = 1
	if v, _ := d.Load(10*4, 4); v != 1 {
		t.Fatalf("priority reads %d, want 1", v)
	}
	d.Store(10*4, 4, 3)
	d.Store(8*4, 4, 3)
	d.Store(enableBase, 4, 1<<10|1<<8) // M context
	d.SetIRQ(10, true)
	if h.mip&(1<<irqMEIP) == 0 {
		t.Fatal("MEIP")
	}
	d.SetIRQ(10, true)
	d.SetIRQ(8, true)
	if h.mip&(1<<irqMEIP) == 0 || h.mip&(1<<irqSEIP) != 0 {
		t.Fatalf("mip %#x: want MEIP only", h.mip)
	}
	if v, _ := d.Load(pendingBase, 4); v != 1<<10|1<<8 {
		t.Fatalf("pending %#x", v)
	}
	// Equal priority: lowest ID first.
	if v, _ := d.Load(ctxM+4, 4); v != 8 {
		t.Fatalf("claim %d, want 8", v)
	}
	if v, _ := d.Load(ctxM+4, 4); v != 10 {
		t.Fatalf("claim %d, want 10", v)
	}
	if v, _ := d.Load(ctxM+4, 4); v != 0 || h.mip&(1<<irqMEIP) != 0 {
		t.Fatalf("claim %d with nothing left; mip %#x", v, h.mip)
	}
	// Completing with the line still high does not re-pend (QEMU 7.2).
	d.Store(ctxM+4, 4, 10)
	if h.mip&(1<<irqMEIP) != 0 {
		t.Fatal("complete re-pended a source")
	}
	d.SetIRQ(10, true) // device signals again
	if h.mip&(1<<irqMEIP) == 0 {
		t.Fatal("re-signal must pend")
	}
	// Threshold masks priority <= threshold.
	d.Store(ctxM, 4, 3)
	if h.mip&(1<<irqMEIP) != 0 {
		t.Fatal("threshold 3 must mask priority 3")
	}
	d.Store(ctxM, 4, 0)
	// Line low withdraws the request.
	d.SetIRQ(10, false)
	if h.mip&(1<<irqMEIP) != 0 {
		t.Fatal("low line must withdraw")
	}
	// S context drives SEIP. As on QEMU 7.2, enabling a pending source
	// takes effect at the next update.
	d.Store(ctxM+4, 4, 8)
	d.SetIRQ(8, true)
	d.Store(enableBase+enableStride, 4, 1<<8)
	if h.mip&(1<<irqSEIP) != 0 {
		t.Fatal("enable write must not update the lines")
	}
	d.Store(contextBase+contextSize, 4, 0) // threshold write updates
	if h.mip&(1<<irqSEIP) == 0 {
		t.Fatal("SEIP")
	}
}

func TestAccessRules(t *testing.T) {
	d := New([]Hart{&fakeHart{}})
	if _, ok := d.Load(0, 1); ok {
		t.Fatal("byte access must fault")
	}
	if _, ok := d.Load(0, 8); ok {
		t.Fatal("doubleword access must fault")
	}
	if v, ok := d.Load(contextBase+5*contextSize, 4); !ok || v != 0 {
		t.Fatal("absent context reads 0")
	}
	d.Store(pendingBase, 4, 0xffffffff)
	if v, _ := d.Load(pendingBase, 4); v != 0 {
		t.Fatal("pending is read-only")
	}
	if _, ok := d.Load(Size, 4); ok {
		t.Fatal("outside the region")
	}
}

func TestState(t *testing.T) {
	h := &fakeHart{}
	d := New([]Hart{h})
	d.Store(5*4, 4, 2)
	d.Store(enableBase, 4, 1<<5)
	d.SetIRQ(5, true)
	var e vmstate.Encoder
	d.SaveSection(&e)
	h2 := &fakeHart{}
	d2 := New([]Hart{h2})
	if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()), 1); err != nil {
		t.Fatal(err)
	}
	if h2.mip&(1<<irqMEIP) == 0 {
		t.Fatal("restored line")
	}
	if v, _ := d2.Load(contextBase+4, 4); v != 5 {
		t.Fatalf("claim after restore %d", v)
	}
	if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()[:20]), 1); err == nil {
		t.Fatal("truncated accepted")
	}
	bad := append([]byte(nil), e.Bytes()...)
	bad[0] = 9
	if err := d2.LoadSection(vmstate.NewDecoder(bad), 1); err == nil {
		t.Fatal("bad priority accepted")
	}
}
