package snapshote2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/tests/vmrun"
)

// target is a VMM under test: snapvm or qemu-system-riscv64.
type target struct {
	name string
	bin  string
	args func(kernel string, extra ...string) []string
	qemu bool
}

func snapvmTarget(t *testing.T) target {
	return target{name: "snapvm", bin: vmrun.Snapvm(t), args: vmrun.BootArgs}
}

func qemuTarget(t *testing.T) target {
	return target{name: "qemu", bin: vmrun.QEMU(t), args: vmrun.QEMUArgs, qemu: true}
}

// qcow2Disk is the command-line pair attaching image file as qcow2 node
// name behind a virtio-blk device.
func qcow2Disk(name, file string) []string {
	return []string{
		"-blockdev", "driver=qcow2,node-name=" + name + ",file.driver=file,file.filename=" + file,
		"-device", "virtio-blk-device,drive=" + name,
	}
}

// bootTicker starts the ticker guest (64 MiB RAM) with the given qcow2
// images as nodes d0, d1, ... and waits for its first tick.
func bootTicker(t *testing.T, tg target, images []string, extra ...string) *qvm {
	t.Helper()
	kernel, err := guests.Path("ticker")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-m", "64M"}
	for i, img := range images {
		args = append(args, qcow2Disk("d"+string(rune('0'+i)), img)...)
	}
	v := launch(t, tg.name, tg.bin, tg.args(kernel, append(args, extra...)...))
	if !slices.Contains(extra, "-S") {
		v.waitLine(t, 0, time.Minute, "tick 1", func(l string) bool { return l == "tick 1" })
	}
	return v
}

// qemuImg runs qemu-img and returns its combined output, failing the test
// when it exits non-zero.
func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	seqRunning = []string{"created", "running", "STOP", "RESUME", "waiting", "pending", "concluded"}
	seqPaused  = []string{"created", "running", "waiting", "pending", "concluded"}
	seqFailed  = []string{"created", "running", "aborting", "concluded"}
	// QEMU 7.2 stops the VM before it validates a load and leaves it
	// stopped when the load fails.
	seqQEMUFailedLoad = []string{"created", "running", "STOP", "aborting", "concluded"}
)

// expand turns a short sequence (job statuses, STOP, RESUME) into the
// strings snapJob returns for job id.
func expand(id string, short []string) []string {
	var out []string
	for _, s := range short {
		if s == "STOP" || s == "RESUME" {
			out = append(out, s)
		} else {
			out = append(out, "JOB_STATUS_CHANGE "+s+" "+id)
		}
	}
	return out
}

