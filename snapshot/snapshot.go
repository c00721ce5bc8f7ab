// Package snapshot saves, loads and deletes internal VM snapshots: the
// guest's whole state (harts, devices, RAM, virtual clock) written into the
// vm-state area of one qcow2 image, plus an internal disk snapshot of every
// listed image under the same tag. The QMP jobs (snapshot-save, -load,
// -delete) and the HMP commands (savevm, loadvm, delvm, info snapshots) are
// thin front ends over this package.
//
// Validation happens before the guest is paused or any disk is touched, so
// a request that fails its checks leaves the VM exactly as it was.
package snapshot

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/snapvm/snapvm/memory"
	"github.com/snapvm/snapvm/qcow2"
	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

// MaxTagLen is the longest tag a qcow2 snapshot entry can hold as QEMU
// writes it; longer tags are refused rather than truncated.
const MaxTagLen = 255

// VM is what the snapshot code needs from the machine.
type VM interface {
	// Pause parks the guest at an instruction boundary and drains block
	// I/O, entering the given run state ("save-vm", "restore-vm"). It
	// reports whether the guest was running.
	Pause(state string) (wasRunning bool)
	// Resume lets the guest run again.
	Resume()
	Sections() []vmstate.Section
	RAM() *memory.RAM
	Clock() *vclock.Clock
	StateConfig() vmstate.Config
}

// Disk is one block node as the snapshot code sees it.
type Disk struct {
	// NodeName is the node's name in the block graph.
	NodeName string
	// Display names the disk in messages: its device name if a device is
	// attached, else its node name (as QEMU does).
	Display string
	// Device is the name of the named device (BlockBackend) using the
	// node, "" if none; HMP "info snapshots" titles partial lists with it.
	Device string
	// Image is the qcow2 image behind the node, nil if the node's driver
	// cannot hold snapshots.
	Image    *qcow2.Image
	ReadOnly bool
}

// Disks resolves block nodes.
type Disks interface {
	Lookup(nodeName string) (Disk, bool)
	// WritableRoots lists the writable root nodes in graph order: the set
	// HMP savevm/loadvm/delvm act on.
	WritableRoots() []Disk
}

// Progress reports work done out of a total that may grow.
type Progress func(done, total int64)

