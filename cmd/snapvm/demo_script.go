package main

import (
	"fmt"
	"io"
	"time"

	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/snapshot"
)

// demoScript shows what snapvm is for: a little after boot it takes a VM
// snapshot, lets the guest run on, then loads the snapshot so the guest's
// ticks continue from the saved one. The guest keeps running afterwards,
// for the user to try the same over QMP.
func demoScript(m *machine.Machine, mgr *snapshot.Manager, stderr io.Writer) {
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "snapvm: demo: "+format+"\n", args...) }
	wait := func(d time.Duration) bool {
		select {
		case <-m.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !wait(1500 * time.Millisecond) {
		return
	}
	start := time.Now()
	if err := mgr.Save("demo", "disk0", []string{"disk0"}, snapshot.SaveOptions{}); err != nil {
		say("snapshot-save failed: %v", err)
		return
	}
	say("saved VM snapshot 'demo' on disk0 in %v; the guest runs on", time.Since(start).Round(time.Millisecond))
	if !wait(1500 * time.Millisecond) {
		return
	}
	start = time.Now()
	if err := mgr.Load("demo", "disk0", []string{"disk0"}, snapshot.LoadOptions{}); err != nil {
		say("snapshot-load failed: %v", err)
		return
	}
	say("loaded VM snapshot 'demo' in %v; the ticks continue from the saved one", time.Since(start).Round(time.Millisecond))
}
