package difftest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// diffRun boots kernel on QEMU and on snapvm with the same options and
// compares the serial output of the two (minus run-dependent lines).
func diffRun(t *testing.T, name string, timeout time.Duration, extra ...string) {
	t.Helper()
	diffRunWith(t, name, timeout, nil, comparable, extra...)
}

// diffRunWith also passes qemuOnly to QEMU and compares filter(output).
func diffRunWith(t *testing.T, name string, timeout time.Duration, qemuOnly []string, filter func(string) string, extra ...string) {
	t.Helper()
	kernel := guestPath(t, name)
	q := runQEMU(t, timeout, kernel, append(append([]string(nil), extra...), qemuOnly...)...)
	finished(t, "qemu", q)
	s := runSnapvm(t, timeout, kernel, extra...)
	finished(t, "snapvm", s)
	want, got := filter(string(q.Output)), filter(string(s.Output))
	if want == got {
		return
	}
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("%s: output differs at line %d:\n qemu:   %q\n snapvm: %q\nfull snapvm output:\n%s\nstderr:\n%s",
				name, i+1, w, g, s.Output, s.Stderr)
		}
	}
}

func runSnapvm(t *testing.T, timeout time.Duration, kernel string, extra ...string) vmrun.Result {
	t.Helper()
	r, err := vmrun.Run(vmrun.Snapvm(t), vmrun.BootArgs(kernel, extra...), timeout)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runSnapvmUntil(t *testing.T, timeout time.Duration, n int, kernel string, extra ...string) vmrun.Result {
	t.Helper()
	r, err := vmrun.RunUntil(vmrun.Snapvm(t), vmrun.BootArgs(kernel, extra...), timeout, vmrun.Lines(n))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The endless guests have no fixed output to compare; they get the same
// checks as on QEMU, with more time for an interpreter.
func TestTickerOnSnapvm(t *testing.T)    { checkTicker(t, runSnapvmUntil, 2*time.Minute) }
func TestDiskcheckOnSnapvm(t *testing.T) { checkDiskcheck(t, runSnapvmUntil, 2*time.Minute) }
func TestMemfillOnSnapvm(t *testing.T)   { checkMemfill(t, runSnapvmUntil, 2*time.Minute) }
func TestDiskcheckWithoutDiskOnSnapvm(t *testing.T) {
	checkDiskcheckWithoutDisk(t, runSnapvm)
}

func TestHelloMatchesQEMU(t *testing.T) {
	diffRun(t, "hello", 60*time.Second)
	diffRun(t, "hello", 60*time.Second, "-m", "256", "-append", "a=1 b")
}

func TestCpubenchMatchesQEMU(t *testing.T) {
	diffRun(t, "cpubench", 5*time.Minute, "-append", "rounds="+strconv.Itoa(cpubenchRounds))
}

// With -icount shift=0 QEMU's minstret counts retired instructions, as
// snapvm's does, so the instret line must match too.
func TestCpubenchInstretMatchesQEMUIcount(t *testing.T) {
	diffRunWith(t, "cpubench", 5*time.Minute, []string{"-icount", "shift=0"},
		func(s string) string { return s }, "-append", "rounds="+strconv.Itoa(cpubenchRounds))
}

func TestMain(m *testing.M) {
	code := m.Run()
	vmrun.Cleanup()
	os.Exit(code)
}
