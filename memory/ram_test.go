package memory

import "testing"

func TestRAMBoundsAndBitmaps(t *testing.T) {
	r, err := New(0x80000000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Contains(0x80000000, 1<<20) || r.Contains(0x80000000, 1<<20+1) || r.Contains(0x7fffffff, 1) || r.Contains(0x80100000, 1) {
		t.Fatal("Contains gets the RAM window wrong")
	}
	if _, err := r.Slice(0x800ffff0, 32); err == nil {
		t.Fatal("a slice crossing the end of RAM was allowed")
	}
	if err := r.WriteAt([]byte{1, 2}, 0x80000fff); err != nil {
		t.Fatal(err)
	}
	if !r.Dirty(0) || !r.Dirty(1) || r.Dirty(2) || !r.Written(1) || r.WrittenPages() != 2 {
		t.Fatal("a write across a page boundary must mark both pages")
	}
	r.ClearDirty()
	if r.Dirty(0) || !r.Written(0) {
		t.Fatal("ClearDirty must clear dirty bits and keep written bits")
	}
	if err := r.Zero(); err != nil {
		t.Fatal(err)
	}
	if r.Data[0xfff] != 0 || r.Written(0) {
		t.Fatal("Zero must clear contents and bitmaps")
	}
	if _, err := New(0, 4097); err == nil {
		t.Fatal("unaligned size accepted")
	}
}
