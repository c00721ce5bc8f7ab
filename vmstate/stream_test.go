package vmstate

import (
	"bytes"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/snapvm/snapvm/memory"
)

// memStore is a sparse in-memory Store with 64 KiB "clusters", standing in
// for a qcow2 vm-state area.
type memStore struct {
	mu       sync.Mutex
	clusters map[int64][]byte
	writes   int
}

const memCluster = 64 << 10

func newMemStore() *memStore { return &memStore{clusters: map[int64][]byte{}} }

func (m *memStore) WriteVMState(p []byte, pos int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	for len(p) > 0 {
		c := pos / memCluster
		off := pos % memCluster
		buf := m.clusters[c]
		if buf == nil {
			buf = make([]byte, memCluster)
			m.clusters[c] = buf
		}
		n := copy(buf[off:], p)
		p = p[n:]
		pos += int64(n)
	}
	return nil
}

func (m *memStore) ReadVMState(p []byte, pos int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(p) > 0 {
		c := pos / memCluster
		off := pos % memCluster
		n := min(len(p), int(memCluster-off))
		if buf := m.clusters[c]; buf != nil {
			copy(p[:n], buf[off:])
		} else {
			clear(p[:n])
		}
		p = p[n:]
		pos += int64(n)
	}
	return nil
}

func (m *memStore) AllocatedRanges(pos, n int64) ([][2]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []int64
	for c := range m.clusters {
		keys = append(keys, c)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out [][2]int64
	for _, c := range keys {
		s, e := max(c*memCluster, pos), min((c+1)*memCluster, pos+n)
		if s >= e {
			continue
		}
		if len(out) > 0 && out[len(out)-1][1] == s {
			out[len(out)-1][1] = e
		} else {
			out = append(out, [2]int64{s, e})
		}
	}
	return out, nil
}

type counterSection struct {
	name  string
	ver   uint32
	value uint64
	words []uint64
}

func (c *counterSection) SectionName() string    { return c.name }
func (c *counterSection) SectionVersion() uint32 { return c.ver }
func (c *counterSection) SaveSection(e *Encoder) {
	e.U64(c.value)
	e.U64s(c.words)
}
func (c *counterSection) LoadSection(d *Decoder, version uint32) error {
	c.value = d.U64()
	c.words = d.U64s(16)
	return nil
}

func newRAM(t *testing.T, size uint64) *memory.RAM {
	t.Helper()
	ram, err := memory.New(0x80000000, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	return ram
}

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := Config{Board: "virt", RAMBase: 0x80000000, RAMSize: 8 << 20}
	ram := newRAM(t, cfg.RAMSize)
	// Pages 0, 1, 2 and the last one written; the rest never touched.
	for _, p := range []uint64{0, 1, 2, ram.Pages() - 1} {
		if err := ram.WriteAt(bytes.Repeat([]byte{byte(p + 1)}, memory.PageSize), ram.Base+p*memory.PageSize); err != nil {
			t.Fatal(err)
		}
	}
	secs := []Section{&counterSection{name: "a", ver: 1, value: 42, words: []uint64{1, 2, 3}}, &counterSection{name: "b", ver: 2, value: 7}}
	st := newMemStore()
	var lastDone, lastTotal int64
	size, err := Save(st, cfg, 123456789, secs, ram, func(d, tot int64) { lastDone, lastTotal = d, tot })
	if err != nil {
		t.Fatal(err)
	}
	if lastDone != lastTotal || lastTotal == 0 {
		t.Fatalf("progress ended at %d/%d", lastDone, lastTotal)
	}
	if want := int64(RAMAlign) + int64(cfg.RAMSize); size != want {
		t.Fatalf("stream size %d, want %d", size, want)
	}
	// Unwritten pages must not have been stored: only the header cluster,
	// the cluster holding pages 0-2 and the one holding the last page.
	if len(st.clusters) != 3 {
		t.Fatalf("%d clusters allocated, want 3", len(st.clusters))
	}

	ram2 := newRAM(t, cfg.RAMSize)
	ram2.WriteAt([]byte{9, 9, 9}, ram2.Base+100*memory.PageSize) // must be cleared by the load
	secs2 := []Section{&counterSection{name: "a", ver: 1}, &counterSection{name: "b", ver: 2}}
	h, err := ReadHeader(st)
	if err != nil {
		t.Fatal(err)
	}
	if h.VMClockNs != 123456789 {
		t.Fatalf("vm clock %d", h.VMClockNs)
	}
	if err := h.Check(cfg, secs2); err != nil {
		t.Fatal(err)
	}
	if err := h.LoadSections(secs2); err != nil {
		t.Fatal(err)
	}
	if err := LoadRAM(st, h, ram2, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ram.Data, ram2.Data) {
		t.Fatal("RAM differs after load")
	}
	a := secs2[0].(*counterSection)
	if a.value != 42 || len(a.words) != 3 || a.words[2] != 3 {
		t.Fatalf("section a loaded as %+v", a)
	}
	if !ram2.Written(0) || ram2.Written(100) {
		t.Fatal("written bitmap not rebuilt from the loaded pages")
	}
}

func TestCheckRefusesOtherMachines(t *testing.T) {
	cfg := Config{Board: "virt", RAMBase: 0x80000000, RAMSize: 4 << 20}
	ram := newRAM(t, cfg.RAMSize)
	st := newMemStore()
	if _, err := Save(st, cfg, 0, []Section{&counterSection{name: "a", ver: 1}}, ram, nil); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(st)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cfg  Config
		secs []Section
		want string
	}{
		{Config{"virt", 0x80000000, 8 << 20}, []Section{&counterSection{name: "a", ver: 1}}, "4 MiB of RAM"},
		{Config{"other", 0x80000000, 4 << 20}, []Section{&counterSection{name: "a", ver: 1}}, "board"},
		{cfg, []Section{&counterSection{name: "a", ver: 1}, &counterSection{name: "b", ver: 1}}, `"b" of this machine is missing`},
		{cfg, nil, `saved device "a" does not exist`},
		{cfg, []Section{&counterSection{name: "a", ver: 0}}, "version 1"},
	}
	for _, c := range cases {
		err := h.Check(c.cfg, c.secs)
		var cm *ConfigMismatchError
		if !errors.As(err, &cm) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v) = %v, want mismatch mentioning %q", c.cfg, err, c.want)
		}
	}
}

func TestDecodeHeaderRejectsDamage(t *testing.T) {
	hdr, err := EncodeHeader(Config{Board: "virt", RAMSize: 4096}, 1, []Section{&counterSection{name: "a", ver: 1, value: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	for i := range hdr {
		bad := bytes.Clone(hdr)
		bad[i] ^= 0x40
		if _, err := DecodeHeader(bad); err == nil {
			t.Fatalf("flipping a bit of byte %d went unnoticed", i)
		}
	}
	if _, err := DecodeHeader(hdr[:len(hdr)-1]); !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated header: %v", err)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	hdr, _ := EncodeHeader(Config{Board: "virt", RAMBase: 0x80000000, RAMSize: 1 << 20}, 99,
		[]Section{&counterSection{name: "hart0", ver: 1, value: 1, words: []uint64{4}}, &counterSection{name: "uart0", ver: 3}})
	f.Add(hdr)
	f.Add([]byte("SNAPVMST"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if err != nil {
			return
		}
		secs := make([]Section, 0, len(h.Sections))
		for _, s := range h.Sections {
			secs = append(secs, &counterSection{name: s.Name, ver: s.Version})
		}
		if h.Check(h.Config, secs) == nil {
			_ = h.LoadSections(secs)
		}
	})
}
