package qmp

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClient speaks raw bytes to a session over an in-memory pipe.
type testClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, s *Server) *testClient {
	t.Helper()
	a, b := net.Pipe()
	go s.ServeConn(b)
	c := &testClient{t: t, conn: a, r: bufio.NewReader(a)}
	t.Cleanup(func() { a.Close() })
	c.recv() // greeting
	return c
}

func (c *testClient) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv returns the next message without its "\r\n", failing if it does not end so.
func (c *testClient) recv() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("message does not end with CRLF: %q", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func (c *testClient) expect(want string) {
	c.t.Helper()
	if got := c.recv(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func (c *testClient) negotiate() {
	c.t.Helper()
	c.send(`{"execute": "qmp_capabilities"}`)
	c.expect(`{"return": {}}`)
}

// Test command set, shaped like the snapshot commands.
type testMode string

func (testMode) EnumValues() []string { return []string{"existing", "absolute-paths"} }

type testNested struct {
	Driver string `json:"driver"`
	Size   *int64 `json:"size,omitempty"`
}

type saveArgs struct {
	JobID   string      `json:"job-id"`
	Tag     string      `json:"tag"`
	VMState string      `json:"vmstate"`
	Devices []string    `json:"devices"`
	Mode    *testMode   `json:"mode,omitempty"`
	Count   *uint8      `json:"count,omitempty"`
	Ratio   *float64    `json:"ratio,omitempty"`
	Flag    *bool       `json:"flag,omitempty"`
	Modes   *[]testMode `json:"modes,omitempty"`
	File    *testNested `json:"file,omitempty"`
}

type echoRet struct {
	Tag   string `json:"tag"`
	Count int    `json:"count"`
}

type testEvent struct {
	Status string `json:"status"`
	ID     string `json:"id"`
}

// newTestServer registers a small command set used across the tests.
func newTestServer(t *testing.T) (*Server, *testHooks) {
	s := NewServer(ServerOptions{Package: "snapvm test", Logger: slog.New(slog.DiscardHandler)})
	h := &testHooks{release: make(chan struct{})}
	Register(s, "test-save", func(ctx context.Context, a saveArgs) (echoRet, error) {
		n := 0
		if a.Count != nil {
			n = int(*a.Count)
		}
		return echoRet{Tag: a.Tag, Count: n}, nil
	})
	Register(s, "test-fail", func(ctx context.Context, a struct{}) (struct{}, error) {
		return struct{}{}, errors.New("it failed")
	})
	Register(s, "test-notfound", func(ctx context.Context, a struct{}) (struct{}, error) {
		return struct{}{}, NewError(ClassDeviceNotFound, "Device 'x' not found")
	})
	Register(s, "test-panic", func(ctx context.Context, a struct{}) (struct{}, error) {
		panic("boom")
	})
	Register(s, "test-emit", func(ctx context.Context, a struct {
		ID string `json:"id"`
	}) (struct{}, error) {
		s.Emit("TEST_EVENT", testEvent{Status: "running", ID: a.ID})
		s.Emit("TEST_NODATA", nil)
		return struct{}{}, nil
	})
	Register(s, "test-block", func(ctx context.Context, a struct{}) (struct{}, error) {
		h.mu.Lock()
		h.entered++
		h.mu.Unlock()
		<-h.release
		return struct{}{}, nil
	})
	RegisterEvent[testEvent](s, "TEST_EVENT")
	RegisterEvent[struct{}](s, "TEST_NODATA")
	t.Cleanup(func() { s.Close() })
	return s, h
}

type testHooks struct {
	mu      sync.Mutex
	entered int
	release chan struct{}
}

func dialKeepGreeting(t *testing.T, s *Server) *testClient {
	t.Helper()
	a, b := net.Pipe()
	go s.ServeConn(b)
	c := &testClient{t: t, conn: a, r: bufio.NewReader(a)}
	t.Cleanup(func() { a.Close() })
	return c
}
