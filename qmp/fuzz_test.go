package qmp

import (
	"bytes"
	"testing"
)

var fuzzSeeds = []string{
	`{"execute": "qmp_capabilities"}`,
	`{"execute": "test-save", "arguments": {"job-id": "j", "tag": "t", "vmstate": "d0", "devices": ["d0"]}, "id": 1.5e3}`,
	`{'execute': 'test-emit', 'arguments': {'id': 'it\'s'}}`,
	"\xff{\"execute\": \"query-version\"}\x01",
	`{"execute": }}{"a": 1]}[1,][1 2]"\ud800""\u00e9"`,
	`{"execute": "test-save", "arguments": {"file": {"driver": "x", "size": 1e999}}}`,
	`[[[[[[[[[[[[]]]]]]]]]]]] -0 0.1 1e5 truefalse null nul`,
	`{"execute": "query-qmp-schema"}{"execute": "query-commands"}`,
	"\"ab\x01\" 01 -a 1.e 'x\\",
}

// FuzzParser checks that the reader never panics and that every value it produces
// survives a round trip through the serialiser. The first serialisation may normalise
// (a float -0 prints as "-0", which reads back as the integer 0, as in QEMU); from then
// on the text must be stable.
func FuzzParser(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Stream
		s.Feed(data, func(v Value, err error) {
			if err != nil {
				if _, ok := err.(*ParseError); !ok {
					t.Fatalf("error of type %T", err)
				}
				return
			}
			first, err := ParseValue(v.appendJSON(nil))
			if err != nil {
				t.Fatalf("re-parse of %s: %v", v.appendJSON(nil), err)
			}
			out := first.appendJSON(nil)
			back, err := ParseValue(out)
			if err != nil {
				t.Fatalf("re-parse of %s: %v", out, err)
			}
			if again := back.appendJSON(nil); !bytes.Equal(again, out) {
				t.Fatalf("round trip changed %s to %s", out, again)
			}
		})
	})
}

// FuzzDispatch checks that every message gets exactly one well-formed answer and that
// nothing panics, whatever the input.
func FuzzDispatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, negotiated bool) {
		s, h := newTestServer(t)
		close(h.release)
		ss := newSession(s, nil)
		ss.negotiated.Store(negotiated)
		var st Stream
		st.Feed(data, func(v Value, perr error) {
			resp := s.dispatch(ss, v, perr)
			if len(resp) < 2 || !bytes.HasSuffix(resp, []byte("\r\n")) {
				t.Fatalf("response %q", resp)
			}
			rv, err := ParseValue(resp[:len(resp)-2])
			if err != nil || rv.Kind != KindObject {
				t.Fatalf("response %q does not parse: %v", resp, err)
			}
			_, isRet := rv.Get("return")
			_, isErr := rv.Get("error")
			if isRet == isErr {
				t.Fatalf("response %s has neither or both of return/error", resp)
			}
		})
	})
}
