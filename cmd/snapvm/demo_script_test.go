package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// The no-options demo saves a snapshot of the ticker guest, lets it run on,
// then loads it. The guest runs on while the save finishes, so its pause
// came at or before the first tick printed after the "saved" line: the
// first tick after the load must be no later than that one, and earlier
// than the last tick before the load (the guest went back in time).
func TestDemoSavesAndLoads(t *testing.T) {
	bin := vmrun.Snapvm(t)
	cmd := exec.Command(bin)
	var out vmrun.OutputBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(90 * time.Second)
	tickAfter := regexp.MustCompile(`(?s)snapvm: demo: (saved|loaded)[^\n]*\ntick (\d+)\n`)
	tickBeforeLoad := regexp.MustCompile(`tick (\d+)\nsnapvm: demo: loaded`)
	for time.Now().Before(deadline) {
		m := tickAfter.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 2 {
			before := tickBeforeLoad.FindStringSubmatch(out.String())
			afterSave, afterLoad := atoi(m[0][2]), atoi(m[1][2])
			if m[0][1] != "saved" || m[1][1] != "loaded" || before == nil || afterLoad > afterSave || afterLoad >= atoi(before[1]) || afterLoad < 2 {
				t.Fatalf("after the save the guest printed tick %d, after the load tick %d:\n%s", afterSave, afterLoad, out.String())
			}
			return
		}
		if strings.Contains(out.String(), "failed") {
			t.Fatalf("demo failed:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the demo did not save and load in time:\n%s", out.String())
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
