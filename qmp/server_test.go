package qmp

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestGreeting(t *testing.T) {
	s, _ := newTestServer(t)
	c := dialKeepGreeting(t, s)
	c.expect(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "snapvm test"}, "capabilities": []}}`)
}

func TestNegotiation(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.send(`{"execute": "query-version", "id": 7}`)
	c.expect(`{"id": 7, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`)
	c.send(`{"execute": "no-such-command"}`)
	c.expect(`{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`)
	// Envelope errors keep their own text in negotiation mode.
	c.send(`{"execute": 1}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}`)
	// No events before negotiation.
	s.Emit("TEST_NODATA", nil)
	c.send(`{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Capability oob not available"}}`)
	c.send(`{"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Parameter 'null' does not accept value 'foo'"}}`)
	c.send(`{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "Invalid parameter type for 'enable', expected: array"}}`)
	c.send(`{"execute": "qmp_capabilities", "arguments": {"enable": []}, "id": "neg"}`)
	c.expect(`{"return": {}, "id": "neg"}`)
	c.send(`{"execute": "qmp_capabilities"}`)
	c.expect(`{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}`)
	c.send(`{"execute": "query-version"}`)
	c.expect(`{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "snapvm test"}}`)
}

func TestEnvelopeErrors(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	cases := []struct{ in, out string }{
		{`[1, 2]`, `{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`},
		{`"execute"`, `{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`},
		{"42\n", `{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`},
		{`{"execute": "test-fail", "foo": 1, "id": 1}`, `{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'foo' is unexpected"}}`},
		{`{"execute": ["x"], "id": 2}`, `{"id": 2, "error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}`},
		{`{"execute": "test-fail", "arguments": null, "id": 3}`, `{"id": 3, "error": {"class": "GenericError", "desc": "QMP input member 'arguments' must be an object"}}`},
		{`{"execute": "test-fail", "arguments": [], "id": 3}`, `{"id": 3, "error": {"class": "GenericError", "desc": "QMP input member 'arguments' must be an object"}}`},
		{`{"exec-oob": "test-fail"}`, `{"error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}`},
		{`{}`, `{"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}`},
		{`{"id": 1}`, `{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}`},
		{`{"arguments": {}}`, `{"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}`},
		{`{"execute": "nosuch", "id": "a"}`, `{"id": "a", "error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}`},
		{`{"execute": "test-fail"}`, `{"error": {"class": "GenericError", "desc": "it failed"}}`},
		{`{"execute": "test-notfound"}`, `{"error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}}`},
		{`{"execute": "test-panic"}`, `{"error": {"class": "GenericError", "desc": "internal error in test-panic: boom"}}`},
	}
	for _, tc := range cases {
		c.send(tc.in)
		if got := c.recv(); got != tc.out {
			t.Errorf("%s\n got  %s\n want %s", tc.in, got, tc.out)
		}
	}
}

func TestIDEcho(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	cases := []struct{ id, want string }{
		{`1.5e3`, `1500`},
		{`null`, `null`},
		{`-0`, `0`},
		{`0.1`, `0.10000000000000001`},
		{`18446744073709551615`, `18446744073709551615`},
		{`18446744073709551616`, `1.8446744073709552e+19`},
		{`{"b": [1, {"c": null}], "a": 'x'}`, `{"b": [1, {"c": null}], "a": "x"}`},
		{`"\u00e9\ud83d\ude00/\u0001"`, `"\u00E9\uD83D\uDE00/\u0001"`},
		{`"é"`, `"\u00E9"`},
		{`true`, `true`},
	}
	for _, tc := range cases {
		c.send(`{"execute": "query-version", "id": ` + tc.id + `}`)
		want := `{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "snapvm test"}, "id": ` + tc.want + `}`
		if got := c.recv(); got != want {
			t.Errorf("id %s:\n got  %s\n want %s", tc.id, got, want)
		}
	}
}

func TestArgumentValidation(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	base := `"job-id": "j", "tag": "t", "vmstate": "d0", "devices": ["d0"]`
	cases := []struct{ args, want string }{
		{`{}`, `Parameter 'job-id' is missing`},
		{`{"job-id": "j", "extra": 1}`, `Parameter 'tag' is missing`},
		{`{"job-id": 1}`, `Invalid parameter type for 'job-id', expected: string`},
		{`{"job-id": "j", "tag": "t", "vmstate": "d0", "devices": "d0"}`, `Invalid parameter type for 'devices', expected: array`},
		{`{"job-id": "j", "tag": "t", "vmstate": "d0", "devices": ["d0", 1]}`, `Invalid parameter type for 'devices[1]', expected: string`},
		{`{` + base + `, "x": 1}`, `Parameter 'x' is unexpected`},
		{`{` + base + `, "mode": "bogus"}`, `Parameter 'mode' does not accept value 'bogus'`},
		{`{` + base + `, "mode": 3}`, `Invalid parameter type for 'mode', expected: string`},
		{`{` + base + `, "modes": ["existing", "bad"]}`, `Parameter 'null' does not accept value 'bad'`},
		{`{` + base + `, "count": 1.0}`, `Invalid parameter type for 'count', expected: integer`},
		{`{` + base + `, "count": 300}`, `Parameter 'count' expects uint8_t`},
		{`{` + base + `, "count": -1}`, `Parameter 'count' expects uint8_t`},
		{`{` + base + `, "ratio": "x"}`, `Invalid parameter type for 'ratio', expected: number`},
		{`{` + base + `, "flag": 1}`, `Invalid parameter type for 'flag', expected: boolean`},
		{`{` + base + `, "mode": null}`, `Invalid parameter type for 'mode', expected: string`},
		{`{` + base + `, "file": []}`, `Invalid parameter type for 'file', expected: object`},
		{`{` + base + `, "file": {}}`, `Parameter 'file.driver' is missing`},
		{`{` + base + `, "file": {"driver": "f", "y": 1}}`, `Parameter 'file.y' is unexpected`},
		{`{` + base + `, "file": {"driver": "f", "size": "1"}}`, `Invalid parameter type for 'file.size', expected: integer`},
	}
	for _, tc := range cases {
		c.send(`{"execute": "test-save", "arguments": ` + tc.args + `}`)
		want := `{"error": {"class": "GenericError", "desc": "` + tc.want + `"}}`
		if got := c.recv(); got != want {
			t.Errorf("%s\n got  %s\n want %s", tc.args, got, want)
		}
	}
	c.send(`{"execute": "test-save", "arguments": {` + base + `, "count": 7, "ratio": 2, "flag": true, "mode": "existing", "file": {"driver": "f"}}}`)
	c.expect(`{"return": {"tag": "t", "count": 7}}`)
}

func TestParseErrorsAndRecovery(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	ok := `{"return": {}}`
	pe := func(d string) string {
		return `{"error": {"class": "GenericError", "desc": "JSON parse error, ` + d + `"}}`
	}
	cases := []struct {
		in   string
		outs []string
	}{
		{`{"execute": }`, []string{pe("expecting value")}},
		{`}`, []string{pe("expecting value")}},
		{`{"execute": foo}`, []string{pe("invalid keyword 'foo'")}},
		{"\xff{\"execute\": \"test-emit\", \"arguments\": {\"id\": \"a\"}}", []string{pe(`stray '\uFFFD'`), "EV", "EV", ok}},
		{"\x01", []string{pe(`stray '\u0001'`)}},
		{`{"execute": "test-emit", "execute": "x"}`, []string{pe("duplicate key")}},
		{`{"execute": 'test-fail'}{"execute": "test-fail"}`, []string{
			`{"error": {"class": "GenericError", "desc": "it failed"}}`,
			`{"error": {"class": "GenericError", "desc": "it failed"}}`}},
		{`{1: 2}`, []string{pe("key is not a string in object")}},
		{`{"a" 1}`, []string{pe("missing : in object pair")}},
		{`{"a": 1 "b": 2}`, []string{pe("expected separator in dict")}},
		{`[1 2]`, []string{pe("expected separator in list")}},
		{`[1,]`, []string{pe("expecting value")}},
		{`{"a": 1]}`, []string{pe("expected separator in dict"), pe("expecting value")}},
		{`"\x"`, []string{pe("invalid escape sequence in string")}},
		{"\"\xc3\x28\"", []string{pe("invalid UTF-8 sequence in string")}},
		{`"\ud800"`, []string{pe(`\\ud800 is not a valid Unicode character`)}},
		{"\"ab\x01", []string{pe(`stray '\"ab\u0001'`)}},
		{`01`, []string{pe("stray '01'")}},
		{`{"execute": True}`, []string{pe("stray 'T'"), pe("expecting value")}},
		{`{'execute': 'test-emit', 'arguments': {'id': 'it\'s'}}`, []string{"EV", "EV", ok}},
	}
	for _, tc := range cases {
		c.send(tc.in)
		// A trailing complete object proves the stream recovered.
		c.send(`{"execute": "query-commands", "id": "sync"}`)
		for _, want := range tc.outs {
			got := c.recv()
			if want == "EV" {
				if !strings.Contains(got, `"event"`) {
					t.Errorf("%q: got %s, want an event", tc.in, got)
				}
				continue
			}
			if got != want {
				t.Errorf("%q:\n got  %s\n want %s", tc.in, got, want)
			}
		}
		if got := c.recv(); !strings.Contains(got, `"id": "sync"`) {
			t.Errorf("%q: after the expected answers got %s", tc.in, got)
		}
	}
}

func TestStreamingFraming(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	// Split byte by byte across writes, no newline at all.
	msg := `{"execute":"query-version","id":1}{"execute":"test-fail","id":2}`
	for i := 0; i < len(msg); i++ {
		c.send(msg[i : i+1])
	}
	if got := c.recv(); !strings.HasPrefix(got, `{"return": {"qemu"`) {
		t.Fatalf("got %s", got)
	}
	c.expect(`{"id": 2, "error": {"class": "GenericError", "desc": "it failed"}}`)
}

func TestEvents(t *testing.T) {
	s, _ := newTestServer(t)
	a, b := dial(t, s), dial(t, s)
	a.negotiate()
	b.negotiate()
	a.send(`{"execute": "test-emit", "arguments": {"id": "é"}}`)
	for _, c := range []*testClient{a, b} {
		ev := c.recv()
		if !strings.HasPrefix(ev, `{"timestamp": {"seconds": `) || !strings.HasSuffix(ev, `, "event": "TEST_EVENT", "data": {"status": "running", "id": "\u00E9"}}`) {
			t.Errorf("event: %s", ev)
		}
		ev = c.recv()
		if !strings.HasSuffix(ev, `}, "event": "TEST_NODATA"}`) {
			t.Errorf("event without data: %s", ev)
		}
	}
	a.expect(`{"return": {}}`)
}

func TestLimits(t *testing.T) {
	s, _ := newTestServer(t)
	// Small limits keep the test quick; TestDefaultLimits checks the real values.
	const size, count = 64 << 10, 4096
	s.limits = Stream{MaxSize: size, MaxCount: count}
	c := dial(t, s)
	c.negotiate()
	deep := strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1)
	c.send(deep)
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON nesting depth limit exceeded"}}`)
	// The rest of the nested input arrives as stray closers.
	for i := 0; i < MaxNesting+1; i++ {
		c.expect(`{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`)
	}
	ok := strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting)
	c.send(ok)
	c.expect(`{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`)

	// Token count: an array sized so that the limit is crossed by its closing bracket;
	// the two closing braces left over are stray (as in QEMU, the stream restarts right
	// after the refused token).
	var sb strings.Builder
	sb.WriteString(`{"execute": "test-fail", "arguments": {"x": [`) // 11 tokens
	for i := 0; i < (count-12)/2; i++ {
		sb.WriteString("1,")
	}
	sb.WriteString("1]}}")
	go c.send(sb.String())
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON token count limit exceeded"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`)
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`)
	drainUntilSync(t, c)

	// Token size: one string longer than the limit.
	big := `{"execute": "test-fail", "arguments": {"x": "` + strings.Repeat("a", size+10) + `"}}`
	go c.send(big)
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}`)
	drainUntilSync(t, c)
	// Many small tokens adding up past the size limit.
	var sb2 strings.Builder
	sb2.WriteString(`{"execute": "test-fail", "arguments": {"x": [`)
	for sb2.Len() < size+100 {
		sb2.WriteString(`"0123456789abcdef0123456789abcdef",`)
	}
	sb2.WriteString(`"x"]}}`)
	go c.send(sb2.String())
	c.expect(`{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}`)
	drainUntilSync(t, c)
}

