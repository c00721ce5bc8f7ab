package qmp

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// session is one connected client. Its reader goroutine parses input and runs commands one
// at a time; a writer goroutine sends responses and events in the order they were queued,
// so a slow client never blocks the monitor.
type session struct {
	srv        *Server
	conn       net.Conn
	negotiated atomic.Bool

	mu      sync.Mutex // guards the fields below
	cond    *sync.Cond
	out     [][]byte
	queued  int
	done    bool // connection closed; nothing more is written
	closing bool // input ended; write what is queued, then stop
	writing bool // the writer holds a batch it has not finished writing
	reason  string
}

func newSession(s *Server, conn net.Conn) *session {
	ss := &session{srv: s, conn: conn}
	ss.cond = sync.NewCond(&ss.mu)
	return ss
}

// queue appends msg to the output; a client that lets the queue exceed the limit is
// disconnected rather than allowed to grow the monitor's memory.
func (ss *session) queue(msg []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.done {
		return
	}
	if ss.queued+len(msg) > ss.srv.opts.MaxQueuedOutput {
		ss.closeLocked(errQueueFull.Error())
		return
	}
	ss.out = append(ss.out, msg)
	ss.queued += len(msg)
	ss.cond.Signal()
}

func (ss *session) close(reason string) {
	ss.mu.Lock()
	ss.closeLocked(reason)
	ss.mu.Unlock()
}

func (ss *session) closeLocked(reason string) {
	if ss.done {
		return
	}
	ss.done, ss.reason = true, reason
	ss.out, ss.queued = nil, 0
	if reason == errQueueFull.Error() {
		ss.srv.log.Warn("qmp: disconnecting client", "reason", reason)
	} else {
		ss.srv.log.Debug("qmp: client session ended", "reason", reason)
	}
	if ss.conn != nil {
		ss.conn.Close()
	}
	ss.cond.Broadcast()
}

// flush waits up to timeout for the queued output to be written.
func (ss *session) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ss.mu.Lock()
		empty := len(ss.out) == 0 && !ss.writing || ss.done
		ss.mu.Unlock()
		if empty {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (ss *session) writer(finished chan<- struct{}) {
	defer close(finished)
	for {
		ss.mu.Lock()
		for len(ss.out) == 0 && !ss.done && !ss.closing {
			ss.cond.Wait()
		}
		if ss.done || len(ss.out) == 0 {
			ss.mu.Unlock()
			return
		}
		batch := ss.out
		ss.out, ss.queued = nil, 0
		ss.writing = true
		ss.mu.Unlock()
		for _, m := range batch {
			if _, err := ss.conn.Write(m); err != nil {
				ss.close("write: " + err.Error())
				return
			}
		}
		ss.mu.Lock()
		ss.writing = false
		ss.mu.Unlock()
	}
}

func (ss *session) run() {
	finished := make(chan struct{})
	go ss.writer(finished)
	v := ss.srv.version
	greeting := Value{Kind: KindObject, Keys: []string{"QMP"}, Items: []Value{{
		Kind: KindObject, Keys: []string{"version", "capabilities"},
		Items: []Value{mustValue(v), {Kind: KindArray}},
	}}}
	ss.queue(append(greeting.appendJSON(nil), '\r', '\n'))

	st := Stream{MaxSize: ss.srv.limits.MaxSize, MaxCount: ss.srv.limits.MaxCount, MaxDepth: ss.srv.limits.MaxDepth}
	buf := make([]byte, 4096)
	emit := func(msg Value, perr error) { ss.srv.handle(ss, msg, perr) }
	for {
		n, err := ss.conn.Read(buf)
		if n > 0 {
			st.Feed(buf[:n], emit)
		}
		if err != nil {
			if !isClosedErr(err) {
				ss.srv.log.Debug("qmp: read", "err", err)
			}
			break
		}
		ss.mu.Lock()
		done := ss.done
		ss.mu.Unlock()
		if done {
			break
		}
	}
	// Let queued output drain before closing, so a client that half-closes after its
	// last command still gets the answer.
	ss.mu.Lock()
	ss.closing = true
	ss.cond.Broadcast()
	ss.mu.Unlock()
	<-finished
	ss.close("disconnected")
}

func mustValue(x any) Value {
	v, err := ToValue(x)
	if err != nil {
		panic(err) // only used on snapvm's own fixed types
	}
	return v
}
