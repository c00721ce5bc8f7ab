package hmp

import (
	"context"
	"errors"
	"testing"
)

func TestExecute(t *testing.T) {
	c := New()
	c.Register("stop|s", "-- stop emulation", func(ctx context.Context, args string) (string, error) { return "", nil })
	c.Register("info status", "-- show the current VM status (running|paused)", func(ctx context.Context, args string) (string, error) {
		return "VM status: running\n", nil
	})
	c.Register("info block", "[-n] [-v] [device] -- show info of one block device or all block devices", func(ctx context.Context, args string) (string, error) {
		return "args=" + args + "\n", nil
	})
	c.Register("delvm", "tag -- delete a VM snapshot from its tag", func(ctx context.Context, args string) (string, error) {
		return "", errors.New("Snapshot 'x' does not exist")
	})
	c.Register("echo", "text -- print", func(ctx context.Context, args string) (string, error) { return args + "\n", nil })
	c.Register("savevm", "savevm [tag] -- save a VM snapshot", func(ctx context.Context, args string) (string, error) { return "", nil })
	c.Register("info snapshots", "info snapshots  -- show the currently saved VM snapshots", func(ctx context.Context, args string) (string, error) { return "", nil })
	c.Register("panics", "-- bug", func(ctx context.Context, args string) (string, error) { panic("bug") })
	ctx := context.Background()
	cases := []struct{ in, want string }{
		{"info status", "VM status: running\r\n"},
		{"  info   status  ", "VM status: running\r\n"},
		{"info block -n  d0 ", "args=-n  d0\r\n"},
		{"info foo", "unknown command: 'info foo'\r\n"},
		{"  bogus x", "unknown command: '  bogus'\r\n"},
		{"stop", ""},
		{"s", ""},
		{"  s   x y ", "stop|s: extraneous characters at the end of line\r\nTry \"help   s\" for more information\r\n"},
		{"info status x", "status: extraneous characters at the end of line\r\nTry \"help info status\" for more information\r\n"},
		{"info snapshots x", "snapshots: extraneous characters at the end of line\r\nTry \"help info snapshots\" for more information\r\n"},
		{"savevm t1", ""},
		{"", ""},
		{"   ", ""},
		{"delvm x", "Error: Snapshot 'x' does not exist\r\n"},
		{"echo a\nb", "a\r\nb\r\n"},
		{"panics", "Error: internal error: bug\r\n"},
		{"info", "info block [-n] [-v] [device] -- show info of one block device or all block devices\r\ninfo snapshots  -- show the currently saved VM snapshots\r\ninfo status  -- show the current VM status (running|paused)\r\n"},
		{"help savevm", "savevm [tag] -- save a VM snapshot\r\n"},
		{"help stop", "stop|s  -- stop emulation\r\n"},
		{"help", "delvm tag -- delete a VM snapshot from its tag\r\necho text -- print\r\nhelp|? [cmd] -- show the help\r\ninfo [subcommand] -- show various information about the system state\r\npanics  -- bug\r\nsavevm [tag] -- save a VM snapshot\r\nstop|s  -- stop emulation\r\n"},
	}
	for _, tc := range cases {
		if got := c.Execute(ctx, tc.in); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.in, got, tc.want)
		}
	}
}

func TestDefaultFallback(t *testing.T) {
	Register("zz-global-test", "-- from Default", func(ctx context.Context, args string) (string, error) { return "global\n", nil })
	t.Cleanup(func() {
		Default.mu.Lock()
		delete(Default.cmds, "zz-global-test")
		Default.mu.Unlock()
	})
	c := New()
	if got := c.Execute(context.Background(), "zz-global-test"); got != "global\r\n" {
		t.Fatalf("got %q", got)
	}
}