// TestDefaultLimits runs the production limits on the reader alone.
func TestDefaultLimits(t *testing.T) {
	var got []string
	emit := func(v Value, err error) {
		if err != nil {
			got = append(got, err.Error())
		} else {
			got = append(got, v.String())
		}
	}
	var s Stream
	s.Feed([]byte(`{"x": "`), emit)
	chunk := []byte(strings.Repeat("a", 1<<20))
	for i := 0; i < MaxTokenSize>>20; i++ {
		s.Feed(chunk, emit)
	}
	s.Feed([]byte(`aa`), emit)
	if len(got) != 1 || got[0] != "JSON token size limit exceeded" {
		t.Fatalf("size: %v", got)
	}
	got = nil
	s = Stream{}
	s.Feed([]byte("["+strings.Repeat("1,", MaxTokenCount/2)), emit)
	if len(got) != 1 || got[0] != "JSON token count limit exceeded" {
		t.Fatalf("count: %v", got[:min(len(got), 3)])
	}
}

// drainUntilSync sends a marker command and skips whatever answers come before it (the
// tail of a refused message produces its own parse errors).
func drainUntilSync(t *testing.T, c *testClient) {
	t.Helper()
	time.Sleep(10 * time.Millisecond)
	c.send("\x01{\"execute\": \"query-version\", \"id\": \"sync\"}")
	for i := 0; i < 100000; i++ {
		if got := c.recv(); strings.Contains(got, `"id": "sync"`) {
			return
		}
	}
	t.Fatal("stream did not recover")
}

