package block

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Options is one -blockdev / blockdev-add description: the subset of QEMU's
// BlockdevOptions that snapvm implements (drivers file, raw and qcow2).
// Members QEMU accepts but that change nothing here (cache.*, discard,
// detect-zeroes, auto-read-only, force-share, locking, aio) are parsed,
// validated and kept so query commands can report them.
type Options struct {
	Driver   string // "file", "raw" or "qcow2"
	NodeName string // "" = generated name (not allowed for a blockdev-add root)

	// ReadOnly is nil when not given: a root is then read-write and a nested
	// child inherits its parent's setting.
	ReadOnly     *bool
	AutoReadOnly *bool
	ForceShare   *bool
	Discard      string // "", "ignore", "unmap" ("off"/"on" are QEMU's aliases)
	DetectZeroes string // "", "off", "on", "unmap"
	CacheDirect  *bool
	CacheNoFlush *bool

	Filename string // driver file
	Locking  string // driver file: "", "auto", "on", "off"
	AIO      string // driver file: "", "threads", "native", "io_uring"

	File    *Ref // drivers raw and qcow2 (required)
	Backing *Ref // driver qcow2: nil = use the header's backing file; Ref.Null = none
}

// Ref names a child: an existing node (NodeName), a nested description
// (Options) or, for backing only, no child at all (Null).
type Ref struct {
	NodeName string
	Options  *Options
	Null     bool
}

// Per-driver member lists in QAPI schema order; anything else is unexpected.
var (
	baseMembers  = []string{"driver", "node-name", "discard", "cache", "read-only", "auto-read-only", "force-share", "detect-zeroes"}
	driverMember = map[string][]string{
		"file":  {"filename", "pr-manager", "locking", "aio", "aio-max-batch", "drop-cache", "x-check-cache-dropped"},
		"raw":   {"file"},
		"qcow2": {"file", "backing"},
	}
)

// ParseOptionsJSON decodes the arguments of a QMP blockdev-add command,
// reporting problems with QEMU's texts ("Parameter 'driver' is missing",
// "Invalid parameter type for 'read-only', expected: boolean", ...).
func ParseOptionsJSON(raw json.RawMessage) (Options, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Options{}, fmt.Errorf("Invalid JSON: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Options{}, fmt.Errorf("Invalid parameter type for 'arguments', expected: object")
	}
	p := parser{keyval: false}
	return p.options(m, "")
}

// ParseOptionsArg decodes a -blockdev command-line argument in QEMU's
// key=value syntax: commas separate members, ",," is a literal comma, and
// dotted keys (file.filename=x) describe nested objects.
func ParseOptionsArg(s string) (Options, error) {
	m, err := parseKeyval(s)
	if err != nil {
		return Options{}, err
	}
	p := parser{keyval: true}
	return p.options(m, "")
}

// parseKeyval splits s into a tree of maps whose leaves are strings.
func parseKeyval(s string) (map[string]any, error) {
	root := map[string]any{}
	for len(s) > 0 {
		// Key: up to '=' or ','.
		i := strings.IndexAny(s, "=,")
		if i < 0 || s[i] == ',' {
			key := s
			if i >= 0 {
				key = s[:i]
			}
			if key == "" {
				return nil, fmt.Errorf("Invalid parameter ''")
			}
			return nil, fmt.Errorf("Expected '=' after parameter '%s'", key)
		}
		key := s[:i]
		s = s[i+1:]
		// Value: up to a single ',' (",," is an escaped comma).
		var val strings.Builder
		for len(s) > 0 {
			if s[0] == ',' {
				if len(s) > 1 && s[1] == ',' {
					val.WriteByte(',')
					s = s[2:]
					continue
				}
				s = s[1:]
				break
			}
			val.WriteByte(s[0])
			s = s[1:]
		}
		if err := keyvalSet(root, key, val.String()); err != nil {
			return nil, err
		}
	}
	return root, nil
}

