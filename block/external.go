package block

// External snapshots (blockdev-snapshot-sync, blockdev-snapshot) and
// per-disk internal snapshots (blockdev-snapshot-internal-sync and its
// delete), with QEMU 7.2's checks, order and texts. Each is a transaction
// action (transaction.go); the standalone commands run as one-action
// transactions, as QEMU does.
//
// Where snapvm departs from QEMU (docs/compat.md): the seed's error classes
// for blockdev-snapshot-sync, an absolute backing path in mode
// absolute-paths, no overwriting of an existing non-empty snapshot file, and
// removal of the overlay files a failed request created. A new overlay is
// written under a temporary name, synced and renamed into place, so a crash
// never leaves a half-written image under the requested name.

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapvm/snapvm/qcow2"
)

// Kinds of snapshot errors that the seed gives their own QMP classes
// (DeviceNotFound, OpenFileFailed, InvalidBlockFormat). Match them with
// errors.Is; the error text is QEMU's description.
var (
	ErrDeviceNotFound = errors.New("device not found")
	ErrOpenFileFailed = errors.New("open file failed")
	ErrInvalidFormat  = errors.New("invalid block format")
)

// SnapshotError is a snapshot failure of one of the kinds above.
type SnapshotError struct {
	Kind error // ErrDeviceNotFound, ErrOpenFileFailed or ErrInvalidFormat
	Msg  string
	// Hint is an extra line QEMU's human monitor prints after the error
	// (QMP answers carry only Msg).
	Hint string
}

func (e *SnapshotError) Error() string { return e.Msg }
func (e *SnapshotError) Unwrap() error { return e.Kind }

