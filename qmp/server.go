package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"runtime/debug"
	"sort"
	"sync"
	"time"
)

// VersionInfo is the QMP version triple of query-version and the greeting.
type VersionInfo struct {
	Qemu    VersionTriple `json:"qemu"`
	Package string        `json:"package"`
}

// VersionTriple is QEMU's version number; snapvm reports the QEMU release it is
// wire-compatible with.
type VersionTriple struct {
	Micro int `json:"micro"`
	Minor int `json:"minor"`
	Major int `json:"major"`
}

// ServerOptions configures a Server.
type ServerOptions struct {
	// Package is the "package" string of the greeting and query-version, e.g. "snapvm 0.1".
	Package string
	// Logger receives connection-level diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// MaxQueuedOutput bounds the bytes waiting to be written to one client (responses and
	// events). A client that stops reading is disconnected when it is exceeded. 0 = 16 MiB.
	MaxQueuedOutput int
}

// Server is a QMP server: a command and event registry plus the client sessions.
// Commands of all sessions run one at a time, like QEMU's commands under its global lock;
// jobs and the machine run on their own goroutines, so a command never waits for a guest.
type Server struct {
	opts    ServerOptions
	version VersionInfo
	limits  Stream // the reader limits each session starts with (tests lower them)
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	dispatchMu sync.Mutex // held while a command runs and its answer is queued
	shutdown   bool       // guarded by dispatchMu: no more commands run

	mu        sync.Mutex // guards the fields below
	commands  map[string]*command
	events    map[string]reflect.Type
	sessions  map[*session]struct{}
	listeners []net.Listener
	closed    bool
	wg        sync.WaitGroup
}

type command struct {
	name    string
	argType reflect.Type
	retType reflect.Type
	call    func(ctx context.Context, args *Value) (Value, *Error)
}

// NewServer returns a server with the protocol's own commands registered:
// qmp_capabilities, query-version, query-commands and query-qmp-schema.
func NewServer(opts ServerOptions) *Server {
	if opts.Package == "" {
		opts.Package = "snapvm"
	}
	if opts.MaxQueuedOutput <= 0 {
		opts.MaxQueuedOutput = 16 << 20
	}
	s := &Server{
		opts:     opts,
		version:  VersionInfo{Qemu: VersionTriple{Major: 7, Minor: 2}, Package: opts.Package},
		log:      opts.Logger,
		commands: map[string]*command{},
		events:   map[string]reflect.Type{},
		sessions: map[*session]struct{}{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.registerBuiltins()
	return s
}

// Register adds command name. A is the argument struct: json tags name the members, their
// order is the QAPI member order used for validation, optional members are pointers or
// omitempty. A may also be json.RawMessage to receive the arguments unvalidated. R is the
// return value (struct{} for {}). Registering a name twice replaces the earlier command.
func Register[A, R any](s *Server, name string, h func(ctx context.Context, a A) (R, error)) {
	c := &command{
		name:    name,
		argType: reflect.TypeFor[A](),
		retType: reflect.TypeFor[R](),
		call: func(ctx context.Context, args *Value) (Value, *Error) {
			a, verr := decodeArgs[A](args)
			if verr != nil {
				return Value{}, verr
			}
			r, err := h(ctx, a)
			if err != nil {
				return Value{}, asError(err)
			}
			v, err := ToValue(r)
			if err != nil {
				return Value{}, Errorf("internal error: cannot encode the result of %s: %v", name, err)
			}
			return v, nil
		},
	}
	s.mu.Lock()
	s.commands[name] = c
	s.mu.Unlock()
}

// RegisterEvent declares event name with data type D (struct{} for events without data),
// so that query-qmp-schema describes it.
func RegisterEvent[D any](s *Server, name string) {
	s.mu.Lock()
	s.events[name] = reflect.TypeFor[D]()
	s.mu.Unlock()
}

// Commands returns the registered command names, sorted.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.commands))
	for n := range s.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Events returns the registered event names, sorted.
func (s *Server) Events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.events))
	for n := range s.events {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Version returns the version reported by the greeting and query-version.
func (s *Server) Version() VersionInfo { return s.version }

// ToValue converts a Go value to a Value through its encoding/json form.
func ToValue(x any) (Value, error) {
	b, err := json.Marshal(x)
	if err != nil {
		return Value{}, err
	}
	return ParseValue(b)
}

// Emit sends event name to every client that has completed capability negotiation.
// data may be nil for events without data. Safe from any goroutine; the event is queued
// for each client in the order Emit is called.
func (s *Server) Emit(name string, data any) {
	now := time.Now()
	ev := Value{Kind: KindObject}
	ts := Value{Kind: KindObject, Keys: []string{"seconds", "microseconds"}, Items: []Value{
		{Kind: KindInt, Str: fmt.Sprint(now.Unix())},
		{Kind: KindInt, Str: fmt.Sprint(now.Nanosecond() / 1000)},
	}}
	ev.Keys = append(ev.Keys, "timestamp", "event")
	ev.Items = append(ev.Items, ts, Value{Kind: KindString, Str: name})
	if data != nil {
		dv, err := ToValue(data)
		if err != nil {
			s.log.Error("qmp: cannot encode event data", "event", name, "err", err)
			return
		}
		ev.Keys = append(ev.Keys, "data")
		ev.Items = append(ev.Items, dv)
	}
	msg := ev.appendJSON(nil)
	msg = append(msg, '\r', '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		if ss.negotiated.Load() {
			ss.queue(msg)
		}
	}
}

