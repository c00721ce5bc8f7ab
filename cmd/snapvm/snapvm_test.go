package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/fdt"
	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/tests/vmrun"
)

// start runs snapvm in-process and returns its output buffers and a
// channel with the exit status.
func start(args ...string) (*vmrun.OutputBuffer, *vmrun.OutputBuffer, chan int) {
	var out, errb vmrun.OutputBuffer
	done := make(chan int, 1)
	go func() { done <- run(args, strings.NewReader(""), &out, &errb) }()
	return &out, &errb, done
}

func waitExit(t *testing.T, done chan int, errb *vmrun.OutputBuffer) int {
	t.Helper()
	select {
	case rc := <-done:
		return rc
	case <-time.After(60 * time.Second):
		t.Fatalf("snapvm did not exit; stderr:\n%s", errb.String())
	}
	return 0
}

func guestPath(t *testing.T, name string) string {
	t.Helper()
	p, err := guests.Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHelloMatchesQEMU boots the hello guest on snapvm and on
// qemu-system-riscv64 with the same options and compares the serial output.
func TestHelloMatchesQEMU(t *testing.T) {
	kernel := guestPath(t, "hello")
	for _, extra := range [][]string{nil, {"-m", "256M", "-append", "console=ttyS0 a=1"}, {"-smp", "2"}} {
		q, err := vmrun.Run(vmrun.QEMU(t), vmrun.QEMUArgs(kernel, extra...), 60*time.Second)
		if err != nil || q.TimedOut || q.ExitCode != 0 {
			t.Fatalf("qemu: %v %+v", err, q)
		}
		out, errb, done := start(vmrun.BootArgs(kernel, extra...)...)
		if rc := waitExit(t, done, errb); rc != 0 {
			t.Fatalf("snapvm exit %d; stderr %s", rc, errb.String())
		}
		if out.String() != string(q.Output) {
			t.Fatalf("serial output differs\nqemu:\n%s\nsnapvm:\n%s", q.Output, out.String())
		}
	}
}

func TestCommandLineErrors(t *testing.T) {
	for args, want := range map[string]string{
		"-foo":                       "snapvm: -foo: invalid option\n",
		"-kernel /nonexistent/k.elf": "snapvm: could not load kernel '/nonexistent/k.elf': no such file or directory\n",
		"-kernel k -drive file=/nonexistent/d.qcow2": "snapvm: -drive file=/nonexistent/d.qcow2: Could not open '/nonexistent/d.qcow2': no such file or directory\n",
	} {
		kernel := guestPath(t, "hello")
		a := strings.Fields(strings.ReplaceAll(args, "-kernel k", "-kernel "+kernel))
		_, errb, done := start(a...)
		if rc := waitExit(t, done, errb); rc != 1 {
			t.Errorf("%s: exit %d", args, rc)
		}
		if errb.String() != want {
			t.Errorf("%s: stderr %q, want %q", args, errb.String(), want)
		}
	}
	_, errb, done := start("-kernel", guestPath(t, "hello"), "-device", "virtio-blk-device,drive=nope")
	waitExit(t, done, errb)
	if !strings.Contains(errb.String(), "Property 'virtio-blk-device.drive' can't find value 'nope'") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestDumpDTBMatchesLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "virt.dtb")
	_, errb, done := start("-M", "virt,dumpdtb="+path, "-m", "1G")
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	blob, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	root, err := fdt.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	if reg := root.Lookup("/memory@80000000").U32s("reg"); len(reg) != 4 || reg[3] != 1<<30 {
		t.Fatalf("memory reg %v", reg)
	}
	if dtc, err := exec.LookPath("dtc"); err == nil {
		// When the device tree compiler is installed, it must accept the blob.
		if out, err := exec.Command(dtc, "-I", "dtb", "-O", "dts", "-o", os.DevNull, path).CombinedOutput(); err != nil {
			t.Fatalf("dtc: %v\n%s", err, out)
		}
	}
}

