package monitor

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/job"
	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/qcow2"
	"github.com/snapvm/snapvm/qmp"
)

// idleGuest is "1: wfi; j 1b", loaded raw at the start of RAM.
func idleGuest() []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, 0x10500073)
	binary.LittleEndian.PutUint32(b[4:], 0xffdff06f)
	return b
}

type env struct {
	t    *testing.T
	mon  *Monitor
	m    *machine.Machine
	g    *block.Graph
	dir  string
	disk string
}

// newEnv boots an idle guest with one qcow2 disk (node d0) on virtio-blk, stopped in
// prelaunch like -S.
func newEnv(t *testing.T, cfg machine.Config) *env {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if err := qcow2.Create(disk, qcow2.CreateOptions{Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	g := block.NewGraph()
	o, err := block.ParseOptionsArg("driver=qcow2,node-name=d0,file.driver=file,file.filename=" + disk)
	if err != nil {
		t.Fatal(err)
	}
	n, err := g.Add(o)
	if err != nil {
		t.Fatal(err)
	}
	be, err := g.NewBackend("", n)
	if err != nil {
		t.Fatal(err)
	}
	be.SetQdev("/machine/peripheral-anon/device[0]")
	cfg.Kernel = idleGuest()
	cfg.Blocks = g
	cfg.BlkDevices = []*block.Backend{be}
	m, err := machine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mon := New(m, g, Options{Package: "snapvm test", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() {
		mon.Close()
		m.Close()
		g.Close()
	})
	return &env{t: t, mon: mon, m: m, g: g, dir: dir, disk: disk}
}

type client struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	events []string // events skipped while waiting for an HMP answer
}

func (e *env) dial() *client {
	a, b := net.Pipe()
	go e.mon.Server().ServeConn(b)
	c := &client{t: e.t, conn: a, r: bufio.NewReader(a)}
	e.t.Cleanup(func() { a.Close() })
	c.recv()
	c.send(`{"execute": "qmp_capabilities"}`)
	c.expect(`{"return": {}}`)
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) expect(want string) {
	c.t.Helper()
	if got := c.recv(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// expectEvent reads one message and checks it is the event with the given tail.
func (c *client) expectEvent(name, data string) {
	c.t.Helper()
	got := c.recv()
	tail := `, "event": "` + name + `"`
	if data != "" {
		tail += `, "data": ` + data
	}
	tail += "}"
	if !strings.HasPrefix(got, `{"timestamp": {"seconds": `) || !strings.HasSuffix(got, tail) {
		c.t.Fatalf("got %s, want event %s %s", got, name, data)
	}
}

func (c *client) hmp(line string) string {
	c.t.Helper()
	b, _ := json.Marshal(line)
	c.send(`{"execute": "human-monitor-command", "arguments": {"command-line": ` + string(b) + `}}`)
	var r struct {
		Return string `json:"return"`
	}
	got := c.recv()
	for strings.Contains(got, `"event": `) {
		c.events = append(c.events, got)
		got = c.recv()
	}
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		c.t.Fatalf("%s: %v", got, err)
	}
	return r.Return
}

func TestRunStateCommands(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true, Name: "vm1"})
	c := e.dial()
	c.send(`{"execute": "query-status"}`)
	c.expect(`{"return": {"status": "prelaunch", "singlestep": false, "running": false}}`)
	if got := c.hmp("info status"); got != "VM status: paused (prelaunch)\r\n" {
		t.Errorf("info status %q", got)
	}
	// stop leaves prelaunch alone, as QEMU's vm_stop does.
	c.send(`{"execute": "stop"}`)
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "query-status"}`)
	c.expect(`{"return": {"status": "prelaunch", "singlestep": false, "running": false}}`)
	c.send(`{"execute": "cont"}`)
	c.expectEvent("RESUME", "")
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "cont"}`) // already running: nothing
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "query-status", "id": 1}`)
	c.expect(`{"return": {"status": "running", "singlestep": false, "running": true}, "id": 1}`)
	if got := c.hmp("info status"); got != "VM status: running\r\n" {
		t.Errorf("info status %q", got)
	}
	c.send(`{"execute": "stop"}`)
	c.expectEvent("STOP", "")
	c.expect(`{"return": {}}`)
	if got := c.hmp("info status"); got != "VM status: paused\r\n" {
		t.Errorf("info status %q", got)
	}
	if got := c.hmp("c"); got != "" {
		t.Errorf("hmp c: %q", got)
	}
	if len(c.events) != 1 || !strings.HasSuffix(c.events[0], `"event": "RESUME"}`) {
		t.Errorf("events during hmp c: %v", c.events)
	}
	if got := c.hmp("info status"); got != "VM status: running\r\n" {
		t.Errorf("info status %q", got)
	}
	c.send(`{"execute": "system_powerdown"}`)
	c.expectEvent("POWERDOWN", "")
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "query-name"}`)
	c.expect(`{"return": {"name": "vm1"}}`)
	if got := c.hmp("info name"); got != "vm1\r\n" {
		t.Errorf("info name %q", got)
	}
	if got := c.hmp("info version"); got != "7.2.0snapvm test\r\n" {
		t.Errorf("info version %q", got)
	}
	if got := c.hmp("bogus"); got != "unknown command: 'bogus'\r\n" {
		t.Errorf("unknown %q", got)
	}
	c.send(`{"execute": "system_reset"}`)
	// The reset runs on the machine's control goroutine: event and answer in either order.
	a, b := c.recv(), c.recv()
	if !(strings.Contains(a+b, `"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}`) && strings.Contains(a+b, `{"return": {}}`)) {
		t.Errorf("system_reset: %s / %s", a, b)
	}
}

