package blockcmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qcow2"
	"github.com/snapvm/snapvm/qmp"
)

type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// setup returns a negotiated QMP client of a server with the commands
// registered over a graph with qcow2 disk "disk0" on device "drive0".
func setup(t *testing.T) (*client, *block.Graph, string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "disk0.qcow2")
	if err := qcow2.Create(p, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	g := block.NewGraph()
	t.Cleanup(func() { g.Close() })
	n, err := g.Add(block.Options{Driver: "qcow2", NodeName: "disk0", File: &block.Ref{Options: &block.Options{Driver: "file", Filename: p}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.NewBackend("drive0", n); err != nil {
		t.Fatal(err)
	}
	s := qmp.NewServer(qmp.ServerOptions{})
	RegisterWith(s, g, Options{
		VMClock: func() int64 { return 2_250_000_000 },
		Now:     func() time.Time { return time.Unix(1700000000, 5000) },
	})
	t.Cleanup(func() { s.Close() })
	a, b := net.Pipe()
	go s.ServeConn(b)
	c := &client{t: t, conn: a, r: bufio.NewReader(a)}
	t.Cleanup(func() { a.Close() })
	c.recv() // greeting
	if got := c.cmd(`{"execute": "qmp_capabilities"}`); got != `{"return": {}}` {
		t.Fatal(got)
	}
	return c, g, dir
}

func (c *client) recv() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// cmd sends one command and returns the answer.
func (c *client) cmd(s string) string {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
	return c.recv()
}

func errReply(class, desc string) string {
	d, _ := json.Marshal(desc)
	return fmt.Sprintf(`{"error": {"class": "%s", "desc": %s}}`, class, d)
}

func TestCommandsRegistered(t *testing.T) {
	s := qmp.NewServer(qmp.ServerOptions{})
	Register(s, block.NewGraph())
	have := strings.Join(s.Commands(), " ")
	for _, name := range []string{"blockdev-snapshot-sync", "blockdev-snapshot", "blockdev-snapshot-internal-sync",
		"blockdev-snapshot-delete-internal-sync", "transaction"} {
		if !strings.Contains(" "+have+" ", " "+name+" ") {
			t.Errorf("%s not registered", name)
		}
	}
}

func TestSnapshotSyncErrorsOnTheWire(t *testing.T) {
	c, g, dir := setup(t)
	ov := filepath.Join(dir, "ov.qcow2")
	cases := []struct{ req, want string }{
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0"}}`,
			errReply("GenericError", "Parameter 'snapshot-file' is missing")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": "x", "mode": "bogus"}}`,
			errReply("GenericError", "Parameter 'mode' does not accept value 'bogus'")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": 1}}`,
			errReply("GenericError", "Invalid parameter type for 'snapshot-file', expected: string")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "nodev", "snapshot-file": "` + ov + `"}}`,
			errReply("DeviceNotFound", "Cannot find device='nodev' nor node-name=''")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": "` + dir + `/no/ov.qcow2"}}`,
			errReply("OpenFileFailed", "Could not create '"+dir+"/no/ov.qcow2': No such file or directory")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": "` + ov + `", "format": "bogus"}}`,
			errReply("InvalidBlockFormat", "Unknown file format 'bogus'")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": "` + ov + `", "format": "bogus", "mode": "existing"}}`,
			errReply("InvalidBlockFormat", "Unknown driver 'bogus'")},
		{`{"execute": "blockdev-snapshot-sync", "arguments": {"node-name": "disk0", "snapshot-file": "` + ov + `"}}`,
			errReply("GenericError", "New overlay node-name missing")},
		{`{"execute": "blockdev-snapshot", "arguments": {"node": "nodevice", "overlay": "x"}}`,
			errReply("GenericError", "Cannot find device='nodevice' nor node-name='nodevice'")},
		{`{"execute": "blockdev-snapshot", "arguments": {"node": "drive0", "overlay": "disk0"}}`,
			errReply("GenericError", "The overlay is already in use")},
	}
	for _, tc := range cases {
		if got := c.cmd(tc.req); got != tc.want {
			t.Errorf("%s\n got  %s\n want %s", tc.req, got, tc.want)
		}
	}
	if b := g.Backends()[0]; b.Root().NodeName() != "disk0" || b.ReadOnly() {
		t.Fatal("device changed by a failed command")
	}
	if _, err := os.Stat(ov); !os.IsNotExist(err) {
		t.Fatal("overlay file left behind")
	}
	want := `{"return": {}}`
	if got := c.cmd(`{"execute": "blockdev-snapshot-sync", "arguments": {"device": "drive0", "snapshot-file": "` + ov + `", "snapshot-node-name": "ov", "format": "qcow2", "mode": "absolute-paths"}}`); got != want {
		t.Fatal(got)
	}
	if g.Backends()[0].Root().NodeName() != "ov" {
		t.Fatal("not switched")
	}
}

