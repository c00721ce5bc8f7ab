package qmp

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
)

func TestParseSpec(t *testing.T) {
	cases := []struct {
		spec, network, addr string
		wait                bool
		err                 string
	}{
		{spec: "unix:/tmp/q.sock,server=on,wait=off", network: "unix", addr: "/tmp/q.sock"},
		{spec: "unix:/tmp/q.sock,server,nowait", network: "unix", addr: "/tmp/q.sock"},
		{spec: "tcp:127.0.0.1:4444,server=on", network: "tcp", addr: "127.0.0.1:4444", wait: true},
		{spec: "unix:/tmp/q.sock", err: "must be a server socket"},
		{spec: "stdio", err: "unsupported chardev"},
		{spec: "unix:,server=on", err: "missing address"},
		{spec: "unix:/x,server=on,bogus=1", err: "invalid parameter 'bogus'"},
		{spec: "unix:/x,server=maybe", err: "expects 'on' or 'off'"},
	}
	for _, tc := range cases {
		n, a, w, err := ParseSpec(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.network || a != tc.addr || w != tc.wait {
			t.Errorf("%s: got %s %s %v %v", tc.spec, n, a, w, err)
		}
	}
}

func TestUnixListener(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "qmp.sock")
	// A stale socket from a dead process is replaced.
	l0, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l0.(*net.UnixListener).SetUnlinkOnClose(false)
	l0.Close()
	s, _ := newTestServer(t)
	l, err := Listen("unix:" + path + ",server=on,wait=off")
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	go s.Serve(l)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	// A socket that is alive is not taken over.
	if _, err := Listen("unix:" + path + ",server=on,wait=off"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listener on a live socket: %v", err)
	}
	// A second -qmp on tcp works alongside.
	l2, err := Listen("tcp:127.0.0.1:0,server=on,wait=off")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l2)
	for _, addr := range [][2]string{{"unix", path}, {"tcp", l2.Addr().String()}} {
		c, err := net.Dial(addr[0], addr[1])
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 200)
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), `{"QMP": `) {
			t.Errorf("%s greeting %q", addr[0], buf[:n])
		}
		c.Close()
	}
	select {
	case <-l.Connected:
	case <-time.After(5 * time.Second):
		t.Error("Connected not closed after the first client")
	}
}

// TestGoQemuClient drives the server with digitalocean/go-qemu's SocketMonitor, a client
// written against QEMU.
func TestGoQemuClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	s, _ := newTestServer(t)
	l, err := Listen("unix:" + path + ",server=on,wait=off")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	mon, err := goqmp.NewSocketMonitor("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatalf("connect/negotiate: %v", err)
	}
	defer mon.Disconnect()
	if mon.Version == nil || mon.Version.QEMU.Major != 7 || mon.Version.QEMU.Minor != 2 {
		t.Errorf("version %+v", mon.Version)
	}
	events, err := mon.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := mon.Run([]byte(`{"execute": "query-version"}`))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Return VersionInfo `json:"return"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Return.Package != "snapvm test" {
		t.Errorf("query-version: %s %v", out, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mon.Run([]byte(`{"execute": "test-emit", "arguments": {"id": "j1"}}`))
		done <- err
	}()
	ev := <-events
	if ev.Event != "TEST_EVENT" || ev.Data["id"] != "j1" || ev.Timestamp.Seconds == 0 {
		t.Errorf("event %+v", ev)
	}
	if ev := <-events; ev.Event != "TEST_NODATA" {
		t.Errorf("event %+v", ev)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := mon.Run([]byte(`{"execute": "test-fail"}`)); err == nil || err.Error() != "it failed" {
		t.Errorf("error response: %v", err)
	}
}
