package snapshote2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/snapvm/snapvm/tests/vmrun"
)

// vm is one running VM process with its QMP connection.
type vm struct {
	name string
	cmd  *exec.Cmd
	out  *vmrun.OutputBuffer
	errb *vmrun.OutputBuffer
	mon  *qmp.SocketMonitor
	done chan struct{}
}

// startVM runs bin with args plus a QMP socket and connects to it; the
// process is killed when the test ends.
func startVM(t *testing.T, name, bin string, args []string) *vm {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	args = append(append([]string(nil), args...), "-qmp", "unix:"+sock+",server=on,wait=off")
	v := &vm{name: name, out: &vmrun.OutputBuffer{}, errb: &vmrun.OutputBuffer{}, done: make(chan struct{})}
	v.cmd = exec.Command(bin, args...)
	v.cmd.Stdout = v.out
	v.cmd.Stderr = v.errb
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		if v.mon != nil {
			_ = v.mon.Disconnect()
		}
		_ = v.cmd.Process.Kill()
		<-v.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		mon, err := qmp.NewSocketMonitor("unix", sock, 10*time.Second)
		if err == nil {
			if err = mon.Connect(); err == nil {
				v.mon = mon
				return v
			}
		}
		select {
		case <-v.done:
			t.Fatalf("%s exited before QMP was up:\n%s\n%s", name, v.out, v.errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no QMP connection: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run executes a QMP command and returns its "return" value.
func (v *vm) run(t *testing.T, cmd string, args any) json.RawMessage {
	t.Helper()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := v.mon.Run(raw)
	if err != nil {
		t.Fatalf("%s: %s: %v", v.name, cmd, err)
	}
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		t.Fatalf("%s: %s: reply %s: %v", v.name, cmd, reply, err)
	}
	return r.Return
}

// job starts a snapshot job and waits until it has concluded without error,
// then dismisses it.
func (v *vm) job(t *testing.T, cmd, tag string) {
	t.Helper()
	id := fmt.Sprintf("%s-%s-%d", cmd, tag, time.Now().UnixNano())
	v.run(t, cmd, map[string]any{"job-id": id, "tag": tag, "vmstate": "d0", "devices": []string{"d0"}})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var jobs []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(v.run(t, "query-jobs", nil), &jobs); err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.ID != id || j.Status != "concluded" {
				continue
			}
			if j.Error != "" {
				t.Fatalf("%s: %s %s failed: %s", v.name, cmd, tag, j.Error)
			}
			v.run(t, "job-dismiss", map[string]any{"id": id})
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s %s did not conclude: %+v", v.name, cmd, tag, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lines returns the complete output lines from byte offset from on.
func (v *vm) lines(from int) []string {
	s := v.out.String()
	if from > len(s) {
		from = len(s)
	}
	s = s[from:]
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(s[:i], "\n")
}

// waitLine waits until a complete line after offset from satisfies ok.
func (v *vm) waitLine(t *testing.T, from int, timeout time.Duration, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range v.lines(from) {
			if ok(l) {
				return
			}
		}
		select {
		case <-v.done:
			t.Fatalf("%s exited while waiting for %s:\n%s\n%s", v.name, what, v.out, v.errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v; output:\n%s", v.name, what, timeout, v.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
