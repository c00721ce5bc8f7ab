package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tables exactly as QEMU 7.2's JobSTT and JobVerbTable.
var wantTransitions = map[Status][]Status{
	StatusUndefined: {StatusCreated},
	StatusCreated:   {StatusRunning, StatusAborting, StatusNull},
	StatusRunning:   {StatusPaused, StatusReady, StatusWaiting, StatusAborting},
	StatusPaused:    {StatusRunning},
	StatusReady:     {StatusStandby, StatusWaiting, StatusAborting},
	StatusStandby:   {StatusReady},
	StatusWaiting:   {StatusPending, StatusAborting},
	StatusPending:   {StatusAborting, StatusConcluded},
	StatusAborting:  {StatusAborting, StatusConcluded},
	StatusConcluded: {StatusNull},
	StatusNull:      {},
}

var wantVerbs = map[Verb][]Status{
	VerbCancel:   {StatusCreated, StatusRunning, StatusPaused, StatusReady, StatusStandby, StatusWaiting, StatusPending},
	VerbPause:    {StatusCreated, StatusRunning, StatusPaused, StatusReady, StatusStandby},
	VerbResume:   {StatusCreated, StatusRunning, StatusPaused, StatusReady, StatusStandby},
	VerbSetSpeed: {StatusCreated, StatusRunning, StatusPaused, StatusReady, StatusStandby},
	VerbComplete: {StatusReady, StatusStandby},
	VerbFinalize: {StatusPending},
	VerbDismiss:  {StatusConcluded},
}

func contains(list []Status, s Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestTransitionTable(t *testing.T) {
	for from := StatusUndefined; from < numStatus; from++ {
		for to := StatusUndefined; to < numStatus; to++ {
			want := contains(wantTransitions[from], to)
			if got := TransitionAllowed(from, to); got != want {
				t.Errorf("%s -> %s: allowed=%v, want %v", from, to, got, want)
			}
		}
	}
}

// TestTransitionEvents drives transition() through every pair: allowed moves change the
// status and emit exactly when the status really changes; refused ones change nothing.
func TestTransitionEvents(t *testing.T) {
	for from := StatusUndefined; from < numStatus; from++ {
		for to := StatusUndefined; to < numStatus; to++ {
			var events []StatusChange
			m := NewManager(func(name string, data any) {
				if name != EventStatusChange {
					t.Fatalf("event %s", name)
				}
				events = append(events, data.(StatusChange))
			})
			j := &Job{m: m, id: "j", status: from}
			ok := j.transition(to)
			if ok != TransitionAllowed(from, to) {
				t.Fatalf("%s -> %s: transition returned %v", from, to, ok)
			}
			switch {
			case !ok:
				if j.status != from || len(events) != 0 {
					t.Errorf("%s -> %s refused but status %s, %d events", from, to, j.status, len(events))
				}
			case from == to:
				if len(events) != 0 {
					t.Errorf("%s -> %s: self transition emitted %v", from, to, events)
				}
			default:
				if j.status != to || len(events) != 1 || events[0] != (StatusChange{Status: to, ID: "j"}) {
					t.Errorf("%s -> %s: status %s events %v", from, to, j.status, events)
				}
			}
		}
	}
}

// TestVerbTable checks every (status, verb) pair against QEMU's table and text.
func TestVerbTable(t *testing.T) {
	for v := VerbCancel; v < numVerb; v++ {
		for s := StatusUndefined; s < numStatus; s++ {
			want := contains(wantVerbs[v], s)
			if got := VerbAllowed(v, s); got != want {
				t.Errorf("verb %s in %s: allowed=%v, want %v", v, s, got, want)
			}
			j := &Job{id: "j0", status: s}
			err := j.applyVerbLocked(v)
			if want != (err == nil) {
				t.Errorf("verb %s in %s: err %v", v, s, err)
			}
			if err != nil {
				wantText := fmt.Sprintf("Job 'j0' in state '%s' cannot accept command verb '%s'", s, v)
				if err.Error() != wantText {
					t.Errorf("got %q want %q", err, wantText)
				}
			}
		}
	}
}

// recorder collects JOB_STATUS_CHANGE events.
type recorder struct {
	mu     sync.Mutex
	events []string
	ch     chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) emit(name string, data any) {
	sc := data.(StatusChange)
	r.mu.Lock()
	r.events = append(r.events, sc.ID+":"+sc.Status.String())
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) list() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, " ")
}

// waitFor blocks until the event list equals want.
func (r *recorder) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if r.list() == want {
			return
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("events %q, want %q", r.list(), want)
		}
	}
}

