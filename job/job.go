// Package job is QEMU's generic job layer: the JobStatus state machine with its transition
// and verb tables, the registry of jobs with their ids, the user verbs (pause, resume,
// cancel, complete, finalize, dismiss) with QEMU 7.2's texts, progress, and the
// JOB_STATUS_CHANGE event. A job's work runs on its own goroutine, so the monitor keeps
// answering while it runs.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Options are a job's creation flags. The zero value is QEMU's default (auto-finalize and
// auto-dismiss on); snapshot jobs set ManualDismiss, as QEMU's JOB_MANUAL_DISMISS.
type Options struct {
	ManualFinalize bool // wait in "pending" for job-finalize (auto-finalize=false)
	ManualDismiss  bool // stay "concluded" until job-dismiss (auto-dismiss=false)
	// Complete is called by job-complete on a job in "ready"/"standby". Jobs without it
	// refuse job-complete.
	Complete func(j *Job) error
}

// Info is one element of query-jobs (QEMU's JobInfo).
type Info struct {
	ID              string  `json:"id"`
	Type            string  `json:"type"`
	Status          Status  `json:"status"`
	CurrentProgress int64   `json:"current-progress"`
	TotalProgress   int64   `json:"total-progress"`
	Error           *string `json:"error,omitempty"`
}

// StatusChange is the data of the JOB_STATUS_CHANGE event.
type StatusChange struct {
	Status Status `json:"status"`
	ID     string `json:"id"`
}

// EventStatusChange is the name of the event emitted on every status change.
const EventStatusChange = "JOB_STATUS_CHANGE"

// ErrCanceled is the error of a cancelled job (strerror(ECANCELED), as QEMU reports it).
var ErrCanceled = errors.New("Operation canceled")

// Manager is the registry of jobs. Its methods are safe for concurrent use.
type Manager struct {
	emit func(name string, data any)

	mu   sync.Mutex // guards jobs and every Job's mutable fields
	cond *sync.Cond // signalled on resume and cancel, for jobs at a pause point
	jobs []*Job     // newest first
}

// Job is one job. Its work function receives it to report progress and to offer pause
// points.
type Job struct {
	m    *Manager
	id   string
	typ  string
	opts Options

	// Guarded by m.mu.
	status     Status
	pauseCount int
	userPaused bool
	cancelled  bool
	errMsg     string
	current    int64
	total      int64
	finished   bool // the work function has returned

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed on reaching concluded
}

// NewManager returns an empty registry. emit is called for every JOB_STATUS_CHANGE, with
// the manager's lock held so events of one job are in order; it must not call back into
// the manager. nil discards events.
func NewManager(emit func(name string, data any)) *Manager {
	if emit == nil {
		emit = func(string, any) {}
	}
	m := &Manager{emit: emit}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// wellFormedID is QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'.
func wellFormedID(id string) bool {
	if id == "" {
		return false
	}
	for i, c := range []byte(id) {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

// Create registers a job, moves it to "created" and then "running" (both events are
// emitted before Create returns), and starts run on a new goroutine. run's error (or a
// cancel) makes the job abort; its text is the job's error. ctx is cancelled by
// job-cancel.
func (m *Manager) Create(id, typ string, opts Options, run func(ctx context.Context, j *Job) error) (*Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !wellFormedID(id) {
		return nil, fmt.Errorf("Invalid job ID '%s'", id)
	}
	if m.findLocked(id) != nil {
		return nil, fmt.Errorf("Job ID '%s' already in use", id)
	}
	j := &Job{m: m, id: id, typ: typ, opts: opts, done: make(chan struct{})}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	m.jobs = append([]*Job{j}, m.jobs...)
	j.transition(StatusCreated)
	j.transition(StatusRunning)
	go j.work(run)
	return j, nil
}

func (j *Job) work(run func(ctx context.Context, j *Job) error) {
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				slog.Error("job: work function panicked", "job", j.id, "panic", r)
				err = fmt.Errorf("internal error: %v", r)
			}
		}()
		return run(j.ctx, j)
	}()
	m := j.m
	m.mu.Lock()
	defer m.mu.Unlock()
	j.finished = true
	if err == nil && j.cancelled {
		err = ErrCanceled
	}
	if err != nil {
		j.abortLocked(err)
		return
	}
	// The work is complete: progress says so even if the total was an estimate.
	if j.current < j.total {
		j.current = j.total
	}
	j.transition(StatusWaiting)
	j.transition(StatusPending)
	if !j.opts.ManualFinalize {
		j.concludeLocked()
	}
}

