package qmp

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkStream measures the reader on a typical command.
func BenchmarkStream(b *testing.B) {
	msg := []byte(`{"execute": "snapshot-save", "arguments": {"job-id": "j1", "tag": "before-upgrade", "vmstate": "disk0", "devices": ["disk0", "disk1"]}, "id": 42}`)
	b.SetBytes(int64(len(msg)))
	var s Stream
	for i := 0; i < b.N; i++ {
		s.Feed(msg, func(Value, error) {})
	}
}

// BenchmarkRoundTrip measures one command answered over a unix socket.
func BenchmarkRoundTrip(b *testing.B) {
	s := NewServer(ServerOptions{})
	defer s.Close()
	path := filepath.Join(b.TempDir(), "q.sock")
	l, err := Listen("unix:" + path + ",server=on,wait=off")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte(`{"execute": "qmp_capabilities"}`))
	r.ReadString('\n')
	req := []byte(`{"execute": "query-version", "id": 1}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Write(req)
		l, err := r.ReadString('\n')
		if err != nil || !strings.Contains(l, `"return"`) {
			b.Fatal(l, err)
		}
	}
}
