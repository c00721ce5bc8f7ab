package job

import "fmt"

// Status is QEMU's JobStatus.
type Status int

// The job states, in QEMU's order.
const (
	StatusUndefined Status = iota
	StatusCreated
	StatusRunning
	StatusPaused
	StatusReady
	StatusStandby
	StatusWaiting
	StatusPending
	StatusAborting
	StatusConcluded
	StatusNull
	numStatus
)

var statusNames = [numStatus]string{
	"undefined", "created", "running", "paused", "ready", "standby",
	"waiting", "pending", "aborting", "concluded", "null",
}

func (s Status) String() string {
	if s >= 0 && s < numStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText spells the status as QMP does.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// EnumValues lists the QMP names (QEMU's JobStatus enum), for introspection.
func (Status) EnumValues() []string { return statusNames[:] }

// UnmarshalText parses a QMP status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("job: unknown status %q", b)
}

// Verb is QEMU's JobVerb: a user command applied to a job.
type Verb int

// The verbs, in QEMU's order.
const (
	VerbCancel Verb = iota
	VerbPause
	VerbResume
	VerbSetSpeed
	VerbComplete
	VerbFinalize
	VerbDismiss
	numVerb
)

var verbNames = [numVerb]string{"cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss"}

func (v Verb) String() string {
	if v >= 0 && v < numVerb {
		return verbNames[v]
	}
	return fmt.Sprintf("Verb(%d)", int(v))
}

// allowedTransition is QEMU's JobSTT: allowedTransition[from][to]. Every status change
// goes through Job.transition, which consults it.
var allowedTransition = func() (t [numStatus][numStatus]bool) {
	allow := func(from Status, to ...Status) {
		for _, x := range to {
			t[from][x] = true
		}
	}
	allow(StatusUndefined, StatusCreated)
	allow(StatusCreated, StatusRunning, StatusAborting, StatusNull)
	allow(StatusRunning, StatusPaused, StatusReady, StatusWaiting, StatusAborting)
	allow(StatusPaused, StatusRunning)
	allow(StatusReady, StatusStandby, StatusWaiting, StatusAborting)
	allow(StatusStandby, StatusReady)
	allow(StatusWaiting, StatusPending, StatusAborting)
	allow(StatusPending, StatusAborting, StatusConcluded)
	allow(StatusAborting, StatusAborting, StatusConcluded)
	allow(StatusConcluded, StatusNull)
	return t
}()

// allowedVerb is QEMU's JobVerbTable: allowedVerb[verb][status].
var allowedVerb = func() (t [numVerb][numStatus]bool) {
	allow := func(v Verb, in ...Status) {
		for _, s := range in {
			t[v][s] = true
		}
	}
	active := []Status{StatusCreated, StatusRunning, StatusPaused, StatusReady, StatusStandby}
	allow(VerbCancel, append(active, StatusWaiting, StatusPending)...)
	allow(VerbPause, active...)
	allow(VerbResume, active...)
	allow(VerbSetSpeed, active...)
	allow(VerbComplete, StatusReady, StatusStandby)
	allow(VerbFinalize, StatusPending)
	allow(VerbDismiss, StatusConcluded)
	return t
}()

// TransitionAllowed reports whether QEMU's table permits from -> to.
func TransitionAllowed(from, to Status) bool {
	return from >= 0 && from < numStatus && to >= 0 && to < numStatus && allowedTransition[from][to]
}

// VerbAllowed reports whether QEMU's table accepts verb v in status s.
func VerbAllowed(v Verb, s Status) bool {
	return v >= 0 && v < numVerb && s >= 0 && s < numStatus && allowedVerb[v][s]
}
