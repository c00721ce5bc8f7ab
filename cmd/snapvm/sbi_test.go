package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// sbiPayload is an S-mode program for OpenSBI's fw_dynamic: it prints msg
// through the legacy SBI console (EID 1) and powers off through SBI SRST.
func sbiPayload(msg string) []byte {
	const (
		a0 = 10
		a1 = 11
		a6 = 16
		a7 = 17
	)
	addi := func(rd, rs1 uint32, imm int32) uint32 { return uint32(imm)<<20 | rs1<<15 | rd<<7 | 0x13 }
	lui := func(rd, imm20 uint32) uint32 { return imm20<<12 | rd<<7 | 0x37 }
	const ecall = 0x00000073
	var w []uint32
	for _, c := range []byte(msg) {
		w = append(w, addi(a7, 0, 1), addi(a0, 0, int32(c)), ecall)
	}
	// SRST (EID "SRST" = 0x53525354), FID 0: shutdown, no reason.
	w = append(w, lui(a7, 0x53525), addi(a7, a7, 0x354), addi(a6, 0, 0), addi(a0, 0, 0), addi(a1, 0, 0), ecall)
	w = append(w, 0x0000006f) // j .
	out := make([]byte, 4*len(w))
	for i, x := range w {
		binary.LittleEndian.PutUint32(out[4*i:], x)
	}
	return out
}

// TestOpenSBIPayloadMatchesQEMU boots QEMU's OpenSBI with an S-mode payload
// (-bios default -kernel payload.bin) on both and compares everything the
// serial port shows, up to the poweroff the payload requests through SBI.
func TestOpenSBIPayloadMatchesQEMU(t *testing.T) {
	if _, err := loadFirmware("default"); err != nil {
		t.Fatalf("%v: install it with scripts/setup.sh (Debian package qemu-system-data, with qemu-system-misc)", err)
	}
	payload := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(payload, sbiPayload("hello from S-mode via SBI\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-M", "virt", "-nographic", "-bios", "default", "-kernel", payload}
	q, err := vmrun.Run(vmrun.QEMU(t), append(args, "-cpu", vmrun.QEMUCPU), 30*time.Second)
	if err != nil || q.TimedOut || q.ExitCode != 0 {
		t.Fatalf("qemu: %v timed out %v exit %d\n%s", err, q.TimedOut, q.ExitCode, q.Output)
	}
	out, errb, done := start(args...)
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("snapvm exit %d\n%s\n%s", rc, out.String(), errb.String())
	}
	clean := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "Boot HART MHPM Count") { // counters not modelled
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if got, want := clean(out.String()), clean(string(q.Output)); got != want {
		t.Fatalf("serial output differs\nqemu:\n%s\nsnapvm:\n%s", want, got)
	}
	if !strings.Contains(out.String(), "hello from S-mode via SBI") {
		t.Fatalf("payload did not run:\n%s", out.String())
	}
}
