package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/snapvm/snapvm/internal/cmdline"
)

// serialPort is the host side of UART0.
type serialPort struct {
	out     io.Writer
	in      io.Reader
	ready   chan struct{} // closed when the guest may start (unix server wait=on)
	closers []io.Closer
}

func (s *serialPort) Close() {
	for _, c := range s.closers {
		c.Close()
	}
}

// openSerial connects the -serial backend.
func openSerial(spec cmdline.Serial, stdin io.Reader, stdout, stderr io.Writer) (*serialPort, error) {
	p := &serialPort{ready: make(chan struct{})}
	switch spec.Kind {
	case "stdio":
		p.out, p.in = stdout, stdin
	case "null":
		p.out = io.Discard
	case "none":
	case "file":
		f, err := os.OpenFile(spec.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		if err != nil {
			return nil, fmt.Errorf("-serial file:%s: Could not open '%s': %v", spec.Path, spec.Path, unwrapPathErr(err))
		}
		p.out = f
		p.closers = append(p.closers, f)
	case "unix":
		if !spec.Server {
			c, err := net.Dial("unix", spec.Path)
			if err != nil {
				return nil, fmt.Errorf("-serial unix:%s: Failed to connect to '%s': %v", spec.Path, spec.Path, unwrapPathErr(err))
			}
			p.out, p.in = c, c
			p.closers = append(p.closers, c)
			break
		}
		os.Remove(spec.Path)
		l, err := net.Listen("unix", spec.Path)
		if err != nil {
			return nil, fmt.Errorf("-serial unix:%s: Failed to bind socket to %s: %v", spec.Path, spec.Path, unwrapPathErr(err))
		}
		sw := &socketSerial{}
		sw.cond = sync.NewCond(&sw.mu)
		p.out, p.in = sw, sw
		p.closers = append(p.closers, l, sw)
		go sw.accept(l, p.ready)
		if spec.Wait {
			fmt.Fprintf(stderr, "snapvm: waiting for connection on: disconnected:unix:%s,server=on\n", spec.Path)
			<-p.ready
		}
	}
	return p, nil
}

func unwrapPathErr(err error) error {
	switch e := err.(type) {
	case *os.PathError:
		return e.Err
	case *net.OpError:
		return unwrapPathErr(e.Err)
	case *os.SyscallError:
		return e.Err
	}
	return err
}

// socketSerial is a listening serial port: output goes to the connected
// client (and is dropped while none is), input comes from it.
type socketSerial struct {
	mu   sync.Mutex
	conn net.Conn
	cond *sync.Cond
}

func (s *socketSerial) accept(l net.Listener, first chan struct{}) {
	once := sync.Once{}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.conn = c
		s.cond.Broadcast()
		s.mu.Unlock()
		once.Do(func() { close(first) })
	}
}

func (s *socketSerial) Write(p []byte) (int, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		if _, err := c.Write(p); err != nil {
			s.drop(c)
		}
	}
	return len(p), nil
}

func (s *socketSerial) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		for s.conn == nil {
			s.cond.Wait()
		}
		c := s.conn
		s.mu.Unlock()
		n, err := c.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			s.drop(c)
		}
	}
}

// Close disconnects the client.
func (s *socketSerial) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	return nil
}

func (s *socketSerial) drop(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		s.conn.Close()
		s.conn = nil
	}
}
