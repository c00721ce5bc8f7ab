package snapshote2e

import (
	"strings"
	"testing"
	"time"
)

// checkRefusedLoad runs a snapshot-load that must fail with an error
// starting with prefix, and checks that the running guest was never
// stopped and goes on ticking.
func checkRefusedLoad(t *testing.T, v *qvm, id, tag, prefix string) {
	t.Helper()
	seq, j := v.q.snapJob(t, "snapshot-load", id, tag, "d0", []string{"d0"})
	if j.Error == nil || !strings.HasPrefix(*j.Error, prefix) {
		t.Errorf("load %s: job %+v, want an error starting %q", tag, j, prefix)
	} else {
		t.Logf("load %s: %s", tag, *j.Error)
	}
	wantSeq(t, "load "+tag, seq, id, seqFailed)
	if st := v.q.status(t); st != "running" {
		t.Fatalf("%s: query-status %q after the refused load of %s, want running", v.name, st, tag)
	}
	v.q.dismiss(t, id)
	mark := len(v.out.String())
	v.waitLine(t, mark, time.Minute, "a tick after the refused load", func(l string) bool { return tickOf(l) > 0 })
}

// TestForeignSnapshotsOnSnapvm loads snapshots snapvm cannot restore into
// a running snapvm: one whose VM state QEMU 7.2 wrote, a disk-only one
// from qemu-img snapshot -c, and one saved by snapvm with a different RAM
// size. Each is refused before the guest is stopped.
func TestForeignSnapshotsOnSnapvm(t *testing.T) {
	dir := t.TempDir()
	d0 := newDiskIn(t, dir, "d0.qcow2")

	v := bootTicker(t, qemuTarget(t), []string{d0})
	v.q.okJob(t, "snapshot-save", "qsave", "fromqemu", "d0", "d0")
	v.quit(t)
	qemuImg(t, "snapshot", "-c", "diskonly", d0)

	v = bootTicker(t, snapvmTarget(t), []string{d0})
	if out := v.q.hmp(t, "info snapshots"); !strings.Contains(out, " fromqemu ") || !strings.Contains(out, " diskonly ") {
		t.Errorf("info snapshots on snapvm:\n%s", out)
	}
	checkRefusedLoad(t, v, "l1", "fromqemu", "Error -22 while loading VM state: ")
	checkRefusedLoad(t, v, "l2", "diskonly", "This is a disk-only snapshot. Revert to it  offline using qemu-img")
	v.q.okJob(t, "snapshot-save", "s64", "ram64", "d0", "d0")
	v.quit(t)

	v = bootTicker(t, snapvmTarget(t), []string{d0}, "-m", "128M")
	checkRefusedLoad(t, v, "l3", "ram64", "Error -22 while loading VM state: ")
	v.quit(t)
	// The refused loads changed nothing (qemu-img -c records icount 0, so
	// this list is not checked with checkSnapshotList).
	var tags []string
	for _, r := range parseSnapshotRows(t, qemuImg(t, "snapshot", "-l", d0)) {
		tags = append(tags, r.Tag+"/"+r.Size)
	}
	if got := strings.Join(tags, " "); !strings.HasPrefix(got, "fromqemu/") || !strings.Contains(got, " diskonly/0 B ram64/") {
		t.Errorf("snapshots after the refused loads: %s", got)
	}
	qemuImg(t, "check", d0)
}

// TestConcurrentSaveJobsOnSnapvm starts two snapshot-save jobs without
// waiting between them: snapvm runs them one after the other, each with
// its own STOP/RESUME, and both snapshots exist afterwards.
func TestConcurrentSaveJobsOnSnapvm(t *testing.T) {
	dir := t.TempDir()
	d0 := newDiskIn(t, dir, "d0.qcow2")
	v := bootTicker(t, snapvmTarget(t), []string{d0})
	q := v.q
	from := q.mark()
	for _, id := range []string{"a", "b"} {
		q.run(t, "snapshot-save", map[string]any{"job-id": id, "tag": "tag-" + id, "vmstate": "d0", "devices": []string{"d0"}})
	}
	q.waitEvent(t, from, "a concluded", jobEvent("a", "concluded"))
	q.waitEvent(t, from, "b concluded", jobEvent("b", "concluded"))
	stops, resumes := 0, 0
	for _, e := range q.eventsFrom(from) {
		switch e.Name {
		case "STOP":
			stops++
		case "RESUME":
			resumes++
		}
	}
	if stops != 2 || resumes != 2 {
		t.Errorf("two saves: %d STOP, %d RESUME events: %v", stops, resumes, q.eventsFrom(from))
	}
	for _, id := range []string{"a", "b"} {
		checkConcludedJob(t, q.name, q.job(t, id), "snapshot-save")
		q.dismiss(t, id)
	}
	wantStatus(t, q, "running")
	checkSnapshotList(t, d0, map[string]bool{"tag-a": true, "tag-b": true})
	v.quit(t)
	qemuImg(t, "check", d0)
}

// checkQuitBehindSave sends quit right behind snapshot-save: the save
// completes first, so the image holds a whole snapshot that a new
// process can load.
func checkQuitBehindSave(t *testing.T, tg target) {
	dir := t.TempDir()
	d0 := newDiskIn(t, dir, "d0.qcow2")
	v := bootTicker(t, tg, []string{d0})
	v.q.run(t, "snapshot-save", map[string]any{"job-id": "s", "tag": "last", "vmstate": "d0", "devices": []string{"d0"}})
	v.quit(t)
	checkSnapshotList(t, d0, map[string]bool{"last": true})
	qemuImg(t, "check", d0)
	v = bootTicker(t, tg, []string{d0})
	v.q.okJob(t, "snapshot-load", "l", "last", "d0", "d0")
	mark := len(v.out.String())
	v.waitLine(t, mark, time.Minute, "a tick after the load", func(l string) bool { return tickOf(l) > 0 })
	v.quit(t)
}

func TestQuitBehindSaveOnSnapvm(t *testing.T) { checkQuitBehindSave(t, snapvmTarget(t)) }
func TestQuitBehindSaveOnQEMU(t *testing.T)   { checkQuitBehindSave(t, qemuTarget(t)) }
