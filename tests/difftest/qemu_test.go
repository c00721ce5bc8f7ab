package difftest

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/tests/vmrun"
)

// helloWant is hello's whole output on the default 128 MiB board with an
// RV64IMAC hart.
const helloWant = `Hello from snapvm guest
mhartid 0
misa 0x8000000000141105
mvendorid 0x0
fdt at 0x87e00000
ram 128 MiB
bootargs ""
bye
`

// cpubenchRounds keeps the comparison short; the checksum below is what
// QEMU computes for it.
const (
	cpubenchRounds   = 3
	cpubenchChecksum = "cpubench: checksum 0x51135631f87499e6\n"
)

func guestPath(t *testing.T, name string) string {
	t.Helper()
	p, err := guests.Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runQEMU(t *testing.T, timeout time.Duration, kernel string, extra ...string) vmrun.Result {
	t.Helper()
	r, err := vmrun.Run(vmrun.QEMU(t), vmrun.QEMUArgs(kernel, extra...), timeout)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// finished checks that a guest which powers off did so through sifive_test
// (QEMU exits 0) before the timeout.
func finished(t *testing.T, who string, r vmrun.Result) {
	t.Helper()
	if r.TimedOut || r.ExitCode != 0 {
		t.Fatalf("%s: timed out %v, exit code %d\nstdout:\n%s\nstderr:\n%s", who, r.TimedOut, r.ExitCode, r.Output, r.Stderr)
	}
}

func TestHelloOnQEMU(t *testing.T) {
	r := runQEMU(t, 30*time.Second, guestPath(t, "hello"))
	finished(t, "qemu", r)
	if got := string(r.Output); got != helloWant {
		t.Errorf("hello printed\n%s\nwant\n%s", got, helloWant)
	}
	r = runQEMU(t, 30*time.Second, guestPath(t, "hello"), "-m", "256", "-append", "a=1 b")
	finished(t, "qemu", r)
	for _, want := range []string{"ram 256 MiB\n", "fdt at 0x8fe00000\n", "bootargs \"a=1 b\"\n"} {
		if !strings.Contains(string(r.Output), want) {
			t.Errorf("hello with -m 256 -append: no %q in\n%s", want, r.Output)
		}
	}
}

func TestCpubenchOnQEMU(t *testing.T) {
	r := runQEMU(t, 60*time.Second, guestPath(t, "cpubench"), "-append", "rounds="+strconv.Itoa(cpubenchRounds))
	finished(t, "qemu", r)
	out := string(r.Output)
	for _, want := range []string{
		"cpubench: 3 rounds\n",
		"cpubench: round 2 crc 0x",
		cpubenchChecksum,
		"cpubench: instret ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	// Deterministic: a second run prints the same checksum lines.
	again := runQEMU(t, 60*time.Second, guestPath(t, "cpubench"), "-append", "rounds="+strconv.Itoa(cpubenchRounds))
	if a, b := comparable(out), comparable(string(again.Output)); a != b {
		t.Errorf("two QEMU runs differ:\n%s\n---\n%s", a, b)
	}
}

// run boots a guest that never finishes on one of the machines and stops
// it once it has printed n lines (or after timeout).
type run func(t *testing.T, timeout time.Duration, n int, kernel string, extra ...string) vmrun.Result

func runQEMUUntil(t *testing.T, timeout time.Duration, n int, kernel string, extra ...string) vmrun.Result {
	t.Helper()
	r, err := vmrun.RunUntil(vmrun.QEMU(t), vmrun.QEMUArgs(kernel, extra...), timeout, vmrun.Lines(n))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTickerOnQEMU(t *testing.T)    { checkTicker(t, runQEMUUntil, time.Minute) }
func TestDiskcheckOnQEMU(t *testing.T) { checkDiskcheck(t, runQEMUUntil, time.Minute) }
func TestMemfillOnQEMU(t *testing.T)   { checkMemfill(t, runQEMUUntil, time.Minute) }
func TestDiskcheckWithoutDiskOnQEMU(t *testing.T) {
	checkDiskcheckWithoutDisk(t, runQEMU)
}

// endless checks that a never-ending guest printed its lines and was
// stopped by the test, not by the timeout or by exiting.
func endless(t *testing.T, name string, r vmrun.Result) []string {
	t.Helper()
	if !r.Stopped {
		t.Fatalf("%s: timed out %v, exit code %d:\n%s%s", name, r.TimedOut, r.ExitCode, r.Output, r.Stderr)
	}
	return completeLines(r.Output)
}

func checkTicker(t *testing.T, run run, d time.Duration) {
	lines := endless(t, "ticker", run(t, d, 5, guestPath(t, "ticker")))
	for i, l := range lines {
		if want := "tick " + strconv.Itoa(i+1); l != want {
			t.Fatalf("line %d is %q, want %q", i, l, want)
		}
	}
}

// diskArgs attaches img as the first virtio-blk device, spelled with
// -blockdev, which QEMU and snapvm both take.
func diskArgs(img string) []string {
	return []string{
		"-blockdev", "driver=qcow2,node-name=d0,file.driver=file,file.filename=" + img,
		"-device", "virtio-blk-device,drive=d0",
	}
}

func newDisk(t *testing.T, size string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", img, size).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return img
}

func checkDiskcheck(t *testing.T, run run, d time.Duration) {
	img := newDisk(t, "16M")
	r := run(t, d, 3, guestPath(t, "diskcheck"), diskArgs(img)...)
	lines := endless(t, "diskcheck", r)
	if lines[0] != "diskcheck: virtio-blk in slot 7, 32768 sectors, exercising 4096" {
		t.Fatalf("unexpected output:\n%s", r.Output)
	}
	for i, l := range lines[1:] {
		if want := "diskcheck gen " + strconv.Itoa(i+1) + " ok"; l != want {
			t.Fatalf("line %q, want %q", l, want)
		}
	}
	// The VM was killed mid-run: leaked clusters (exit status 3) are
	// tolerable, corruption is not.
	out, err := exec.Command("qemu-img", "check", img).CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !(errors.As(err, &exitErr) && exitErr.ExitCode() == 3) {
		t.Errorf("qemu-img check after diskcheck: %v\n%s", err, out)
	}
}

func checkDiskcheckWithoutDisk(t *testing.T, run func(*testing.T, time.Duration, string, ...string) vmrun.Result) {
	r := run(t, 30*time.Second, guestPath(t, "diskcheck"))
	if r.TimedOut || !strings.Contains(string(r.Output), "diskcheck: no virtio-blk device") || r.ExitCode != 4 {
		t.Fatalf("timed out %v, exit %d:\n%s", r.TimedOut, r.ExitCode, r.Output)
	}
}

func checkMemfill(t *testing.T, run run, d time.Duration) {
	r := run(t, d, 3, guestPath(t, "memfill"), "-m", "64")
	lines := endless(t, "memfill", r)
	if lines[0] != "memfill: filled 63 MiB" {
		t.Fatalf("unexpected output:\n%s", r.Output)
	}
	heartbeat := regexp.MustCompile(`^memfill: heartbeat (\d+), 0 mismatches$`)
	for i, l := range lines[1:] {
		m := heartbeat.FindStringSubmatch(l)
		if m == nil || m[1] != strconv.Itoa(i+1) {
			t.Fatalf("line %q", l)
		}
	}
}

// completeLines drops a final line cut off by the kill.
func completeLines(out []byte) []string {
	s := string(out)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

// comparable drops the lines that legitimately differ between runs and
// machines: QEMU's minstret follows host time unless -icount is given.
func comparable(out string) string {
	var keep []string
	for _, l := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(l, "cpubench: instret ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}
