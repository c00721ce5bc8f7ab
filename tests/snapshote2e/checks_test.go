package snapshote2e

import (
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

// boot starts a guest with a fresh 16 MiB qcow2 disk as node d0 (attached
// as virtio-blk) plus extra options.
type boot func(t *testing.T, guest string, extra ...string) *vm

func bootWith(name, bin string, args func(kernel string, extra ...string) []string) boot {
	return func(t *testing.T, guest string, extra ...string) *vm {
		t.Helper()
		kernel, err := guests.Path(guest)
		if err != nil {
			t.Fatal(err)
		}
		img := newDisk(t)
		extra = append(extra,
			"-blockdev", "driver=qcow2,node-name=d0,file.driver=file,file.filename="+img,
			"-device", "virtio-blk-device,drive=d0")
		return startVM(t, name, bin, args(kernel, extra...))
	}
}

func qemuBoot(t *testing.T) boot { return bootWith("qemu", vmrun.QEMU(t), vmrun.QEMUArgs) }

func newDisk(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return img
}

var tickRE = regexp.MustCompile(`^tick (\d+)$`)

func tickOf(l string) int {
	m := tickRE.FindStringSubmatch(l)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkTickerSnapshot: stop, note the last tick N, save, run on, load; the
// restored guest's next tick is N+1.
func checkTickerSnapshot(t *testing.T, boot boot, slow time.Duration) {
	v := boot(t, "ticker")
	v.waitLine(t, 0, slow, "tick 3", func(l string) bool { return l == "tick 3" })
	v.run(t, "stop", nil)
	time.Sleep(200 * time.Millisecond) // let the serial output drain
	lines := v.lines(0)
	n := tickOf(lines[len(lines)-1])
	if n < 3 {
		t.Fatalf("last line before the snapshot: %q", lines[len(lines)-1])
	}
	v.job(t, "snapshot-save", "s1")
	v.run(t, "cont", nil)
	v.waitLine(t, 0, slow, "a few more ticks", func(l string) bool { return tickOf(l) >= n+3 })
	mark := len(v.out.String())
	v.job(t, "snapshot-load", "s1")
	v.waitLine(t, mark, slow, "a tick after the load", func(l string) bool { return tickOf(l) == n+2 })
	// After the mark: ticks of the old timeline that raced the load, then
	// the restored guest's n+1, n+2.
	after := v.lines(mark)
	i := 0
	for i < len(after) && tickOf(after[i]) > n+2 {
		i++
	}
	if i+1 >= len(after) || after[i] != "tick "+strconv.Itoa(n+1) || after[i+1] != "tick "+strconv.Itoa(n+2) {
		t.Fatalf("saved after tick %d; output after the load:\n%s", n, strings.Join(after, "\n"))
	}
}

// checkDiskcheckSnapshot saves while diskcheck has I/O in flight, lets it
// overwrite the disk, loads: the restored guest's expectations and the
// restored disk must agree.
func checkDiskcheckSnapshot(t *testing.T, boot boot, slow time.Duration) {
	v := boot(t, "diskcheck")
	v.waitLine(t, 0, slow, "gen 2", func(l string) bool { return l == "diskcheck gen 2 ok" })
	v.job(t, "snapshot-save", "s1")
	mark := len(v.out.String())
	v.waitLine(t, mark, slow, "two more generations", func(string) bool { return len(v.lines(mark)) >= 2 })
	checkRewound(t, v, diskGenRE, slow)
	for _, l := range v.lines(0) {
		if strings.Contains(l, "MISMATCH") || strings.Contains(l, "FAILED") {
			t.Fatalf("%s:\n%s", l, v.out)
		}
	}
	t.Logf("%s output:\n%s", v.name, v.out)
}

var (
	diskGenRE   = regexp.MustCompile(`^diskcheck gen (\d+) ok$`)
	heartbeatRE = regexp.MustCompile(`^memfill: heartbeat (\d+), 0 mismatches$`)
)

// checkRewound loads snapshot s1 and waits until the guest prints a
// progress counter (re's first group) lower than the last one before the
// load, which shows that the restored guest runs from the saved point.
func checkRewound(t *testing.T, v *vm, re *regexp.Regexp, slow time.Duration) {
	t.Helper()
	last := -1
	for _, l := range v.lines(0) {
		if m := re.FindStringSubmatch(l); m != nil {
			last, _ = strconv.Atoi(m[1])
		}
	}
	mark := len(v.out.String())
	v.job(t, "snapshot-load", "s1")
	v.waitLine(t, mark, slow, "progress from before the load", func(l string) bool {
		m := re.FindStringSubmatch(l)
		if m == nil {
			return false
		}
		n, _ := strconv.Atoi(m[1])
		return n < last
	})
	v.waitLine(t, mark, slow, "more progress", func(string) bool { return len(v.lines(mark)) >= 3 })
}

// checkMemfillSnapshot: memfill verifies random pages against versions it
// keeps in RAM, so a restore that loses or mixes pages shows as MISMATCH.
func checkMemfillSnapshot(t *testing.T, boot boot, slow time.Duration) {
	v := boot(t, "memfill", "-m", "64")
	v.waitLine(t, 0, slow, "heartbeat 1", func(l string) bool { return strings.HasPrefix(l, "memfill: heartbeat 1,") })
	v.job(t, "snapshot-save", "s1")
	mark := len(v.out.String())
	v.waitLine(t, mark, slow, "two heartbeats", func(string) bool { return len(v.lines(mark)) >= 2 })
	checkRewound(t, v, heartbeatRE, slow)
	for i, l := range v.lines(0) {
		if i == 0 && l == "memfill: filled 63 MiB" || heartbeatRE.MatchString(l) {
			continue
		}
		t.Fatalf("%q in:\n%s", l, v.out)
	}
}

func TestTickerSnapshotOnQEMU(t *testing.T) { checkTickerSnapshot(t, qemuBoot(t), 20*time.Second) }
func TestDiskcheckSnapshotOnQEMU(t *testing.T) {
	checkDiskcheckSnapshot(t, qemuBoot(t), 20*time.Second)
}
func TestMemfillSnapshotOnQEMU(t *testing.T) { checkMemfillSnapshot(t, qemuBoot(t), 20*time.Second) }
