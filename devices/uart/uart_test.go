package uart

import (
	"bytes"
	"testing"
	"time"

	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

type line struct{ level bool }

func (l *line) set(v bool) { l.level = v }

func newTest() (*Device, *bytes.Buffer, *line) {
	var out bytes.Buffer
	l := &line{}
	return New(&out, l.set), &out, l
}

func rd(t *testing.T, d *Device, off uint64) uint8 {
	t.Helper()
	v, ok := d.Load(off, 1)
	if !ok {
		t.Fatalf("load %d faulted", off)
	}
	return uint8(v)
}

func TestResetValues(t *testing.T) {
	d, _, l := newTest()
	want := map[uint64]uint8{regIER: 0, regIIR: 0x01, regLCR: 0, regMCR: 0x08, regLSR: 0x60, regMSR: 0xb0, regSCR: 0}
	for off, v := range want {
		if got := rd(t, d, off); got != v {
			t.Errorf("reg %d = %#x, want %#x", off, got, v)
		}
	}
	d.Store(regLCR, 1, lcrDLAB)
	if rd(t, d, 0) != 0x0c || rd(t, d, 1) != 0 {
		t.Error("divisor reset value")
	}
	if l.level {
		t.Error("irq high at reset")
	}
}

func TestTransmitAndTHRI(t *testing.T) {
	d, out, l := newTest()
	for _, c := range []byte("hi") {
		d.Store(regRBR, 1, uint64(c))
	}
	if out.String() != "hi" {
		t.Fatalf("output %q", out.String())
	}
	// Enabling THRI with THR empty raises the interrupt immediately.
	d.Store(regIER, 1, ierTHRI)
	if !l.level || rd(t, d, regIIR) != iirTHRI {
		t.Fatal("THRI not raised on IER write")
	}
	// Reading IIR cleared it.
	if rd(t, d, regIIR) != iirNone || l.level {
		t.Fatal("IIR read must clear THRI")
	}
	d.Store(regRBR, 1, 'x')
	if !l.level {
		t.Fatal("THRI after a transmitted byte")
	}
	// Wider aligned accesses reach the single byte register.
	if !d.Store(regRBR, 4, 0x41424344) || out.String() != "hixD" {
		t.Fatalf("4-byte THR write: %q", out.String())
	}
	if _, ok := d.Load(5, 4); ok {
		t.Fatal("misaligned access must fault")
	}
	if _, ok := d.Load(8, 1); ok {
		t.Fatal("offset 8 is outside the 8-byte region")
	}
}

func TestReceiveFIFO(t *testing.T) {
	d, _, l := newTest()
	d.Store(regIIR, 1, 0x81) // FIFO on, trigger 8
	d.Store(regIER, 1, ierRDI)
	d.Input([]byte("ab"))
	if rd(t, d, regLSR)&lsrDR == 0 {
		t.Fatal("DR not set")
	}
	if iir := rd(t, d, regIIR); iir != iirFIFO|iirCTI || !l.level {
		t.Fatalf("IIR %#x, want character timeout", iir)
	}
	if rd(t, d, regRBR) != 'a' || rd(t, d, regRBR) != 'b' {
		t.Fatal("FIFO order")
	}
	if rd(t, d, regLSR)&lsrDR != 0 || l.level {
		t.Fatal("DR/irq after draining")
	}
	// More input than the FIFO holds waits on the host side.
	done := make(chan struct{})
	go func() { d.Input(bytes.Repeat([]byte{'z'}, 20)); close(done) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("input of 20 bytes accepted into a 16-byte FIFO")
	default:
	}
	// Without a clock the character timeout is due at once, and it
	// outranks RDI (TestCharacterTimeout covers the timed case).
	if iir := rd(t, d, regIIR); iir&0x0f != iirCTI {
		t.Fatalf("IIR %#x at full FIFO, want CTI", iir)
	}
	for i := 0; i < 20; i++ {
		if rd(t, d, regRBR) != 'z' {
			t.Fatalf("byte %d", i)
		}
	}
	<-done
	if rd(t, d, regLSR)&lsrOE != 0 {
		t.Fatal("overrun with back-pressure")
	}
}

func TestCharacterTimeout(t *testing.T) {
	d, _, l := newTest()
	var clk vclock.Clock
	wakes := 0
	d.SetClock(&clk, func() { wakes++ })
	d.Store(regLCR, 1, lcrDLAB)
	d.Store(regRBR, 1, 1) // divisor 1: 399193 baud
	d.Store(regLCR, 1, 0x03)
	d.Store(regIIR, 1, 0x81) // FIFO, trigger 8
	d.Store(regIER, 1, ierRDI)
	d.Input([]byte("a"))
	if l.level || wakes != 1 {
		t.Fatalf("below the trigger level nothing is reported before the timeout (irq %v, wakes %d)", l.level, wakes)
	}
	due := d.Poll()
	// 4 characters of 10 bits at 399193 baud.
	if want := int64(4 * 10 * (1_000_000_000 / 399193)); due != want {
		t.Fatalf("timeout at %d, want %d", due, want)
	}
	clk.Set(due)
	if d.Poll() != -1 || !l.level || rd(t, d, regIIR) != iirFIFO|iirCTI {
		t.Fatal("character timeout not reported")
	}
	if rd(t, d, regRBR) != 'a' || l.level {
		t.Fatal("reading the byte clears the timeout")
	}
	// Reaching the trigger level reports RDI at once.
	d.Input([]byte("12345678"))
	if iir := rd(t, d, regIIR); iir != iirFIFO|iirRDI {
		t.Fatalf("IIR %#x at the trigger level", iir)
	}
}

func TestLoopback(t *testing.T) {
	d, out, _ := newTest()
	d.Store(regMCR, 1, mcrLoop|0x0b)
	d.Store(regRBR, 1, 'q')
	if out.Len() != 0 || rd(t, d, regRBR) != 'q' {
		t.Fatal("loopback")
	}
	if msr := rd(t, d, regMSR); msr&0xb0 != 0xb0 {
		t.Fatalf("loopback MSR %#x", msr)
	}
}

func TestStateRoundTrip(t *testing.T) {
	d, _, _ := newTest()
	d.Store(regIIR, 1, 0x01)
	d.Store(regIER, 1, ierRDI|ierTHRI)
	d.Store(regSCR, 1, 0x5a)
	d.Input([]byte("xyz"))
	var e vmstate.Encoder
	d.SaveSection(&e)

	d2, _, l2 := newTest()
	if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()), 2); err != nil {
		t.Fatal(err)
	}
	if !l2.level || rd(t, d2, regSCR) != 0x5a || rd(t, d2, regRBR) != 'x' {
		t.Fatal("restored state differs")
	}
	if d2.Save().FCR != d.Save().FCR {
		t.Fatal("FCR")
	}
	for n := 0; n < len(e.Bytes()); n++ {
		if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()[:n]), 2); err == nil {
			t.Fatalf("truncated state (%d bytes) accepted", n)
		}
	}
	bad := d.Save()
	bad.RX = make([]byte, 17)
	if err := d2.Restore(bad); err == nil {
		t.Fatal("oversized FIFO accepted")
	}
}

func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x03, 0x80, 0x00, 0x01, 0x02, 0x81})
	f.Fuzz(func(t *testing.T, ops []byte) {
		d, _, _ := newTest()
		for i := 0; i+1 < len(ops); i += 2 {
			off := uint64(ops[i] & 7)
			if ops[i]&0x80 != 0 {
				d.Store(off, 1, uint64(ops[i+1]))
			} else {
				d.Load(off, 1)
			}
			if ops[i]&0x40 != 0 {
				d.mu.Lock()
				d.inq = append(d.inq, ops[i+1])
				d.acceptLocked()
				d.mu.Unlock()
			}
		}
		var e vmstate.Encoder
		d.SaveSection(&e)
		d2, _, _ := newTest()
		if err := d2.LoadSection(vmstate.NewDecoder(e.Bytes()), 2); err != nil {
			t.Fatalf("own state rejected: %v", err)
		}
	})
}