// abortLocked records err (unless an error is already set) and ends the job.
func (j *Job) abortLocked(err error) {
	if j.errMsg == "" {
		j.errMsg = err.Error()
	}
	j.transition(StatusAborting)
	j.concludeLocked()
}

func (j *Job) concludeLocked() {
	j.transition(StatusConcluded)
	j.cancel()
	close(j.done)
	if !j.opts.ManualDismiss {
		j.dismissLocked()
	}
}

func (j *Job) dismissLocked() {
	j.transition(StatusNull)
	m := j.m
	for i, x := range m.jobs {
		if x == j {
			m.jobs = append(m.jobs[:i:i], m.jobs[i+1:]...)
			break
		}
	}
}

// transition moves the job to status to if QEMU's table allows it, emitting
// JOB_STATUS_CHANGE when the status really changes. Callers hold m.mu.
func (j *Job) transition(to Status) bool {
	from := j.status
	if !TransitionAllowed(from, to) {
		// A bug in this package, never caused by a user: QEMU asserts here. Keep
		// the job where it is and say so loudly.
		slog.Error("job: illegal status transition", "job", j.id, "from", from, "to", to)
		return false
	}
	j.status = to
	if from != to {
		j.m.emit(EventStatusChange, StatusChange{Status: to, ID: j.id})
	}
	return true
}

func (m *Manager) findLocked(id string) *Job {
	for _, j := range m.jobs {
		if j.id == id {
			return j
		}
	}
	return nil
}

// Get returns the job named id.
func (m *Manager) Get(id string) (*Job, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.findLocked(id)
	return j, j != nil
}

// Query returns query-jobs: every job, newest first.
func (m *Manager) Query() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.infoLocked())
	}
	return out
}

func (j *Job) infoLocked() Info {
	in := Info{ID: j.id, Type: j.typ, Status: j.status, CurrentProgress: j.current, TotalProgress: j.total}
	if j.errMsg != "" {
		e := j.errMsg
		in.Error = &e
	}
	return in
}

// Info returns the job's query-jobs record.
func (j *Job) Info() Info {
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	return j.infoLocked()
}

// ID returns the job id.
func (j *Job) ID() string { return j.id }

// Type returns the job type (QEMU's JobType, e.g. "snapshot-save").
func (j *Job) Type() string { return j.typ }

// Status returns the current status.
func (j *Job) Status() Status {
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	return j.status
}

// Done is closed when the job reaches "concluded".
func (j *Job) Done() <-chan struct{} { return j.done }

// Err returns the job's error text ("" while it has none).
func (j *Job) Err() string {
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	return j.errMsg
}

// SetTotal sets total-progress (it may move in either direction).
func (j *Job) SetTotal(n int64) {
	j.m.mu.Lock()
	j.total = n
	j.m.mu.Unlock()
}

// Progress adds done units of completed work to current-progress, which only grows.
func (j *Job) Progress(done int64) {
	if done <= 0 {
		return
	}
	j.m.mu.Lock()
	j.current += done
	if j.current > j.total {
		j.total = j.current
	}
	j.m.mu.Unlock()
}