// Manager runs snapshot operations on one VM. Operations must not overlap;
// the caller (the job engine, the monitor) serialises them.
type Manager struct {
	VM    VM
	Disks Disks
	// Now gives the snapshot date; nil means time.Now.
	Now func() time.Time
	// HoldDiskWrites, when set, blocks new guest disk requests until the
	// returned release is called. A save then resumes the guest as soon as
	// its state is copied, instead of after everything is written.
	HoldDiskWrites func() (release func())
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Error texts, as QEMU 7.2 words them where QEMU has the case.
func errNoDevices() error { return errors.New("At least one device is required for snapshot") }
func errNoNode(name string) error {
	return fmt.Errorf("No block device node '%s'", name)
}
func errCannotSnapshot(d Disk) error {
	return fmt.Errorf("Device '%s' is writable but does not support snapshots", d.Display)
}
func errListedTwice(name string) error {
	return fmt.Errorf("Device '%s' is listed more than once", name)
}
func errTagTooLong(tag string) error {
	return fmt.Errorf("Snapshot tag '%s' is longer than %d bytes", tag, MaxTagLen)
}
func errExists(tag string) error {
	return fmt.Errorf("Snapshot '%s' already exists in one or more devices", tag)
}
func errMissing(tag string) error {
	return fmt.Errorf("Snapshot '%s' does not exist in one or more devices", tag)
}
func errNoVMStateNode(name string) error {
	return fmt.Errorf("vmstate block device '%s' does not exist", name)
}
func errDiskOnly() error {
	return errors.New("This is a disk-only snapshot. Revert to it  offline using qemu-img")
}

// resolve turns node names into disks, in order, with QEMU's checks: a
// non-empty list, every name known, every disk able to hold snapshots. A
// name listed twice is refused (QEMU would snapshot it twice).
func (m *Manager) resolve(names []string) ([]Disk, error) {
	if len(names) == 0 {
		return nil, errNoDevices()
	}
	disks := make([]Disk, 0, len(names))
	for _, n := range names {
		d, ok := m.Disks.Lookup(n)
		if !ok {
			return nil, errNoNode(n)
		}
		disks = append(disks, d)
	}
	seen := make(map[string]bool, len(disks))
	for _, d := range disks {
		if seen[d.NodeName] {
			return nil, errListedTwice(d.NodeName)
		}
		seen[d.NodeName] = true
	}
	for _, d := range disks {
		if d.Image == nil || d.ReadOnly {
			return nil, errCannotSnapshot(d)
		}
	}
	return disks, nil
}

func findVMStateDisk(disks []Disk, name string) (Disk, error) {
	for _, d := range disks {
		if d.NodeName == name {
			return d, nil
		}
	}
	return Disk{}, errNoVMStateNode(name)
}

// findByName is the first snapshot named tag, in table order.
func findByName(img *qcow2.Image, tag string) (qcow2.SnapshotInfo, bool) {
	for _, s := range img.Snapshots() {
		if s.Name == tag {
			return s, true
		}
	}
	return qcow2.SnapshotInfo{}, false
}

// SaveOptions tune a save.
type SaveOptions struct {
	// Overwrite replaces an existing snapshot of the same tag (HMP
	// savevm); the old one stays until the new one is complete.
	Overwrite bool
	Progress  Progress
}

// Save takes a VM snapshot named tag on every listed node, with the VM
// state stored on node vmstateNode.
func (m *Manager) Save(tag, vmstateNode string, nodes []string, opt SaveOptions) error {
	disks, err := m.resolve(nodes)
	if err != nil {
		return err
	}
	return m.save(tag, vmstateNode, disks, opt)
}

func (m *Manager) save(tag, vmstateNode string, disks []Disk, opt SaveOptions) error {
	if len(tag) > MaxTagLen {
		return errTagTooLong(tag)
	}
	// The seed says an existing tag is an error; snapvm reports it when the
	// tag exists on any listed device, not only on all of them.
	replace := make([]string, len(disks))
	for i, d := range disks {
		if old, ok := findByName(d.Image, tag); ok {
			if !opt.Overwrite {
				return errExists(tag)
			}
			replace[i] = old.ID
		}
	}
	vmDisk, err := findVMStateDisk(disks, vmstateNode)
	if err != nil {
		return err
	}

	store := imageStore{vmDisk.Image}
	// Anything left in the vm-state area (a failed save) must not leak
	// into this stream's holes.
	if err := vmDisk.Image.DiscardVMState(); err != nil {
		return fmt.Errorf("Error while writing VM state: %v", err)
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(done, total int64) {}
	}
	ram := m.VM.RAM()
	total := int64(ram.WrittenPages())*memory.PageSize + int64(len(disks))
	var done int64
	progress(0, total)

	// Write RAM while the guest runs, then pause it only to save the
	// devices and write the pages it dirtied meanwhile. Where that cannot
	// be done safely, copy all of RAM while paused, into memory prepared
	// beforehand.
	var staging *vmstate.Staging
	written := func(n int64) {
		done += n
		progress(done, max(total, done+int64(len(disks))))
	}
	pending, err := vmstate.PrecopyRAM(store, ram, written)
	if err != nil {
		pending = nil
		staging, err = vmstate.PrepareStaging(ram)
	}
	if err != nil {
		return fmt.Errorf("Error while writing VM state: %v", err)
	}

	// The guest is paused only while its state is saved. Disk writes stay
	// held from the pause until every disk snapshot exists, so the disks
	// are snapshotted at the same instant as the RAM.
	wasRunning := m.VM.Pause("save-vm")
	resumed := false
	resume := func() {
		if wasRunning && !resumed {
			resumed = true
			m.VM.Resume()
		}
	}
	defer resume()
	release := func() {}
	if m.HoldDiskWrites != nil {
		release = m.HoldDiskWrites()
	}
	defer release()

	clockNs := m.VM.Clock().Nanoseconds()
	var capture *vmstate.Capture
	if pending != nil {
		pending = vmstate.MergePages(pending, ram.TakeDirty())
		capture, err = vmstate.FinishPrecopy(store, m.VM.StateConfig(), clockNs, m.VM.Sections(), ram, pending, written)
	} else {
		capture, err = vmstate.CaptureState(m.VM.StateConfig(), clockNs, m.VM.Sections(), ram, staging)
	}
	if err != nil {
		return fmt.Errorf("Error while writing VM state: %v", err)
	}
	defer capture.Release()
	ram.ClearDirty()
	if m.HoldDiskWrites != nil {
		resume()
	}

	vmSize := capture.Size()
	base := done
	err = capture.WriteTo(store, func(d, t int64) {
		done = base + d
		progress(done, max(total, done+int64(len(disks))))
	})
	if err != nil {
		return fmt.Errorf("Error while writing VM state: %v", err)
	}

	now := m.now()
	info := qcow2.SnapshotInfo{
		Name:        tag,
		DateSec:     uint32(now.Unix()),
		DateNsec:    uint32(now.Nanosecond() / 1000 * 1000),
		VMClockNsec: uint64(clockNs),
		ICount:      math.MaxUint64,
	}
	var created []Disk
	for i, d := range disks {
		si := info
		if d.NodeName == vmDisk.NodeName {
			si.VMStateSize = uint64(vmSize)
		}
		var err error
		if replace[i] != "" {
			_, err = d.Image.ReplaceSnapshot(replace[i], si)
		} else {
			_, err = d.Image.CreateSnapshot(si)
		}
		if err != nil {
			// Undo the snapshots this save created; replaced ones were
			// swapped in one table update, so nothing earlier was lost.
			for _, c := range created {
				if s, ok := findByName(c.Image, tag); ok {
					_ = c.Image.DeleteSnapshot(s.ID, s.Name)
				}
			}
			return fmt.Errorf("Could not create snapshot '%s' on '%s'", tag, d.Display)
		}
		if replace[i] == "" {
			created = append(created, d)
		}
		done++
		progress(done, max(total, done+int64(len(disks)-i-1)))
	}
	for _, d := range disks {
		if err := d.Image.Flush(); err != nil {
			return fmt.Errorf("Could not create snapshot '%s' on '%s'", tag, d.Display)
		}
	}
	return nil
}

// LoadOptions tune a load.
type LoadOptions struct {
	Progress Progress
}

// Load reverts every listed node to snapshot tag and restores the VM state
// from node vmstateNode. Every check happens before the VM is paused; a
// failure there leaves it running as it was.
func (m *Manager) Load(tag, vmstateNode string, nodes []string, opt LoadOptions) error {
	disks, err := m.resolve(nodes)
	if err != nil {
		return err
	}
	return m.load(tag, vmstateNode, disks, opt)
}

func (m *Manager) load(tag, vmstateNode string, disks []Disk, opt LoadOptions) error {
	targets := make([]qcow2.SnapshotInfo, len(disks))
	for i, d := range disks {
		s, ok := findByName(d.Image, tag)
		if !ok {
			return errMissing(tag)
		}
		targets[i] = s
	}
	vmDisk, err := findVMStateDisk(disks, vmstateNode)
	if err != nil {
		return err
	}
	var vmSnap qcow2.SnapshotInfo
	for i, d := range disks {
		if d.NodeName == vmDisk.NodeName {
			vmSnap = targets[i]
		}
	}
	if vmSnap.VMStateSize == 0 {
		return errDiskOnly()
	}
	// Read and check the saved state through the snapshot's own tables,
	// before anything changes.
	snapStore := snapshotStore{img: vmDisk.Image, id: vmSnap.ID}
	hdr, err := vmstate.ReadHeader(snapStore)
	if err != nil {
		return fmt.Errorf("Error -22 while loading VM state: %v", err)
	}
	if err := hdr.Check(m.VM.StateConfig(), m.VM.Sections()); err != nil {
		return fmt.Errorf("Error -22 while loading VM state: %v", err)
	}
	if hdr.Size() > int64(vmSnap.VMStateSize) {
		return fmt.Errorf("Error -22 while loading VM state: the stream needs %d bytes, the snapshot records %d", hdr.Size(), vmSnap.VMStateSize)
	}

	wasRunning := m.VM.Pause("restore-vm")
	for i, d := range disks {
		// Apply by id: the entry found by name, even when another entry's
		// id equals the tag.
		if err := d.Image.ApplySnapshot(targets[i].ID); err != nil {
			return fmt.Errorf("Could not load snapshot '%s' on '%s': Failed to load snapshot: %v", tag, d.Display, err)
		}
	}
	if err := hdr.LoadSections(m.VM.Sections()); err != nil {
		return fmt.Errorf("Error -22 while loading VM state: %v", err)
	}
	if err := vmstate.LoadRAM(imageStore{vmDisk.Image}, hdr, m.VM.RAM(), vmstate.Progress(opt.Progress)); err != nil {
		return fmt.Errorf("Error -5 while loading VM state: %v", err)
	}
	m.VM.Clock().Set(hdr.VMClockNs)
	m.VM.RAM().ClearDirty()
	if wasRunning {
		m.VM.Resume()
	}
	return nil
}

// Delete removes the first snapshot named tag from every listed node; a
// node without it is skipped.
func (m *Manager) Delete(tag string, nodes []string) error {
	disks, err := m.resolve(nodes)
	if err != nil {
		return err
	}
	return deleteOn(disks, tag)
}

func deleteOn(disks []Disk, tag string) error {
	for _, d := range disks {
		s, ok := findByName(d.Image, tag)
		if !ok {
			continue
		}
		if err := d.Image.DeleteSnapshot(s.ID, s.Name); err != nil {
			return fmt.Errorf("Could not delete snapshot '%s' on '%s': %v", tag, d.Display, err)
		}
	}
	return nil
}

// imageStore is the active vm-state area of an image.
type imageStore struct{ img *qcow2.Image }

func (s imageStore) WriteVMState(p []byte, pos int64) error { return s.img.WriteVMState(p, pos) }
func (s imageStore) ReadVMState(p []byte, pos int64) error  { return s.img.ReadVMState(p, pos) }
func (s imageStore) AllocatedRanges(pos, n int64) ([][2]int64, error) {
	ext, err := s.img.MapVMState(pos, n)
	return allocated(ext), err
}

// snapshotStore reads a snapshot's vm-state area without applying it.
type snapshotStore struct {
	img *qcow2.Image
	id  string
}

func (s snapshotStore) WriteVMState(p []byte, pos int64) error {
	return errors.New("snapshot vm state is read-only")
}
func (s snapshotStore) ReadVMState(p []byte, pos int64) error {
	return s.img.ReadSnapshotVMState(s.id, p, pos)
}
func (s snapshotStore) AllocatedRanges(pos, n int64) ([][2]int64, error) {
	return nil, errors.New("not supported on a snapshot's vm state")
}

func allocated(ext []qcow2.Extent) [][2]int64 {
	var out [][2]int64
	for _, e := range ext {
		if !e.Allocated || e.Zero {
			continue
		}
		if len(out) > 0 && out[len(out)-1][1] == e.Off {
			out[len(out)-1][1] = e.Off + e.Len
			continue
		}
		out = append(out, [2]int64{e.Off, e.Off + e.Len})
	}
	return out
}