func TestSerialFileAndFailCode(t *testing.T) {
	dir := t.TempDir()
	outPath := filepath.Join(dir, "serial.txt")
	_, errb, done := start(vmrun.BootArgs(guestPath(t, "hello"), "-serial", "file:"+outPath)...)
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	b, _ := os.ReadFile(outPath)
	if !strings.HasPrefix(string(b), "Hello from snapvm guest") {
		t.Fatalf("serial file %q", b)
	}
}

func TestSerialUnixServerWaits(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "serial.sock")
	_, errb, done := start(vmrun.BootArgs(guestPath(t, "hello"), "-serial", "unix:"+sock+",server=on,wait=on")...)
	var c net.Conn
	var err error
	for i := 0; i < 500; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got bytes.Buffer
	got.ReadFrom(c)
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	// Nothing was lost before the client connected: the guest waited.
	if !strings.HasPrefix(got.String(), "Hello from snapvm guest\n") || !strings.HasSuffix(got.String(), "bye\n") {
		t.Fatalf("serial socket got %q", got.String())
	}
}

// qmpCommand connects to sock, negotiates and runs one command.
func qmpCommand(t *testing.T, sock, cmd string) map[string]any {
	t.Helper()
	var c net.Conn
	var err error
	for i := 0; i < 200; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n"))
	r.ReadString('\n')
	c.Write([]byte(cmd + "\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("qmp: %v", err)
		}
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		if _, ev := m["event"]; !ev {
			return m
		}
	}
}

// TestDiskcheckOnQcow2 runs the virtio-blk exercising guest on a qcow2 drive
// until it has verified two generations, ends it over QMP and checks the
// image with qemu-img.
func TestDiskcheckOnQcow2(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "d.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sock := filepath.Join(dir, "qmp.sock")
	out, errb, done := start(vmrun.BootArgs(guestPath(t, "diskcheck"),
		"-drive", "file="+img+",if=none,id=d0,format=qcow2", "-device", "virtio-blk-device,drive=d0",
		"-qmp", "unix:"+sock+",server=on,wait=off", "-S")...)
	st := qmpCommand(t, sock, `{"execute":"query-status"}`)
	if st["return"].(map[string]any)["status"] != "prelaunch" {
		t.Fatalf("status %v", st)
	}
	qmpCommand(t, sock, `{"execute":"cont"}`)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "diskcheck gen 2 ok") {
		if strings.Contains(out.String(), "MISMATCH") || time.Now().After(deadline) {
			t.Fatalf("guest output:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	qmpCommand(t, sock, `{"execute":"quit"}`)
	if rc := waitExit(t, done, errb); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command(qemuImg, "check", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
}

// TestOpenSBIBannerMatchesQEMU boots QEMU's own OpenSBI 1.1 (-bios default,
// no kernel) on both and compares the boot banner.
func TestOpenSBIBannerMatchesQEMU(t *testing.T) {
	fw, err := loadFirmware("default")
	if err != nil || len(fw) == 0 {
		t.Fatalf("%v: install it with scripts/setup.sh (Debian package qemu-system-data, with qemu-system-misc)", err)
	}
	const last = "Boot HART MEDELEG"
	banner := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			// The hardware performance counters are not modelled.
			if !strings.HasPrefix(l, "Boot HART MHPM Count") {
				keep = append(keep, l)
			}
			if strings.HasPrefix(l, last) {
				break
			}
		}
		return strings.Join(keep, "\n")
	}
	q, err := vmrun.Run(vmrun.QEMU(t), []string{"-M", "virt", "-nographic", "-bios", "default", "-cpu", vmrun.QEMUCPU}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(q.Output), last) {
		t.Fatalf("qemu output:\n%s", q.Output)
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	out, errb, done := start("-M", "virt", "-nographic", "-bios", "default", "-qmp", "unix:"+sock+",server=on,wait=off")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), last) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	qmpCommand(t, sock, `{"execute":"quit"}`)
	waitExit(t, done, errb)
	if got, want := banner(out.String()), banner(string(q.Output)); got != want {
		t.Fatalf("banner differs\nqemu:\n%s\nsnapvm:\n%s", want, got)
	}
}