func TestInternalSnapshotCommands(t *testing.T) {
	c, _, _ := setup(t)
	cases := []struct{ req, want string }{
		{`{"execute": "blockdev-snapshot-internal-sync", "arguments": {"device": "drive0", "name": "s1"}}`, `{"return": {}}`},
		{`{"execute": "blockdev-snapshot-internal-sync", "arguments": {"device": "drive0", "name": "s1"}}`,
			errReply("GenericError", "Snapshot with name 's1' already exists on device 'drive0'")},
		{`{"execute": "blockdev-snapshot-internal-sync", "arguments": {"device": "drive0", "name": ""}}`,
			errReply("GenericError", "Name is empty")},
		{`{"execute": "blockdev-snapshot-internal-sync", "arguments": {"device": "drive0"}}`,
			errReply("GenericError", "Parameter 'name' is missing")},
		{`{"execute": "blockdev-snapshot-delete-internal-sync", "arguments": {"device": "drive0"}}`,
			errReply("GenericError", "Name or id must be provided")},
		{`{"execute": "blockdev-snapshot-delete-internal-sync", "arguments": {"device": "drive0", "name": "zz"}}`,
			errReply("GenericError", "Snapshot with id 'null' and name 'zz' does not exist on device 'drive0'")},
		{`{"execute": "blockdev-snapshot-delete-internal-sync", "arguments": {"device": "drive0", "name": "s1"}}`,
			`{"return": {"id": "1", "name": "s1", "vm-state-size": 0, "date-sec": 1700000000, "date-nsec": 5000, "vm-clock-sec": 2, "vm-clock-nsec": 250000000}}`},
	}
	for _, tc := range cases {
		if got := c.cmd(tc.req); got != tc.want {
			t.Errorf("%s\n got  %s\n want %s", tc.req, got, tc.want)
		}
	}
}

