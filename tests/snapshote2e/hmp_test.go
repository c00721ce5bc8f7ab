package snapshote2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// infoHeader is QEMU's column header of info snapshots and qemu-img
// snapshot -l.
const infoHeader = "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT"

// autoTagRE is the name savevm gives a snapshot without a tag.
var (
	autoTagRE       = regexp.MustCompile(`^vm-(\d{14})$`)
	autoTagInLineRE = regexp.MustCompile(`vm-\d{14}`)
	// partialRE is the title of a partial list. QEMU 7.2 names a disk
	// attached through -device without a drive id '' (its BlockBackend
	// has no name); snapvm names it by its node (a known difference,
	// TestInfoSnapshotsPartialName).
	partialRE = regexp.MustCompile(`(?m)^(List of partial \(non-loadable\) snapshots on )'[^']*':`)
	// idRE is a numeric id in a table row: ids differ once HMP savevm
	// has replaced a snapshot (docs/compat.md).
	idRE = regexp.MustCompile(`(?m)^\d+ +`)
)

// normalizeInfo checks that every table row of an info snapshots output is
// laid out exactly as QEMU's printf does, then replaces the values that
// differ from run to run (VM size, date, clock, generated names) so that
// two VMMs' outputs can be compared.
func normalizeInfo(t *testing.T, out string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\r\n") {
		line := strings.TrimSuffix(l, "\r\n")
		m := snapRowRE.FindStringSubmatch(line)
		if m == nil {
			b.WriteString(l)
			continue
		}
		if want := fmt.Sprintf("%-9s %-16s %8s%20s%13s%11s", m[1], m[2], m[3], m[4], m[5], m[6]); line != want {
			t.Errorf("row %q is not laid out as QEMU's: want %q", line, want)
		}
		tag := m[2]
		if autoTagRE.MatchString(tag) {
			tag = "vm-<date>"
		}
		fmt.Fprintf(&b, "%-9s %-16s %8s%20s%13s%11s", m[1], tag, "<size>", "<date>", "<clock>", m[6])
		b.WriteString(l[len(line):])
	}
	s := partialRE.ReplaceAllString(b.String(), "$1'<device>':")
	return idRE.ReplaceAllString(s, "<id>      ")
}

