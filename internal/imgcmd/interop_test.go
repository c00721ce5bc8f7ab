package imgcmd

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const toolsHint = "install it with scripts/setup.sh (Debian package qemu-utils / qemu-system-misc)"

// tool runs a real QEMU tool in dir and returns stdout, stderr and status.
func tool(t *testing.T, dir, name string, args ...string) (string, string, int) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: %s", name, toolsHint)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out.String(), errb.String(), code
}

func mustTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, errs, code := tool(t, dir, name, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d\n%s%s", name, args, code, out, errs)
	}
	return out
}

// ours runs snapvm-img in-process with dir as the working directory.
func ours(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	old, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(old)
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

func mustOurs(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errs, code := ours(t, dir, args...)
	if code != 0 {
		t.Fatalf("snapvm-img %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// normalize makes the two tools' messages comparable.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "qemu-img", "TOOL")
	return strings.ReplaceAll(s, Prog, "TOOL")
}

var actualSize = regexp.MustCompile(`("actual-size": )\d+|(disk size: ).*`)

func TestCreateAndInfoMatchQemuImg(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"create", "-f", "qcow2", "a.qcow2", "64M"},
		{"create", "-f", "qcow2", "-o", "cluster_size=4096,compat=0.10", "b.qcow2", "100M"},
		{"create", "-f", "qcow2", "-o", "cluster_size=2M,refcount_bits=64", "c.qcow2", "1.5G"},
		{"create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "d.qcow2"},
		{"create", "-f", "qcow2", "-o", "compat=v3", "-b", "a.qcow2", "-F", "qcow2", "e.qcow2", "128M"},
		{"create", "-f", "raw", "f.raw", "12345"},
		{"create", "-f", "qcow2", "g.qcow2", "12345"},
	}
	for _, c := range cases {
		qdir := filepath.Join(dir, "q")
		sdir := filepath.Join(dir, "s")
		os.MkdirAll(qdir, 0o755)
		os.MkdirAll(sdir, 0o755)
		qo, qe, qc := tool(t, qdir, "qemu-img", c...)
		so, se, sc := ours(t, sdir, c...)
		if qc != sc || normalize(qo) != normalize(so) || normalize(qe) != normalize(se) {
			t.Errorf("%v:\nqemu-img %d %q %q\nours     %d %q %q", c, qc, qo, qe, sc, so, se)
			continue
		}
		name := ""
		for _, a := range c {
			if strings.HasSuffix(a, ".qcow2") || strings.HasSuffix(a, ".raw") {
				name = a // the last one is the new image
			}
		}
		if strings.HasSuffix(name, ".qcow2") {
			mustTool(t, sdir, "qemu-img", "check", name)
		}
		for _, args := range [][]string{{"info", name}, {"info", "--output=json", name}, {"info", "--backing-chain", name}, {"info", "--output=json", "--backing-chain", name}} {
			// Our tool on our image prints what qemu-img prints for it.
			want := mustTool(t, sdir, "qemu-img", args...)
			got := mustOurs(t, sdir, args...)
			if got != want {
				t.Errorf("%v on our image:\nqemu-img:\n%s\nours:\n%s", args, want, got)
			}
			// Both tools' images describe themselves the same way, apart
			// from the space they take on the host.
			theirs := mustTool(t, qdir, "qemu-img", args...)
			if actualSize.ReplaceAllString(theirs, "$1$2") != actualSize.ReplaceAllString(got, "$1$2") {
				t.Errorf("%v differs between images:\nqemu-img's:\n%s\nours:\n%s", args, theirs, got)
			}
		}
	}
}

func TestSnapshotInterop(t *testing.T) {
	dir := t.TempDir()
	mustOurs(t, dir, "create", "-q", "-f", "qcow2", "img.qcow2", "16M")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0x11 0 1M", "img.qcow2")
	mustTool(t, dir, "qemu-img", "snapshot", "-c", "by-qemu", "img.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0x22 0 1M", "img.qcow2")
	mustOurs(t, dir, "snapshot", "-c", "by-snapvm", "img.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0x33 0 1M", "img.qcow2")
	mustTool(t, dir, "qemu-img", "check", "img.qcow2")

	want := mustTool(t, dir, "qemu-img", "snapshot", "-l", "img.qcow2")
	if got := mustOurs(t, dir, "snapshot", "-l", "img.qcow2"); got != want {
		t.Errorf("snapshot -l:\nqemu-img:\n%s\nours:\n%s", want, got)
	}
	if !strings.Contains(want, "by-qemu") || !strings.Contains(want, "by-snapvm") {
		t.Fatalf("list lacks a snapshot:\n%s", want)
	}
	for _, args := range [][]string{{"info", "img.qcow2"}, {"info", "--output=json", "img.qcow2"}} {
		if got, want := mustOurs(t, dir, args...), mustTool(t, dir, "qemu-img", args...); got != want {
			t.Errorf("%v:\nqemu-img:\n%s\nours:\n%s", args, want, got)
		}
	}
	var info struct {
		Snapshots []struct {
			DateNsec int64 `json:"date-nsec"`
		} `json:"snapshots"`
	}
	json.Unmarshal([]byte(mustOurs(t, dir, "info", "--output=json", "img.qcow2")), &info)
	if len(info.Snapshots) != 2 || info.Snapshots[1].DateNsec%1000 != 0 {
		t.Errorf("snapshots %+v: want two, dates in whole microseconds as qemu-img writes them", info.Snapshots)
	}
	// Ours applies qemu-img's snapshot, qemu-img applies ours.
	mustOurs(t, dir, "snapshot", "-a", "by-qemu", "img.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "read -P 0x11 0 1M", "img.qcow2")
	mustTool(t, dir, "qemu-img", "snapshot", "-a", "by-snapvm", "img.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "read -P 0x22 0 1M", "img.qcow2")
	mustOurs(t, dir, "snapshot", "-a", "1", "img.qcow2") // by id
	mustTool(t, dir, "qemu-io", "-c", "read -P 0x11 0 1M", "img.qcow2")
	// Each deletes the other's.
	mustOurs(t, dir, "snapshot", "-d", "by-qemu", "img.qcow2")
	mustTool(t, dir, "qemu-img", "snapshot", "-d", "by-snapvm", "img.qcow2")
	if out := mustTool(t, dir, "qemu-img", "snapshot", "-l", "img.qcow2"); out != "" {
		t.Errorf("snapshots left: %s", out)
	}
	mustTool(t, dir, "qemu-img", "check", "img.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "read -P 0x11 0 1M", "img.qcow2")

	// Error texts and statuses match qemu-img's.
	for _, args := range [][]string{
		{"snapshot", "-a", "nosuch", "img.qcow2"},
		{"snapshot", "-d", "nosuch", "img.qcow2"},
		{"snapshot", "-l", "-c", "x", "img.qcow2"},
	} {
		qo, qe, qc := tool(t, dir, "qemu-img", args...)
		so, se, sc := ours(t, dir, args...)
		if qc != sc || qo != so || normalize(qe) != normalize(se) {
			t.Errorf("%v: qemu-img %d %q %q, ours %d %q %q", args, qc, qo, qe, sc, so, se)
		}
	}
}

func TestConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "32M")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0xaa 0 3M", "-c", "write -P 0xbb 20M 64k", "base.qcow2")
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "write -P 0xcc 1M 4k", "-c", "write -z 2M 64k", "-c", "write -P 0xdd 31M 1M", "top.qcow2")

	mustOurs(t, dir, "convert", "-O", "raw", "top.qcow2", "out.raw")
	mustOurs(t, dir, "convert", "-p", "-O", "qcow2", "-o", "cluster_size=16k", "top.qcow2", "out.qcow2")
	mustOurs(t, dir, "convert", "-f", "raw", "-O", "qcow2", "out.raw", "back.qcow2")
	mustOurs(t, dir, "convert", "-f", "qcow2", "-O", "raw", "back.qcow2", "back.raw")
	for _, f := range []string{"out.qcow2", "back.qcow2"} {
		mustTool(t, dir, "qemu-img", "check", f)
	}
	for _, f := range []string{"out.raw", "out.qcow2", "back.qcow2", "back.raw"} {
		if out := mustTool(t, dir, "qemu-img", "compare", "top.qcow2", f); out != "Images are identical.\n" {
			t.Errorf("%s: %s", f, out)
		}
	}
	// The raw output is sparse: only the written ranges take space.
	var st syscall.Stat_t
	syscall.Stat(filepath.Join(dir, "out.raw"), &st)
	if st.Blocks*512 > 8<<20 {
		t.Errorf("raw output takes %d bytes, want it sparse", st.Blocks*512)
	}
	// The progress output is qemu-img's.
	out := mustOurs(t, dir, "convert", "-p", "-O", "raw", "top.qcow2", "p.raw")
	if !strings.HasPrefix(out, "    (0.00/100%)\r") || !strings.HasSuffix(out, "    (100.00/100%)\r\n") {
		t.Errorf("progress %q", out)
	}
	// Converting from qemu-img's output back gives the same too.
	mustTool(t, dir, "qemu-img", "convert", "-O", "qcow2", "out.qcow2", "q.qcow2")
	if out, _, code := ours(t, dir, "compare", "q.qcow2", "back.raw"); code != 0 || out != "Images are identical.\n" {
		t.Errorf("compare: %d %s", code, out)
	}
}

func TestCompareMatchesQemuImg(t *testing.T) {
	dir := t.TempDir()
	for _, c := range [][]string{
		{"create", "-q", "-f", "qcow2", "e1.qcow2", "1M"},
		{"create", "-q", "-f", "qcow2", "e2.qcow2", "1M"},
		{"create", "-q", "-f", "qcow2", "e3.qcow2", "2M"},
		{"create", "-q", "-f", "raw", "r.raw", "1M"},
	} {
		mustTool(t, dir, "qemu-img", c...)
	}
	mustTool(t, dir, "qemu-io", "-c", "write -P 3 4100 512", "e2.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "write -P 3 1M 512", "e3.qcow2")
	for _, args := range [][]string{
		{"compare", "e1.qcow2", "r.raw"},
		{"compare", "e1.qcow2", "e2.qcow2"},
		{"compare", "-q", "e1.qcow2", "e2.qcow2"},
		{"compare", "e1.qcow2", "e3.qcow2"},
		{"compare", "e3.qcow2", "e1.qcow2"},
		{"compare", "-s", "e1.qcow2", "e3.qcow2"},
		{"compare", "e1.qcow2", "nosuch"},
		{"compare", "-f", "qcow2", "-F", "raw", "e1.qcow2", "r.raw"},
	} {
		qo, qe, qc := tool(t, dir, "qemu-img", args...)
		so, se, sc := ours(t, dir, args...)
		if qc != sc || qo != so || normalize(qe) != normalize(se) {
			t.Errorf("%v: qemu-img %d %q %q, ours %d %q %q", args, qc, qo, qe, sc, so, se)
		}
	}
}

// setRefcount rewrites the 16-bit refcount of cluster idx in the first
// refcount block of a fresh qcow2 image (to make leaks and corruptions).
func setRefcount(t *testing.T, path string, idx int, val uint16) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Clusters past the end of the file are not checked: make room.
	if st, _ := f.Stat(); st.Size() < int64(idx+1)<<16 {
		f.Truncate(int64(idx+1) << 16)
	}
	var b [8]byte
	f.ReadAt(b[:], 48)
	rt := int64(be64(b[:]))
	f.ReadAt(b[:], rt)
	rb := int64(be64(b[:]))
	f.WriteAt([]byte{byte(val >> 8), byte(val)}, rb+int64(idx)*2)
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func TestCheckMatchesQemuImg(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) {
		mustTool(t, dir, "qemu-img", "create", "-q", "-f", "qcow2", name, "16M")
		mustTool(t, dir, "qemu-io", "-c", "write -P 1 0 256k", name)
	}
	mk("clean.qcow2")
	mk("leak.qcow2")
	setRefcount(t, filepath.Join(dir, "leak.qcow2"), 12, 1)
	mk("corrupt.qcow2")
	setRefcount(t, filepath.Join(dir, "corrupt.qcow2"), 0, 0)
	mustTool(t, dir, "qemu-img", "create", "-q", "-f", "raw", "r.raw", "1M")
	for _, args := range [][]string{
		{"check", "clean.qcow2"},
		{"check", "--output=json", "clean.qcow2"},
		{"check", "leak.qcow2"},
		{"check", "--output=json", "leak.qcow2"},
		{"check", "corrupt.qcow2"},
		{"check", "--output=json", "corrupt.qcow2"},
		{"check", "r.raw"},
		{"check", "nosuch.qcow2"},
	} {
		qo, _, qc := tool(t, dir, "qemu-img", args...)
		so, _, sc := ours(t, dir, args...)
		if qc != sc || qo != so {
			t.Errorf("%v: qemu-img %d\n%s\nours %d\n%s", args, qc, qo, sc, so)
		}
	}
	// Repairing leaks: both report the fix and leave a clean image.
	for _, tl := range []string{"qemu-img", "ours"} {
		name := tl + "-leak.qcow2"
		mk(name)
		setRefcount(t, filepath.Join(dir, name), 12, 1)
		var out string
		var code int
		if tl == "ours" {
			out, _, code = ours(t, dir, "check", "-r", "leaks", name)
		} else {
			out, _, code = tool(t, dir, "qemu-img", "check", "-r", "leaks", name)
		}
		if code != 0 || !strings.Contains(out, "The following inconsistencies were found and repaired:\n\n    1 leaked clusters\n    0 corruptions\n") {
			t.Errorf("%s -r leaks: %d %s", tl, code, out)
		}
		mustTool(t, dir, "qemu-img", "check", name)
	}
}

func TestBenchWritesPattern(t *testing.T) {
	dir := t.TempDir()
	mustOurs(t, dir, "create", "-q", "-f", "qcow2", "b.qcow2", "8M")
	out := mustOurs(t, dir, "bench", "-w", "-c", "300", "-d", "8", "-s", "8k", "-S", "16k", "-o", "64k", "--pattern=7", "--flush-interval=100", "b.qcow2")
	if !strings.HasPrefix(out, "Sending 300 write requests, 8192 bytes each, 8 in parallel (starting at offset 65536, step size 16384)\nSending flush every 100 requests\nRun completed in ") {
		t.Errorf("output %q", out)
	}
	mustTool(t, dir, "qemu-img", "check", "b.qcow2")
	mustTool(t, dir, "qemu-io", "-c", "read -P 7 64k 8k", "-c", "read -P 0 72k 8k", "-c", "read -P 7 80k 8k", "b.qcow2")
	// Offsets wrap modulo (size - buffer size), as in qemu-img.
	sp := benchSpec{offset: 64 << 10, step: 16 << 10, bufSize: 8 << 10}
	if got := sp.offsetOf(600, 8<<20); got != (64<<10+600*16<<10)%(8<<20-8<<10) {
		t.Errorf("offset %d", got)
	}
	out = mustOurs(t, dir, "bench", "-c", "100", "-d", "4", "b.qcow2")
	if !strings.HasPrefix(out, "Sending 100 read requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)\n") {
		t.Errorf("read output %q", out)
	}
	if _, errs, code := ours(t, dir, "bench", "-c", "10", "-s", "16M", "b.qcow2"); code != 1 || errs != "snapvm-img: Failed request: Input/output error\n" {
		t.Errorf("oversized request: %d %q", code, errs)
	}
}

func TestResizeInterop(t *testing.T) {
	dir := t.TempDir()
	mustOurs(t, dir, "create", "-q", "-f", "qcow2", "r.qcow2", "1M")
	mustTool(t, dir, "qemu-io", "-c", "write -P 9 0 64k", "r.qcow2")
	if out := mustOurs(t, dir, "resize", "r.qcow2", "+1M"); out != "Image resized.\n" {
		t.Errorf("resize: %q", out)
	}
	mustOurs(t, dir, "resize", "r.qcow2", "3G")
	mustTool(t, dir, "qemu-img", "check", "r.qcow2")
	var info struct {
		Size int64 `json:"virtual-size"`
	}
	json.Unmarshal([]byte(mustTool(t, dir, "qemu-img", "info", "--output=json", "r.qcow2")), &info)
	if info.Size != 3<<30 {
		t.Errorf("size %d", info.Size)
	}
	mustTool(t, dir, "qemu-io", "-c", "read -P 9 0 64k", "-c", "read -P 0 2G 64k", "r.qcow2")
	qo, qe, qc := tool(t, dir, "qemu-img", "resize", "r.qcow2", "1M")
	so, se, sc := ours(t, dir, "resize", "r.qcow2", "1M")
	if qc != sc || qo != so || normalize(qe) != normalize(se) {
		t.Errorf("shrink: qemu-img %d %q %q, ours %d %q %q", qc, qo, qe, sc, so, se)
	}
}

// TestImageLocks: snapvm-img and QEMU's tools keep out of each other's way
// through QEMU's image locks.
func TestImageLocks(t *testing.T) {
	dir := t.TempDir()
	mustOurs(t, dir, "create", "-q", "-f", "qcow2", "l.qcow2", "16M")
	// qemu-io holding the image for writing keeps snapvm-img out.
	cmd := exec.Command("qemu-io", "-c", "sleep 5000", "l.qcow2")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu-io: %v (%s)", err, toolsHint)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	// Wait (without taking locks ourselves) until qemu-io holds the image.
	f, err := os.Open(filepath.Join(dir, "l.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(4 * time.Second); ; {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 101, Len: 1} // QEMU: write permission held
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
			t.Fatal(err)
		}
		if lk.Type != unix.F_UNLCK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu-io did not lock the image")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, errs, code := ours(t, dir, "snapshot", "-c", "x", "l.qcow2")
	if code != 1 || errs != "snapvm-img: Could not open 'l.qcow2': Failed to get \"write\" lock\nIs another process using the image [l.qcow2]?\n" {
		t.Errorf("snapshot -c on a busy image: %d %q", code, errs)
	}
	if _, errs, code := ours(t, dir, "info", "l.qcow2"); code != 1 || !strings.Contains(errs, `Failed to get shared "write" lock`) {
		t.Errorf("info on a busy image: %d %q", code, errs)
	}
	if _, _, code := ours(t, dir, "info", "-U", "l.qcow2"); code != 0 {
		t.Errorf("info -U on a busy image: %d", code)
	}
	cmd.Process.Kill()
	cmd.Wait()

	// snapvm-img holding it keeps qemu-img out, until it is done.
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	if err := e.lockImage(filepath.Join(dir, "l.qcow2"), true, true); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := tool(t, dir, "qemu-img", "info", "l.qcow2"); code == 0 || !strings.Contains(errs, `Failed to get shared "write" lock`) {
		t.Errorf("qemu-img info while snapvm-img writes: %d %q", code, errs)
	}
	e.releaseLocks()
	mustTool(t, dir, "qemu-img", "info", "l.qcow2")
}
