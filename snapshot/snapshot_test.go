package snapshot

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapvm/snapvm/memory"
	"github.com/snapvm/snapvm/qcow2"
	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

// fakeVM is a machine with RAM, a clock and one register section.
type fakeVM struct {
	ram     *memory.RAM
	clock   vclock.Clock
	reg     regSection
	state   string
	running bool
	events  []string
}

type regSection struct{ value uint64 }

func (r *regSection) SectionName() string            { return "reg" }
func (r *regSection) SectionVersion() uint32         { return 1 }
func (r *regSection) SaveSection(e *vmstate.Encoder) { e.U64(r.value) }
func (r *regSection) LoadSection(d *vmstate.Decoder, _ uint32) error {
	r.value = d.U64()
	return nil
}

func (v *fakeVM) Pause(state string) bool {
	was := v.running
	if was {
		v.events = append(v.events, "STOP")
	}
	v.running = false
	v.state = state
	v.clock.Stop()
	return was
}

func (v *fakeVM) Resume() {
	v.running = true
	v.state = "running"
	v.clock.Start()
	v.events = append(v.events, "RESUME")
}

func (v *fakeVM) Sections() []vmstate.Section { return []vmstate.Section{&v.reg} }
func (v *fakeVM) RAM() *memory.RAM            { return v.ram }
func (v *fakeVM) Clock() *vclock.Clock        { return &v.clock }
func (v *fakeVM) StateConfig() vmstate.Config {
	return vmstate.Config{Board: "virt", RAMBase: v.ram.Base, RAMSize: v.ram.Size()}
}

type fakeDisks struct{ disks []Disk }

func (f *fakeDisks) Lookup(name string) (Disk, bool) {
	for _, d := range f.disks {
		if d.NodeName == name {
			return d, true
		}
	}
	return Disk{}, false
}
func (f *fakeDisks) WritableRoots() []Disk { return f.disks }

type rig struct {
	t     *testing.T
	vm    *fakeVM
	disks *fakeDisks
	mgr   *Manager
	paths []string
}