func TestLifecycleSuccessManualDismiss(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	release := make(chan struct{})
	j, err := m.Create("snap1", "snapshot-save", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		j.SetTotal(1)
		<-release
		j.Progress(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.list(); got != "snap1:created snap1:running" {
		t.Fatalf("events at return: %q", got)
	}
	close(release)
	<-j.Done()
	r.waitFor(t, "snap1:created snap1:running snap1:waiting snap1:pending snap1:concluded")
	info := m.Query()
	if len(info) != 1 || info[0].Status != StatusConcluded || info[0].CurrentProgress != 1 || info[0].TotalProgress != 1 || info[0].Error != nil {
		t.Fatalf("query %+v", info)
	}
	if _, err := m.Create("snap1", "snapshot-save", Options{}, nil); err == nil || err.Error() != "Job ID 'snap1' already in use" {
		t.Fatalf("reuse of a concluded id: %v", err)
	}
	if err := m.Dismiss("snap1"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "snap1:created snap1:running snap1:waiting snap1:pending snap1:concluded snap1:null")
	if len(m.Query()) != 0 {
		t.Fatal("dismissed job still listed")
	}
	if err := m.Dismiss("snap1"); err == nil || err.Error() != "Job not found" {
		t.Fatalf("dismiss twice: %v", err)
	}
}

func TestLifecycleFailure(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	j, _ := m.Create("bad", "snapshot-load", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		j.SetTotal(1)
		j.Progress(1)
		return errors.New("Snapshot 'x' does not exist in one or more devices")
	})
	<-j.Done()
	r.waitFor(t, "bad:created bad:running bad:aborting bad:concluded")
	in := m.Query()[0]
	if in.Error == nil || *in.Error != "Snapshot 'x' does not exist in one or more devices" || in.CurrentProgress != 1 {
		t.Fatalf("info %+v", in)
	}
	for _, tc := range []struct {
		f    func(string) error
		want string
	}{
		{m.Cancel, "Job 'bad' in state 'concluded' cannot accept command verb 'cancel'"},
		{m.Pause, "Job 'bad' in state 'concluded' cannot accept command verb 'pause'"},
		{m.Resume, "Can't resume a job that was not paused"},
		{m.Complete, "Job 'bad' in state 'concluded' cannot accept command verb 'complete'"},
		{m.Finalize, "Job 'bad' in state 'concluded' cannot accept command verb 'finalize'"},
	} {
		if err := tc.f("bad"); err == nil || err.Error() != tc.want {
			t.Errorf("got %v want %q", err, tc.want)
		}
	}
}

func TestAutoDismiss(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	j, _ := m.Create("a", "t", Options{}, func(ctx context.Context, j *Job) error { return nil })
	<-j.Done()
	r.waitFor(t, "a:created a:running a:waiting a:pending a:concluded a:null")
	if len(m.Query()) != 0 {
		t.Fatal("auto-dismissed job still listed")
	}
	// The id is free again.
	j, err := m.Create("a", "t", Options{}, func(ctx context.Context, j *Job) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
}

func TestManualFinalize(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	m.Create("f", "t", Options{ManualFinalize: true, ManualDismiss: true}, func(ctx context.Context, j *Job) error { return nil })
	r.waitFor(t, "f:created f:running f:waiting f:pending")
	if err := m.Dismiss("f"); err == nil || err.Error() != "Job 'f' in state 'pending' cannot accept command verb 'dismiss'" {
		t.Fatal(err)
	}
	if err := m.Finalize("f"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "f:created f:running f:waiting f:pending f:concluded")
	// Cancel while pending aborts at once.
	m.Create("g", "t", Options{ManualFinalize: true, ManualDismiss: true}, func(ctx context.Context, j *Job) error { return nil })
	r.waitFor(t, "f:created f:running f:waiting f:pending f:concluded g:created g:running g:waiting g:pending")
	if err := m.Cancel("g"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "f:created f:running f:waiting f:pending f:concluded g:created g:running g:waiting g:pending g:aborting g:concluded")
	if e := m.Query()[0].Error; e == nil || *e != "Operation canceled" {
		t.Fatalf("error %v", e)
	}
}

func TestJobIDRules(t *testing.T) {
	m := NewManager(nil)
	for _, id := range []string{"", "1bad", "a b", "-x", "é", "a/b"} {
		if _, err := m.Create(id, "t", Options{}, nil); err == nil || err.Error() != "Invalid job ID '"+id+"'" {
			t.Errorf("id %q: %v", id, err)
		}
	}
	for _, id := range []string{"a", "A1", "a-b.c_d", "x" + strings.Repeat("y", 300)} {
		j, err := m.Create(id, "t", Options{}, func(ctx context.Context, j *Job) error { return nil })
		if err != nil {
			t.Errorf("id %q: %v", id, err)
			continue
		}
		<-j.Done()
	}
	for _, f := range []func(string) error{m.Pause, m.Resume, m.Cancel, m.Complete, m.Finalize, m.Dismiss} {
		if err := f("nope"); err == nil || err.Error() != "Job not found" {
			t.Errorf("unknown job: %v", err)
		}
	}
}

func TestPauseResumeCancel(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	step := make(chan struct{})
	j, _ := m.Create("p", "t", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		for {
			select {
			case <-step:
			case <-ctx.Done():
				return nil // cancellation is reported by the job layer
			}
			if err := j.PausePoint(ctx); err != nil {
				return nil
			}
			j.Progress(1)
		}
	})
	if err := m.Resume("p"); err == nil || err.Error() != "Can't resume a job that was not paused" {
		t.Fatalf("resume unpaused: %v", err)
	}
	if err := m.Pause("p"); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause("p"); err == nil || err.Error() != "Job is already paused" {
		t.Fatalf("pause twice: %v", err)
	}
	step <- struct{}{} // reach the pause point
	r.waitFor(t, "p:created p:running p:paused")
	if err := m.Resume("p"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "p:created p:running p:paused p:running")
	// Cancel a paused job: it is resumed and aborts.
	m.Pause("p")
	step <- struct{}{}
	r.waitFor(t, "p:created p:running p:paused p:running p:paused")
	if err := m.Cancel("p"); err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	r.waitFor(t, "p:created p:running p:paused p:running p:paused p:running p:aborting p:concluded")
	in := j.Info()
	if in.Error == nil || *in.Error != "Operation canceled" || in.CurrentProgress != 1 {
		t.Fatalf("info %+v", in)
	}
}

func TestReadyComplete(t *testing.T) {
	r := newRecorder()
	m := NewManager(r.emit)
	completed := make(chan struct{})
	j, _ := m.Create("mirror0", "mirror", Options{Complete: func(*Job) error { close(completed); return nil }},
		func(ctx context.Context, j *Job) error {
			if err := m.Complete("mirror0"); err == nil || err.Error() != "Job 'mirror0' in state 'running' cannot accept command verb 'complete'" {
				return fmt.Errorf("complete while running: %v", err)
			}
			j.Ready()
			<-completed
			return nil
		})
	r.waitFor(t, "mirror0:created mirror0:running mirror0:ready")
	if err := m.Complete("mirror0"); err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	r.waitFor(t, "mirror0:created mirror0:running mirror0:ready mirror0:waiting mirror0:pending mirror0:concluded mirror0:null")
	// A job without a complete operation refuses it.
	j2, _ := m.Create("plain", "t", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		j.Ready()
		<-ctx.Done()
		return nil
	})
	for j2.Status() != StatusReady {
		time.Sleep(time.Millisecond)
	}
	if err := m.Complete("plain"); err == nil || err.Error() != "The active block job 'plain' cannot be completed" {
		t.Fatalf("complete: %v", err)
	}
	m.Cancel("plain")
	<-j2.Done()
}