func kindErr(kind error, format string, args ...any) error {
	return &SnapshotError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// NewImageMode values (QAPI NewImageMode).
const (
	ModeAbsolutePaths = "absolute-paths" // create the overlay (the default)
	ModeExisting      = "existing"       // open an overlay the caller made
)

// SnapshotSync is blockdev-snapshot-sync: create (or, in mode existing,
// open) an image whose backing is the current image of a device or node,
// and switch every user of that node to it. Nil pointers are absent
// members; Format "" is qcow2 and Mode "" is absolute-paths.
type SnapshotSync struct {
	Device           *string
	NodeName         *string
	SnapshotFile     string
	SnapshotNodeName *string
	Format           string
	Mode             string
}

// SnapshotOverlay is blockdev-snapshot: put the existing node Overlay
// (opened by blockdev-add without a backing) over Node.
type SnapshotOverlay struct {
	Node    string
	Overlay string
}

// InternalSnapshot is blockdev-snapshot-internal-sync: an internal snapshot
// called Name of the root node Device (a device or node name). Date and
// VMClockNsec are recorded in the entry (zero Date: now).
type InternalSnapshot struct {
	Device      string
	Name        string
	Date        time.Time
	VMClockNsec int64
}

// AbortAction is the transaction action that always fails.
type AbortAction struct{}

// createImage writes a new qcow2 image; tests replace it to inject
// failures part-way through.
var createImage = qcow2.Create

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// lookupBS finds a node the way bdrv_lookup_bs does: a named backend's root
// first, then a node name.
func (g *Graph) lookupBS(device, nodeName *string) (*Node, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if device != nil {
		for _, b := range g.backends {
			if b.name != "" && b.name == *device {
				return b.root.Load(), true
			}
		}
	}
	if nodeName != nil {
		if n := g.byName[*nodeName]; n != nil {
			return n, true
		}
	}
	return nil, false
}

func notFoundText(device, nodeName *string) string {
	return fmt.Sprintf("Cannot find device='%s' nor node-name='%s'", strOr(device, ""), strOr(nodeName, ""))
}

// snapshotBlocker returns why n cannot take an external snapshot: it is
// some node's backing (QEMU's op blocker, whose text names the parent by
// the node name it had when the backing was attached) or, a snapvm limit,
// some format node's file.
func (g *Graph) snapshotBlocker(n *Node) error {
	g.mu.Lock()
	parents := append([]parentLink(nil), n.parents...)
	g.mu.Unlock()
	for _, p := range parents {
		if p.role == "backing" {
			return fmt.Errorf("Node '%s' is busy: node is used as backing hd of '%s'", g.DeviceOrNodeName(n), p.parent.name)
		}
	}
	for _, p := range parents {
		return fmt.Errorf("Node '%s' is busy: node is used as %s of '%s'", g.DeviceOrNodeName(n), p.role, p.parent.name)
	}
	return nil
}

// needsConsistentRead reports whether a user of n relies on its content
// staying as it is (QEMU's BLK_PERM_CONSISTENT_READ): a backend, a qcow2
// node reading its metadata from n as its file, or a user of a node that
// reads through n (n as its backing or as a raw node's file).
// Preconditions: g.mu held.
func (g *Graph) needsConsistentRead(n *Node) bool {
	if n.backends > 0 {
		return true
	}
	for _, p := range n.parents {
		if p.role == "file" && p.parent.drvName == "qcow2" || g.needsConsistentRead(p.parent) {
			return true
		}
	}
	return false
}

// snapshotImage is the qcow2 image that holds n's internal snapshots: its
// own, or for a raw node its file's (QEMU falls through to the file child
// of a format without snapshots). Nil if there is none.
func snapshotImage(n *Node) *qcow2.Image {
	for ; n != nil; n = n.file {
		if n.img != nil {
			return n.img
		}
		if n.drvName != "raw" {
			break
		}
	}
	return nil
}

// writeLocked reports whether a node of the graph writes to the file at
// path: what QEMU's image locking ("write" lock) protects. Two nodes
// writing one image would corrupt it.
func (g *Graph) writeLocked(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.nodes {
		if n.drvName != "file" || !g.writes(n) {
			continue
		}
		if nst, err := os.Stat(n.filename); err == nil && os.SameFile(st, nst) {
			return true
		}
	}
	return false
}

// writes reports whether some user may write to n: a device, a writable
// qcow2 node whose file it is (metadata), or a writing user of a raw node
// whose file it is. Preconditions: g.mu held.
func (g *Graph) writes(n *Node) bool {
	if n.ReadOnly() {
		return false
	}
	if n.backends > 0 {
		return true
	}
	for _, p := range n.parents {
		if p.role != "file" {
			continue
		}
		if p.parent.drvName == "qcow2" && !p.parent.ReadOnly() || p.parent.drvName == "raw" && g.writes(p.parent) {
			return true
		}
	}
	return false
}

func lockErr(path string) error {
	return &SnapshotError{Kind: ErrOpenFileFailed, Msg: `Failed to get "write" lock`,
		Hint: fmt.Sprintf("Is another process using the image [%s]?", path)}
}

// openOverlay opens o as a node the monitor does not own (like the
// overlays QEMU opens itself), registering it and its file child.
func (g *Graph) openOverlay(o Options, readOnly bool) (*Node, error) {
	return g.addTree(o, &readOnly, false)
}

// dropNode closes n and removes it (and children only it used) from the
// graph. n must have no users.
func (g *Graph) dropNode(n *Node) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.remove(n)
}

func (g *Graph) unused(n *Node) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return n.backends == 0 && len(n.parents) == 0
}

func (g *Graph) inUse(n *Node) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.needsConsistentRead(n)
}

// externalState is the transaction state of one external snapshot action
// (blockdev-snapshot-sync or blockdev-snapshot).
type externalState struct {
	sync    *SnapshotSync    // one of sync and overlay is set
	overlay *SnapshotOverlay //

	g       *Graph
	src     *Node
	ov      *Node
	created *createdFile // the overlay file this action wrote, if any
	opened  bool         // ov was opened by this action (sync)
	linked  bool         // ov's backing is src
	moved   []*Backend   // backends switched from src to ov
}

func (s *externalState) name() string {
	if s.sync != nil {
		return "blockdev-snapshot-sync"
	}
	return "blockdev-snapshot"
}

func (s *externalState) prepare(tx *txn) error {
	g := tx.g
	s.g = g
	if tx.grouped {
		return groupedErr(s.name())
	}
	var device, nodeName *string
	if s.sync != nil {
		device, nodeName = s.sync.Device, s.sync.NodeName
	} else {
		device, nodeName = &s.overlay.Node, &s.overlay.Node
	}
	src, ok := g.lookupBS(device, nodeName)
	if !ok {
		if s.sync != nil {
			return kindErr(ErrDeviceNotFound, "%s", notFoundText(device, nodeName))
		}
		return errors.New(notFoundText(device, nodeName))
	}
	s.src = src
	if err := g.snapshotBlocker(src); err != nil {
		return err
	}
	if !src.ReadOnly() {
		if err := src.Flush(); err != nil {
			return errors.New("An IO error has occurred")
		}
	}
	if s.sync != nil {
		if err := s.prepareSync(); err != nil {
			return err
		}
	} else {
		ov, ok := g.lookupBS(&s.overlay.Overlay, &s.overlay.Overlay)
		if !ok {
			return errors.New(notFoundText(&s.overlay.Overlay, &s.overlay.Overlay))
		}
		s.ov = ov
	}
	return s.appendOverlay()
}

