package monitor

import (
	"context"
	"fmt"

	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/qmp"
)

// HumanArgs are human-monitor-command's arguments.
type HumanArgs struct {
	CommandLine string `json:"command-line"`
	CPUIndex    *int64 `json:"cpu-index,omitempty"`
}

func (mon *Monitor) registerHMP() {
	qmp.Register(mon.srv, "human-monitor-command", func(ctx context.Context, a HumanArgs) (string, error) {
		return mon.hmp.Execute(ctx, a.CommandLine), nil
	})
	h := mon.hmp
	h.Register("info status", "-- show the current VM status (running|paused)", func(context.Context, string) (string, error) {
		// QEMU prints "paused" for every stopped state and names it unless it is
		// plain "paused".
		st := mon.queryStatus()
		if st.Running {
			return "VM status: running\n", nil
		}
		if st.Status == string(machine.RunStatePaused) {
			return "VM status: paused\n", nil
		}
		return fmt.Sprintf("VM status: paused (%s)\n", st.Status), nil
	})
	h.Register("info block", "[-n] [-v] [device] -- show info of one block device or all block devices (-n: show named nodes; -v: show details)",
		func(_ context.Context, args string) (string, error) { return mon.infoBlock(args) })
	h.Register("info version", "-- show the version of QEMU", func(context.Context, string) (string, error) {
		v := mon.srv.Version()
		// QEMU prints the package right after the number, without a space.
		return fmt.Sprintf("%d.%d.%d%s\n", v.Qemu.Major, v.Qemu.Minor, v.Qemu.Micro, v.Package), nil
	})
	h.Register("info name", "-- show the current VM name", func(context.Context, string) (string, error) {
		if n := mon.m.Name(); n != "" {
			return n + "\n", nil
		}
		return "", nil
	})
	h.Register("stop|s", "-- stop emulation", func(context.Context, string) (string, error) {
		mon.stop()
		return "", nil
	})
	h.Register("cont|c", "-- resume emulation", func(context.Context, string) (string, error) {
		return "", mon.cont()
	})
	h.Register("system_reset", "-- reset the system", func(context.Context, string) (string, error) {
		mon.reset()
		return "", nil
	})
	h.Register("system_powerdown", "-- send system power down event", func(context.Context, string) (string, error) {
		mon.m.Powerdown()
		return "", nil
	})
	h.Register("quit|q", "-- quit the emulator", func(context.Context, string) (string, error) {
		mon.quit()
		return "", nil
	})
}