func TestTransactionCommand(t *testing.T) {
	c, g, dir := setup(t)
	ov := filepath.Join(dir, "ov.qcow2")
	sync := `{"type": "blockdev-snapshot-sync", "data": {"device": "drive0", "snapshot-file": "` + ov + `", "snapshot-node-name": "ov"}}`
	cases := []struct{ req, want string }{
		{`{"execute": "transaction", "arguments": {"actions": []}}`, `{"return": {}}`},
		{`{"execute": "transaction", "arguments": {"actions": [], "properties": {"completion-mode": "grouped"}}}`, `{"return": {}}`},
		{`{"execute": "transaction", "arguments": {}}`, errReply("GenericError", "Parameter 'actions' is missing")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "bogus", "data": {}}]}}`,
			errReply("GenericError", "Parameter 'type' does not accept value 'bogus'")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "abort"}]}}`,
			errReply("GenericError", "Parameter 'actions[0].data' is missing")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "abort", "data": {}}, {"type": "blockdev-snapshot-sync", "data": {"device": "drive0"}}]}}`,
			errReply("GenericError", "Parameter 'actions[1].data.snapshot-file' is missing")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "blockdev-snapshot-sync", "data": {"device": "drive0", "snapshot-file": "x", "mode": "bad"}}]}}`,
			errReply("GenericError", "Parameter 'mode' does not accept value 'bad'")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "blockdev-snapshot", "data": {"node": 1, "overlay": "x"}}]}}`,
			errReply("GenericError", "Invalid parameter type for 'actions[0].data.node', expected: string")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "abort", "data": {"x": 1}}]}}`,
			errReply("GenericError", "Parameter 'actions[0].data.x' is unexpected")},
		{`{"execute": "transaction", "arguments": {"actions": [{"type": "abort", "data": null}]}}`,
			errReply("GenericError", "Invalid parameter type for 'actions[0].data', expected: object")},
		{`{"execute": "transaction", "arguments": {"actions": [` + sync + `], "properties": {"completion-mode": "grouped"}}}`,
			errReply("GenericError", "Action 'blockdev-snapshot-sync' does not support Transaction property completion-mode = grouped")},
		{`{"execute": "transaction", "arguments": {"actions": [` + sync + `, {"type": "blockdev-snapshot-internal-sync", "data": {"device": "ov", "name": "t"}}, {"type": "abort", "data": {}}]}}`,
			errReply("GenericError", "Transaction aborted using Abort action")},
		{`{"execute": "transaction", "arguments": {"actions": [` + sync + `, {"type": "blockdev-snapshot-sync", "data": {"device": "nodev", "snapshot-file": "y"}}]}}`,
			errReply("DeviceNotFound", "Cannot find device='nodev' nor node-name=''")},
	}
	for _, tc := range cases {
		if got := c.cmd(tc.req); got != tc.want {
			t.Errorf("%s\n got  %s\n want %s", tc.req, got, tc.want)
		}
		if _, err := os.Stat(ov); !os.IsNotExist(err) {
			t.Fatalf("%s: overlay file left behind", tc.req)
		}
		if g.Backends()[0].Root().NodeName() != "disk0" {
			t.Fatalf("%s: device switched", tc.req)
		}
	}
	if got := c.cmd(`{"execute": "transaction", "arguments": {"actions": [` + sync + `, {"type": "blockdev-snapshot-internal-sync", "data": {"device": "ov", "name": "t"}}]}}`); got != `{"return": {}}` {
		t.Fatal(got)
	}
	root := g.Backends()[0].Root()
	if root.NodeName() != "ov" || len(root.Qcow2().Snapshots()) != 1 {
		t.Fatal("transaction not committed")
	}
}

// FuzzTransactionData feeds arbitrary action data through validation and
// the transaction over an empty graph: errors, never a panic.
func FuzzTransactionData(f *testing.F) {
	f.Add("blockdev-snapshot-sync", `{"device": "d", "snapshot-file": "/nonexistent/x", "mode": "existing"}`)
	f.Add("blockdev-snapshot", `{"node": "a", "overlay": "b"}`)
	f.Add("blockdev-snapshot-internal-sync", `{"device": "d", "name": ""}`)
	f.Add("abort", `{}`)
	f.Add("abort", `[1, {"a": null}]`)
	g := block.NewGraph()
	c := &commands{g: g}
	f.Fuzz(func(t *testing.T, kind, data string) {
		if !json.Valid([]byte(data)) {
			return
		}
		a := TransactionArgs{Actions: []TransactionAction{{Type: TransactionActionKind(kind), Data: json.RawMessage(data)}}}
		if _, ok := dataTypes[a.Actions[0].Type]; !ok {
			return // refused by the enum check before the handler runs
		}
		_, err := c.transaction(t.Context(), a)
		if err == nil && kind != "abort" {
			t.Fatalf("%s %s succeeded on an empty graph", kind, data)
		}
	})
}
