package clint

import (
	"sync"
	"testing"

	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

type fakeHart struct {
	mu  sync.Mutex
	mip uint64
}

func (h *fakeHart) SetInterrupt(bit uint, level bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if level {
		h.mip |= 1 << bit
	} else {
		h.mip &^= 1 << bit
	}
}

func (h *fakeHart) pending(bit uint) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mip&(1<<bit) != 0
}

func TestRegisters(t *testing.T) {
	var clk vclock.Clock // stopped at 0
	h := &fakeHart{}
	d := New(&clk, []Hart{h})
	if !h.pending(irqMTIP) {
		t.Fatal("MTIP must be set at reset (mtimecmp 0)")
	}
	if !d.Store(0, 4, 0xffffffff) || !h.pending(irqMSIP) {
		t.Fatal("msip write")
	}
	if v, _ := d.Load(0, 4); v != 1 {
		t.Fatalf("msip reads %#x, want 1", v)
	}
	if d.Store(0, 8, 0) || d.Store(0, 1, 0) {
		t.Fatal("msip accepts only 4-byte accesses")
	}
	d.Store(0, 4, 0)
	if h.pending(irqMSIP) {
		t.Fatal("msip clear")
	}
	// mtimecmp in two halves.
	d.Store(mtimecmpBase, 4, 1000)
	d.Store(mtimecmpBase+4, 4, 0)
	if v, _ := d.Load(mtimecmpBase, 8); v != 1000 {
		t.Fatalf("mtimecmp %d", v)
	}
	if h.pending(irqMTIP) {
		t.Fatal("MTIP must clear when mtimecmp > mtime")
	}
	// Time stands still while the clock is stopped; writing mtime moves it.
	d.Store(mtimeOff, 8, 999)
	if v, _ := d.Load(mtimeOff, 8); v != 999 || h.pending(irqMTIP) {
		t.Fatalf("mtime %d", v)
	}
	if next := d.Poll(); next != 100 {
		t.Fatalf("next deadline %d ns, want 100", next)
	}
	d.Store(mtimeOff, 4, 1000)
	if !h.pending(irqMTIP) {
		t.Fatal("MTIP on mtime write")
	}
	clk.Set(1_000_000) // 10000 ticks later
	if v, _ := d.Load(mtimeOff, 8); v != 11000 {
		t.Fatalf("mtime after clock advance %d", v)
	}
	if _, ok := d.Load(mtimeOff, 2); ok {
		t.Fatal("halfword mtime load must fault")
	}
	if _, ok := d.Load(0xc000, 4); ok {
		t.Fatal("beyond 0xc000 must fault")
	}
	if v, ok := d.Load(0x5000, 4); !ok || v != 0 {
		t.Fatal("unbacked mtimecmp slots read 0")
	}
}

func TestStateRoundTrip(t *testing.T) {
	var clk vclock.Clock
	clk.Set(5_000_000)
	d := New(&clk, []Hart{&fakeHart{}})
	d.Store(mtimecmpBase, 8, 123456)
	d.Store(0, 4, 1)
	d.Store(mtimeOff, 8, 77)
	var e vmstate.Encoder
	d.SaveSection(&e)

	var clk2 vclock.Clock
	h2 := &fakeHart{}
	d2 := New(&clk2, []Hart{h2})
	if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()), 1); err != nil {
		t.Fatal(err)
	}
	if clk2.Nanoseconds() != 5_000_000 {
		t.Fatal("clock not restored")
	}
	if v, _ := d2.Load(mtimeOff, 8); v != 77 {
		t.Fatalf("mtime %d", v)
	}
	if v, _ := d2.Load(mtimecmpBase, 8); v != 123456 || !h2.pending(irqMSIP) || h2.pending(irqMTIP) {
		t.Fatal("registers or lines not restored")
	}
	for n := 0; n < len(e.Bytes()); n++ {
		if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()[:n]), 1); err == nil {
			t.Fatalf("truncated state of %d bytes accepted", n)
		}
	}
}
