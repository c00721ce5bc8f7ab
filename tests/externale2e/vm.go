// Package externale2e runs guests on snapvm (and qemu-system-riscv64) with a
// qcow2 disk and takes external snapshots of the running disk over QMP
// (blockdev-snapshot-sync, transaction), checking from the diskcheck guest's
// serial output that the guest never sees its disk change under it, and
// from qemu-img that the overlay chain left on disk is sound. The VM and QMP
// helpers here are shared by the tests and by the benchmark driver in
// cmd/benchext.
package externale2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// Event is one QMP event with the time it was read.
type Event struct {
	Name string
	At   time.Time
	Data json.RawMessage
}

// QMPError is a QMP error reply.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

// VM is one running VM process with a QMP connection.
type VM struct {
	Name string
	cmd  *exec.Cmd
	out  *vmrun.OutputBuffer
	errb *vmrun.OutputBuffer
	done chan struct{}

	conn    net.Conn
	replies chan []byte

	mu     sync.Mutex
	events []Event
}

// Start runs bin in dir with args plus a QMP unix socket there and
// negotiates capabilities (relative paths in args and commands are
// relative to dir). The caller must call Kill (or Quit) when done.
func Start(name, bin, dir string, args []string) (*VM, error) {
	sock := filepath.Join(dir, name+"-qmp.sock")
	args = append(append([]string(nil), args...), "-qmp", "unix:"+sock+",server=on,wait=off")
	v := &VM{Name: name, out: &vmrun.OutputBuffer{}, errb: &vmrun.OutputBuffer{}, done: make(chan struct{}), replies: make(chan []byte, 1)}
	v.cmd = exec.Command(bin, args...)
	v.cmd.Dir = dir
	v.cmd.Stdout = v.out
	v.cmd.Stderr = v.errb
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			v.conn = c
			break
		}
		select {
		case <-v.done:
			return nil, fmt.Errorf("%s exited before QMP was up:\n%s\n%s", name, v.out.String(), v.errb.String())
		default:
		}
		if time.Now().After(deadline) {
			v.Kill()
			return nil, fmt.Errorf("%s: no QMP socket: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	greeting := make(chan error, 1)
	go v.readLoop(greeting)
	select {
	case err := <-greeting:
		if err != nil {
			v.Kill()
			return nil, err
		}
	case <-time.After(20 * time.Second):
		v.Kill()
		return nil, fmt.Errorf("%s: no QMP greeting", name)
	}
	if _, err := v.Run("qmp_capabilities", nil); err != nil {
		v.Kill()
		return nil, err
	}
	return v, nil
}

// readLoop splits the QMP stream into events (kept) and replies (handed
// to Run, which sends one command at a time).
func (v *VM) readLoop(greeting chan<- error) {
	r := bufio.NewReaderSize(v.conn, 1<<20)
	first := true
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if first {
				greeting <- err
			}
			close(v.replies)
			return
		}
		now := time.Now()
		if first {
			first = false
			greeting <- nil
			continue
		}
		var m struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if json.Unmarshal(line, &m) == nil && m.Event != "" {
			v.mu.Lock()
			v.events = append(v.events, Event{Name: m.Event, At: now, Data: m.Data})
			v.mu.Unlock()
			continue
		}
		v.replies <- line
	}
}

// Run executes one command and returns its "return" value; an error reply
// is a *QMPError.
func (v *VM) Run(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := v.conn.Write(append(raw, '\n')); err != nil {
		return nil, fmt.Errorf("%s: %s: %v", v.Name, cmd, err)
	}
	var reply []byte
	select {
	case r, ok := <-v.replies:
		if !ok {
			return nil, fmt.Errorf("%s: %s: QMP connection closed", v.Name, cmd)
		}
		reply = r
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("%s: %s: no reply", v.Name, cmd)
	}
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *QMPError       `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("%s: %s: reply %s: %v", v.Name, cmd, reply, err)
	}
	if r.Error != nil {
		return nil, r.Error
	}
	return r.Return, nil
}

// Events returns the events read so far.
func (v *VM) Events() []Event {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Event(nil), v.events...)
}

// Output is the guest's serial output so far; Stderr the process's.
func (v *VM) Output() string { return v.out.String() }
func (v *VM) Stderr() string { return v.errb.String() }

// Lines returns the complete output lines from byte offset from on.
func (v *VM) Lines(from int) []string {
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

// WaitLine waits until a complete output line after offset from satisfies
// ok.
func (v *VM) WaitLine(from int, timeout time.Duration, what string, ok func(string) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range v.Lines(from) {
			if ok(l) {
				return nil
			}
		}
		select {
		case <-v.done:
			return fmt.Errorf("%s exited while waiting for %s:\n%s\n%s", v.Name, what, v.out.String(), v.errb.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %v; output:\n%s", v.Name, what, timeout, v.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Quit sends quit and waits for the process to exit.
func (v *VM) Quit(timeout time.Duration) error {
	if _, err := v.Run("quit", nil); err != nil && !strings.Contains(err.Error(), "closed") {
		return err
	}
	select {
	case <-v.done:
		_ = v.conn.Close()
		if code := v.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("%s exited with %d; stderr:\n%s", v.Name, code, v.errb.String())
		}
		return nil
	case <-time.After(timeout):
		v.Kill()
		return fmt.Errorf("%s did not exit after quit", v.Name)
	}
}

// Kill ends the process (if still running) and waits for it.
func (v *VM) Kill() {
	if v.conn != nil {
		_ = v.conn.Close()
	}
	_ = v.cmd.Process.Kill()
	<-v.done
}

// DiskArgs is the command line shared by snapvm and QEMU for a bare-metal
// guest with one qcow2 disk per image, as nodes disk0, disk1, ... attached
// as virtio-blk-device.
func DiskArgs(kernel string, images ...string) []string {
	a := []string{"-M", "virt", "-bios", "none", "-nographic", "-kernel", kernel}
	for i, img := range images {
		node := "disk" + strconv.Itoa(i)
		a = append(a, "-blockdev", "driver=qcow2,node-name="+node+",file.driver=file,file.filename="+img,
			"-device", "virtio-blk-device,drive="+node)
	}
	return a
}

// GenRE matches diskcheck's progress line for a verified generation.
var GenRE = regexp.MustCompile(`^diskcheck gen (\d+) ok$`)

// LastGen is the last generation diskcheck reported as verified, or -1.
func LastGen(lines []string) int {
	last := -1
	for _, l := range lines {
		if m := GenRE.FindStringSubmatch(l); m != nil {
			last, _ = strconv.Atoi(m[1])
		}
	}
	return last
}

// CheckDiskcheck returns an error for any line diskcheck prints only when
// the disk disagreed with it or a request failed.
func CheckDiskcheck(out string) error {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "MISMATCH") || strings.Contains(l, "FAILED") || strings.Contains(l, "failed with status") {
			return errors.New("diskcheck: " + l)
		}
	}
	return nil
}
