package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/snapvm/snapvm/qcow2"
)

// TestEndToEnd builds snapvm and snapvm-qmp, boots the ticker guest with a qcow2 disk and
// two -qmp sockets, and drives it the way a user does: one-shot commands, a snapshot job
// followed with --wait, a failing job, events seen by a second client (go-qemu's
// SocketMonitor), and quit from the interactive shell.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir, "github.com/snapvm/snapvm/cmd/snapvm", "github.com/snapvm/snapvm/cmd/snapvm-qmp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "disk.qcow2")
	if err := qcow2.Create(disk, qcow2.CreateOptions{Size: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	sock1, sock2 := filepath.Join(dir, "a.qmp"), filepath.Join(dir, "b.qmp")
	guest, err := filepath.Abs("../../guests/build/ticker.elf")
	if err != nil {
		t.Fatal(err)
	}
	vm := exec.Command(filepath.Join(dir, "snapvm"), "-M", "virt", "-bios", "none", "-nographic", "-m", "64M",
		"-kernel", guest,
		"-blockdev", "driver=qcow2,node-name=disk0,file.driver=file,file.filename="+disk,
		"-device", "virtio-blk-device,drive=disk0",
		"-qmp", "unix:"+sock1+",server=on,wait=off",
		"-qmp", "unix:"+sock2+",server=on,wait=off")
	var vmOut bytes.Buffer
	vm.Stdout, vm.Stderr = &vmOut, &vmOut
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	var vmErr error
	exited := make(chan struct{})
	go func() { vmErr = vm.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			vm.Process.Kill()
			<-exited
		}
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock2); err == nil {
			break
		}
		if i > 500 {
			t.Fatalf("no QMP socket; snapvm said:\n%s", vmOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	qmpTool := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "snapvm-qmp"), args...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}

	// A second client watches events on the other socket.
	mon, err := goqmp.NewSocketMonitor("unix", sock2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatal(err)
	}
	defer mon.Disconnect()
	events, _ := mon.Events(context.Background())
	seen := make(chan string, 100)
	go func() {
		for ev := range events {
			seen <- ev.Event
		}
	}()

	if code, out, errs := qmpTool("", sock1, "query-status"); code != 0 || !strings.Contains(out, `"status": "running"`) {
		t.Fatalf("query-status: %d %s %s", code, out, errs)
	}
	code, out, errs := qmpTool("", "--wait", sock1, "snapshot-save", "job-id=s1", "tag=t1", "vmstate=disk0", "devices=disk0")
	if code != 0 || out != "job s1 completed\n" {
		t.Fatalf("snapshot-save --wait: %d %q %q", code, out, errs)
	}
	if code, out, _ := qmpTool("", "unix:"+sock2, "human-monitor-command", "command-line=info snapshots"); code != 0 || !strings.Contains(out, " t1 ") {
		t.Fatalf("info snapshots: %d %q", code, out)
	}
	code, _, errs = qmpTool("", "--wait", sock1, "snapshot-load", "job-id=l1", "tag=nosuch", "vmstate=disk0", "devices=disk0")
	if code != 1 || !strings.Contains(errs, "job l1 failed: Snapshot 'nosuch' does not exist in one or more devices") {
		t.Fatalf("failing load: %d %q", code, errs)
	}
	if code, out, _ := qmpTool("", sock1, "query-jobs"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("jobs not dismissed: %q", out)
	}
	if code, _, _ := qmpTool("", sock1, "stop"); code != 0 {
		t.Fatal("stop failed")
	}
	waitEvent(t, seen, "STOP")
	code, out, _ = qmpTool("human-monitor-command command-line=\"info status\"\nquit\n", sock1)
	if code != 0 || !strings.Contains(out, "VM status: paused") || !strings.Contains(out, `"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}`) {
		t.Fatalf("interactive: %d %q", code, out)
	}
	waitEvent(t, seen, "SHUTDOWN")
	select {
	case <-exited:
		if vmErr != nil {
			t.Fatalf("snapvm exit: %v\n%s", vmErr, vmOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("snapvm still running after quit")
	}
}

func waitEvent(t *testing.T, seen <-chan string, name string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-seen:
			if ev == name {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event on the second client", name)
		}
	}
}