func TestQueryNameWithoutName(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	c := e.dial()
	c.send(`{"execute": "query-name"}`)
	c.expect(`{"return": {}}`)
}

func TestQuit(t *testing.T) {
	e := newEnv(t, machine.Config{})
	a, b := e.dial(), e.dial()
	a.send(`{"execute": "quit", "id": "q"}`)
	for _, c := range []*client{a, b} {
		c.expectEvent("SHUTDOWN", `{"guest": false, "reason": "host-qmp-quit"}`)
	}
	a.expect(`{"return": {}, "id": "q"}`)
	select {
	case <-e.m.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("machine not done after quit")
	}
	e.mon.Close()
	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after Close")
	}
}

func TestContAfterShutdownNeedsReset(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	c := e.dial()
	// Park the machine in "shutdown" the way a -no-shutdown guest poweroff does.
	e.m.Stop(machine.RunStateShutdown)
	c.send(`{"execute": "cont"}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}}`)
	if got := c.hmp("cont"); got != "Error: Resetting the Virtual Machine is required\r\n" {
		t.Errorf("hmp cont: %q", got)
	}
}

func TestJobCommands(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	c := e.dial()
	for _, cmd := range []string{"job-pause", "job-resume", "job-cancel", "job-complete", "job-finalize", "job-dismiss"} {
		c.send(`{"execute": "` + cmd + `", "arguments": {"id": "nope"}}`)
		c.expect(`{"error": {"class": "GenericError", "desc": "Job not found"}}`)
	}
	c.send(`{"execute": "job-dismiss"}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Parameter 'id' is missing"}}`)
	c.send(`{"execute": "query-jobs"}`)
	c.expect(`{"return": []}`)
	// A job created by another package through the shared manager.
	release := make(chan struct{})
	_, err := e.mon.Jobs().Create("j1", "snapshot-save", job.Options{ManualDismiss: true}, func(ctx context.Context, j *job.Job) error {
		j.SetTotal(1)
		<-release
		j.Progress(1)
		return errors.New("No block device node 'x'")
	})
	if err != nil {
		t.Fatal(err)
	}
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "created", "id": "j1"}`)
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "running", "id": "j1"}`)
	c.send(`{"execute": "query-jobs"}`)
	c.expect(`{"return": [{"id": "j1", "type": "snapshot-save", "status": "running", "current-progress": 0, "total-progress": 1}]}`)
	c.send(`{"execute": "job-dismiss", "arguments": {"id": "j1"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Job 'j1' in state 'running' cannot accept command verb 'dismiss'"}}`)
	close(release)
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "aborting", "id": "j1"}`)
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "concluded", "id": "j1"}`)
	c.send(`{"execute": "query-jobs"}`)
	c.expect(`{"return": [{"id": "j1", "type": "snapshot-save", "status": "concluded", "current-progress": 1, "total-progress": 1, "error": "No block device node 'x'"}]}`)
	c.send(`{"execute": "job-resume", "arguments": {"id": "j1"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Can't resume a job that was not paused"}}`)
	c.send(`{"execute": "job-dismiss", "arguments": {"id": "j1"}}`)
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "null", "id": "j1"}`)
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "query-jobs"}`)
	c.expect(`{"return": []}`)
}

