package qmp

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the JSON type of a Value.
type Kind uint8

// The JSON types. Integers that fit int64 or uint64 are KindInt; every other number is
// KindFloat, as QEMU's parser does.
const (
	KindNull Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindArray
	KindObject
)

// Value is one parsed JSON value. Objects keep their members in input order, which matters
// for reporting the first offending member the way a reader of the input expects.
type Value struct {
	Kind  Kind
	Bool  bool
	Str   string  // KindString: the text; KindInt: the canonical decimal
	Float float64 // KindFloat
	Keys  []string
	Items []Value // KindArray: elements; KindObject: member values, parallel to Keys
}

// Get returns the member named key of an object.
func (v *Value) Get(key string) (*Value, bool) {
	for i, k := range v.Keys {
		if k == key {
			return &v.Items[i], true
		}
	}
	return nil, false
}

// appendJSON writes v the way QEMU's QObject serialiser does: ", " and ": " separators,
// ASCII only with uppercase \uXXXX escapes, doubles printed with %.17g.
func (v *Value) appendJSON(b []byte) []byte {
	switch v.Kind {
	case KindNull:
		return append(b, "null"...)
	case KindBool:
		if v.Bool {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case KindInt:
		return append(b, v.Str...)
	case KindFloat:
		return appendFloat(b, v.Float)
	case KindString:
		return appendString(b, v.Str)
	case KindArray:
		b = append(b, '[')
		for i := range v.Items {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = v.Items[i].appendJSON(b)
		}
		return append(b, ']')
	case KindObject:
		b = append(b, '{')
		for i := range v.Items {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendString(b, v.Keys[i])
			b = append(b, ": "...)
			b = v.Items[i].appendJSON(b)
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}

// appendFloat prints like C's "%.17g" so doubles round-trip as in QEMU. Infinities (only
// reachable from literals such as 1e999) are clamped to the largest double, because QEMU's
// "inf" is not JSON.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		f = 0
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	}
	return strconv.AppendFloat(b, f, 'g', 17, 64)
}

const hexDigits = "0123456789ABCDEF"

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendString writes s as a JSON string. Bytes that are not valid UTF-8 become U+FFFD,
// everything outside printable ASCII is escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				if c < 0x20 || c == 0x7F {
					b = appendU(b, rune(c))
				} else {
					b = append(b, c)
				}
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r > 0xFFFF {
			r -= 0x10000
			b = appendU(b, 0xD800+(r>>10))
			b = appendU(b, 0xDC00+(r&0x3FF))
			continue
		}
		b = appendU(b, r) // utf8.RuneError for invalid bytes is U+FFFD
	}
	return append(b, '"')
}

// String returns the JSON text of v.
func (v Value) String() string { return string(v.appendJSON(nil)) }

// typeName is the QAPI name of the JSON type, as used in "expected: ..." texts.
func (k Kind) typeName() string {
	switch k {
	case KindNull:
		return "null"
	case KindBool:
		return "boolean"
	case KindInt:
		return "integer"
	case KindFloat:
		return "number"
	case KindString:
		return "string"
	case KindArray:
		return "array"
	}
	return "object"
}

// numberValue converts a number token the way QEMU does: integers that fit int64, then
// non-negative ones that fit uint64, everything else as a double.
func numberValue(text string, isFloat bool) Value {
	if !isFloat {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return Value{Kind: KindInt, Str: strconv.FormatInt(n, 10)}
		}
		if !strings.HasPrefix(text, "-") {
			if n, err := strconv.ParseUint(text, 10, 64); err == nil {
				return Value{Kind: KindInt, Str: strconv.FormatUint(n, 10)}
			}
		}
	}
	f, _ := strconv.ParseFloat(text, 64) // range errors give ±Inf, as strtod
	return Value{Kind: KindFloat, Float: f}
}
