package snapshot

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/snapvm/snapvm/qcow2"
)

// The HMP forms act on an implicit device set: every writable root node,
// with the VM state on the first of them (QEMU's savevm/loadvm/delvm).

func errNoVMStateDevice() error { return errors.New("no block device can store vmstate for snapshot") }

// implicitDisks is the HMP device set; any member that cannot hold
// snapshots fails the whole command, as in QEMU.
func (m *Manager) implicitDisks() ([]Disk, error) {
	disks := m.Disks.WritableRoots()
	for _, d := range disks {
		if d.Image == nil {
			return nil, errCannotSnapshot(d)
		}
	}
	return disks, nil
}

// SaveHMP is HMP savevm: an empty tag gets a name from the local time, and
// an existing tag is replaced once the new snapshot is complete.
func (m *Manager) SaveHMP(tag string) error {
	disks, err := m.implicitDisks()
	if err != nil {
		return err
	}
	if tag == "" {
		tag = m.now().Format("vm-20060102150405")
	}
	if len(disks) == 0 {
		return errNoVMStateDevice()
	}
	return m.save(tag, disks[0].NodeName, disks, SaveOptions{Overwrite: true})
}

// LoadHMP is HMP loadvm.
func (m *Manager) LoadHMP(tag string) error {
	disks, err := m.implicitDisks()
	if err != nil {
		return err
	}
	if len(disks) == 0 {
		return errNoVMStateDevice()
	}
	return m.load(tag, disks[0].NodeName, disks, LoadOptions{})
}

// DeleteHMP is HMP delvm.
func (m *Manager) DeleteHMP(tag string) error {
	disks, err := m.implicitDisks()
	if err != nil {
		return err
	}
	return deleteOn(disks, tag)
}

// InfoSnapshots renders HMP "info snapshots": the snapshots of the VM-state
// device present on every disk (with "--" for the per-image id), then each
// disk's remaining, partial ones.
func (m *Manager) InfoSnapshots() string {
	disks := m.Disks.WritableRoots()
	var capable []Disk
	for _, d := range disks {
		if d.Image != nil {
			capable = append(capable, d)
		}
	}
	if len(capable) == 0 {
		return errNoVMStateDevice().Error() + "\n"
	}
	allCapable := len(capable) == len(disks)
	total := 0
	for _, d := range capable {
		total += len(d.Image.Snapshots())
	}
	if total == 0 {
		return "There is no snapshot available.\n"
	}
	var b strings.Builder
	onAll := func(name string) bool {
		if !allCapable {
			return false
		}
		for _, d := range capable {
			if _, ok := findByName(d.Image, name); !ok {
				return false
			}
		}
		return true
	}
	vmDisk := capable[0]
	var common []qcow2.SnapshotInfo
	shown := map[string]bool{}
	for _, s := range vmDisk.Image.Snapshots() {
		if onAll(s.Name) {
			common = append(common, s)
			shown[s.Name] = true
		}
	}
	b.WriteString("List of snapshots present on all disks:\n")
	if len(common) == 0 {
		b.WriteString("None\n")
	} else {
		b.WriteString(TableHeader() + "\n")
		for _, s := range common {
			s.ID = "--"
			b.WriteString(TableRow(s) + "\n")
		}
	}
	for _, d := range capable {
		var partial []qcow2.SnapshotInfo
		for _, s := range d.Image.Snapshots() {
			if !shown[s.Name] {
				partial = append(partial, s)
			}
		}
		if len(partial) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nList of partial (non-loadable) snapshots on '%s':\n", d.Device)
		b.WriteString(TableHeader() + "\n")
		for _, s := range partial {
			b.WriteString(TableRow(s) + "\n")
		}
	}
	return b.String()
}

// TableHeader is the column header QEMU prints above snapshot rows.
func TableHeader() string {
	return fmt.Sprintf("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
}

// TableRow formats one snapshot as QEMU's info snapshots and qemu-img
// snapshot -l do.
func TableRow(s qcow2.SnapshotInfo) string {
	date := time.Unix(int64(s.DateSec), 0).Format("2006-01-02 15:04:05")
	ns := s.VMClockNsec
	secs := ns / 1e9
	clock := fmt.Sprintf("%02d:%02d:%02d.%03d", secs/3600, secs/60%60, secs%60, ns/1e6%1000)
	icount := ""
	if s.ICount != ^uint64(0) {
		icount = fmt.Sprintf("%d", s.ICount)
	}
	return fmt.Sprintf("%-9s %-16s %8s%20s%13s%11s", s.ID, s.Name, SizeString(s.VMStateSize), date, clock, icount)
}

// SizeString renders a byte count as QEMU's size_to_str: three significant
// digits and a binary unit.
func SizeString(v uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(v)
	i := 0
	// QEMU switches unit when the value reaches 1000 of the smaller one,
	// keeping at most three digits before the point.
	for f >= 1000 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return formatG3(f) + " " + units[i]
}

// formatG3 is C's "%0.3g".
func formatG3(f float64) string {
	return strings.TrimSpace(fmt.Sprintf("%.3g", f))
}
