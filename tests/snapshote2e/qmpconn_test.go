package snapshote2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// qconn is a plain QMP client that keeps every event it receives, in
// order, so tests can assert exact event sequences. QEMU serves one client
// per socket, so this is the only connection to a VM started by launch.
type qconn struct {
	name    string
	c       net.Conn
	replies chan map[string]json.RawMessage
	mu      sync.Mutex
	events  []qevent // guarded by mu
	changed chan struct{}
	cmdMu   sync.Mutex
	closed  chan struct{}
}

// qevent is one received event.
type qevent struct {
	Name string
	Data map[string]any
}

// String renders an event compactly for sequences: "STOP",
// "JOB_STATUS_CHANGE created j1".
func (e qevent) String() string {
	if e.Name == "JOB_STATUS_CHANGE" {
		return fmt.Sprintf("%s %v %v", e.Name, e.Data["status"], e.Data["id"])
	}
	return e.Name
}

func dialQMP(name, sock string) (*qconn, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	q := &qconn{name: name, c: c, replies: make(chan map[string]json.RawMessage, 16),
		changed: make(chan struct{}, 1), closed: make(chan struct{})}
	r := bufio.NewReaderSize(c, 1<<20)
	greeting, err := r.ReadBytes('\n')
	if err != nil || !strings.Contains(string(greeting), `"QMP"`) {
		c.Close()
		return nil, fmt.Errorf("no QMP greeting (%q): %v", greeting, err)
	}
	go q.read(r)
	return q, nil
}

func (q *qconn) read(r *bufio.Reader) {
	defer close(q.closed)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if ev, ok := m["event"]; ok {
			e := qevent{}
			_ = json.Unmarshal(ev, &e.Name)
			if d, ok := m["data"]; ok {
				_ = json.Unmarshal(d, &e.Data)
			}
			q.mu.Lock()
			q.events = append(q.events, e)
			q.mu.Unlock()
			select {
			case q.changed <- struct{}{}:
			default:
			}
			continue
		}
		q.replies <- m
	}
}

// qmpError is a command's error answer.
type qmpError struct{ Class, Desc string }

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// call sends one command and waits for its answer.
func (q *qconn) call(t *testing.T, cmd string, args any) (json.RawMessage, *qmpError) {
	t.Helper()
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.c.Write(append(raw, '\n')); err != nil {
		t.Fatalf("%s: %s: %v", q.name, cmd, err)
	}
	var m map[string]json.RawMessage
	select {
	case m = <-q.replies:
	case <-q.closed:
		// The answer (quit's, say) may have arrived just before the
		// connection closed: both channels are then ready at once.
		select {
		case m = <-q.replies:
		default:
			t.Fatalf("%s: connection closed during %s", q.name, cmd)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s: no answer to %s", q.name, cmd)
	}
	if e, ok := m["error"]; ok {
		var qe struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		}
		if err := json.Unmarshal(e, &qe); err != nil {
			t.Fatalf("%s: %s: bad error %s", q.name, cmd, e)
		}
		return nil, &qmpError{qe.Class, qe.Desc}
	}
	return m["return"], nil
}

// run is call for commands that must succeed.
func (q *qconn) run(t *testing.T, cmd string, args any) json.RawMessage {
	t.Helper()
	ret, qe := q.call(t, cmd, args)
	if qe != nil {
		t.Fatalf("%s: %s %v: %v", q.name, cmd, args, qe)
	}
	return ret
}

// mark is the number of events received so far.
func (q *qconn) mark() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.events)
}

func (q *qconn) eventsFrom(from int) []qevent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.events[from:])
}

// waitEvent waits for an event after from that satisfies ok and returns
// the events from from up to and including it.
func (q *qconn) waitEvent(t *testing.T, from int, what string, ok func(qevent) bool) []qevent {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		evs := q.eventsFrom(from)
		for i, e := range evs {
			if ok(e) {
				return evs[:i+1]
			}
		}
		select {
		case <-q.changed:
		case <-q.closed:
			t.Fatalf("%s: connection closed while waiting for %s; events: %v", q.name, what, evs)
		case <-deadline:
			t.Fatalf("%s: no %s; events: %v", q.name, what, evs)
		}
	}
}

// jobEvent matches the JOB_STATUS_CHANGE of job id to status.
func jobEvent(id, status string) func(qevent) bool {
	return func(e qevent) bool {
		return e.Name == "JOB_STATUS_CHANGE" && e.Data["id"] == id && e.Data["status"] == status
	}
}

// status is query-status's "status".
func (q *qconn) status(t *testing.T) string {
	t.Helper()
	var s struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := json.Unmarshal(q.run(t, "query-status", nil), &s); err != nil {
		t.Fatal(err)
	}
	if s.Running != (s.Status == "running") {
		t.Fatalf("%s: query-status running=%v with status %q", q.name, s.Running, s.Status)
	}
	return s.Status
}