func TestDisconnectMidCommand(t *testing.T) {
	s, h := newTestServer(t)
	a, b := dial(t, s), dial(t, s)
	a.negotiate()
	b.negotiate()
	a.send(`{"execute": "test-block"}`)
	for {
		h.mu.Lock()
		n := h.entered
		h.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	a.conn.Close()
	close(h.release)
	b.send(`{"execute": "test-emit", "arguments": {"id": "x"}}`)
	b.recv()
	b.recv()
	b.expect(`{"return": {}}`)
	// The dead session goes away.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSlowReaderIsDisconnected(t *testing.T) {
	s := NewServer(ServerOptions{MaxQueuedOutput: 4096})
	defer s.Close()
	c := dial(t, s)
	c.negotiate()
	// The client never reads: events pile up until the session is dropped.
	for i := 0; i < 1000; i++ {
		s.Emit("TEST", map[string]string{"n": fmt.Sprint(i)})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slow client still connected")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestManyMembersAndDuplicateLate(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&sb, `"k%d": %d, `, i, i)
	}
	sb.WriteString(`"k99999": 0}`)
	_, err := ParseValue([]byte(sb.String()))
	if err == nil || err.Error() != "JSON parse error, duplicate key" {
		t.Fatalf("err %v", err)
	}
}

func TestShutdownFlushesAndGivesUpOnStuckCommand(t *testing.T) {
	s, h := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	c.send(`{"execute": "test-block"}`)
	for {
		h.mu.Lock()
		n := h.entered
		h.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Shutdown(200 * time.Millisecond)
	if time.Since(start) > 5*time.Second {
		t.Fatal("Shutdown waited for a stuck command")
	}
	close(h.release)

	// A normal shutdown delivers what was queued before closing.
	s2, _ := newTestServer(t)
	c2 := dial(t, s2)
	c2.negotiate()
	s2.Emit("LAST", nil)
	done := make(chan struct{})
	go func() { s2.Shutdown(5 * time.Second); close(done) }()
	if got := c2.recv(); !strings.HasSuffix(got, `"event": "LAST"}`) {
		t.Fatalf("got %s", got)
	}
	<-done
}
