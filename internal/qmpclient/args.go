package qmpclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// ParseLine turns a shell line into a request. The line is either raw JSON (an object,
// sent as it is) or "command key=value ...". A value is taken as JSON when it parses
// (devices=["d0"], count=3, flag=true) and as a string otherwise (tag=before-upgrade);
// dotted keys build nested objects (file.driver=file). The schema, when it knows the
// command, keeps string members strings (tag=1 stays "1") and turns a plain value of a
// string-list member into a list (devices=d0,d1). schema may be nil.
func ParseLine(line string, schema *Schema) (map[string]any, error) {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "{") {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var req map[string]any
		if err := dec.Decode(&req); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		return req, nil
	}
	words, err := splitWords(line)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, nil
	}
	cmd := words[0]
	args, err := ParseArgs(cmd, words[1:], schema)
	if err != nil {
		return nil, err
	}
	req := map[string]any{"execute": cmd}
	if len(args) > 0 {
		req["arguments"] = args
	}
	return req, nil
}

// ParseArgs builds the arguments object from key=value words.
func ParseArgs(cmd string, words []string, schema *Schema) (map[string]any, error) {
	args := map[string]any{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q is not key=value", w)
		}
		var val any = v
		j, isJSON := parseJSON(v)
		_, isList := j.([]any)
		switch {
		case schema.IsString(cmd, k):
			if s, ok := j.(string); ok && isJSON {
				val = s // a quoted value: tag="two words"
			}
		case schema.IsStringList(cmd, k) && !isList:
			list := []any{}
			for _, e := range strings.Split(v, ",") {
				list = append(list, e)
			}
			val = list
		case isJSON:
			val = j
		}
		if err := setPath(args, strings.Split(k, "."), val); err != nil {
			return nil, fmt.Errorf("argument %q: %v", w, err)
		}
	}
	return args, nil
}

func parseJSON(v string) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.UseNumber()
	var j any
	if err := dec.Decode(&j); err != nil || dec.More() {
		return nil, false
	}
	return j, true
}

func setPath(m map[string]any, path []string, v any) error {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p]
		if !ok {
			nm := map[string]any{}
			m[p] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is both a value and an object", p)
		}
		m = nm
	}
	last := path[len(path)-1]
	if _, dup := m[last]; dup {
		return fmt.Errorf("%s given twice", last)
	}
	m[last] = v
	return nil
}

// splitWords splits on spaces outside quotes and JSON brackets, so devices=["a", "b"]
// and tag="two words" stay one word each. Quotes around a whole value are kept: "x" is
// valid JSON and becomes the string x.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	depth := 0
	var quote byte
	escaped := false
	has := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == quote {
				quote = 0
			}
		case c == '"':
			quote = c
			cur.WriteByte(c)
			has = true
		case c == '[' || c == '{':
			depth++
			cur.WriteByte(c)
			has = true
		case c == ']' || c == '}':
			depth--
			cur.WriteByte(c)
		case (c == ' ' || c == '\t') && depth <= 0:
			if has {
				words = append(words, cur.String())
				cur.Reset()
				has = false
			}
			depth = 0
		default:
			cur.WriteByte(c)
			has = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated string")
	}
	if has {
		words = append(words, cur.String())
	}
	return words, nil
}