func TestBlockCommands(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	c := e.dial()
	want := "d0: " + e.disk + " (qcow2)\r\n    Attached to:      /machine/peripheral-anon/device[0]\r\n    Cache mode:       writeback\r\n"
	if got := c.hmp("info block"); got != strings.ReplaceAll(want, "\\r\\n", "\r\n") {
		t.Errorf("info block:\n got  %q\n want %q", got, want)
	}
	c.send(`{"execute": "query-block"}`)
	got := c.recv()
	if !strings.HasPrefix(got, `{"return": [{"device": "", "qdev": "/machine/peripheral-anon/device[0]", "type": "unknown", "removable": false, "locked": false, "inserted": {"file": "`+e.disk+`", "node-name": "d0", "ro": false, "drv": "qcow2"`) {
		t.Errorf("query-block: %s", got)
	}
	other := filepath.Join(e.dir, "other.qcow2")
	if err := qcow2.Create(other, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	c.send(`{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "n1", "file": {"driver": "file", "filename": "` + other + `"}}}`)
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "blockdev-add", "arguments": {"node-name": "n2"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Parameter 'driver' is missing"}}`)
	c.send(`{"execute": "query-named-block-nodes", "arguments": {"flat": true}}`)
	got = c.recv()
	if !strings.Contains(got, `"node-name": "n1"`) || !strings.Contains(got, `"node-name": "d0"`) {
		t.Errorf("query-named-block-nodes: %s", got)
	}
	c.send(`{"execute": "blockdev-del", "arguments": {"node-name": "n1"}}`)
	c.expect(`{"return": {}}`)
	c.send(`{"execute": "blockdev-del", "arguments": {"node-name": "nope"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Failed to find node with node-name='nope'"}}`)
}

// TestGoQemuAgainstMonitor drives the real monitor over a unix socket with
// digitalocean/go-qemu's SocketMonitor.
func TestGoQemuAgainstMonitor(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	path := filepath.Join(e.dir, "qmp.sock")
	if _, err := e.mon.Listen("unix:" + path + ",server=on,wait=off"); err != nil {
		t.Fatal(err)
	}
	mon, err := goqmp.NewSocketMonitor("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatal(err)
	}
	defer mon.Disconnect()
	events, _ := mon.Events(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := mon.Run([]byte(`{"execute": "cont"}`))
		done <- err
	}()
	if ev := <-events; ev.Event != "RESUME" {
		t.Errorf("event %+v", ev)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out, err := mon.Run([]byte(`{"execute": "query-status"}`))
	if err != nil || string(out) != `{"return": {"status": "running", "singlestep": false, "running": true}}` {
		t.Errorf("query-status %s %v", out, err)
	}
}

// TestSchemaGolden pins query-qmp-schema for the monitor's command set; docs/compat.md
// lists the same commands.
func TestSchemaGolden(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	v, err := qmp.ToValue(e.mon.Server().Schema())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for i := range v.Items {
		sb.WriteString(v.Items[i].String())
		sb.WriteString("\n")
	}
	checkGolden(t, "testdata/schema.golden.json", sb.String())
}

// TestCompatDocListsEverything keeps docs/compat.md in step with the registry: every
// command, event and HMP command the monitor registers has a row.
func TestCompatDocListsEverything(t *testing.T) {
	e := newEnv(t, machine.Config{StartPaused: true})
	doc, err := os.ReadFile("../docs/compat.md")
	if err != nil {
		t.Fatal(err)
	}
	names := append(e.mon.Server().Commands(), e.mon.Server().Events()...)
	for _, n := range e.mon.HMP().Names() {
		names = append(names, strings.Split(n, "|")[0])
	}
	for _, n := range names {
		if !strings.Contains(string(doc), "`"+n) {
			t.Errorf("docs/compat.md does not list %s", n)
		}
	}
}

// TestRunStateCommandsWaitForSnapshotJobs: a cont sent while a snapshot job has the VM
// stopped is carried out after the job, as in QEMU where the job's work cannot be
// interrupted by monitor commands.
func TestRunStateCommandsWaitForSnapshotJobs(t *testing.T) {
	e := newEnv(t, machine.Config{})
	c := e.dial()
	release := make(chan struct{})
	_, err := e.mon.Jobs().Create("s1", "snapshot-save", job.Options{ManualDismiss: true}, func(ctx context.Context, j *job.Job) error {
		was := e.m.Stop(machine.RunStateSaveVM)
		<-release
		if was {
			e.m.Resume()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "created", "id": "s1"}`)
	c.expectEvent("JOB_STATUS_CHANGE", `{"status": "running", "id": "s1"}`)
	c.expectEvent("STOP", "")
	c.send(`{"execute": "stop"}`)
	time.Sleep(50 * time.Millisecond)
	if st := e.m.RunState(); st != machine.RunStateSaveVM {
		t.Fatalf("state %s while the job works", st)
	}
	close(release)
	c.expectEvent("RESUME", "")
	var rest []string
	for i := 0; i < 5; i++ { // waiting, pending, concluded, STOP, the answer
		rest = append(rest, c.recv())
	}
	joined := strings.Join(rest, "\n")
	for _, want := range []string{`"event": "STOP"}`, `{"return": {}}`, `"status": "concluded"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("after the job: lacks %s in\n%s", want, joined)
		}
	}
	if st := e.m.RunState(); st != machine.RunStatePaused {
		t.Errorf("state %s, want paused", st)
	}
}
