package block

import (
	"errors"
	"fmt"
)

// Action is one action of a transaction: SnapshotSync, SnapshotOverlay,
// InternalSnapshot or AbortAction.
type Action interface {
	newState() actionState
}

// actionState runs one action in the transaction's phases: prepare does
// the work and records how to undo it; after every action prepared, commit
// makes it final; on a failure abort undoes it (the failed action's too,
// which may be half done); clean always runs last.
type actionState interface {
	prepare(tx *txn) error
	commit()
	abort()
	clean()
}

func (a SnapshotSync) newState() actionState {
	return &externalState{sync: &a}
}

func (a SnapshotOverlay) newState() actionState {
	return &externalState{overlay: &a}
}

func (a InternalSnapshot) newState() actionState { return &internalState{a: a} }

func (AbortAction) newState() actionState { return abortState{} }

type abortState struct{}

func (abortState) prepare(*txn) error {
	return errors.New("Transaction aborted using Abort action")
}
func (abortState) commit() {}
func (abortState) abort()  {}
func (abortState) clean()  {}

type txn struct {
	g       *Graph
	grouped bool
}

func groupedErr(action string) error {
	return fmt.Errorf("Action '%s' does not support Transaction property completion-mode = grouped", action)
}

// Transaction runs actions as QEMU's transaction command does: with all
// backend I/O drained, it prepares each action in order; if all succeed it
// commits them, otherwise it aborts the prepared ones (and the failed one)
// in reverse order and returns the first error. grouped is
// completion-mode=grouped, which the snapshot actions refuse.
//
// A failed transaction leaves the graph as it was: every backend on its
// old node, the old nodes writable, overlays it opened closed and the
// overlay files it created removed.
func (g *Graph) Transaction(actions []Action, grouped bool) error {
	if len(actions) == 0 {
		return nil
	}
	release := g.Drain()
	defer release()
	tx := &txn{g: g, grouped: grouped}
	states := make([]actionState, 0, len(actions))
	var err error
	for _, a := range actions {
		s := a.newState()
		states = append(states, s)
		if err = s.prepare(tx); err != nil {
			break
		}
	}
	if err == nil {
		for _, s := range states {
			s.commit()
		}
	} else {
		for i := len(states) - 1; i >= 0; i-- {
			states[i].abort()
		}
	}
	for _, s := range states {
		s.clean()
	}
	return err
}

// SnapshotSync runs blockdev-snapshot-sync (a one-action transaction).
func (g *Graph) SnapshotSync(a SnapshotSync) error { return g.Transaction([]Action{a}, false) }

// SnapshotOverlay runs blockdev-snapshot (a one-action transaction).
func (g *Graph) SnapshotOverlay(a SnapshotOverlay) error { return g.Transaction([]Action{a}, false) }

// InternalSnapshot runs blockdev-snapshot-internal-sync.
func (g *Graph) InternalSnapshot(a InternalSnapshot) error { return g.Transaction([]Action{a}, false) }