func newRig(t *testing.T, nDisks int) *rig {
	t.Helper()
	ram, err := memory.New(0x80000000, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	r := &rig{t: t, vm: &fakeVM{ram: ram}, disks: &fakeDisks{}}
	r.vm.Resume()
	r.vm.events = nil
	for i := 0; i < nDisks; i++ {
		p := filepath.Join(t.TempDir(), "d.qcow2")
		if err := qcow2.Create(p, qcow2.CreateOptions{Size: 16 << 20}); err != nil {
			t.Fatal(err)
		}
		img, err := qcow2.Open(p, qcow2.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { img.Close() })
		name := string(rune('a'+i)) + "disk"
		r.disks.disks = append(r.disks.disks, Disk{NodeName: name, Display: name, Image: img})
		r.paths = append(r.paths, p)
	}
	r.mgr = &Manager{VM: r.vm, Disks: r.disks, Now: func() time.Time { return time.Unix(1700000000, 123456789) }}
	return r
}

func (r *rig) names() []string {
	var out []string
	for _, d := range r.disks.disks {
		out = append(out, d.NodeName)
	}
	return out
}

func TestSaveLoadRestoresRAMRegistersDiskAndClock(t *testing.T) {
	r := newRig(t, 2)
	vm := r.vm
	vm.ram.WriteAt([]byte("saved page"), vm.ram.Base+8192)
	vm.reg.value = 1111
	d0 := r.disks.disks[0].Image
	d0.WriteAt(bytes.Repeat([]byte{0xaa}, 512), 0)
	vm.clock.Set(5e9)

	if err := r.mgr.Save("s1", "adisk", r.names(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(vm.events, ","); got != "STOP,RESUME" {
		t.Fatalf("events %q", got)
	}
	snaps := d0.Snapshots()
	if len(snaps) != 1 || snaps[0].Name != "s1" || snaps[0].VMStateSize == 0 || snaps[0].VMClockNsec < 5e9 {
		t.Fatalf("snapshot entry %+v", snaps)
	}
	if s := r.disks.disks[1].Image.Snapshots(); len(s) != 1 || s[0].VMStateSize != 0 {
		t.Fatalf("second disk must get a disk-only entry: %+v", s)
	}

	// Change everything, then load.
	vm.ram.WriteAt([]byte("changed!!!"), vm.ram.Base+8192)
	vm.ram.WriteAt([]byte("new page"), vm.ram.Base+3<<20)
	vm.reg.value = 2222
	d0.WriteAt(bytes.Repeat([]byte{0xbb}, 512), 0)
	vm.clock.Set(9e9)
	vm.events = nil

	if err := r.mgr.Load("s1", "adisk", r.names(), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(vm.events, ","); got != "STOP,RESUME" {
		t.Fatalf("events %q", got)
	}
	if string(vm.ram.Data[8192:8202]) != "saved page" || vm.ram.Data[3<<20] != 0 {
		t.Fatal("RAM not restored")
	}
	if vm.reg.value != 1111 {
		t.Fatalf("register %d", vm.reg.value)
	}
	buf := make([]byte, 512)
	d0.ReadAt(buf, 0)
	if buf[0] != 0xaa {
		t.Fatal("disk not reverted")
	}
	if ns := vm.clock.Nanoseconds(); ns < 5e9 || ns > 8e9 {
		t.Fatalf("clock %d not restored", ns)
	}
}

func TestValidationFailuresLeaveTheVMRunning(t *testing.T) {
	r := newRig(t, 2)
	if err := r.mgr.Save("s1", "adisk", r.names(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	r.vm.events = nil
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"save empty", r.mgr.Save("x", "adisk", nil, SaveOptions{}), "At least one device is required for snapshot"},
		{"save unknown", r.mgr.Save("x", "adisk", []string{"adisk", "nope"}, SaveOptions{}), "No block device node 'nope'"},
		{"save twice listed", r.mgr.Save("x", "adisk", []string{"adisk", "adisk"}, SaveOptions{}), "Device 'adisk' is listed more than once"},
		{"save exists", r.mgr.Save("s1", "adisk", r.names(), SaveOptions{}), "Snapshot 's1' already exists in one or more devices"},
		{"save vmstate outside", r.mgr.Save("x", "zdisk", r.names(), SaveOptions{}), "vmstate block device 'zdisk' does not exist"},
		{"save long tag", r.mgr.Save(strings.Repeat("t", 256), "adisk", r.names(), SaveOptions{}), "longer than 255 bytes"},
		{"load missing", r.mgr.Load("nope", "adisk", r.names(), LoadOptions{}), "Snapshot 'nope' does not exist in one or more devices"},
		{"load disk-only", r.mgr.Load("s1", "bdisk", r.names(), LoadOptions{}), "This is a disk-only snapshot. Revert to it  offline using qemu-img"},
	}
	for _, c := range cases {
		if c.err == nil || c.err.Error() != c.want && !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, c.err, c.want)
		}
	}
	if len(r.vm.events) != 0 || !r.vm.running {
		t.Fatalf("a failed check paused the VM: events %v", r.vm.events)
	}
	// A tag on only one disk is still "exists" (snapvm follows the seed).
	r2 := newRig(t, 2)
	if err := r2.mgr.Save("solo", "adisk", []string{"adisk"}, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r2.mgr.Save("solo", "adisk", r2.names(), SaveOptions{}); err == nil {
		t.Fatal("a tag present on one listed device must be refused")
	}
}

func TestLoadRefusesAnotherMachinesState(t *testing.T) {
	r := newRig(t, 1)
	if err := r.mgr.Save("s1", "adisk", r.names(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	bigger, err := memory.New(0x80000000, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer bigger.Close()
	r.vm.ram = bigger
	r.vm.events = nil
	err = r.mgr.Load("s1", "adisk", r.names(), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "4 MiB of RAM") {
		t.Fatalf("load into a machine with other RAM: %v", err)
	}
	if len(r.vm.events) != 0 {
		t.Fatal("the VM was paused although the load could not succeed")
	}
}

func TestHMPOverwriteKeepsOneSnapshotAndDelete(t *testing.T) {
	r := newRig(t, 1)
	img := r.disks.disks[0].Image
	if err := r.mgr.SaveHMP("a"); err != nil {
		t.Fatal(err)
	}
	r.vm.reg.value = 77
	if err := r.mgr.SaveHMP("a"); err != nil {
		t.Fatal(err)
	}
	if s := img.Snapshots(); len(s) != 1 || s[0].Name != "a" || s[0].ID != "2" {
		t.Fatalf("overwrite left %+v", s)
	}
	r.vm.reg.value = 0
	if err := r.mgr.LoadHMP("a"); err != nil {
		t.Fatal(err)
	}
	if r.vm.reg.value != 77 {
		t.Fatal("loadvm restored the replaced snapshot")
	}
	info := r.mgr.InfoSnapshots()
	if !strings.HasPrefix(info, "List of snapshots present on all disks:\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n--        a ") {
		t.Fatalf("info snapshots:\n%s", info)
	}
	if err := r.mgr.DeleteHMP("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.mgr.DeleteHMP("never"); err != nil {
		t.Fatal("deleting a missing tag must succeed")
	}
	if got := r.mgr.InfoSnapshots(); got != "There is no snapshot available.\n" {
		t.Fatalf("after delvm: %q", got)
	}
}

func TestSizeString(t *testing.T) {
	for v, want := range map[uint64]string{0: "0 B", 999: "999 B", 1000: "0.977 KiB", 777340: "759 KiB", 1234567890: "1.15 GiB", 2 << 20: "2 MiB"} {
		if got := SizeString(v); got != want {
			t.Errorf("SizeString(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestSaveResumesBeforeWritingWhenDiskWritesAreHeld(t *testing.T) {
	r := newRig(t, 1)
	r.mgr.HoldDiskWrites = func() func() {
		r.vm.events = append(r.vm.events, "HOLD")
		return func() {
			if n := len(r.disks.disks[0].Image.Snapshots()); n != 1 {
				t.Errorf("disk writes released before the snapshot existed (%d snapshots)", n)
			}
			r.vm.events = append(r.vm.events, "RELEASE")
		}
	}
	r.vm.ram.WriteAt([]byte("before"), r.vm.ram.Base)
	if err := r.mgr.Save("s", "adisk", r.names(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.vm.events, ","); got != "STOP,HOLD,RESUME,RELEASE" {
		t.Fatalf("events %q", got)
	}
	// The guest changes RAM after resuming; the snapshot keeps the old page.
	r.vm.ram.WriteAt([]byte("after!"), r.vm.ram.Base)
	if err := r.mgr.Load("s", "adisk", r.names(), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if string(r.vm.ram.Data[:6]) != "before" {
		t.Fatalf("RAM after load %q", r.vm.ram.Data[:6])
	}
}

// busyVM is a fakeVM whose "guest" goroutine keeps storing to random pages
// until paused, as a running hart does while a save writes RAM.
type busyVM struct {
	*fakeVM
	mu      sync.Mutex
	cond    *sync.Cond
	paused  bool
	parked  bool
	atPause []byte // RAM as it was when the guest was paused
	stop    bool
}

func (b *busyVM) guest(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	pages := b.ram.Pages()
	for i := uint64(0); ; i++ {
		b.mu.Lock()
		for b.paused && !b.stop {
			b.parked = true
			b.cond.Broadcast()
			b.cond.Wait()
		}
		b.parked = false
		if b.stop {
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		p := r.Uint64N(pages)
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], i)
		b.ram.WriteAt(buf[:], b.ram.Base+p*memory.PageSize+r.Uint64N(memory.PageSize/8)*8)
	}
}

func (b *busyVM) Pause(state string) bool {
	b.mu.Lock()
	b.paused = true
	for !b.parked {
		b.cond.Wait()
	}
	b.atPause = bytes.Clone(b.ram.Data)
	b.mu.Unlock()
	return b.fakeVM.Pause(state)
}

func (b *busyVM) Resume() {
	b.fakeVM.Resume()
	b.mu.Lock()
	b.paused = false
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *busyVM) halt() {
	b.mu.Lock()
	b.stop = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// A save that writes RAM while the guest keeps storing must still record
// RAM exactly as it was at the pause.
func TestSaveWhileGuestStoresRecordsRAMAtThePause(t *testing.T) {
	r := newRig(t, 1)
	// Every page starts written, so the save's first pass has work to do.
	for p := uint64(0); p < r.vm.ram.Pages(); p++ {
		r.vm.ram.WriteAt([]byte{byte(p), 1}, r.vm.ram.Base+p*memory.PageSize)
	}
	b := &busyVM{fakeVM: r.vm}
	b.cond = sync.NewCond(&b.mu)
	r.mgr.VM = b
	r.mgr.HoldDiskWrites = func() func() { return func() {} }
	done := make(chan struct{})
	go func() { b.guest(1); close(done) }()
	if err := r.mgr.Save("busy", "adisk", r.names(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	b.halt()
	<-done
	want := b.atPause
	if bytes.Equal(want, r.vm.ram.Data) {
		t.Fatal("the guest stored nothing after resuming; the test proves nothing")
	}
	r.mgr.VM = r.vm
	if err := r.mgr.Load("busy", "adisk", r.names(), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, r.vm.ram.Data) {
		for i := range want {
			if want[i] != r.vm.ram.Data[i] {
				t.Fatalf("RAM differs from the paused guest's first at byte %#x (page %d)", i, i/memory.PageSize)
			}
		}
	}
}

// A disk that refuses the snapshot part-way makes the save fail, removes
// the snapshots already created on the other disks, and lets the guest run
// on.
func TestSaveRollsBackWhenADiskFails(t *testing.T) {
	r := newRig(t, 2)
	// The second disk's image is open read-only although the node claims
	// to be writable: its CreateSnapshot fails after the first disk's
	// succeeded.
	ro, err := qcow2.Open(r.paths[1], qcow2.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r.disks.disks[1].Image.Close()
	r.disks.disks[1].Image = ro
	err = r.mgr.Save("s", "adisk", r.names(), SaveOptions{})
	if err == nil || err.Error() != "Could not create snapshot 's' on 'bdisk'" {
		t.Fatalf("save: %v", err)
	}
	if s := r.disks.disks[0].Image.Snapshots(); len(s) != 0 {
		t.Fatalf("the first disk kept %+v", s)
	}
	if !r.vm.running {
		t.Fatal("the guest was left paused")
	}
	if res, err := qcow2.Check(r.paths[0], qcow2.RepairNone); err != nil || res.Corruptions != 0 {
		t.Fatalf("check after the rollback: %+v, %v", res, err)
	}
}
