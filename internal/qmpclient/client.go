// Package qmpclient is the QMP client behind snapvm-qmp: connecting to a unix or tcp
// monitor socket, negotiating, running commands while events arrive, turning
// "cmd key=value" lines into commands, and following a job to its end.
package qmpclient

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Error is an error response from the server.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return e.Desc }

// Event is an asynchronous message from the server.
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	Raw []byte `json:"-"` // the line as received
}

// Response is the answer to one command.
type Response struct {
	Return json.RawMessage
	Err    *Error
	Raw    []byte // the line as received
}

// Client is a connected, negotiated QMP session. Execute may be called from several
// goroutines; answers are matched by id.
type Client struct {
	conn     net.Conn
	Greeting json.RawMessage

	mu      sync.Mutex
	nextID  int
	pending map[string]chan Response
	err     error // set when the connection ends

	evMu   sync.Mutex
	evCond *sync.Cond
	events []Event
	closed bool
}

// Target turns the SOCKET argument (a path, unix:PATH or tcp:HOST:PORT) into a network
// and an address.
func Target(s string) (network, addr string) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		return "unix", strings.TrimPrefix(s, "unix:")
	case strings.HasPrefix(s, "tcp:"):
		return "tcp", strings.TrimPrefix(s, "tcp:")
	}
	return "unix", s
}

// Dial connects to target, reads the greeting and negotiates capabilities.
func Dial(target string, timeout time.Duration) (*Client, error) {
	network, addr := Target(target)
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, timeout)
}

// NewClient runs the handshake on an established connection.
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{conn: conn, pending: map[string]chan Response{}}
	c.evCond = sync.NewCond(&c.evMu)
	r := bufio.NewReaderSize(conn, 64<<10)
	conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading the QMP greeting: %w", err)
	}
	var g struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(line, &g); err != nil || g.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("not a QMP greeting: %q", bytes.TrimSpace(line))
	}
	conn.SetReadDeadline(time.Time{})
	c.Greeting = g.QMP
	go c.reader(r)
	if _, err := c.Execute("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("capabilities negotiation: %w", err)
	}
	return c, nil
}

func (c *Client) reader(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			c.handle(bytes.TrimRight(line, "\r\n"))
		}
		if err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("connection closed by the server")
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	c.evMu.Lock()
	c.closed = true
	c.evCond.Broadcast()
	c.evMu.Unlock()
}

func (c *Client) handle(line []byte) {
	var m struct {
		Event  string          `json:"event"`
		ID     json.RawMessage `json:"id"`
		Return json.RawMessage `json:"return"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return
	}
	if m.Event != "" {
		var ev Event
		json.Unmarshal(line, &ev)
		ev.Raw = append([]byte(nil), line...)
		c.evMu.Lock()
		c.events = append(c.events, ev)
		c.evCond.Broadcast()
		c.evMu.Unlock()
		return
	}
	key := canonical(m.ID)
	c.mu.Lock()
	ch := c.pending[key]
	delete(c.pending, key)
	c.mu.Unlock()
	if ch != nil {
		ch <- Response{Return: m.Return, Err: m.Error, Raw: append([]byte(nil), line...)}
	}
}

// canonical makes ids comparable whatever their spacing.
func canonical(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Execute runs a command and returns its "return" value, or an *Error.
func (c *Client) Execute(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	resp, err := c.Send(req)
	if err != nil {
		return nil, err
	}
	if resp.Err != nil {
		return nil, resp.Err
	}
	return resp.Return, nil
}

// Send sends one request object (an "id" is added when it has none) and waits for its
// answer.
func (c *Client) Send(req map[string]any) (Response, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Response{}, err
	}
	var key string
	if id, ok := req["id"]; ok {
		b, _ := json.Marshal(id)
		key = canonical(b)
	} else {
		c.nextID++
		id := fmt.Sprintf("snapvm-qmp-%d", c.nextID)
		req["id"] = id
		key = canonical(json.RawMessage(`"` + id + `"`))
	}
	if _, busy := c.pending[key]; busy {
		c.mu.Unlock()
		return Response{}, fmt.Errorf("a command with id %s is already waiting", key)
	}
	ch := make(chan Response, 1)
	c.pending[key] = ch
	c.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return Response{}, err
	}
	resp, ok := <-ch
	if !ok {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return Response{}, err
	}
	return resp, nil
}

// NextEvent waits up to timeout for an event. ok is false on timeout or when the
// connection is closed and no events are left.
func (c *Client) NextEvent(timeout time.Duration) (ev Event, ok bool) {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		c.evMu.Lock()
		c.evCond.Broadcast()
		c.evMu.Unlock()
	})
	defer stop.Stop()
	c.evMu.Lock()
	defer c.evMu.Unlock()
	for len(c.events) == 0 && !c.closed && time.Now().Before(deadline) {
		c.evCond.Wait()
	}
	if len(c.events) == 0 {
		return Event{}, false
	}
	ev = c.events[0]
	c.events = c.events[1:]
	return ev, true
}

// WaitEvent waits up to timeout for an event to be available without taking it.
func (c *Client) WaitEvent(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		c.evMu.Lock()
		c.evCond.Broadcast()
		c.evMu.Unlock()
	})
	defer stop.Stop()
	c.evMu.Lock()
	defer c.evMu.Unlock()
	for len(c.events) == 0 && !c.closed && time.Now().Before(deadline) {
		c.evCond.Wait()
	}
	return len(c.events) > 0
}

// Closed reports whether the connection has ended.
func (c *Client) Closed() bool {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	return c.closed
}

// Close ends the session.
func (c *Client) Close() error { return c.conn.Close() }
