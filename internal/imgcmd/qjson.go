package imgcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// QEMU keeps JSON objects in hash tables (QDict) and prints their members
// in table order, not in schema order. To print byte-for-byte what
// qemu-img prints, members are ordered the same way: by QDict bucket
// (QEMU's tdb_hash modulo 512), and within a bucket newest first.

const qdictBuckets = 512

func qdictHash(name string) uint32 {
	v := uint32(0x238F13AF) * uint32(len(name))
	for i := 0; i < len(name); i++ {
		v += uint32(name[i]) << (uint(i) * 5 % 24)
	}
	return (1103515243*v + 12345) % qdictBuckets
}

// member is one key/value of a decoded object, in insertion order.
type member struct {
	key string
	val any
}

type object []member

// decodeOrdered decodes JSON keeping object member order.
func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o object
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				o = append(o, member{k.(string), v})
			}
			_, err := dec.Token()
			return o, err
		case '[':
			var a []any
			for dec.More() {
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			if a == nil {
				a = []any{}
			}
			return a, err
		}
	}
	return tok, nil
}

// qdictOrder sorts members as a QDict built in insertion order iterates.
func qdictOrder(o object) object {
	idx := make(map[string]int, len(o))
	for i, m := range o {
		idx[m.key] = i
	}
	out := append(object(nil), o...)
	sort.SliceStable(out, func(a, b int) bool {
		ha, hb := qdictHash(out[a].key), qdictHash(out[b].key)
		if ha != hb {
			return ha < hb
		}
		return idx[out[a].key] > idx[out[b].key]
	})
	return out
}

// writeQemuJSON prints v (any value encoding/json can marshal, with struct
// fields in QAPI schema order) the way qemu-img --output=json does: pretty,
// four-space indents, members in QDict order, and a final newline.
func writeQemuJSON(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tree, err := decodeOrdered(dec)
	if err != nil {
		return err
	}
	var b strings.Builder
	writePretty(&b, tree, 0)
	b.WriteByte('\n')
	_, err = io.WriteString(w, b.String())
	return err
}

func writePretty(b *strings.Builder, v any, level int) {
	indent := func(l int) { b.WriteString(strings.Repeat("    ", l)) }
	switch x := v.(type) {
	case object:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, m := range qdictOrder(x) {
			if i > 0 {
				b.WriteString(",\n")
			}
			indent(level + 1)
			b.WriteString(jsonString(m.key))
			b.WriteString(": ")
			writePretty(b, m.val, level+1)
		}
		b.WriteByte('\n')
		indent(level)
		b.WriteByte('}')
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",\n")
			}
			indent(level + 1)
			writePretty(b, e, level+1)
		}
		b.WriteByte('\n')
		indent(level)
		b.WriteByte(']')
	case string:
		b.WriteString(jsonString(x))
	case json.Number:
		b.WriteString(x.String())
	case bool:
		fmt.Fprint(b, x)
	case nil:
		b.WriteString("null")
	}
}

// jsonString quotes s as QEMU does (no HTML escaping of <, > and &).
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}
