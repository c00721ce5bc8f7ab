package snapshote2e

import (
	"os"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

func TestMain(m *testing.M) {
	code := m.Run()
	vmrun.Cleanup()
	os.Exit(code)
}

func snapvmBoot(t *testing.T) boot { return bootWith("snapvm", vmrun.Snapvm(t), vmrun.BootArgs) }

func TestTickerSnapshotOnSnapvm(t *testing.T) {
	checkTickerSnapshot(t, snapvmBoot(t), time.Minute)
}

func TestDiskcheckSnapshotOnSnapvm(t *testing.T) {
	checkDiskcheckSnapshot(t, snapvmBoot(t), time.Minute)
}
