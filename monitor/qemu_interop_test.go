package monitor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/snapshot"
	"github.com/snapvm/snapvm/snapshotcmd"
)

// wireInputs are sent to QEMU 7.2 and to snapvm; every answer must be the same JSON.
// They stick to the protocol layer and to commands both implement identically.
var wireInputs = []string{
	`{"execute": "query-status"}`,
	`{"execute": "query-name", "id": 1.5e3}`,
	`{"execute": "query-name", "id": [0.1, -0, 18446744073709551615, 18446744073709551616, 9223372036854775808]}`,
	`{"execute": "query-name", "id": {"a": ["x", null, true], "b": "\u00e9\ud83d\ude00"}}`,
	`{"execute": "query-name", "id": 'single'}`,
	`[1, 2]`,
	"42\n",
	`"str"`,
	`{"execute": "query-name", "foo": 1, "id": 1}`,
	`{"execute": ["x"], "id": 2}`,
	`{"execute": "query-name", "arguments": null, "id": 3}`,
	`{"execute": "query-name", "arguments": [], "id": 4}`,
	`{"exec-oob": "query-name"}`,
	`{}`,
	`{"id": 5}`,
	`{"arguments": {}}`,
	`{"execute": "nosuch", "id": "a"}`,
	`{"execute": "qmp_capabilities"}`,
	`{"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}}`,
	`{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}`,
	`{"execute": "query-status", "arguments": {"x": 1}}`,
	`{"execute": "job-pause"}`,
	`{"execute": "job-pause", "arguments": {"id": 1}}`,
	`{"execute": "job-pause", "arguments": {"y": 1}}`,
	`{"execute": "job-pause", "arguments": {"id": "nope"}}`,
	`{"execute": "job-resume", "arguments": {"id": "nope"}}`,
	`{"execute": "job-dismiss", "arguments": {"id": "nope"}}`,
	`{"execute": "query-jobs"}`,
	`{"execute": "blockdev-del", "arguments": {"node-name": "nope"}}`,
	`{"execute": "blockdev-del", "arguments": {"node-name": true}}`,
	`{"execute": "human-monitor-command"}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "  bogus x"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "info foo"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": ""}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "info name"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "stop"}}`,
	`{"execute": "stop"}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "help stop"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "help c"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "help system_reset"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "help system_powerdown"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "help quit"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "info status x"}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "  s   x y "}}`,
	`{"execute": "human-monitor-command", "arguments": {"command-line": "system_reset 1"}}`,
	`{"execute": "cont", "arguments": {"x": 1}}`,
	`{"execute": }`,
	`}`,
	`]`,
	`{"execute": foo}`,
	"\xff",
	"\x01",
	`{"execute": "query-name", "execute": "x"}`,
	`{1: 2}`,
	`{"a" 1}`,
	`{"a": 1 "b": 2}`,
	`[1 2]`,
	`[1,]`,
	`{"a": 1]}`,
	`"\x"`,
	"\"\xc3\x28\"",
	"\"ab\x01",
	`01`,
	`-a`,
	`1.e5`,
	`{"execute": True}`,
	`{'execute': 'query-name', 'id': 'it\'s'}`,
	`{"execute": "query-name", "id": [-0.0, 1E3, 1e-7, 123456789.123456789, -9223372036854775808, -9223372036854775809]}`,
	`{"execute": "query-name", "id": "\/\u0000\t\"'\\"}`,
	`{"execute": "query-name", "id": 1}{"execute": "query-name", "id": 2} {"execute": "query-name", "id": 3}`,
	"{\"execute\":\t\"query-name\",\r\n\"id\": \"ws\"}",
	`{"execute": "query-name", "id": nul}`,
	`{"execute": "query-name", "id": "\u00"}`,
	`{"execute": "query-name", "id": "\u12G4"}`,
	`{"execute": "query-name", "id": "\udc00"}`,
	`{"execute": "query-name", "id": "\ud800\u0041"}`,
	"{\"execute\": \"query-name\", \"id\": \"\xe9\"}",
	"{\"execute\": \"query-name\", \"id\": \"\xed\xa0\x80\"}",
	"{\"execute\": \"query-name\", \"id\": \"\xc0\x80\"}",
	"{\"execute\": \"query-name\", \"id\": \"\xf4\x90\x80\x80\"}",
	`{"execute": "query-name", "arguments": {}, "arguments": {}}`,
	`{"execute": "qmp_capabilities", "arguments": {"enable": []}}`,
	`{"execute": "job-pause", "arguments": {"id": "x", "id": "y"}}`,
	`[}`,
	`{]`,
	`{"a":}`,
	`{,}`,
	`{"a":1,}`,
	`[[1] [2]]`,
	`truefalse`,
	`{"execute": "query-name", "id": tru}`,
	`{"execute": "query-name", "id": 1.}`,
	`{"execute": "query-name", "id": -}`,
	`{"execute": "query-name", "id": 1e}`,
	`{"execute": "query-name", "id": 00}`,
	`{"execute": "query-name", "id": 0x10}`,
	`{"execute": "query-name", "id": +1}`,
	`{"execute": "query-name", "id": .5}`,
	`{"execute": "query-name", "id": Infinity}`,
	"{\"execute\": \"query-name\", \"id\": 1\xc3\xa9}",
	strings.Repeat("[", 1025) + strings.Repeat("]", 1025),
	strings.Repeat("[", 1024) + strings.Repeat("]", 1024),
}

type wireConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (w *wireConn) line() []byte {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := w.r.ReadBytes('\n')
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return l
}

// exchange sends in, then a marker command, and returns every answer before the marker's.
func (w *wireConn) exchange(in string) []any {
	w.t.Helper()
	w.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := w.conn.Write([]byte(in + "\n\x01" + `{"execute": "query-status", "id": "sync"}` + "\n")); err != nil {
		w.t.Fatal(err)
	}
	var out []any
	for {
		l := w.line()
		if !bytes.HasSuffix(l, []byte("\r\n")) {
			w.t.Errorf("answer not CRLF-terminated: %q", l)
		}
		var v map[string]any
		if err := json.Unmarshal(l, &v); err != nil {
			w.t.Fatalf("answer %q: %v", l, err)
		}
		if v["id"] == "sync" {
			return out
		}
		if _, ev := v["event"]; ev {
			continue
		}
		out = append(out, v)
	}
}

// TestWireMatchesQEMU sends the same bytes to qemu-system-riscv64 7.2 and to snapvm and
// requires the same answers (compared as JSON values: QEMU's key order follows hashing).
func TestWireMatchesQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-riscv64")
	if err != nil {
		t.Fatal("qemu-system-riscv64 not found: install it with scripts/setup.sh (Debian package qemu-system-misc)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "qemu.qmp")
	cmd := exec.Command(qemu, "-M", "virt", "-bios", "none", "-nodefaults", "-display", "none", "-S",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var qc net.Conn
	for i := 0; ; i++ {
		if qc, err = net.Dial("unix", sock); err == nil {
			break
		}
		if i > 1000 {
			t.Fatalf("QEMU's QMP socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer qc.Close()
	q := &wireConn{t: t, conn: qc, r: bufio.NewReader(qc)}
	q.line() // greeting
	q.exchange(`{"execute": "qmp_capabilities"}`)

	e := newEnv(t, machine.Config{StartPaused: true})
	a, b := net.Pipe()
	go e.mon.Server().ServeConn(b)
	defer a.Close()
	s := &wireConn{t: t, conn: a, r: bufio.NewReader(a)}
	s.line()
	s.exchange(`{"execute": "qmp_capabilities"}`)

	compare := func(q, s *wireConn, inputs []string) {
		for _, in := range inputs {
			want := q.exchange(in)
			got := s.exchange(in)
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Errorf("input %q\n snapvm %s\n QEMU   %s", in, gj, wj)
			}
		}
	}
	compare(q, s, wireInputs)

	// Capability negotiation mode, on fresh connections (QEMU serves one client per
	// socket at a time, so its first one is closed).
	qc.Close()
	var qc2 net.Conn
	for i := 0; ; i++ {
		if qc2, err = net.Dial("unix", sock); err == nil {
			break
		}
		if i > 1000 {
			t.Fatalf("QEMU's QMP socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer qc2.Close()
	q2 := &wireConn{t: t, conn: qc2, r: bufio.NewReader(qc2)}
	q2.line()
	a2, b2 := net.Pipe()
	go e.mon.Server().ServeConn(b2)
	defer a2.Close()
	s2 := &wireConn{t: t, conn: a2, r: bufio.NewReader(a2)}
	s2.line()
	compare(q2, s2, []string{
		`{"execute": "query-status", "id": 1}`,
		`{"execute": "query-status", "arguments": {"x": 1}}`,
		`{"execute": "nosuch"}`,
		`{"execute": 1}`,
		`{"id": 2}`,
		`{"execute": "qmp_capabilities", "arguments": {"x": 1}}`,
		`{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}`,
		`{"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}}`,
		`{"execute": "qmp_capabilities", "arguments": {"enable": [1]}}`,
		`{"execute": "qmp_capabilities", "id": "neg"}`,
		`{"execute": "qmp_capabilities"}`,
		`{"execute": "query-name"}`,
	})
	_ = os.Remove(sock)
}

// schemaIndex is a query-qmp-schema answer indexed by type name.
type schemaIndex map[string]map[string]any

func loadSchema(t *testing.T, w *wireConn) schemaIndex {
	t.Helper()
	w.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	w.conn.Write([]byte(`{"execute": "query-qmp-schema", "id": "schema"}`))
	for {
		var resp struct {
			ID     any              `json:"id"`
			Return []map[string]any `json:"return"`
		}
		if err := json.Unmarshal(w.line(), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.ID != "schema" {
			continue
		}
		idx := schemaIndex{}
		for _, e := range resp.Return {
			idx[e["name"].(string)] = e
		}
		return idx
	}
}

// shapeDiff compares type ours (in snapvm's schema) with theirs (in QEMU's): object
// members by name and optionality, arrays by element, recursively. QEMU members snapvm
// lacks are reported only when mandatory in QEMU (a client may rely on them).
func shapeDiff(path, ours, theirs string, os, qs schemaIndex, seen map[string]bool, out *[]string) {
	if seen[ours+"/"+theirs] {
		return
	}
	seen[ours+"/"+theirs] = true
	o, q := os[ours], qs[theirs]
	if o == nil || q == nil {
		return
	}
	om, qm := o["meta-type"], q["meta-type"]
	if om == "builtin" && ours == "any" || qm == "builtin" && theirs == "any" {
		return
	}
	// A string and an enum look the same on the wire.
	strLike := func(name string, m any) bool { return m == "enum" || m == "builtin" && name == "str" }
	if strLike(ours, om) && strLike(theirs, qm) {
		return
	}
	if qm == "alternate" || qm == "union" || om != qm && !(om == "object" && qm == "object") {
		if !(om == "builtin" && qm == "builtin") && !(om == "enum" && qm == "enum") {
			*out = append(*out, path+": snapvm "+om.(string)+", QEMU "+qm.(string))
		}
		return
	}
	switch om {
	case "array":
		shapeDiff(path+"[]", o["element-type"].(string), q["element-type"].(string), os, qs, seen, out)
	case "enum":
		qv := map[string]bool{}
		for _, v := range q["values"].([]any) {
			qv[v.(string)] = true
		}
		for _, v := range o["values"].([]any) {
			if !qv[v.(string)] {
				*out = append(*out, path+": value "+v.(string)+" unknown to QEMU")
			}
		}
	case "object":
		qmem := map[string]map[string]any{}
		for _, m := range q["members"].([]any) {
			mm := m.(map[string]any)
			qmem[mm["name"].(string)] = mm
		}
		omem := map[string]bool{}
		for _, m := range o["members"].([]any) {
			mm := m.(map[string]any)
			name := mm["name"].(string)
			omem[name] = true
			qq, ok := qmem[name]
			if !ok {
				// Members of a union's variants live in other objects; only flag
				// plain objects.
				if q["variants"] == nil {
					*out = append(*out, path+"."+name+": not in QEMU")
				}
				continue
			}
			_, oOpt := mm["default"]
			_, qOpt := qq["default"]
			if oOpt != qOpt {
				*out = append(*out, fmt.Sprintf("%s.%s: optional=%v, QEMU optional=%v", path, name, oOpt, qOpt))
			}
			shapeDiff(path+"."+name, mm["type"].(string), qq["type"].(string), os, qs, seen, out)
		}
		for name, qq := range qmem {
			if _, opt := qq["default"]; !opt && !omem[name] {
				*out = append(*out, path+"."+name+": mandatory in QEMU, missing")
			}
		}
	}
}

// TestSchemaMatchesQEMU checks that every command and event snapvm offers exists in
// QEMU 7.2 with the same argument and return members (names and optionality).
func TestSchemaMatchesQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-riscv64")
	if err != nil {
		t.Fatal("qemu-system-riscv64 not found: install it with scripts/setup.sh (Debian package qemu-system-misc)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "qemu.qmp")
	cmd := exec.Command(qemu, "-M", "virt", "-bios", "none", "-nodefaults", "-display", "none", "-S",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var qc net.Conn
	for i := 0; ; i++ {
		if qc, err = net.Dial("unix", sock); err == nil {
			break
		}
		if i > 1000 {
			t.Fatalf("QEMU's QMP socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer qc.Close()
	q := &wireConn{t: t, conn: qc, r: bufio.NewReader(qc)}
	q.line()
	q.exchange(`{"execute": "qmp_capabilities"}`)
	qs := loadSchema(t, q)

	e := newEnv(t, machine.Config{StartPaused: true})
	// The snapshot commands too: they are registered the way cmd/snapvm does.
	snapshotcmd.Register(e.mon.Server(), e.mon.Jobs(), e.mon.HMP(), &snapshot.Manager{VM: e.m, Disks: snapshotcmd.Disks(e.g)})
	a, b := net.Pipe()
	go e.mon.Server().ServeConn(b)
	defer a.Close()
	s := &wireConn{t: t, conn: a, r: bufio.NewReader(a)}
	s.line()
	s.exchange(`{"execute": "qmp_capabilities"}`)
	os := loadSchema(t, s)
	if os["snapshot-save"] == nil {
		t.Fatal("snapshot commands not registered")
	}

	var diffs []string
	seen := map[string]bool{}
	for name, o := range os {
		mt := o["meta-type"]
		if mt != "command" && mt != "event" {
			continue
		}
		q, ok := qs[name]
		if !ok || q["meta-type"] != mt {
			diffs = append(diffs, name+": not a QEMU 7.2 "+mt.(string))
			continue
		}
		if name == "query-qmp-schema" || name == "blockdev-add" {
			continue // opaque on purpose, see docs/compat.md
		}
		shapeDiff(name+"(args)", o["arg-type"].(string), q["arg-type"].(string), os, qs, seen, &diffs)
		if mt == "command" {
			shapeDiff(name+"(ret)", o["ret-type"].(string), q["ret-type"].(string), os, qs, seen, &diffs)
		}
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Error(d)
	}
}
