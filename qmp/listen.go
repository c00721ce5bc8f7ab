package qmp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

// Listener is an open QMP listening socket made from a -qmp spec.
type Listener struct {
	net.Listener
	// Wait is true when the spec asked to wait for the first client before the guest
	// starts (QEMU's wait=on, the default for server sockets).
	Wait bool
	// Connected is closed when the first client connects.
	Connected chan struct{}
}

// ParseSpec splits a -qmp chardev spec ("unix:PATH[,opts]" or "tcp:HOST:PORT[,opts]")
// into network, address and the wait flag. Accepted options: server[=on|off],
// wait[=on|off], nowait. A spec without server=on is refused, as snapvm never connects out.
func ParseSpec(spec string) (network, addr string, wait bool, err error) {
	parts := strings.Split(spec, ",")
	head := parts[0]
	switch {
	case strings.HasPrefix(head, "unix:"):
		network, addr = "unix", strings.TrimPrefix(head, "unix:")
	case strings.HasPrefix(head, "tcp:"):
		network, addr = "tcp", strings.TrimPrefix(head, "tcp:")
	default:
		return "", "", false, fmt.Errorf("qmp: unsupported chardev '%s' (use unix:PATH or tcp:HOST:PORT)", head)
	}
	if addr == "" {
		return "", "", false, fmt.Errorf("qmp: missing address in '%s'", spec)
	}
	server, wait := false, true
	for _, o := range parts[1:] {
		k, v, hasV := strings.Cut(o, "=")
		on := !hasV || v == "on" || v == "yes" || v == "true"
		if (k == "server" || k == "wait") && hasV && !on && v != "off" && v != "no" && v != "false" {
			return "", "", false, fmt.Errorf("qmp: parameter '%s' expects 'on' or 'off'", k)
		}
		switch k {
		case "server":
			server = on
		case "wait":
			wait = on
		case "nowait":
			wait = false
		case "id", "pretty":
			// accepted for command-line compatibility; output is never pretty-printed
		default:
			return "", "", false, fmt.Errorf("qmp: invalid parameter '%s'", k)
		}
	}
	if !server {
		return "", "", false, fmt.Errorf("qmp: '%s' must be a server socket (add server=on)", spec)
	}
	return network, addr, wait, nil
}

// Listen opens the socket described by spec. A unix socket gets mode 0600; a stale socket
// file left by a dead process is removed, one that still answers is an error.
func Listen(spec string) (*Listener, error) {
	network, addr, wait, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := removeStale(addr); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			l.Close()
			return nil, fmt.Errorf("qmp: %w", err)
		}
	}
	return &Listener{Listener: l, Wait: wait, Connected: make(chan struct{})}, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("qmp: %s exists and is not a socket", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("qmp: %s is in use by another process", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("qmp: removing stale socket: %w", err)
		}
		return nil
	}
	return fmt.Errorf("qmp: %s: %w", path, err)
}

// Serve accepts clients on l until the listener or the server is closed. Every client
// gets its own session; several may be connected at once and each receives every event.
func (s *Server) Serve(l *Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	first := true
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if first {
			close(l.Connected)
			first = false
		}
		go s.ServeConn(c)
	}
}

// ListenAndServe opens spec and serves it until the server is closed.
func (s *Server) ListenAndServe(spec string) error {
	l, err := Listen(spec)
	if err != nil {
		return err
	}
	return s.Serve(l)
}