// prepareSync checks the new overlay's name and format, creates its file
// (unless mode existing) and opens it.
func (s *externalState) prepareSync() error {
	a, g := s.sync, s.g
	if a.NodeName != nil && a.SnapshotNodeName == nil {
		return errors.New("New overlay node-name missing")
	}
	if a.SnapshotNodeName != nil {
		if _, used := g.lookupBS(a.SnapshotNodeName, a.SnapshotNodeName); used {
			return errors.New("New overlay node-name already in use")
		}
	}
	format := a.Format
	if format == "" {
		format = "qcow2"
	}
	mode := a.Mode
	if mode == "" {
		mode = ModeAbsolutePaths
	}
	switch format {
	case "qcow2":
	case "raw", "file":
		if mode != ModeExisting {
			return kindErr(ErrInvalidFormat, "Backing file not supported for file format '%s'", format)
		}
	default:
		if mode == ModeExisting {
			return kindErr(ErrInvalidFormat, "Unknown driver '%s'", format)
		}
		return kindErr(ErrInvalidFormat, "Unknown file format '%s'", format)
	}
	// QEMU finds a bad node name only when it opens the overlay; checking
	// first means no file is created for a request that cannot succeed.
	if a.SnapshotNodeName != nil {
		if n := *a.SnapshotNodeName; !validNodeName(n) {
			return fmt.Errorf("Invalid node-name: '%s'", n)
		} else if len(n) > maxNodeName {
			return errors.New("Node name too long")
		}
	}
	if mode != ModeExisting {
		c, err := g.createOverlayFile(a.SnapshotFile, s.src)
		if err != nil {
			return err
		}
		s.created = c
	}
	if mode == ModeExisting && format == "qcow2" && !s.src.ReadOnly() && g.writeLocked(a.SnapshotFile) {
		return lockErr(a.SnapshotFile)
	}
	o := Options{Driver: format, NodeName: strOr(a.SnapshotNodeName, ""),
		File: &Ref{Options: &Options{Driver: "file", Filename: a.SnapshotFile}}}
	// The overlay keeps the old node's discard and cache settings (QEMU
	// opens it with the old node's open flags).
	o.Discard, o.CacheDirect, o.CacheNoFlush = s.src.opts.Discard, s.src.opts.CacheDirect, s.src.opts.CacheNoFlush
	switch format {
	case "qcow2":
		o.Backing = &Ref{Null: true} // the backing is the source node, set below
	case "file":
		o = Options{Driver: "file", NodeName: o.NodeName, Filename: a.SnapshotFile,
			Discard: o.Discard, CacheDirect: o.CacheDirect, CacheNoFlush: o.CacheNoFlush}
	}
	ov, err := g.openOverlay(o, s.src.ReadOnly())
	if err != nil {
		return kindErr(ErrOpenFileFailed, "%s", err.Error())
	}
	s.ov, s.opened = ov, true
	if format != "qcow2" {
		return kindErr(ErrInvalidFormat, "The overlay does not support backing images")
	}
	return nil
}

// appendOverlay is bdrv_append: after QEMU's checks on the overlay, src
// becomes its backing and every backend using src switches to it. The
// graph is drained, so no request sees both.
func (s *externalState) appendOverlay() error {
	g, ov, src := s.g, s.ov, s.src
	if g.inUse(ov) {
		return errors.New("The overlay is already in use")
	}
	if ov.Backing() != nil {
		return errors.New("The overlay already has a backing image")
	}
	if ov.img == nil {
		return errors.New("The overlay does not support backing images")
	}
	if err := g.SetBacking(ov, src); err != nil {
		return err
	}
	s.linked = true
	for _, b := range g.Backends() {
		if b.Root() == src {
			b.ReplaceRoot(ov)
			s.moved = append(s.moved, b)
		}
	}
	return nil
}