// hmp runs a human-monitor-command and returns its text.
func (q *qconn) hmp(t *testing.T, line string) string {
	t.Helper()
	var out string
	if err := json.Unmarshal(q.run(t, "human-monitor-command", map[string]any{"command-line": line}), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// qvm is a VM process driven through a qconn.
type qvm struct {
	*vm
	q *qconn
}

// launch runs bin with args plus a QMP socket, connects and negotiates;
// the process is killed when the test ends.
func launch(t *testing.T, name, bin string, args []string) *qvm {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	args = append(slices.Clone(args), "-qmp", "unix:"+sock+",server=on,wait=off")
	v := &vm{name: name, out: &vmrun.OutputBuffer{}, errb: &vmrun.OutputBuffer{}, done: make(chan struct{})}
	v.cmd = exec.Command(bin, args...)
	v.cmd.Stdout = v.out
	v.cmd.Stderr = v.errb
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	qv := &qvm{vm: v}
	t.Cleanup(func() {
		if qv.q != nil {
			qv.q.c.Close()
		}
		_ = v.cmd.Process.Kill()
		<-v.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		q, err := dialQMP(name, sock)
		if err == nil {
			qv.q = q
			q.run(t, "qmp_capabilities", nil)
			return qv
		}
		select {
		case <-v.done:
			t.Fatalf("%s exited before QMP was up:\n%s\n%s", name, v.out, v.errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no QMP connection: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quit sends quit and waits for the process to exit.
func (v *qvm) quit(t *testing.T) {
	t.Helper()
	v.q.run(t, "quit", nil)
	select {
	case <-v.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running after quit", v.name)
	}
}

// jobInfo is one query-jobs entry, with the members seen.
type jobInfo struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	Status          string `json:"status"`
	CurrentProgress int64  `json:"current-progress"`
	TotalProgress   int64  `json:"total-progress"`
	Error           *string
	Keys            []string
}

func (q *qconn) jobs(t *testing.T) []jobInfo {
	t.Helper()
	ret := q.run(t, "query-jobs", nil)
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(ret, &raw); err != nil {
		t.Fatal(err)
	}
	var out []jobInfo
	for _, r := range raw {
		var j jobInfo
		b, _ := json.Marshal(r)
		_ = json.Unmarshal(b, &j)
		if e, ok := r["error"]; ok {
			var s string
			_ = json.Unmarshal(e, &s)
			j.Error = &s
		}
		for k := range r {
			j.Keys = append(j.Keys, k)
		}
		slices.Sort(j.Keys)
		out = append(out, j)
	}
	return out
}

// job is the query-jobs entry of id, failing when there is none.
func (q *qconn) job(t *testing.T, id string) jobInfo {
	t.Helper()
	for _, j := range q.jobs(t) {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("%s: job %s not in query-jobs", q.name, id)
	return jobInfo{}
}

// snapJob starts a snapshot job (vmstate is omitted for snapshot-delete)
// and waits for its concluded event. It returns the events of the run
// (job events of this id, STOP, RESUME) and the job's query-jobs entry;
// the job is left for the caller to dismiss.
func (q *qconn) snapJob(t *testing.T, cmd, id, tag, vmstate string, devices []string) ([]string, jobInfo) {
	t.Helper()
	from := q.mark()
	args := map[string]any{"job-id": id, "tag": tag, "devices": devices}
	if cmd != "snapshot-delete" {
		args["vmstate"] = vmstate
	}
	q.run(t, cmd, args)
	evs := q.waitEvent(t, from, cmd+" "+id+" concluded", jobEvent(id, "concluded"))
	var seq []string
	for _, e := range evs {
		if e.Name == "STOP" || e.Name == "RESUME" || e.Name == "JOB_STATUS_CHANGE" && e.Data["id"] == id {
			seq = append(seq, e.String())
		}
	}
	return seq, q.job(t, id)
}

// dismiss sends job-dismiss and checks the null event and that the job is
// gone from query-jobs.
func (q *qconn) dismiss(t *testing.T, id string) {
	t.Helper()
	from := q.mark()
	q.run(t, "job-dismiss", map[string]any{"id": id})
	q.waitEvent(t, from, "job "+id+" null", jobEvent(id, "null"))
	for _, j := range q.jobs(t) {
		if j.ID == id {
			t.Fatalf("%s: job %s still listed after job-dismiss: %+v", q.name, id, j)
		}
	}
}

// okJob runs a snapshot job that must succeed, checks its query-jobs entry
// and dismisses it; it returns the event sequence.
func (q *qconn) okJob(t *testing.T, cmd, id, tag, vmstate string, devices ...string) []string {
	t.Helper()
	seq, j := q.snapJob(t, cmd, id, tag, vmstate, devices)
	if j.Error != nil {
		t.Fatalf("%s: %s %s failed: %s", q.name, cmd, tag, *j.Error)
	}
	checkConcludedJob(t, q.name, j, cmd)
	q.dismiss(t, id)
	return seq
}

// checkConcludedJob checks a successful job's query-jobs entry: type,
// status, equal non-zero progress and exactly QEMU's members.
func checkConcludedJob(t *testing.T, name string, j jobInfo, typ string) {
	t.Helper()
	want := []string{"current-progress", "id", "status", "total-progress", "type"}
	if j.Type != typ || j.Status != "concluded" || j.CurrentProgress != j.TotalProgress || j.TotalProgress <= 0 ||
		!slices.Equal(j.Keys, want) {
		t.Fatalf("%s: query-jobs entry of a successful %s: %+v (members %v, want %v)", name, typ, j, j.Keys, want)
	}
}

// waitQuiet waits until the VM's output has not grown for quiet: after
// stop, what the guest printed before it was paused has then reached us.
func (v *vm) waitQuiet(t *testing.T, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	n, since := len(v.out.String()), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("%s: output does not settle:\n%s", v.name, v.out)
		}
		time.Sleep(10 * time.Millisecond)
		if m := len(v.out.String()); m != n {
			n, since = m, time.Now()
		}
	}
}
