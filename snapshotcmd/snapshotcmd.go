// Package snapshotcmd puts VM snapshots on the monitor: the QMP jobs
// snapshot-save, snapshot-load and snapshot-delete, and the HMP commands
// savevm, loadvm, delvm and info snapshots, all over package snapshot.
package snapshotcmd

import (
	"context"
	"strings"
	"sync"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/hmp"
	"github.com/snapvm/snapvm/job"
	"github.com/snapvm/snapvm/qmp"
	"github.com/snapvm/snapvm/snapshot"
)

// Disks adapts a block graph to what the snapshot code resolves.
func Disks(g *block.Graph) snapshot.Disks { return graphDisks{g} }

type graphDisks struct{ g *block.Graph }

func (d graphDisks) disk(n *block.Node) snapshot.Disk {
	device := ""
	for _, b := range d.g.Backends() {
		if b.Name() != "" && b.Root() == n {
			device = b.Name()
			break
		}
	}
	return snapshot.Disk{
		NodeName: n.NodeName(),
		Device:   device,
		Display:  d.g.DeviceOrNodeName(n),
		Image:    n.Qcow2(),
		ReadOnly: n.ReadOnly(),
	}
}

func (d graphDisks) Lookup(name string) (snapshot.Disk, bool) {
	n, ok := d.g.Node(name)
	if !ok {
		return snapshot.Disk{}, false
	}
	return d.disk(n), true
}

func (d graphDisks) WritableRoots() []snapshot.Disk {
	var out []snapshot.Disk
	for _, n := range d.g.WritableRoots() {
		out = append(out, d.disk(n))
	}
	return out
}

// SaveArgs are snapshot-save's arguments, in the schema's order.
type SaveArgs struct {
	JobID   string   `json:"job-id"`
	Tag     string   `json:"tag"`
	VMState string   `json:"vmstate"`
	Devices []string `json:"devices"`
}

// LoadArgs are snapshot-load's arguments.
type LoadArgs SaveArgs

// DeleteArgs are snapshot-delete's arguments.
type DeleteArgs struct {
	JobID   string   `json:"job-id"`
	Tag     string   `json:"tag"`
	Devices []string `json:"devices"`
}

// Commands serialises snapshot operations: a job and an HMP command never
// run at the same time.
type Commands struct {
	mu  sync.Mutex
	mgr *snapshot.Manager
}

// Register adds the snapshot commands to a QMP server, its job manager and
// an HMP command set.
func Register(s *qmp.Server, jobs *job.Manager, h *hmp.Commands, mgr *snapshot.Manager) *Commands {
	c := &Commands{mgr: mgr}
	qmp.Register(s, "snapshot-save", func(ctx context.Context, a SaveArgs) (struct{}, error) {
		return struct{}{}, c.startJob(jobs, a.JobID, "snapshot-save", func(p snapshot.Progress) error {
			return mgr.Save(a.Tag, a.VMState, a.Devices, snapshot.SaveOptions{Progress: p})
		})
	})
	qmp.Register(s, "snapshot-load", func(ctx context.Context, a LoadArgs) (struct{}, error) {
		return struct{}{}, c.startJob(jobs, a.JobID, "snapshot-load", func(p snapshot.Progress) error {
			return mgr.Load(a.Tag, a.VMState, a.Devices, snapshot.LoadOptions{Progress: p})
		})
	})
	qmp.Register(s, "snapshot-delete", func(ctx context.Context, a DeleteArgs) (struct{}, error) {
		return struct{}{}, c.startJob(jobs, a.JobID, "snapshot-delete", func(p snapshot.Progress) error {
			p(0, 1)
			err := mgr.Delete(a.Tag, a.Devices)
			p(1, 1)
			return err
		})
	})

	h.Register("savevm", "savevm [tag] -- save a VM snapshot. If no tag is provided, a new snapshot is created",
		func(ctx context.Context, args string) (string, error) {
			tag, usage := tagArg("savevm", args, false)
			if usage != "" {
				return usage, nil
			}
			return "", c.locked(func() error { return mgr.SaveHMP(tag) })
		})
	h.Register("loadvm", "loadvm tag -- restore a VM snapshot from its tag",
		func(ctx context.Context, args string) (string, error) {
			tag, usage := tagArg("loadvm", args, true)
			if usage != "" {
				return usage, nil
			}
			return "", c.locked(func() error { return mgr.LoadHMP(tag) })
		})
	h.Register("delvm", "delvm tag -- delete a VM snapshot from its tag",
		func(ctx context.Context, args string) (string, error) {
			tag, usage := tagArg("delvm", args, true)
			if usage != "" {
				return usage, nil
			}
			return "", c.locked(func() error { return mgr.DeleteHMP(tag) })
		})
	h.Register("info snapshots", "info snapshots  -- show the currently saved VM snapshots",
		func(ctx context.Context, args string) (string, error) {
			var out string
			c.locked(func() error { out = mgr.InfoSnapshots(); return nil })
			return out, nil
		})
	return c
}

// tagArg reads the one-word tag argument as QEMU's HMP parser does: a
// missing required word or extra words give its usage texts.
func tagArg(cmd, args string, required bool) (tag, usage string) {
	words := strings.Fields(args)
	switch {
	case len(words) == 0 && required:
		return "", cmd + ": string expected\nTry \"help " + cmd + "\" for more information\n"
	case len(words) > 1:
		return "", cmd + ": extraneous characters at the end of line\nTry \"help " + cmd + "\" for more information\n"
	case len(words) == 1:
		return words[0], ""
	}
	return "", ""
}

func (c *Commands) locked(fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fn()
}

// startJob creates a job that needs job-dismiss, as QEMU's snapshot jobs
// do, and runs the operation in it with progress following the real work.
func (c *Commands) startJob(jobs *job.Manager, id, typ string, op func(snapshot.Progress) error) error {
	_, err := jobs.Create(id, typ, job.Options{ManualDismiss: true}, func(ctx context.Context, j *job.Job) error {
		var reported int64
		progress := func(done, total int64) {
			j.SetTotal(max(total, done))
			if done > reported {
				j.Progress(done - reported)
				reported = done
			}
		}
		return c.locked(func() error { return op(progress) })
	})
	if err != nil {
		return err
	}
	return nil
}
