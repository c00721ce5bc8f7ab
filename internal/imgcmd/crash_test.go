package imgcmd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashConsistency kills snapvm-img with SIGKILL part-way through
// snapshot -c, snapshot -d, convert and a heavy write workload, and after
// every kill has qemu-img check the images: no corruption (leaks are
// allowed), every snapshot whose command completed still listed, and the
// content of a reference snapshot unchanged.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a process many times; takes ~40 s")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "snapvm-img")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/snapvm/snapvm/cmd/snapvm-img").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", "img.qcow2", "32M")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0x11 0 4M", "-c", "write -P 0x12 16M 1M", "img.qcow2")
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "raw", "ref.raw", "32M")
	mustTool(t, dir, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4M", "-c", "write -P 0x12 16M 1M", "ref.raw")
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", "target.qcow2", "32M")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("snapvm-img %v: %v\n%s", args, err, out)
		}
	}
	run("snapshot", "-c", "keep", "img.qcow2")
	completed := []string{"keep"}

	// A few temporary snapshots so deletes have something to work on.
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("pre%d", i)
		run("snapshot", "-c", name, "img.qcow2")
		completed = append(completed, name)
	}

	scenario := func(i int) (string, []string) {
		switch i % 4 {
		case 0:
			return "snapshot -c", []string{"snapshot", "-c", fmt.Sprintf("t%d", i), "img.qcow2"}
		case 1:
			// Delete the newest temporary snapshot still listed.
			if n := len(completed); n > 1 {
				return "snapshot -d", []string{"snapshot", "-d", completed[n-1], "img.qcow2"}
			}
			return "snapshot -c", []string{"snapshot", "-c", fmt.Sprintf("t%d", i), "img.qcow2"}
		case 2:
			return "convert", []string{"convert", "-n", "-O", "qcow2", "img.qcow2", "target.qcow2"}
		default:
			// Heavy writes to the active layer, allocating and copying
			// clusters the snapshots share.
			return "bench -w", []string{"bench", "-w", "-c", "3000", "-d", "16", "-s", "4k", "-S", "68k", "-o", "2M", fmt.Sprintf("--pattern=%d", 0x40+i%64), "img.qcow2"}
		}
	}

	// How long each kind takes when left alone decides where kills land.
	durations := map[string]time.Duration{}
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(35 * time.Second)
	kills, finished := 0, 0
	for i := 0; time.Now().Before(deadline) && i < 200; i++ {
		kind, args := scenario(i)
		d, measured := durations[kind]
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var delay time.Duration
		if measured {
			delay = time.Duration(rng.Int64N(int64(d)*11/10 + 1))
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
		}
		err := cmd.Wait()
		if !measured {
			if err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			durations[kind] = time.Since(start)
		}
		ok := err == nil
		if ok {
			finished++
		} else {
			kills++
		}
		if ok && kind == "snapshot -c" {
			completed = append(completed, args[2])
		}
		if ok && kind == "snapshot -d" {
			completed = slices.DeleteFunc(completed, func(s string) bool { return s == args[2] })
		}

		// The images must be free of corruption; leaks are tolerated.
		for _, img := range []string{"img.qcow2", "target.qcow2"} {
			out, errs, code := tool(t, dir, "qemu-img", "check", img)
			if code != 0 && code != 3 {
				t.Fatalf("after %v killed at %v: qemu-img check %s: exit %d\n%s%s", args, delay, img, code, out, errs)
			}
		}
		list := mustTool(t, dir, "qemu-img", "snapshot", "-l", "img.qcow2")
		listed := func(name string) bool { return strings.Contains(list, " "+name+" ") }
		// A killed create or delete may have taken effect before the kill:
		// either outcome is fine, but it must then hold from here on.
		if !ok && kind == "snapshot -c" && listed(args[2]) {
			completed = append(completed, args[2])
		}
		if !ok && kind == "snapshot -d" && !listed(args[2]) {
			completed = slices.DeleteFunc(completed, func(s string) bool { return s == args[2] })
		}
		for _, name := range completed {
			if !listed(name) {
				t.Fatalf("after %v killed at %v: completed snapshot %s missing:\n%s", args, delay, name, list)
			}
		}
		if i%8 == 7 {
			checkKeep(t, dir)
		}
	}
	checkKeep(t, dir)
	t.Logf("%d runs killed part-way, %d finished before the kill", kills, finished)
	if kills == 0 {
		t.Error("no run was killed part-way")
	}
}

// checkKeep verifies the reference snapshot still holds its data.
func checkKeep(t *testing.T, dir string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "keep.raw"))
	mustTool(t, dir, "qemu-img", "convert", "-l", "snapshot.name=keep", "-O", "raw", "img.qcow2", "keep.raw")
	if out, errs, code := tool(t, dir, "qemu-img", "compare", "-f", "raw", "-F", "raw", "keep.raw", "ref.raw"); code != 0 {
		t.Fatalf("snapshot keep changed: %s%s", out, errs)
	}
}