func (s *externalState) commit() {
	// The base is no longer written to; QEMU reopens it read-only.
	if err := s.g.SetReadOnly(s.src, true); err != nil {
		slog.Warn("block: could not make the snapshot base read-only", "node", s.src.name, "err", err)
	}
}

// abort puts the graph back as it was and removes the file this action
// created. The base stays writable: it only becomes read-only at commit.
func (s *externalState) abort() {
	g := s.g
	for i := len(s.moved) - 1; i >= 0; i-- {
		s.moved[i].ReplaceRoot(s.src)
	}
	s.moved = nil
	if s.linked {
		if err := g.SetBacking(s.ov, nil); err != nil {
			slog.Warn("block: cannot detach the overlay", "node", s.ov.name, "err", err)
		}
		s.linked = false
	}
	if s.opened {
		if err := g.dropNode(s.ov); err != nil {
			slog.Warn("block: closing the abandoned overlay", "node", s.ov.name, "err", err)
		}
		s.opened = false
	}
	if s.created != nil {
		if err := s.created.undo(); err != nil {
			slog.Warn("block: cannot remove the abandoned overlay file", "file", s.created.path, "err", err)
		}
		s.created = nil
	}
}

func (s *externalState) clean() {
	// An overlay nothing uses (the base had no device) is closed at once,
	// as QEMU drops it; its file stays.
	if s.opened && s.linked && s.g.unused(s.ov) {
		if err := s.g.SetBacking(s.ov, nil); err == nil {
			_ = s.g.dropNode(s.ov)
		}
	}
}

// createdFile is an overlay file written by a snapshot, for undo.
type createdFile struct {
	path          string
	replacedEmpty bool // an empty file was there before
}

