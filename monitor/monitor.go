// Package monitor puts the machine, the block graph and the job registry on QMP and HMP:
// it registers QEMU 7.2's run-state, job and block commands on a qmp.Server, forwards
// the machine's run-state events and the jobs' JOB_STATUS_CHANGE to every client, and
// offers the server, the job manager and the HMP command set to the packages that add
// their own commands (snapshots).
package monitor

import (
	"context"
	"log/slog"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/hmp"
	"github.com/snapvm/snapvm/job"
	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/qmp"
)

// Options configure a Monitor.
type Options struct {
	// Package is the "package" string of the QMP greeting and query-version.
	Package string
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// ShutdownTimeout bounds how long quit waits for the machine to finish and Close
	// waits for clients to receive their last messages. 0 = 5 s.
	ShutdownTimeout time.Duration
}

// Monitor is the VM's monitor: one QMP server (any number of listeners and clients),
// the job registry and the human monitor.
type Monitor struct {
	m    *machine.Machine
	g    *block.Graph
	srv  *qmp.Server
	jobs *job.Manager
	hmp  *hmp.Commands
	opts Options
}

// New builds the monitor for m and g and registers every command and event. g may be
// nil when the VM has no block devices. Commands are served once Listen or
// Server().ServeConn is called.
func New(m *machine.Machine, g *block.Graph, opts Options) *Monitor {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	if g == nil {
		g = block.NewGraph()
	}
	srv := qmp.NewServer(qmp.ServerOptions{Package: opts.Package, Logger: opts.Logger})
	mon := &Monitor{m: m, g: g, srv: srv, opts: opts, hmp: hmp.New()}
	mon.jobs = job.NewManager(srv.Emit)
	m.Subscribe(func(ev machine.Event) { srv.Emit(ev.Kind, ev.Data) })
	mon.registerEvents()
	mon.registerRunState()
	mon.registerJobs()
	mon.registerBlock()
	mon.registerHMP()
	return mon
}

// Server is the QMP server; other packages add commands with qmp.Register on it.
func (mon *Monitor) Server() *qmp.Server { return mon.srv }

// Jobs is the shared job registry (query-jobs, job-*).
func (mon *Monitor) Jobs() *job.Manager { return mon.jobs }

// HMP is the human monitor's command set; other packages add commands to it.
func (mon *Monitor) HMP() *hmp.Commands { return mon.hmp }

// Machine returns the machine the monitor drives.
func (mon *Monitor) Machine() *machine.Machine { return mon.m }

// Blocks returns the block graph.
func (mon *Monitor) Blocks() *block.Graph { return mon.g }

