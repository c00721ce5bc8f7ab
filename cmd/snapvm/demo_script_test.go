package main

import (
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// The no-options demo saves a snapshot of the ticker guest, lets it run on,
// then loads it: the first tick after the load must be the first tick after
// the save.
func TestDemoSavesAndLoads(t *testing.T) {
	bin := vmrun.Snapvm(t)
	cmd := exec.Command(bin)
	var out syncBuffer
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
	for time.Now().Before(deadline) {
		m := tickAfter.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 2 {
			if m[0][1] != "saved" || m[1][1] != "loaded" || m[0][2] != m[1][2] {
				t.Fatalf("after the save the guest printed tick %s, after the load tick %s:\n%s", m[0][2], m[1][2], out.String())
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
