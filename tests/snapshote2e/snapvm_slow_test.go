//go:build snapvm_e2e

package snapshote2e

import (
	"testing"
	"time"
)

// Filling and snapshotting 64 MiB takes the interpreter about a minute, so
// this one runs only with the snapvm_e2e tag.
func TestMemfillSnapshotOnSnapvm(t *testing.T) {
	checkMemfillSnapshot(t, snapvmBoot(t), 2*time.Minute)
}
