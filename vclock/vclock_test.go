package vclock

import (
	"testing"
	"time"
)

func TestClockStopsWhilePaused(t *testing.T) {
	var c Clock
	if c.Nanoseconds() != 0 {
		t.Fatal("a new clock must read 0")
	}
	c.Start()
	time.Sleep(2 * time.Millisecond)
	c.Stop()
	frozen := c.Nanoseconds()
	if frozen < int64(2*time.Millisecond) {
		t.Fatalf("clock advanced only %d ns while running", frozen)
	}
	time.Sleep(2 * time.Millisecond)
	if c.Nanoseconds() != frozen {
		t.Fatal("clock advanced while stopped")
	}
	c.Set(5e9)
	if c.Nanoseconds() != 5e9 {
		t.Fatal("Set did not move the stopped clock")
	}
	c.Start()
	if c.Nanoseconds() < 5e9 {
		t.Fatal("clock went backwards after Start")
	}
}
