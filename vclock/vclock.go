// Package vclock is the guest's virtual clock (QEMU's vm clock): it advances
// with host time only while the VM runs, stops while it is paused, and can be
// set from a snapshot so a restored guest sees continuous time.
package vclock

import (
	"sync"
	"time"
)

// Clock counts virtual nanoseconds. The zero value is a stopped clock at 0.
type Clock struct {
	mu      sync.Mutex
	base    int64     // guarded by mu: virtual ns accumulated before startedAt
	running bool      // guarded by mu
	started time.Time // guarded by mu: host time of the last Start
}

// Nanoseconds is the current virtual time.
func (c *Clock) Nanoseconds() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return c.base
	}
	return c.base + int64(time.Since(c.started))
}

// Running reports whether the clock advances.
func (c *Clock) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// Start lets the clock advance from its current value. Idempotent.
func (c *Clock) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return
	}
	c.running = true
	c.started = time.Now()
}

// Stop freezes the clock at its current value. Idempotent.
func (c *Clock) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	c.base += int64(time.Since(c.started))
	c.running = false
}

// Set moves the clock to ns (a snapshot's vm clock); it keeps running or
// stopped as it was.
func (c *Clock) Set(ns int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = ns
	c.started = time.Now()
}

// HostDeadline converts a future virtual time into how long the host must
// wait for it, assuming the clock keeps running. It returns a negative or
// zero duration when ns is already due.
func (c *Clock) HostDeadline(ns int64) time.Duration {
	return time.Duration(ns - c.Nanoseconds())
}
