package rtc

import (
	"testing"

	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

func TestTimeAndAlarm(t *testing.T) {
	var clk vclock.Clock
	var level bool
	const base = 0x1_2345_6789
	d := New(&clk, base, func(l bool) { level = l })
	lo, _ := d.Load(regTimeLow, 4)
	hi, _ := d.Load(regTimeHigh, 4)
	if hi<<32|lo != base {
		t.Fatalf("time %#x", hi<<32|lo)
	}
	if v, ok := d.Load(0, 8); !ok || v != base {
		t.Fatal("8-byte time load")
	}
	if _, ok := d.Load(0, 2); ok {
		t.Fatal("halfword load must fault")
	}
	if _, ok := d.Load(0x24, 4); ok {
		t.Fatal("beyond 0x24 must fault")
	}
	d.Store(regIRQEnabled, 4, 1)
	d.Store(regAlarmHigh, 4, 1)
	d.Store(regAlarmLow, 4, 0x2345_6789+1000)
	if v, _ := d.Load(regAlarmStatus, 4); v != 1 || level {
		t.Fatal("alarm should be armed, not fired")
	}
	if next := d.Poll(); next != 1000 {
		t.Fatalf("alarm due at clock %d, want 1000", next)
	}
	clk.Set(1000)
	d.Poll()
	if !level {
		t.Fatal("alarm did not fire")
	}
	d.Store(regClearIRQ, 4, 1)
	if level {
		t.Fatal("clear interrupt")
	}
	// An alarm in the past fires immediately.
	d.Store(regAlarmLow, 4, 0)
	if !level {
		t.Fatal("past alarm")
	}
	// Setting the time.
	d.Store(regTimeHigh, 4, 7)
	if v, _ := d.Load(0, 8); v>>32 != 7 {
		t.Fatalf("time high write: %#x", v)
	}
}

func TestState(t *testing.T) {
	var clk vclock.Clock
	d := New(&clk, 5_000_000_000, nil)
	d.Store(regIRQEnabled, 4, 1)
	d.Store(regAlarmHigh, 4, 2)
	d.Store(regAlarmLow, 4, 0)
	var e vmstate.Encoder
	d.SaveSection(&e)
	var clk2 vclock.Clock
	clk2.Set(999)
	var level bool
	d2 := New(&clk2, 0, func(l bool) { level = l })
	if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()), 1); err != nil {
		t.Fatal(err)
	}
	if d2.Save() != d.Save() || level {
		t.Fatal("state differs")
	}
	if v, _ := d2.Load(0, 8); v != 5_000_000_000 {
		t.Fatalf("time %d", v)
	}
	if d2.LoadSection(vmstate.NewDecoder(e.Bytes()[:10]), 1) == nil {
		t.Fatal("truncated accepted")
	}
}