func wantSeq(t *testing.T, what string, got []string, id string, short []string) {
	t.Helper()
	if want := expand(id, short); !slices.Equal(got, want) {
		t.Errorf("%s: events\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantStatus(t *testing.T, q *qconn, want string) {
	t.Helper()
	if got := q.status(t); got != want {
		t.Errorf("%s: query-status %q, want %q", q.name, got, want)
	}
}

// checkJobEvents runs successful snapshot-save, -load and -delete jobs on
// a running and on a paused VM and checks the exact event sequences of
// the seed, query-jobs and job-dismiss.
func checkJobEvents(t *testing.T, tg target) {
	dir := t.TempDir()
	d0, d1 := newDiskIn(t, dir, "d0.qcow2"), newDiskIn(t, dir, "d1.qcow2")
	v := bootTicker(t, tg, []string{d0, d1})
	q := v.q
	both := []string{"d0", "d1"}

	wantSeq(t, "save, running", q.okJob(t, "snapshot-save", "save0", "s1", "d0", both...), "save0", seqRunning)
	wantStatus(t, q, "running")
	wantSeq(t, "load, running", q.okJob(t, "snapshot-load", "load0", "s1", "d0", both...), "load0", seqRunning)
	wantStatus(t, q, "running")

	from := q.mark()
	q.run(t, "stop", nil)
	q.waitEvent(t, from, "STOP", func(e qevent) bool { return e.Name == "STOP" })
	wantSeq(t, "save, paused", q.okJob(t, "snapshot-save", "save1", "s2", "d0", both...), "save1", seqPaused)
	wantStatus(t, q, "paused")
	wantSeq(t, "load, paused", q.okJob(t, "snapshot-load", "load1", "s1", "d0", both...), "load1", seqPaused)
	wantStatus(t, q, "paused")
	mark := len(v.out.String())
	q.run(t, "cont", nil)
	v.waitLine(t, mark, time.Minute, "a tick after cont", func(l string) bool { return tickOf(l) > 0 })

	wantSeq(t, "delete", q.okJob(t, "snapshot-delete", "del0", "s2", "", both...), "del0", seqPaused)
	wantSeq(t, "delete of a tag that exists nowhere", q.okJob(t, "snapshot-delete", "del1", "nosuch", "", both...), "del1", seqPaused)
	wantStatus(t, q, "running")
	if jobs := q.jobs(t); len(jobs) != 0 {
		t.Errorf("jobs left after dismissing all: %+v", jobs)
	}

	// The VM state may live on any listed node; an empty tag is a name
	// like any other.
	q.okJob(t, "snapshot-save", "save2", "", "d1", both...)
	checkSnapshotList(t, d0, map[string]bool{"s1": true, "": false})
	checkSnapshotList(t, d1, map[string]bool{"s1": false, "": true})
	wantSeq(t, "load, vm state on d1", q.okJob(t, "snapshot-load", "load2", "", "d1", both...), "load2", seqRunning)
	wantStatus(t, q, "running")
	q.okJob(t, "snapshot-delete", "del2", "", "", both...)

	// Concluded jobs stay until dismissed and are listed newest first.
	q.snapJob(t, "snapshot-save", "older", "s3", "d0", both)
	q.snapJob(t, "snapshot-delete", "newer", "s3", "", both)
	if jobs := q.jobs(t); len(jobs) != 2 || jobs[0].ID != "newer" || jobs[1].ID != "older" {
		t.Errorf("query-jobs with two concluded jobs: %+v", jobs)
	} else {
		checkConcludedJob(t, q.name, jobs[0], "snapshot-delete")
		checkConcludedJob(t, q.name, jobs[1], "snapshot-save")
	}
	// Verbs a concluded job refuses, with QEMU's texts; job-resume checks
	// "not paused" before the verb.
	for verb, want := range map[string]string{
		"job-cancel":   "Job 'older' in state 'concluded' cannot accept command verb 'cancel'",
		"job-pause":    "Job 'older' in state 'concluded' cannot accept command verb 'pause'",
		"job-complete": "Job 'older' in state 'concluded' cannot accept command verb 'complete'",
		"job-finalize": "Job 'older' in state 'concluded' cannot accept command verb 'finalize'",
		"job-resume":   "Can't resume a job that was not paused",
	} {
		if _, qe := q.call(t, verb, map[string]any{"id": "older"}); qe == nil || qe.Class != "GenericError" || qe.Desc != want {
			t.Errorf("%s of a concluded job: %v, want %q", verb, qe, want)
		}
	}
	q.dismiss(t, "older")
	q.dismiss(t, "newer")
	if _, qe := q.call(t, "job-dismiss", map[string]any{"id": "older"}); qe == nil || qe.Desc != "Job not found" {
		t.Errorf("job-dismiss of a dismissed job: %v", qe)
	}

	// stop sent right behind a save takes effect after the save: the
	// save's STOP and RESUME, then the stop's STOP.
	from = q.mark()
	q.run(t, "snapshot-save", map[string]any{"job-id": "save3", "tag": "s4", "vmstate": "d0", "devices": both})
	q.run(t, "stop", nil)
	q.waitEvent(t, from, "save3 concluded", jobEvent("save3", "concluded"))
	var runEvents []string
	for _, e := range q.eventsFrom(from) {
		if e.Name == "STOP" || e.Name == "RESUME" {
			runEvents = append(runEvents, e.Name)
		}
	}
	if want := []string{"STOP", "RESUME", "STOP"}; !slices.Equal(runEvents, want) {
		t.Errorf("save then stop: run-state events %v, want %v", runEvents, want)
	}
	wantStatus(t, q, "paused")
	checkConcludedJob(t, q.name, q.job(t, "save3"), "snapshot-save")
	q.dismiss(t, "save3")
	q.okJob(t, "snapshot-delete", "del3", "s4", "", both...)
	v.quit(t)
	checkSnapshotList(t, d0, map[string]bool{"s1": true})
	checkSnapshotList(t, d1, map[string]bool{"s1": false})
	for _, img := range []string{d0, d1} {
		qemuImg(t, "check", img)
	}
}

func newDiskIn(t *testing.T, dir, name string) string {
	t.Helper()
	img := filepath.Join(dir, name)
	qemuImg(t, "create", "-q", "-f", "qcow2", img, "16M")
	return img
}

// checkJobErrors drives the failing cases of the three jobs: each ends
// concluded with QEMU's (or snapvm's documented) error text in query-jobs,
// and a failed load leaves a running snapvm guest running.
func checkJobErrors(t *testing.T, tg target) {
	dir := t.TempDir()
	d0, d1 := newDiskIn(t, dir, "d0.qcow2"), newDiskIn(t, dir, "d1.qcow2")
	ro := newDiskIn(t, dir, "ro.qcow2")
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	v := bootTicker(t, tg, []string{d0, d1})
	q := v.q
	q.run(t, "blockdev-add", map[string]any{"driver": "raw", "node-name": "r0",
		"file": map[string]any{"driver": "file", "filename": raw}})
	q.run(t, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": "ro0", "read-only": true,
		"file": map[string]any{"driver": "file", "filename": ro}})

	// A qcow2 node over a named protocol node: the protocol node (f0)
	// cannot hold snapshots.
	q.run(t, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": "x0",
		"file": map[string]any{"driver": "file", "node-name": "f0", "filename": newDiskIn(t, dir, "x0.qcow2")}})
	q.okJob(t, "snapshot-save", "prep0", "s1", "d0", "d0", "d1")
	q.okJob(t, "snapshot-save", "prep1", "only0", "d0", "d0")

	type tc struct {
		cmd, tag, vmstate string
		devices           []string
		want              string
		snapvmOnly        bool
	}
	cases := []tc{
		{"snapshot-save", "s1", "d0", []string{"d0", "d1"}, "Snapshot 's1' already exists in one or more devices", false},
		// snapvm refuses a tag that exists on any listed device (the seed);
		// QEMU only when it exists on all of them.
		{"snapshot-save", "only0", "d0", []string{"d0", "d1"}, "Snapshot 'only0' already exists in one or more devices", true},
		{"snapshot-save", "x", "d0", []string{"d0", "nosuch"}, "No block device node 'nosuch'", false},
		{"snapshot-save", "x", "d0", []string{"d0", "d1", "d0"}, "Device 'd0' is listed more than once", true},
		{"snapshot-save", "x", "d1", []string{"d0"}, "vmstate block device 'd1' does not exist", false},
		{"snapshot-save", "x", "d0", []string{"d0", "r0"}, "Device 'r0' is writable but does not support snapshots", false},
		{"snapshot-save", "x", "d0", []string{"d0", "ro0"}, "Device 'ro0' is writable but does not support snapshots", false},
		{"snapshot-save", "x", "d0", []string{}, "At least one device is required for snapshot", false},
		{"snapshot-save", "x", "f0", []string{"f0", "d0"}, "Device 'f0' is writable but does not support snapshots", false},
		{"snapshot-load", "s1", "f0", []string{"f0"}, "Device 'f0' is writable but does not support snapshots", false},
		{"snapshot-save", strings.Repeat("l", 256), "d0", []string{"d0"}, "Snapshot tag '" + strings.Repeat("l", 256) + "' is longer than 255 bytes", true},
		{"snapshot-load", "only0", "d0", []string{"d0", "d1"}, "Snapshot 'only0' does not exist in one or more devices", false},
		{"snapshot-load", "nosuch", "d0", []string{"d0"}, "Snapshot 'nosuch' does not exist in one or more devices", false},
		{"snapshot-load", "s1", "d0", []string{"d0", "nosuch"}, "No block device node 'nosuch'", false},
		{"snapshot-load", "s1", "d0", []string{"d0", "d1", "d1"}, "Device 'd1' is listed more than once", true},
		{"snapshot-load", "s1", "d0", []string{"d0", "r0"}, "Device 'r0' is writable but does not support snapshots", false},
		{"snapshot-load", "s1", "d1", []string{"d0"}, "vmstate block device 'd1' does not exist", false},
		{"snapshot-load", "s1", "d0", []string{}, "At least one device is required for snapshot", false},
		// Saved with d0 and d1, the VM state on d0: d1's entry is disk-only.
		{"snapshot-load", "s1", "d1", []string{"d0", "d1"}, "This is a disk-only snapshot. Revert to it  offline using qemu-img", false},
		{"snapshot-delete", "s1", "", []string{"d0", "r0"}, "Device 'r0' is writable but does not support snapshots", false},
		{"snapshot-delete", "s1", "", []string{"ro0", "d0"}, "Device 'ro0' is writable but does not support snapshots", false},
		{"snapshot-delete", "s1", "", []string{"nosuch"}, "No block device node 'nosuch'", false},
		{"snapshot-delete", "s1", "", []string{"d1", "d1"}, "Device 'd1' is listed more than once", true},
		{"snapshot-delete", "s1", "", []string{}, "At least one device is required for snapshot", false},
	}
	for i, c := range cases {
		if c.snapvmOnly && tg.qemu {
			continue
		}
		id := "err" + string(rune('a'+i))
		what := c.cmd + " " + c.tag + " vmstate=" + c.vmstate + " devices=" + strings.Join(c.devices, ",")
		seq, j := q.snapJob(t, c.cmd, id, c.tag, c.vmstate, c.devices)
		if j.Status != "concluded" || j.Error == nil || *j.Error != c.want || j.Type != c.cmd {
			got := "<none>"
			if j.Error != nil {
				got = *j.Error
			}
			t.Errorf("%s: job %s %s, error %q\n  want concluded with %q", what, j.Type, j.Status, got, c.want)
		}
		if c.cmd == "snapshot-load" && tg.qemu {
			wantSeq(t, what, seq, id, seqQEMUFailedLoad)
			wantStatus(t, q, "restore-vm")
			q.run(t, "cont", nil)
		} else {
			wantSeq(t, what, seq, id, seqFailed)
		}
		wantStatus(t, q, "running")
		q.dismiss(t, id)
	}
	// The guest really runs on after all that.
	mark := len(v.out.String())
	v.waitLine(t, mark, time.Minute, "a tick after the failed jobs", func(l string) bool { return tickOf(l) > 0 })

	// Errors answered synchronously: no job, no event.
	from := q.mark()
	args := map[string]any{"job-id": "1bad", "tag": "y", "vmstate": "d0", "devices": []string{"d0"}}
	if _, qe := q.call(t, "snapshot-save", args); qe == nil || qe.Class != "GenericError" || qe.Desc != "Invalid job ID '1bad'" {
		t.Errorf("snapshot-save with job-id 1bad: %v", qe)
	}
	seq, _ := q.snapJob(t, "snapshot-save", "dup", "s1", "d0", []string{"d0"}) // fails: s1 exists
	wantSeq(t, "save of an existing tag", seq, "dup", seqFailed)
	for _, cmd := range []string{"snapshot-save", "snapshot-load", "snapshot-delete"} {
		args := map[string]any{"job-id": "dup", "tag": "y", "devices": []string{"d0"}}
		if cmd != "snapshot-delete" {
			args["vmstate"] = "d0"
		}
		if _, qe := q.call(t, cmd, args); qe == nil || qe.Class != "GenericError" || qe.Desc != "Job ID 'dup' already in use" {
			t.Errorf("%s with the job-id of a concluded job: %v", cmd, qe)
		}
	}
	if jobs := q.jobs(t); len(jobs) != 1 || jobs[0].ID != "dup" || jobs[0].Status != "concluded" {
		t.Errorf("query-jobs after refused job ids: %+v", jobs)
	}
	q.dismiss(t, "dup")
	for _, e := range q.eventsFrom(from) {
		if id := e.Data["id"]; e.Name == "STOP" || e.Name == "RESUME" || id != nil && id != "dup" {
			t.Errorf("unexpected event around refused job ids: %v", e)
		}
	}

	// Nothing was created or deleted by the failures.
	q.run(t, "blockdev-del", map[string]any{"node-name": "r0"})
	q.run(t, "blockdev-del", map[string]any{"node-name": "ro0"})
	q.run(t, "blockdev-del", map[string]any{"node-name": "x0"})
	v.quit(t)
	checkSnapshotList(t, d0, map[string]bool{"s1": true, "only0": true})
	checkSnapshotList(t, d1, map[string]bool{"s1": false})
	for _, img := range []string{d0, d1, ro} {
		qemuImg(t, "check", img)
	}
}