// PausePoint is where a running job honours job-pause: it moves to "paused" (or
// "standby" from "ready"), blocks until resumed or cancelled, and moves back. It returns
// ctx's error when the job was cancelled or ctx ended.
func (j *Job) PausePoint(ctx context.Context) error {
	m := j.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if j.pauseCount > 0 && !j.cancelled && ctx.Err() == nil {
		back := j.status
		switch back {
		case StatusRunning:
			j.transition(StatusPaused)
		case StatusReady:
			j.transition(StatusStandby)
		}
		stop := context.AfterFunc(ctx, func() {
			m.mu.Lock()
			m.cond.Broadcast()
			m.mu.Unlock()
		})
		for j.pauseCount > 0 && !j.cancelled && ctx.Err() == nil {
			m.cond.Wait()
		}
		stop()
		if j.status != back {
			j.transition(back)
		}
	}
	if j.cancelled {
		return context.Canceled
	}
	return ctx.Err()
}

// Ready moves a running job to "ready" (the state where job-complete is accepted).
func (j *Job) Ready() {
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	if j.status == StatusRunning {
		j.transition(StatusReady)
	}
}

// lookup finds a job for a verb and applies the verb table.
func (m *Manager) lookupLocked(id string) (*Job, error) {
	j := m.findLocked(id)
	if j == nil {
		return nil, errors.New("Job not found")
	}
	return j, nil
}

func (j *Job) applyVerbLocked(v Verb) error {
	if VerbAllowed(v, j.status) {
		return nil
	}
	return fmt.Errorf("Job '%s' in state '%s' cannot accept command verb '%s'", j.id, j.status, v)
}

// Pause is job-pause: the job pauses at its next pause point.
func (m *Manager) Pause(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookupLocked(id)
	if err != nil {
		return err
	}
	if err := j.applyVerbLocked(VerbPause); err != nil {
		return err
	}
	if j.userPaused {
		return errors.New("Job is already paused")
	}
	j.userPaused = true
	j.pauseCount++
	return nil
}

// Resume is job-resume. The "not paused" check comes before the verb check, as in QEMU.
func (m *Manager) Resume(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookupLocked(id)
	if err != nil {
		return err
	}
	if !j.userPaused || j.pauseCount == 0 {
		return errors.New("Can't resume a job that was not paused")
	}
	if err := j.applyVerbLocked(VerbResume); err != nil {
		return err
	}
	j.userPaused = false
	j.pauseCount--
	m.cond.Broadcast()
	return nil
}

// Cancel is job-cancel (always a forced cancel). A job that is still working sees its
// context cancelled and aborts when its work function returns; one that already finished
// its work ("waiting", "pending") aborts at once. The error is "Operation canceled"
// unless the job already had one.
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookupLocked(id)
	if err != nil {
		return err
	}
	if err := j.applyVerbLocked(VerbCancel); err != nil {
		return err
	}
	j.cancelled = true
	if j.userPaused {
		j.userPaused = false
		j.pauseCount--
	}
	j.cancel()
	m.cond.Broadcast()
	if j.finished {
		j.abortLocked(ErrCanceled)
	}
	return nil
}

// Complete is job-complete.
func (m *Manager) Complete(id string) error {
	m.mu.Lock()
	j, err := m.lookupLocked(id)
	if err == nil {
		err = j.applyVerbLocked(VerbComplete)
	}
	if err == nil && (j.cancelled || j.opts.Complete == nil) {
		err = fmt.Errorf("The active block job '%s' cannot be completed", id)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return j.opts.Complete(j)
}

// Finalize is job-finalize: a job waiting in "pending" concludes.
func (m *Manager) Finalize(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookupLocked(id)
	if err != nil {
		return err
	}
	if err := j.applyVerbLocked(VerbFinalize); err != nil {
		return err
	}
	j.concludeLocked()
	return nil
}

// Dismiss is job-dismiss: a concluded job goes to "null" and its id becomes free.
func (m *Manager) Dismiss(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookupLocked(id)
	if err != nil {
		return err
	}
	if err := j.applyVerbLocked(VerbDismiss); err != nil {
		return err
	}
	j.dismissLocked()
	return nil
}