func TestQueryNewestFirst(t *testing.T) {
	m := NewManager(nil)
	for _, id := range []string{"a", "b", "c"} {
		j, _ := m.Create(id, "snapshot-delete", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error { return nil })
		<-j.Done()
	}
	var ids []string
	for _, in := range m.Query() {
		ids = append(ids, in.ID)
	}
	if strings.Join(ids, ",") != "c,b,a" {
		t.Fatalf("order %v", ids)
	}
}

func TestProgressCompleteOnSuccess(t *testing.T) {
	m := NewManager(nil)
	j, _ := m.Create("p", "t", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		j.SetTotal(100)
		j.Progress(60)
		return nil
	})
	<-j.Done()
	if in := j.Info(); in.CurrentProgress != 100 || in.TotalProgress != 100 {
		t.Fatalf("progress %d/%d", in.CurrentProgress, in.TotalProgress)
	}
	j, _ = m.Create("q", "t", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error {
		j.SetTotal(100)
		j.Progress(60)
		return errors.New("failed")
	})
	<-j.Done()
	if in := j.Info(); in.CurrentProgress != 60 || in.TotalProgress != 100 {
		t.Fatalf("failed job progress %d/%d", in.CurrentProgress, in.TotalProgress)
	}
}

func TestPanickingWorkAborts(t *testing.T) {
	m := NewManager(nil)
	j, _ := m.Create("x", "t", Options{ManualDismiss: true}, func(ctx context.Context, j *Job) error { panic("bug") })
	<-j.Done()
	if e := j.Err(); e != "internal error: bug" {
		t.Fatalf("err %q", e)
	}
}