// snapRowRE is one row of qemu-img snapshot -l / info snapshots.
var snapRowRE = regexp.MustCompile(`^(\S+)\s+(\S*)\s+(\d+(?:\.\d+)? [KMGTPE]?i?B)\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+(\d+:\d\d:\d\d\.\d{3})\s*(\d*)$`)

// snapshotRow is one parsed row.
type snapshotRow struct{ ID, Tag, Size, Date, Clock, ICount string }

func parseSnapshotRows(t *testing.T, out string) []snapshotRow {
	t.Helper()
	var rows []snapshotRow
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if m := snapRowRE.FindStringSubmatch(l); m != nil {
			rows = append(rows, snapshotRow{m[1], m[2], m[3], m[4], m[5], m[6]})
		}
	}
	return rows
}

// checkSnapshotList runs qemu-img snapshot -l (-U: the image may be in
// use) and checks that it lists exactly the given tags, those mapped to
// true with a non-zero VM size and the others with 0 B.
func checkSnapshotList(t *testing.T, img string, want map[string]bool) []snapshotRow {
	t.Helper()
	out := qemuImg(t, "snapshot", "-U", "-l", img)
	rows := parseSnapshotRows(t, out)
	got := map[string]bool{}
	for _, r := range rows {
		if _, dup := got[r.Tag]; dup {
			t.Errorf("%s: tag %s listed twice:\n%s", filepath.Base(img), r.Tag, out)
		}
		got[r.Tag] = r.Size != "0 B"
		if r.ICount != "" {
			t.Errorf("%s: snapshot %s has icount %s, want none (-1):\n%s", filepath.Base(img), r.Tag, r.ICount, out)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: snapshots %v, want %v:\n%s", filepath.Base(img), got, want, out)
	}
	for tag, vm := range want {
		if g, ok := got[tag]; !ok || g != vm {
			t.Errorf("%s: snapshot %s: listed %v, with VM state %v; want VM state %v:\n%s", filepath.Base(img), tag, ok, g, vm, out)
		}
	}
	return rows
}

func TestJobEventsOnSnapvm(t *testing.T) { checkJobEvents(t, snapvmTarget(t)) }
func TestJobEventsOnQEMU(t *testing.T)   { checkJobEvents(t, qemuTarget(t)) }
func TestJobErrorsOnSnapvm(t *testing.T) { checkJobErrors(t, snapvmTarget(t)) }
func TestJobErrorsOnQEMU(t *testing.T)   { checkJobErrors(t, qemuTarget(t)) }