// undo removes the file (or empties it again if it replaced an empty one)
// and syncs the directory.
func (c *createdFile) undo() error {
	var err error
	if c.replacedEmpty {
		err = os.Truncate(c.path, 0)
	} else {
		err = os.Remove(c.path)
	}
	return errors.Join(err, syncDir(filepath.Dir(c.path)))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// createOverlayFile writes a qcow2 overlay at path over node src: backing
// file src's filename made absolute, backing format its driver, the same
// virtual size. It is built under a temporary name in the same directory,
// synced, then renamed into place. An existing non-empty file is refused,
// never overwritten.
func (g *Graph) createOverlayFile(path string, src *Node) (*createdFile, error) {
	cannot := func(err error) error {
		return kindErr(ErrOpenFileFailed, "Could not create '%s': %s", path, errnoText(err))
	}
	if path == "" {
		return nil, cannot(unix.ENOENT)
	}
	backing, err := filepath.Abs(src.Filename())
	if err != nil {
		return nil, cannot(err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, cannot(err)
	}
	if abs == backing {
		return nil, kindErr(ErrOpenFileFailed, "Error: Trying to create an image with the same filename as the backing file")
	}
	if g.writeLocked(path) {
		return nil, lockErr(path)
	}
	c := &createdFile{path: path}
	var emptyStat os.FileInfo
	switch st, err := os.Stat(path); {
	case err == nil && st.Mode().IsRegular() && st.Size() == 0:
		c.replacedEmpty = true
		emptyStat = st
	case err == nil && st.IsDir():
		return nil, cannot(unix.EISDIR)
	case err == nil:
		return nil, cannot(unix.EEXIST)
	case !errors.Is(err, os.ErrNotExist):
		return nil, cannot(err)
	}
	format := src.Driver()
	if format == "file" {
		// The same bytes as raw, which every reader of the header opens.
		format = "raw"
	}
	dir, base := filepath.Split(path)
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%08x.tmp", base, rand.Uint32()))
	err = createImage(tmp, qcow2.CreateOptions{Size: src.Size(), BackingFile: backing, BackingFormat: format})
	if err == nil && emptyStat != nil {
		// The overlay takes the place of the file the user made: keep its
		// permissions and, where allowed, its owner.
		err = os.Chmod(tmp, emptyStat.Mode().Perm())
		if sys, ok := emptyStat.Sys().(*syscall.Stat_t); ok && err == nil {
			_ = os.Lchown(tmp, int(sys.Uid), int(sys.Gid))
		}
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = renameInto(tmp, path, c.replacedEmpty)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, cannot(err)
	}
	if err := syncDir(filepath.Dir(abs)); err != nil {
		c.undo()
		return nil, cannot(err)
	}
	return c, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// renameInto moves tmp to path, failing if something appeared at path
// since it was checked (unless replacing an empty file was intended).
func renameInto(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No RENAME_NOREPLACE here: link fails on an existing name too.
		if err = os.Link(tmp, path); err == nil {
			err = os.Remove(tmp)
		}
	}
	return err
}

// internalState is the transaction state of blockdev-snapshot-internal-sync.
type internalState struct {
	a       InternalSnapshot
	img     *qcow2.Image
	created *qcow2.SnapshotInfo
}

// rootNode is qmp_get_root_bs: a device or node name whose node has no
// parent node.
func (g *Graph) rootNode(name string) (*Node, error) {
	n, ok := g.lookupBS(&name, &name)
	if !ok {
		return nil, errors.New(notFoundText(&name, &name))
	}
	g.mu.Lock()
	root := len(n.parents) == 0
	g.mu.Unlock()
	if !root {
		return nil, errors.New("Need a root block node")
	}
	return n, nil
}

func (s *internalState) prepare(tx *txn) error {
	a := s.a
	if tx.grouped {
		return groupedErr("blockdev-snapshot-internal-sync")
	}
	n, err := tx.g.rootNode(a.Device)
	if err != nil {
		return err
	}
	if n.ReadOnly() {
		return fmt.Errorf("Device '%s' is read only", a.Device)
	}
	img := snapshotImage(n)
	if img == nil {
		return fmt.Errorf("Block format '%s' used by device '%s' does not support internal snapshots", n.drvName, a.Device)
	}
	if a.Name == "" {
		return errors.New("Name is empty")
	}
	for _, sn := range img.Snapshots() {
		if sn.Name == a.Name {
			return fmt.Errorf("Snapshot with name '%s' already exists on device '%s'", a.Name, a.Device)
		}
	}
	date := a.Date
	if date.IsZero() {
		date = time.Now()
	}
	info, err := img.CreateSnapshot(qcow2.SnapshotInfo{
		Name:        a.Name,
		DateSec:     uint32(date.Unix()),
		DateNsec:    uint32(date.Nanosecond() / 1000 * 1000), // QEMU keeps microseconds
		VMClockNsec: uint64(max(a.VMClockNsec, 0)),
		ICount:      math.MaxUint64,
	})
	if err != nil {
		return fmt.Errorf("Failed to create snapshot '%s' on device '%s': %s", a.Name, a.Device, errnoText(err))
	}
	s.img, s.created = img, &info
	return nil
}

func (s *internalState) commit() {}

func (s *internalState) abort() {
	if s.created == nil {
		return
	}
	if err := s.img.DeleteSnapshot(s.created.ID, s.created.Name); err != nil {
		slog.Error(fmt.Sprintf("Failed to delete snapshot with id '%s' and name '%s' on device '%s' in abort: %v",
			s.created.ID, s.created.Name, s.a.Device, err))
	}
	s.created = nil
}

func (s *internalState) clean() {}

// DeleteInternalSnapshot is blockdev-snapshot-delete-internal-sync: it
// deletes the first internal snapshot of root node device matching id
// and/or name and returns what it was.
func (g *Graph) DeleteInternalSnapshot(device string, id, name *string) (SnapshotInfo, error) {
	release := g.Drain()
	defer release()
	n, err := g.rootNode(device)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if id == nil && name == nil {
		return SnapshotInfo{}, errors.New("Name or id must be provided")
	}
	img := snapshotImage(n)
	if img == nil {
		return SnapshotInfo{}, errors.New("Failed to get a snapshot list: Operation not supported")
	}
	var found *qcow2.SnapshotInfo
	for _, sn := range img.Snapshots() {
		if (id == nil || sn.ID == *id) && (name == nil || sn.Name == *name) {
			found = &sn
			break
		}
	}
	if found == nil {
		return SnapshotInfo{}, fmt.Errorf("Snapshot with id '%s' and name '%s' does not exist on device '%s'",
			strOr(id, "null"), strOr(name, "null"), device)
	}
	if n.ReadOnly() {
		return SnapshotInfo{}, fmt.Errorf("Device '%s' is read only", device)
	}
	if err := img.DeleteSnapshot(strOr(id, ""), strOr(name, "")); err != nil {
		return SnapshotInfo{}, fmt.Errorf("Failed to remove snapshot from snapshot list: %s", errnoText(err))
	}
	return SnapshotInfos([]qcow2.SnapshotInfo{*found})[0], nil
}