// Close stops the listeners, disconnects every client and waits for their goroutines.
func (s *Server) Close() error {
	s.disconnectAll()
	s.wg.Wait()
	return nil
}

// disconnectAll closes listeners and connections without waiting for sessions, one of
// which may be stuck in a command.
func (s *Server) disconnectAll() {
	s.mu.Lock()
	s.closed = true
	ls := s.listeners
	s.listeners = nil
	var ss []*session
	for x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	s.cancel()
	for _, l := range ls {
		l.Close()
	}
	for _, x := range ss {
		x.close("server closed")
	}
}

// Shutdown ends the server gracefully: it waits for the command in progress, stops
// running new ones, gives every client up to timeout to receive what is queued (the
// answer to quit, the SHUTDOWN event), then closes everything.
func (s *Server) Shutdown(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	// A command that never returns must not keep the process alive: give up waiting
	// for it at the deadline.
	for !s.dispatchMu.TryLock() {
		if time.Now().After(deadline) {
			s.log.Warn("qmp: a command is still running at shutdown")
			s.disconnectAll()
			return
		}
		time.Sleep(time.Millisecond)
	}
	s.shutdown = true
	s.dispatchMu.Unlock()
	s.mu.Lock()
	var ss []*session
	for x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	for _, x := range ss {
		x.flush(time.Until(deadline))
	}
	s.Close()
}

// ServeConn runs a QMP session on conn until the client disconnects or the server closes.
// It sends the greeting first. It is what the listeners call for each connection, and
// lets tests and embedders use any net.Conn (net.Pipe, an accepted socket).
func (s *Server) ServeConn(conn net.Conn) {
	ss := newSession(s, conn)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ss.run()
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// dispatch handles one parsed message and returns the response to write (nil for none).
func (s *Server) dispatch(ss *session, msg Value, perr error) []byte {
	if perr != nil {
		return errorResponse(nil, asError(perr))
	}
	if msg.Kind != KindObject {
		return errorResponse(nil, Errorf("QMP input must be a JSON object"))
	}
	id, _ := msg.Get("id")
	var name string
	hasExec := false
	args := &Value{Kind: KindObject}
	for i, k := range msg.Keys {
		v := &msg.Items[i]
		switch k {
		case "execute":
			if v.Kind != KindString {
				return errorResponse(id, Errorf("QMP input member 'execute' must be a string"))
			}
			name, hasExec = v.Str, true
		case "arguments":
			if v.Kind != KindObject {
				return errorResponse(id, Errorf("QMP input member 'arguments' must be an object"))
			}
			args = v
		case "id":
		default: // exec-oob included: OOB is never offered
			return errorResponse(id, Errorf("QMP input member '%s' is unexpected", k))
		}
	}
	if !hasExec {
		return errorResponse(id, Errorf("QMP input lacks member 'execute'"))
	}
	negotiated := ss.negotiated.Load()
	s.mu.Lock()
	cmd := s.commands[name]
	s.mu.Unlock()
	if cmd == nil || !negotiated && name != "qmp_capabilities" {
		if !negotiated {
			return errorResponse(id, NewError(ClassCommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"))
		}
		return errorResponse(id, NewError(ClassCommandNotFound, fmt.Sprintf("The command %s has not been found", name)))
	}
	ret, err := s.call(ss, cmd, args)
	if err != nil {
		return errorResponse(id, err)
	}
	out := Value{Kind: KindObject, Keys: []string{"return"}, Items: []Value{ret}}
	if id != nil {
		out.Keys = append(out.Keys, "id")
		out.Items = append(out.Items, *id)
	}
	return append(out.appendJSON(nil), '\r', '\n')
}

type sessionKey struct{}

// handle answers one message. The dispatch lock covers both running the command and
// queueing its answer, so Shutdown, which takes the lock, never loses an answer.
func (s *Server) handle(ss *session, msg Value, perr error) {
	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	if s.shutdown {
		return
	}
	if resp := s.dispatch(ss, msg, perr); resp != nil {
		ss.queue(resp)
	}
}

// call runs one command. A panicking handler is reported as an error to its client
// instead of taking the process down. Preconditions: dispatchMu held.
func (s *Server) call(ss *session, cmd *command, args *Value) (ret Value, err *Error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("qmp: command panicked", "command", cmd.name, "panic", r, "stack", string(debug.Stack()))
			err = Errorf("internal error in %s: %v", cmd.name, r)
		}
	}()
	ctx := context.WithValue(s.ctx, sessionKey{}, ss)
	return cmd.call(ctx, args)
}

func errorResponse(id *Value, e *Error) []byte {
	ev := Value{Kind: KindObject, Keys: []string{"class", "desc"}, Items: []Value{
		{Kind: KindString, Str: e.Class}, {Kind: KindString, Str: e.Desc},
	}}
	out := Value{Kind: KindObject}
	if id != nil {
		out.Keys = append(out.Keys, "id")
		out.Items = append(out.Items, *id)
	}
	out.Keys = append(out.Keys, "error")
	out.Items = append(out.Items, ev)
	return append(out.appendJSON(nil), '\r', '\n')
}

var errQueueFull = errors.New("client is not reading its output")

// isClosedErr tells a normal disconnect from an unexpected read error.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