func keyvalSet(root map[string]any, key, val string) error {
	parts := strings.Split(key, ".")
	cur := root
	for i, part := range parts {
		if !validKeyPart(part) {
			return fmt.Errorf("Invalid parameter '%s'", key)
		}
		prefix := strings.Join(parts[:i+1], ".")
		if i == len(parts)-1 {
			if _, isMap := cur[part].(map[string]any); isMap {
				return fmt.Errorf("Parameters '%s.*' used inconsistently", prefix)
			}
			cur[part] = val // a repeated key: the last one wins, as in QEMU
			return nil
		}
		next, exists := cur[part]
		switch n := next.(type) {
		case map[string]any:
			cur = n
		default:
			if exists {
				return fmt.Errorf("Parameters '%s.*' used inconsistently", prefix)
			}
			nm := map[string]any{}
			cur[part] = nm
			cur = nm
		}
	}
	return nil
}

func validKeyPart(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parser turns a JSON object or a keyval tree into Options. In keyval mode
// every scalar is a string and is converted as QEMU's keyval visitor does.
type parser struct {
	keyval bool
}

func full(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func (p parser) options(m map[string]any, prefix string) (Options, error) {
	var o Options
	var err error
	seen := map[string]bool{}
	get := func(name string) (any, bool) {
		seen[name] = true
		v, ok := m[name]
		return v, ok
	}
	v, ok := get("driver")
	if !ok {
		return o, fmt.Errorf("Parameter '%s' is missing", full(prefix, "driver"))
	}
	if o.Driver, err = p.str(v, full(prefix, "driver")); err != nil {
		return o, err
	}
	if _, known := driverMember[o.Driver]; !known {
		return o, fmt.Errorf("Parameter '%s' does not accept value '%s'", full(prefix, "driver"), o.Driver)
	}
	if v, ok := get("node-name"); ok {
		if o.NodeName, err = p.str(v, full(prefix, "node-name")); err != nil {
			return o, err
		}
	}
	if v, ok := get("discard"); ok {
		if o.Discard, err = p.enum(v, full(prefix, "discard"), "ignore", "unmap", "off", "on"); err != nil {
			return o, err
		}
	}
	if v, ok := get("cache"); ok {
		cm, isMap := v.(map[string]any)
		if !isMap {
			return o, fmt.Errorf("Invalid parameter type for '%s', expected: object", full(prefix, "cache"))
		}
		cp := full(prefix, "cache")
		for _, k := range sortedKeys(cm) {
			switch k {
			case "direct":
				if o.CacheDirect, err = p.boolPtr(cm[k], full(cp, k)); err != nil {
					return o, err
				}
			case "no-flush":
				if o.CacheNoFlush, err = p.boolPtr(cm[k], full(cp, k)); err != nil {
					return o, err
				}
			default:
				return o, fmt.Errorf("Parameter '%s' is unexpected", full(cp, k))
			}
		}
	}
	for _, b := range []struct {
		name string
		dst  **bool
	}{{"read-only", &o.ReadOnly}, {"auto-read-only", &o.AutoReadOnly}, {"force-share", &o.ForceShare}} {
		if v, ok := get(b.name); ok {
			if *b.dst, err = p.boolPtr(v, full(prefix, b.name)); err != nil {
				return o, err
			}
		}
	}
	if v, ok := get("detect-zeroes"); ok {
		if o.DetectZeroes, err = p.enum(v, full(prefix, "detect-zeroes"), "off", "on", "unmap"); err != nil {
			return o, err
		}
	}

	switch o.Driver {
	case "file":
		v, ok := get("filename")
		if !ok {
			return o, fmt.Errorf("Parameter '%s' is missing", full(prefix, "filename"))
		}
		if o.Filename, err = p.str(v, full(prefix, "filename")); err != nil {
			return o, err
		}
		if v, ok := get("pr-manager"); ok {
			if _, err = p.str(v, full(prefix, "pr-manager")); err != nil {
				return o, err
			}
			return o, fmt.Errorf("Persistent reservation manager not supported")
		}
		if v, ok := get("locking"); ok {
			if o.Locking, err = p.enum(v, full(prefix, "locking"), "off", "on", "auto"); err != nil {
				return o, err
			}
		}
		if v, ok := get("aio"); ok {
			if o.AIO, err = p.enum(v, full(prefix, "aio"), "threads", "native", "io_uring"); err != nil {
				return o, err
			}
		}
		if v, ok := get("aio-max-batch"); ok {
			if _, err = p.integer(v, full(prefix, "aio-max-batch")); err != nil {
				return o, err
			}
		}
		for _, name := range []string{"drop-cache", "x-check-cache-dropped"} {
			if v, ok := get(name); ok {
				if _, err = p.boolPtr(v, full(prefix, name)); err != nil {
					return o, err
				}
			}
		}
	case "raw", "qcow2":
		v, ok := get("file")
		if !ok {
			return o, fmt.Errorf("Parameter '%s' is missing", full(prefix, "file"))
		}
		if o.File, err = p.ref(v, full(prefix, "file"), false); err != nil {
			return o, err
		}
		if o.Driver == "qcow2" {
			if v, ok := get("backing"); ok {
				if o.Backing, err = p.ref(v, full(prefix, "backing"), true); err != nil {
					return o, err
				}
			}
		}
	}
	// Unexpected members are reported after every declared one was visited.
	for _, k := range sortedKeys(m) {
		if !seen[k] {
			return o, fmt.Errorf("Parameter '%s' is unexpected", full(prefix, k))
		}
	}
	return o, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p parser) str(v any, name string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("Invalid parameter type for '%s', expected: string", name)
	}
	return s, nil
}

func (p parser) enum(v any, name string, allowed ...string) (string, error) {
	s, err := p.str(v, name)
	if err != nil {
		return "", err
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", fmt.Errorf("Parameter '%s' does not accept value '%s'", name, s)
}

func (p parser) boolPtr(v any, name string) (*bool, error) {
	if p.keyval {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("Invalid parameter type for '%s', expected: boolean", name)
		}
		var b bool
		switch s {
		case "on", "yes", "true", "y":
			b = true
		case "off", "no", "false", "n":
			b = false
		default:
			return nil, fmt.Errorf("Parameter '%s' expects 'on' or 'off'", name)
		}
		return &b, nil
	}
	b, ok := v.(bool)
	if !ok {
		return nil, fmt.Errorf("Invalid parameter type for '%s', expected: boolean", name)
	}
	return &b, nil
}

func (p parser) integer(v any, name string) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
	case string:
		if p.keyval {
			var i int64
			if _, err := fmt.Sscan(n, &i); err == nil {
				return i, nil
			}
			return 0, fmt.Errorf("Parameter '%s' expects an integer", name)
		}
	}
	return 0, fmt.Errorf("Invalid parameter type for '%s', expected: integer", name)
}

// ref decodes a BlockdevRef (string or object) or, with orNull, a
// BlockdevRefOrNull (also null; on the command line an empty string, which
// QEMU accepts with a deprecation warning).
func (p parser) ref(v any, name string, orNull bool) (*Ref, error) {
	typ := "BlockdevRef"
	if orNull {
		typ = "BlockdevRefOrNull"
	}
	switch x := v.(type) {
	case string:
		if orNull && p.keyval && x == "" {
			return &Ref{Null: true}, nil
		}
		return &Ref{NodeName: x}, nil
	case map[string]any:
		o, err := p.options(x, name)
		if err != nil {
			return nil, err
		}
		return &Ref{Options: &o}, nil
	case nil:
		if orNull && !p.keyval {
			return &Ref{Null: true}, nil
		}
	}
	return nil, fmt.Errorf("Invalid parameter type for '%s', expected: %s", name, typ)
}