// hmpConversation drives savevm, loadvm, delvm and info snapshots through
// human-monitor-command on a ticker VM with two qcow2 disks, checks what
// holds on every VMM and returns the transcript (normalized outputs) for
// comparing snapvm with QEMU.
func hmpConversation(t *testing.T, tg target) []string {
	dir := t.TempDir()
	d0, d1 := newDiskIn(t, dir, "d0.qcow2"), newDiskIn(t, dir, "d1.qcow2")
	v := bootTicker(t, tg, []string{d0, d1})
	q := v.q
	var transcript []string
	// say runs one HMP line, checks its output when want is not "*", and
	// records it with the events it caused.
	say := func(line, want string) string {
		t.Helper()
		from := q.mark()
		out := q.hmp(t, line)
		if want != "*" && out != want {
			t.Errorf("%s: %q: got %q, want %q", tg.name, line, out, want)
		}
		var evs []string
		for _, e := range q.eventsFrom(from) {
			evs = append(evs, e.String())
		}
		if strings.HasPrefix(line, "loadvm") && strings.HasPrefix(out, "Error: ") {
			// A failed loadvm: QEMU 7.2 has stopped the VM (STOP) and
			// leaves it in restore-vm; snapvm checks before it stops
			// (docs/compat.md).
			want := []string(nil)
			if tg.qemu {
				want = []string{"STOP"}
				wantStatus(t, q, "restore-vm")
				q.run(t, "cont", nil)
			}
			if !slices.Equal(evs, want) {
				t.Errorf("%s: %q: events %v, want %v", tg.name, line, evs, want)
			}
			wantStatus(t, q, "running")
			evs = nil
		}
		line = autoTagInLineRE.ReplaceAllString(line, "vm-<date>")
		transcript = append(transcript, fmt.Sprintf("> %s\n%s[events %s]", line, normalizeInfo(t, out), strings.Join(evs, " ")))
		return out
	}
	infoRows := func(wantRows int) []snapshotRow {
		t.Helper()
		out := say("info snapshots", "*")
		lines := strings.Split(out, "\r\n")
		if len(lines) < 2 || lines[0] != "List of snapshots present on all disks:" || lines[1] != infoHeader {
			t.Errorf("%s: info snapshots:\n%s", tg.name, out)
		}
		rows := parseSnapshotRows(t, out)
		if len(rows) != wantRows || len(lines) != wantRows+3 || lines[len(lines)-1] != "" {
			t.Errorf("%s: info snapshots, want %d rows on all disks:\n%s", tg.name, wantRows, out)
		}
		for _, r := range rows {
			if r.ID != "--" || r.Size == "0 B" || r.ICount != "" {
				t.Errorf("%s: row %+v: want id --, a VM size, no icount", tg.name, r)
			}
		}
		return rows
	}
	list := func(img string) map[string]snapshotRow {
		m := map[string]snapshotRow{}
		for _, r := range parseSnapshotRows(t, qemuImg(t, "snapshot", "-U", "-l", img)) {
			m[r.Tag] = r
		}
		return m
	}

	say("info snapshots", "There is no snapshot available.\r\n")
	say("savevm t1", "")
	infoRows(1)
	first := list(d0)["t1"]
	say("savevm t1", "") // replaces the snapshot
	infoRows(1)
	again := list(d0)
	// QEMU deletes the old entry before creating the new one, so the new
	// one gets the same id again; snapvm creates it first (new id), then
	// drops the old one.
	wantNewID := !tg.qemu
	if r, ok := again["t1"]; len(again) != 1 || !ok || (r.ID != first.ID) != wantNewID || r.Clock <= first.Clock {
		t.Errorf("%s: snapshots on d0 after saving t1 twice: %+v; before %+v", tg.name, again, first)
	}

	mark, n := pauseAndLastTick(t, v)
	say("savevm t2", "")
	say("loadvm t2", "")
	wantStatus(t, q, "paused") // loadvm leaves a paused VM paused
	// QEMU 7.2 crashes (SIGSEGV) on cont after two loadvm into a paused
	// VM, so there is one here.
	contAndExpectTicks(t, v, mark, n, "loadvm t2")
	say("loadvm t1", "") // on the running VM: STOP, RESUME
	wantStatus(t, q, "running")

	say("loadvm nosuch", "Error: Snapshot 'nosuch' does not exist in one or more devices\r\n")
	say("delvm t1", "")
	say("delvm nosuch", "")
	infoRows(1)

	before := time.Now()
	say("savevm", "")
	rows := infoRows(2)
	auto := ""
	for _, r := range rows {
		if m := autoTagRE.FindStringSubmatch(r.Tag); m != nil {
			auto = r.Tag
			at, err := time.ParseInLocation("20060102150405", m[1], time.Local)
			if err != nil || at.Before(before.Truncate(time.Second)) || at.After(time.Now()) {
				t.Errorf("%s: savevm without a tag named the snapshot %s at %v", tg.name, r.Tag, before)
			}
		}
	}
	if auto == "" {
		t.Errorf("%s: no vm-YYYYMMDDHHMMSS snapshot: %+v", tg.name, rows)
	}

	// A writable raw root node makes every HMP snapshot command fail and
	// every snapshot partial.
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	q.run(t, "blockdev-add", map[string]any{"driver": "raw", "node-name": "r0",
		"file": map[string]any{"driver": "file", "filename": raw}})
	rawErr := "Error: Device 'r0' is writable but does not support snapshots\r\n"
	say("savevm x", rawErr)
	say("loadvm t2", rawErr)
	say("delvm t2", rawErr)
	say("info snapshots", "*")
	q.run(t, "blockdev-del", map[string]any{"node-name": "r0"})

	// A snapshot on d0 only is partial.
	q.okJob(t, "snapshot-save", "part", "p1", "d0", "d0")
	say("info snapshots", "*")
	say("delvm "+auto, "")
	say("delvm t2", "")
	say("loadvm p1", "Error: Snapshot 'p1' does not exist in one or more devices\r\n")
	say("delvm p1", "")
	say("info snapshots", "There is no snapshot available.\r\n")
	v.quit(t)
	for _, img := range []string{d0, d1} {
		qemuImg(t, "check", img)
	}
	return transcript
}

// TestHMPSnapshots runs the HMP conversation on snapvm and QEMU 7.2 and
// compares the transcripts.
func TestHMPSnapshots(t *testing.T) {
	got := hmpConversation(t, snapvmTarget(t))
	want := hmpConversation(t, qemuTarget(t))
	if !slices.Equal(got, want) {
		for i := range max(len(got), len(want)) {
			g, w := "<missing>", "<missing>"
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("snapvm:\n%s\nQEMU 7.2:\n%s", g, w)
			}
		}
	}
}
