package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

var genOK = regexp.MustCompile(`diskcheck gen (\d+) ok`)

// lastGen is the last verified generation in the output, or -1.
func lastGen(out string) int {
	m := genOK.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func waitJob(t *testing.T, sock, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := qmpCommand(t, sock, `{"execute":"query-jobs"}`)
		for _, j := range r["return"].([]any) {
			job := j.(map[string]any)
			if job["id"] == id && job["status"] == "concluded" {
				if e, ok := job["error"]; ok {
					t.Fatalf("job %s: %v", id, e)
				}
				qmpCommand(t, sock, `{"execute":"job-dismiss","arguments":{"id":"`+id+`"}}`)
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not conclude", id)
}

// TestSnapshotWithDiskIO saves an internal snapshot while the guest keeps
// three virtio-blk requests in flight, lets it run on, loads the snapshot
// and checks that the guest goes on verifying its disk without a mismatch:
// RAM, the virtqueue state and the disk went back to the same instant.
func TestSnapshotWithDiskIO(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "d.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sock := filepath.Join(dir, "qmp.sock")
	out, errb, done := start(vmrun.BootArgs(guestPath(t, "diskcheck"), "-m", "64M",
		"-blockdev", "driver=qcow2,node-name=d0,file.driver=file,file.filename="+img,
		"-device", "virtio-blk-device,drive=d0",
		"-qmp", "unix:"+sock+",server=on,wait=off")...)
	waitGen := func(min int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for lastGen(out.String()) < min {
			if strings.Contains(out.String(), "MISMATCH") || strings.Contains(out.String(), "FAILED") || time.Now().After(deadline) {
				t.Fatalf("guest output:\n%s\nstderr:\n%s", out.String(), errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitGen(1)
	before := lastGen(out.String())
	qmpCommand(t, sock, `{"execute":"snapshot-save","arguments":{"job-id":"s","tag":"t1","vmstate":"d0","devices":["d0"]}}`)
	waitJob(t, sock, "s")
	saved := lastGen(out.String())
	waitGen(saved + 2)
	qmpCommand(t, sock, `{"execute":"snapshot-load","arguments":{"job-id":"l","tag":"t1","vmstate":"d0","devices":["d0"]}}`)
	waitJob(t, sock, "l")
	mark := len(out.String())
	// After the load the guest repeats generations from the saved point on.
	deadline := time.Now().Add(90 * time.Second)
	for lastGen(out.String()[mark:]) < saved+2 {
		if strings.Contains(out.String()[mark:], "MISMATCH") || strings.Contains(out.String()[mark:], "FAILED") || time.Now().After(deadline) {
			t.Fatalf("after load:\n%s\nstderr:\n%s", out.String()[mark:], errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The snapshot was taken between "gen <before> ok" and "gen <saved> ok"
	// being seen, so the guest resumes with a generation in that window.
	first := genOK.FindStringSubmatch(out.String()[mark:])
	if n, _ := strconv.Atoi(first[1]); n < before+1 || n > saved+1 {
		t.Errorf("first generation after the load is %d, want %d..%d", n, before+1, saved+1)
	}
	qmpCommand(t, sock, `{"execute":"quit"}`)
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command(qemuImg, "check", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
}
