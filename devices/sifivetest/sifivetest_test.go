package sifivetest

import "testing"

func TestFinisher(t *testing.T) {
	var codes []int
	resets := 0
	d := New(Actions{Shutdown: func(c int) { codes = append(codes, c) }, Reset: func() { resets++ }})
	if !d.Store(0, 4, 0x5555) || !d.Store(0, 4, 0x00073333) || !d.Store(0, 2, 0x7777) {
		t.Fatal("store refused")
	}
	if len(codes) != 2 || codes[0] != 0 || codes[1] != 7 || resets != 1 {
		t.Fatalf("codes %v resets %d", codes, resets)
	}
	if d.Store(0, 1, 0x55) || d.Store(0, 8, 0x5555) {
		t.Fatal("1- and 8-byte stores must fault")
	}
	if !d.Store(0, 4, 0x1234) || !d.Store(8, 4, 0x5555) || len(codes) != 2 {
		t.Fatal("other values and offsets must be ignored")
	}
	if v, ok := d.Load(0, 4); !ok || v != 0 {
		t.Fatal("reads return 0")
	}
	if _, ok := d.Load(0, 1); ok {
		t.Fatal("byte load must fault")
	}
}
