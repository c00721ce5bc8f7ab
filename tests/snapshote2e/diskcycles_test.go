package snapshote2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/guests"
)

// lastGen is the highest "diskcheck gen N ok" in lines, or 0.
func lastGen(lines []string) int {
	g := 0
	for _, l := range lines {
		if m := diskGenRE.FindStringSubmatch(l); m != nil {
			g, _ = strconv.Atoi(m[1])
		}
	}
	return g
}

// firstGen waits for the first generation line after mark and returns
// its number.
func firstGen(t *testing.T, v *qvm, mark int, what string) int {
	t.Helper()
	v.waitLine(t, mark, time.Minute, what, func(l string) bool { return diskGenRE.MatchString(l) })
	for _, l := range v.lines(mark) {
		if m := diskGenRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	panic("unreachable")
}

// TestDiskcheckCyclesOnSnapvm saves diskcheck twice (once running with
// requests in flight, once paused), loads the two snapshots alternately
// several times and checks that each load restarts the guest at its own
// generation and that the guest's verify passes never find a mismatch.
// At the end the disk as snapshot-load left it must equal the disk that
// qemu-img snapshot -a gives for the same snapshot.
func TestDiskcheckCyclesOnSnapvm(t *testing.T) {
	tg := snapvmTarget(t)
	dir := t.TempDir()
	img := newDiskIn(t, dir, "d0.qcow2")
	kernel, err := guests.Path("diskcheck")
	if err != nil {
		t.Fatal(err)
	}
	v := launch(t, tg.name, tg.bin, tg.args(kernel, append([]string{"-m", "64M"}, qcow2Disk("d0", img)...)...))
	q := v.q
	v.waitLine(t, 0, time.Minute, "gen 2", func(l string) bool { return l == "diskcheck gen 2 ok" })

	// s1: saved while the guest runs. Its last finished generation lies
	// between the last one seen before the save and the first one seen
	// after it concluded.
	lo := lastGen(v.lines(0))
	q.okJob(t, "snapshot-save", "save1", "s1", "d0", "d0")
	hi := firstGen(t, v, len(v.out.String()), "a generation after saving s1")

	// s2: saved paused, so its generation is known exactly.
	from := len(v.out.String())
	v.waitLine(t, from, time.Minute, "a generation", func(l string) bool { return diskGenRE.MatchString(l) })
	mark, g2 := pauseAndLastGen(t, v)
	q.okJob(t, "snapshot-save", "save2", "s2", "d0", "d0")
	q.run(t, "cont", nil)
	if g := firstGen(t, v, mark, "a generation after saving s2"); g != g2+1 {
		t.Fatalf("after saving s2 at generation %d the guest went on with %d", g2, g)
	}

	// Loads into the paused guest: after cont, the first generation it
	// finishes is the saved one + 1, the same every time.
	s1Next := 0
	for i, tag := range []string{"s1", "s2", "s1"} {
		from := len(v.out.String())
		v.waitLine(t, from, time.Minute, "a generation", func(l string) bool { return diskGenRE.MatchString(l) })
		mark, _ := pauseAndLastGen(t, v)
		q.okJob(t, "snapshot-load", fmt.Sprintf("load%d", i), tag, "d0", "d0")
		q.run(t, "cont", nil)
		g := firstGen(t, v, mark, "a generation after loading "+tag)
		switch {
		case tag == "s2" && g != g2+1:
			t.Fatalf("load s2 (saved at generation %d): the guest went on with %d", g2, g)
		case tag == "s1" && s1Next == 0 && (g < lo+1 || g > hi+1):
			t.Fatalf("load s1 (saved between generations %d and %d): the guest went on with %d", lo, hi, g)
		case tag == "s1" && s1Next != 0 && g != s1Next:
			t.Fatalf("load s1: the guest went on with generation %d, after the first load with %d", g, s1Next)
		case tag == "s1":
			s1Next = g
		}
	}
	// A load while the guest runs with requests in flight.
	q.okJob(t, "snapshot-load", "load-running", "s1", "d0", "d0")
	from = len(v.out.String())
	v.waitLine(t, from, time.Minute, "two more generations", func(string) bool { return lastGen(v.lines(from)) > 0 && len(v.lines(from)) >= 2 })

	// The final state: s2 loaded into the paused guest, which never runs
	// again, so the image holds exactly s2's disk.
	pauseAndLastGen(t, v)
	q.okJob(t, "snapshot-load", "final", "s2", "d0", "d0")
	checkSnapshotList(t, img, map[string]bool{"s1": true, "s2": true})
	v.quit(t)
	for _, l := range v.lines(0) {
		if strings.Contains(l, "MISMATCH") || strings.Contains(l, "FAILED") || strings.Contains(l, "failed") {
			t.Fatalf("%s in:\n%s", l, v.out)
		}
	}
	if out := qemuImg(t, "check", img); !strings.Contains(out, "No errors were found") {
		t.Errorf("qemu-img check:\n%s", out)
	}
	loaded := copyFile(t, img, filepath.Join(dir, "loaded.qcow2"))
	viaS2 := copyFile(t, img, filepath.Join(dir, "s2.qcow2"))
	viaS1 := copyFile(t, img, filepath.Join(dir, "s1.qcow2"))
	qemuImg(t, "snapshot", "-a", "s2", viaS2)
	qemuImg(t, "snapshot", "-a", "s1", viaS1)
	if same, out := imagesEqual(t, loaded, viaS2); !same {
		t.Errorf("snapshot-load s2 and qemu-img snapshot -a s2 give different disks:\n%s", out)
	}
	// The comparison can tell the snapshots apart.
	if same, _ := imagesEqual(t, loaded, viaS1); same {
		t.Errorf("s1 and s2 hold the same disk; the comparison proves nothing")
	}
	t.Logf("s1 between generations %d and %d, s2 at %d; output:\n%s", lo, hi, g2, v.out)
}

// pauseAndLastGen stops the VM, waits until its output has arrived and
// returns the output offset and the last finished generation.
func pauseAndLastGen(t *testing.T, v *qvm) (mark, gen int) {
	t.Helper()
	from := v.q.mark()
	v.q.run(t, "stop", nil)
	v.q.waitEvent(t, from, "STOP", func(e qevent) bool { return e.Name == "STOP" })
	v.waitQuiet(t, 250*time.Millisecond)
	return len(v.out.String()), lastGen(v.lines(0))
}

func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// imagesEqual runs qemu-img compare (exit 0: same guest-visible content,
// 1: different).
func imagesEqual(t *testing.T, a, b string) (bool, string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", a, b).CombinedOutput()
	if err == nil {
		return true, string(out)
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false, string(out)
	}
	t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	return false, ""
}
