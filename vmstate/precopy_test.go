package vmstate

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/snapvm/snapvm/memory"
)

func TestBridgeGapsJoinsShortWrittenGapsOnly(t *testing.T) {
	const pg = memory.PageSize
	written := make([]uint64, 4)
	for p := 0; p < 200; p++ {
		if p != 100 { // page 100 was never written
			written[p/64] |= 1 << (p % 64)
		}
	}
	// Gaps of 3 pages (joined), 5 pages (too long) and 1 never-written page.
	in := [][2]int64{{0, 2 * pg}, {5 * pg, 6 * pg}, {90 * pg, 91 * pg}, {96 * pg, 100 * pg}, {101 * pg, 102 * pg}}
	got := bridgeGaps(append([][2]int64(nil), in...), written, 4)
	want := [][2]int64{{0, 6 * pg}, {90 * pg, 91 * pg}, {96 * pg, 100 * pg}, {101 * pg, 102 * pg}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// No joined extent grows past ExtentSize.
	all := make([]uint64, 2*ExtentSize/pg/64)
	for i := range all {
		all[i] = ^uint64(0)
	}
	long := [][2]int64{{0, ExtentSize - pg}, {ExtentSize, ExtentSize + pg}}
	if got := bridgeGaps(long, all, 4); len(got) != 2 {
		t.Fatalf("joined past ExtentSize: %v", got)
	}
}

// A guest that keeps dirtying pages as fast as they are written does not
// keep pre-copy going: it returns, and the stream written
// by the passes plus FinishPrecopy (the guest stopped) holds RAM exactly as
// it was at the stop, never-written pages still holes.
func TestPrecopyStopsAndFinishesWithTheGuestsRAM(t *testing.T) {
	if err := memory.Barrier(); err != nil {
		t.Skipf("no membarrier: %v", err) // pre-copy is not used there
	}
	cfg := Config{Board: "virt", RAMBase: 0x80000000, RAMSize: 8 << 20}
	ram := newRAM(t, cfg.RAMSize)
	// The first half written, the second half never touched.
	half := ram.Pages() / 2
	for p := uint64(0); p < half; p++ {
		ram.WriteAt([]byte{byte(p), byte(p >> 8), 1}, ram.Base+p*memory.PageSize)
	}
	st := newMemStore()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for i := uint64(0); !stop.Load(); i++ {
			p := r.Uint64N(half)
			ram.WriteAt([]byte{byte(i), byte(i >> 8), byte(i >> 16), 2}, ram.Base+p*memory.PageSize+8)
		}
	}()
	pending, err := PrecopyRAM(st, ram, nil)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	secs := []Section{&counterSection{name: "a", ver: 1, value: 5}}
	c, err := FinishPrecopy(st, cfg, 1, secs, ram, MergePages(pending, ram.TakeDirty()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteTo(st, nil); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(st)
	if err != nil {
		t.Fatal(err)
	}
	ram2 := newRAM(t, cfg.RAMSize)
	if err := LoadRAM(st, h, ram2, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ram.Data, ram2.Data) {
		t.Fatal("loaded RAM differs from the guest's at the stop")
	}
	for p := half; p < ram.Pages(); p++ {
		if ram2.Written(p) {
			t.Fatalf("page %d was never written but is in the stream", p)
		}
	}
}

// A header that outgrows the layout the passes wrote RAM in (device state
// past 2 MiB) moves the RAM area; the stream must still hold RAM as it is,
// with none of the passes' bytes showing through pages never written.
func TestFinishPrecopyWithAHeaderPastTheLayout(t *testing.T) {
	if err := memory.Barrier(); err != nil {
		t.Skipf("no membarrier: %v", err)
	}
	cfg := Config{Board: "virt", RAMBase: 0x80000000, RAMSize: 8 << 20}
	ram := newRAM(t, cfg.RAMSize)
	for p := uint64(0); p < ram.Pages(); p += 3 {
		ram.WriteAt(bytes.Repeat([]byte{byte(p%250 + 1)}, memory.PageSize), ram.Base+p*memory.PageSize)
	}
	st := newMemStore()
	pending, err := PrecopyRAM(st, ram, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := &counterSection{name: "big", ver: 1, words: make([]uint64, 300000)}
	c, err := FinishPrecopy(st, cfg, 1, []Section{big}, ram, MergePages(pending, ram.TakeDirty()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if err := c.WriteTo(st, nil); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(st)
	if err != nil {
		t.Fatal(err)
	}
	if h.RAMOffset == RAMAlign {
		t.Fatalf("the header did not move the RAM area (offset %d)", h.RAMOffset)
	}
	ram2 := newRAM(t, cfg.RAMSize)
	if err := LoadRAM(st, h, ram2, nil); err != nil {
		t.Fatal(err)
	}
	for i := range ram.Data {
		if ram.Data[i] != ram2.Data[i] {
			t.Fatalf("loaded RAM differs first at byte %#x (page %d)", i, i/memory.PageSize)
		}
	}
}
