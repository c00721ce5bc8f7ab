package qcow2

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const installHint = "install it with scripts/setup.sh (Debian package qemu-utils / qemu-system-misc)"

// tool returns the path of a QEMU tool or fails the test with an install hint.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %s", name, installHint)
	}
	return p
}

// run runs a command and returns its stdout; it fails the test on a non-zero exit unless
// allowed lists the exit code.
func run(t testing.TB, allowed []int, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	if code != 0 {
		ok := false
		for _, a := range allowed {
			ok = ok || a == code
		}
		if !ok {
			t.Fatalf("%s %s: exit %d\n%s%s", name, strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
	return out.String() + errb.String(), code
}

type qemuCheck struct {
	CheckErrors        int   `json:"check-errors"`
	Corruptions        int   `json:"corruptions"`
	Leaks              int   `json:"leaks"`
	ImageEndOffset     int64 `json:"image-end-offset"`
	TotalClusters      int64 `json:"total-clusters"`
	AllocatedClusters  int64 `json:"allocated-clusters"`
	FragmentedClusters int64 `json:"fragmented-clusters"`
	CompressedClusters int64 `json:"compressed-clusters"`
}

// qemuImgCheck runs qemu-img check and fails on corruption (and on leaks unless allowLeaks).
func qemuImgCheck(t testing.TB, path string, allowLeaks bool) qemuCheck {
	t.Helper()
	out, _ := run(t, []int{2, 3}, "qemu-img", "check", "--output=json", path)
	var c qemuCheck
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &c); err != nil {
		t.Fatalf("qemu-img check output: %v\n%s", err, out)
	}
	if c.CheckErrors != 0 || c.Corruptions != 0 || (!allowLeaks && c.Leaks != 0) {
		human, _ := run(t, []int{1, 2, 3}, "qemu-img", "check", path)
		t.Fatalf("qemu-img check %s: %+v\n%s", path, c, human)
	}
	return c
}

func tempPath(t testing.TB, name string) string {
	return filepath.Join(t.TempDir(), name)
}

func mustOpen(t testing.TB, path string, o OpenOptions) *Image {
	t.Helper()
	img, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	return img
}

func readFileT(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