// Listen opens one listener per -qmp spec and serves each on its own goroutine. The
// returned listeners tell whether the spec asked to wait for a client (wait=on) and when
// one connected. On error, listeners already opened are closed.
func (mon *Monitor) Listen(specs ...string) ([]*qmp.Listener, error) {
	var ls []*qmp.Listener
	for _, spec := range specs {
		l, err := qmp.Listen(spec)
		if err != nil {
			for _, x := range ls {
				x.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		go mon.srv.Serve(l)
	}
	return ls, nil
}

// Close ends the monitor: the command in progress finishes, clients get what is queued
// for them (the answer to quit, the SHUTDOWN event), then every connection and listener
// is closed.
func (mon *Monitor) Close() error {
	mon.srv.Shutdown(mon.opts.ShutdownTimeout)
	return nil
}

// empty is the {} every command without a return value answers.
type empty = struct{}

func (mon *Monitor) registerEvents() {
	qmp.RegisterEvent[empty](mon.srv, machine.EventStop)
	qmp.RegisterEvent[empty](mon.srv, machine.EventResume)
	qmp.RegisterEvent[machine.Cause](mon.srv, machine.EventShutdown)
	qmp.RegisterEvent[machine.Cause](mon.srv, machine.EventReset)
	qmp.RegisterEvent[empty](mon.srv, machine.EventPowerdown)
	qmp.RegisterEvent[job.StatusChange](mon.srv, job.EventStatusChange)
}

// StatusInfo is query-status's answer.
type StatusInfo struct {
	Status     string `json:"status"`
	Singlestep bool   `json:"singlestep"`
	Running    bool   `json:"running"`
}

// NameInfo is query-name's answer.
type NameInfo struct {
	Name *string `json:"name,omitempty"`
}

func (mon *Monitor) queryStatus() StatusInfo {
	st := mon.m.RunState()
	return StatusInfo{Status: string(st), Running: st == machine.RunStateRunning}
}

// vmJobTypes are the jobs that own the VM's run state while they work: they stop the
// guest, copy or replace its state, and resume it. QEMU runs them in one main-loop
// callback, so no monitor command can come in between; snapvm runs them on their own
// goroutine, so the run-state commands wait for them instead.
var vmJobTypes = map[string]bool{"snapshot-save": true, "snapshot-load": true}

// waitVMJobs blocks until no job of vmJobTypes is still working.
func (mon *Monitor) waitVMJobs() {
	for _, in := range mon.jobs.Query() {
		if !vmJobTypes[in.Type] || in.Status != job.StatusCreated && in.Status != job.StatusRunning {
			continue
		}
		j, ok := mon.jobs.Get(in.ID)
		if !ok {
			continue
		}
		select {
		case <-j.Done():
		case <-mon.m.Done():
			return
		}
	}
}

// stop is QMP stop: only a running VM changes state (QEMU's vm_stop leaves prelaunch
// and the other stopped states alone).
func (mon *Monitor) stop() {
	mon.waitVMJobs()
	if mon.m.RunState() == machine.RunStateRunning {
		mon.m.Stop(machine.RunStatePaused)
	}
}

// cont is QMP cont.
func (mon *Monitor) cont() error {
	mon.waitVMJobs()
	switch mon.m.RunState() {
	case machine.RunStateShutdown, machine.RunStateInternalError:
		return qmp.Errorf("Resetting the Virtual Machine is required")
	case machine.RunStateRunning:
		return nil
	}
	mon.m.Resume()
	return nil
}

// quit is QMP quit: SHUTDOWN (host-qmp-quit) is emitted before the answer, and the
// process leaves once the machine is done and Close has flushed the clients.
func (mon *Monitor) quit() {
	mon.waitVMJobs()
	mon.m.Shutdown("host-qmp-quit")
	select {
	case <-mon.m.Done():
	case <-time.After(mon.opts.ShutdownTimeout):
		mon.logger().Warn("monitor: machine did not finish after quit")
	}
}

// reset is QMP system_reset.
func (mon *Monitor) reset() {
	mon.waitVMJobs()
	mon.m.Reset()
}

func (mon *Monitor) logger() *slog.Logger {
	if mon.opts.Logger != nil {
		return mon.opts.Logger
	}
	return slog.Default()
}

func (mon *Monitor) registerRunState() {
	s := mon.srv
	qmp.Register(s, "query-status", func(context.Context, empty) (StatusInfo, error) {
		return mon.queryStatus(), nil
	})
	qmp.Register(s, "stop", func(context.Context, empty) (empty, error) {
		mon.stop()
		return empty{}, nil
	})
	qmp.Register(s, "cont", func(context.Context, empty) (empty, error) {
		return empty{}, mon.cont()
	})
	qmp.Register(s, "system_reset", func(context.Context, empty) (empty, error) {
		mon.reset()
		return empty{}, nil
	})
	qmp.Register(s, "system_powerdown", func(context.Context, empty) (empty, error) {
		mon.m.Powerdown()
		return empty{}, nil
	})
	qmp.Register(s, "quit", func(context.Context, empty) (empty, error) {
		mon.quit()
		return empty{}, nil
	})
	qmp.Register(s, "query-name", func(context.Context, empty) (NameInfo, error) {
		var ni NameInfo
		if n := mon.m.Name(); n != "" {
			ni.Name = &n
		}
		return ni, nil
	})
}

// JobArgs are the arguments of the job-* commands.
type JobArgs struct {
	ID string `json:"id"`
}

func (mon *Monitor) registerJobs() {
	s, jm := mon.srv, mon.jobs
	qmp.Register(s, "query-jobs", func(context.Context, empty) ([]job.Info, error) {
		return jm.Query(), nil
	})
	verbs := []struct {
		name string
		f    func(string) error
	}{
		{"job-pause", jm.Pause},
		{"job-resume", jm.Resume},
		{"job-cancel", jm.Cancel},
		{"job-complete", jm.Complete},
		{"job-finalize", jm.Finalize},
		{"job-dismiss", jm.Dismiss},
	}
	for _, v := range verbs {
		qmp.Register(s, v.name, func(_ context.Context, a JobArgs) (empty, error) {
			return empty{}, v.f(a.ID)
		})
	}
}
