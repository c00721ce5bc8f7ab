package machine

import (
	"testing"

	"github.com/snapvm/snapvm/vmstate"
)

// regCounterGuest keeps its count in t1 and only stores it at 0x80002000,
// so it continues correctly only if the hart's registers are restored.
func regCounterGuest() []byte {
	return program(
		auipc(t2, 0x2), // t2 = 0x80002000
		addi(t1, t1, 1), sd(t1, t2, 0), jal(zero, -8),
	)
}

func TestSnapshotRoundTrip(t *testing.T) {
	cfg := Config{Kernel: regCounterGuest(), RAMSize: 8 << 20}
	m1, _, _ := boot(t, cfg)
	waitFor(t, "counter", func() bool { return counter(m1) > 10000 })
	if !m1.Pause(string(RunStateSaveVM)) {
		t.Fatal("was running")
	}
	saved := counter(m1)
	clock := m1.Clock().Nanoseconds()
	type sec struct {
		name    string
		version uint32
		data    []byte
	}
	var secs []sec
	for _, s := range m1.Sections() {
		var e vmstate.Encoder
		s.SaveSection(&e)
		secs = append(secs, sec{s.SectionName(), s.SectionVersion(), e.Bytes()})
	}
	ram := make([]byte, m1.RAM().Size())
	m1.RAM().ReadAt(ram, DRAMBase)

	cfg.StartPaused = true
	m2, _, log := boot(t, cfg)
	m2.Pause(string(RunStateRestoreVM)) // prelaunch stays prelaunch
	for i, s := range m2.Sections() {
		if s.SectionName() != secs[i].name {
			t.Fatalf("section %d is %s, saved %s", i, s.SectionName(), secs[i].name)
		}
		if err := s.LoadSection(vmstate.NewDecoder(secs[i].data), secs[i].version); err != nil {
			t.Fatalf("%s: %v", s.SectionName(), err)
		}
	}
	m2.RAM().WriteAt(ram, DRAMBase)
	if m2.Clock().Nanoseconds() != clock {
		t.Fatalf("clock %d, saved %d", m2.Clock().Nanoseconds(), clock)
	}
	if counter(m2) != saved {
		t.Fatal("RAM")
	}
	m2.Resume()
	waitFor(t, "counter after restore", func() bool { return counter(m2) > saved+10000 })
	m2.Stop(RunStatePaused)
	if log.kinds() != "RESUME,STOP" {
		t.Fatalf("events %s", log.kinds())
	}
	// A snapshot of one board does not load into a different one.
	m3, _, _ := boot(t, Config{Kernel: regCounterGuest(), RAMSize: 8 << 20, StartPaused: true})
	for i, s := range m3.Sections() {
		if s.SectionName() == "virtio-mmio@0x10008000/blk" {
			if err := s.LoadSection(vmstate.NewDecoder(secs[i].data[:3]), secs[i].version); err == nil {
				t.Fatal("truncated section accepted")
			}
		}
	}
}

// FuzzLoadSection feeds arbitrary bytes to every section of a paused
// machine: loads may fail but must not panic or hang.
func FuzzLoadSection(f *testing.F) {
	m, err := New(Config{Kernel: regCounterGuest(), RAMSize: 4 << 20, StartPaused: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	for _, s := range m.Sections() {
		var e vmstate.Encoder
		s.SaveSection(&e)
		f.Add(uint8(0), e.Bytes())
	}
	f.Add(uint8(5), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		secs := m.Sections()
		s := secs[int(which)%len(secs)]
		s.LoadSection(vmstate.NewDecoder(data), s.SectionVersion()) //nolint:errcheck // must not panic
	})
}
