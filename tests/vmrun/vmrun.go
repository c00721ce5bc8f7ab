// Package vmrun starts qemu-system-riscv64 or snapvm on a bare-metal guest
// and captures what the guest prints on its serial port, for the end-to-end
// and differential tests under tests/.
package vmrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// QEMUCPU makes QEMU's hart look like snapvm's RV64IMAC one: without it
// QEMU 7.2 reports misa with F, D and H and a longer riscv,isa string.
const QEMUCPU = "rv64,h=false,f=false,d=false,zba=false,zbb=false,zbc=false,zbs=false,sstc=false,Zihintpause=false"

// Result is what one VM run produced.
type Result struct {
	Output   []byte // stdout: the guest's UART
	Stderr   []byte
	ExitCode int  // -1 if killed
	TimedOut bool // the run was ended by the timeout
	Stopped  bool // RunUntil's condition was met and the VM was killed
}

// QEMU returns the path of qemu-system-riscv64, failing the test when it is
// not installed.
func QEMU(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-riscv64")
	if err != nil {
		t.Fatalf("qemu-system-riscv64 not found: install it with scripts/setup.sh (Debian package qemu-system-misc)")
	}
	return p
}

// BootArgs is the qemu-system-riscv64 command line shared by QEMU and snapvm
// for a bare-metal guest; extra options are appended.
func BootArgs(kernel string, extra ...string) []string {
	return append([]string{"-M", "virt", "-bios", "none", "-nographic", "-kernel", kernel}, extra...)
}

// QEMUArgs is BootArgs plus the CPU model matching snapvm's hart.
func QEMUArgs(kernel string, extra ...string) []string {
	return BootArgs(kernel, append([]string{"-cpu", QEMUCPU}, extra...)...)
}

// Run starts bin with args, stdin closed, and waits until it exits or
// timeout passes (then kills it and reports TimedOut). err is set only when
// the program could not be started.
func Run(bin string, args []string, timeout time.Duration) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Output: out.Bytes(), Stderr: errb.Bytes(), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		r.TimedOut = true
		return r, nil
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return r, err
	}
	return r, nil
}

// RunUntil is Run for guests that never finish: it kills the VM as soon as
// until(stdout so far) holds (Stopped) or when timeout passes (TimedOut).
func RunUntil(bin string, args []string, timeout time.Duration, until func(out []byte) bool) (Result, error) {
	cmd := exec.Command(bin, args...)
	out := &OutputBuffer{}
	var errb bytes.Buffer
	cmd.Stdout = out
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var r Result
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-exited:
			break loop
		case <-deadline:
			r.TimedOut = true
			_ = cmd.Process.Kill()
			<-exited
			break loop
		case <-tick.C:
			if until(out.Bytes()) {
				r.Stopped = true
				_ = cmd.Process.Kill()
				<-exited
				break loop
			}
		}
	}
	r.Output, r.Stderr, r.ExitCode = out.Bytes(), errb.Bytes(), cmd.ProcessState.ExitCode()
	return r, nil
}

// Lines reports whether out holds at least n complete lines.
func Lines(n int) func(out []byte) bool {
	return func(out []byte) bool { return bytes.Count(out, []byte("\n")) >= n }
}

// OutputBuffer collects a VM process's output while tests read it; it is
// safe for concurrent use.
type OutputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *OutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes is a copy of what was written so far.
func (b *OutputBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// String is what was written so far.
func (b *OutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ModuleRoot is the directory holding go.mod.
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("vmrun: cannot locate the source directory")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vmrun: go.mod not found above " + filepath.Dir(file))
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// goTool is the go command of the toolchain running the tests, so a test
// run does not depend on PATH.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// Cleanup removes the snapvm binary built by Snapvm; call it from TestMain
// after m.Run.
func Cleanup() {
	if buildPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
}

// Snapvm builds ./cmd/snapvm once per test binary into a temporary
// directory and returns the executable's path. SNAPVM_BIN=/path/to/snapvm
// uses that binary instead.
func Snapvm(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SNAPVM_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "snapvm-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "snapvm")
		cmd := exec.Command(goTool(), "build", "-o", buildPath, "./cmd/snapvm")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/snapvm: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}
