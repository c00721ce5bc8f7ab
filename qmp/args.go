package qmp

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Enum is implemented by string types whose values are a QAPI enum; argument validation
// refuses other values and the schema lists them.
type Enum interface{ EnumValues() []string }

var (
	enumType    = reflect.TypeFor[Enum]()
	rawType     = reflect.TypeFor[json.RawMessage]()
	valueType   = reflect.TypeFor[Value]()
	anyType     = reflect.TypeFor[any]()
	emptyStruct = reflect.TypeFor[struct{}]()
)

// member is one QAPI member of an argument struct, in declaration (= schema) order.
type member struct {
	name     string
	index    []int
	optional bool
	typ      reflect.Type
}

var membersCache sync.Map // reflect.Type -> []member

// members lists the JSON members of struct type t. Optional members are pointers or carry
// omitempty; untagged embedded structs are flattened as encoding/json does.
func members(t reflect.Type) []member {
	if m, ok := membersCache.Load(t); ok {
		return m.([]member)
	}
	var out []member
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range members(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, member{
			name:     name,
			index:    []int{i},
			optional: f.Type.Kind() == reflect.Pointer || strings.Contains(","+opts+",", ",omitempty,"),
			typ:      f.Type,
		})
	}
	membersCache.Store(t, out)
	return out
}

// isEnum reports whether t is a QAPI enum: it lists its values. Non-string Go types
// (an int with MarshalText) are enums on the wire too.
func isEnum(t reflect.Type) bool {
	return t.Implements(enumType) || reflect.PointerTo(t).Implements(enumType)
}

func enumValues(t reflect.Type) []string {
	return reflect.Zero(t).Interface().(Enum).EnumValues()
}

func isAny(t reflect.Type) bool {
	return t == rawType || t == valueType || t == anyType || t.Kind() == reflect.Interface
}

func typeErr(full, expected string) *Error {
	return Errorf("Invalid parameter type for '%s', expected: %s", full, expected)
}

func joinName(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// check validates v against Go type t with the QAPI input visitor's rules and texts.
// name is the member's own name ("" for list elements, printed as 'null' where QEMU does),
// full its path from the top (devices[0], file.driver).
func check(t reflect.Type, v *Value, name, full string) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isAny(t) {
		return nil
	}
	if isEnum(t) {
		if v.Kind != KindString {
			return typeErr(full, "string")
		}
		for _, s := range enumValues(t) {
			if s == v.Str {
				return nil
			}
		}
		if name == "" {
			name = "null"
		}
		return Errorf("Parameter '%s' does not accept value '%s'", name, v.Str)
	}
	switch t.Kind() {
	case reflect.Struct:
		if v.Kind != KindObject {
			return typeErr(full, "object")
		}
		return checkStruct(t, v, full)
	case reflect.Slice, reflect.Array:
		if v.Kind != KindArray {
			return typeErr(full, "array")
		}
		for i := range v.Items {
			if err := check(t.Elem(), &v.Items[i], "", full+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if v.Kind != KindObject {
			return typeErr(full, "object")
		}
		for i := range v.Items {
			if err := check(t.Elem(), &v.Items[i], v.Keys[i], joinName(full, v.Keys[i])); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if v.Kind != KindString {
			return typeErr(full, "string")
		}
		return nil
	case reflect.Bool:
		if v.Kind != KindBool {
			return typeErr(full, "boolean")
		}
		return nil
	case reflect.Float32, reflect.Float64:
		if v.Kind != KindInt && v.Kind != KindFloat {
			return typeErr(full, "number")
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Kind != KindInt {
			return typeErr(full, "integer")
		}
		n, err := strconv.ParseInt(v.Str, 10, 64)
		bits := t.Bits()
		if err != nil || bits < 64 && (n < -1<<(bits-1) || n > 1<<(bits-1)-1) {
			return rangeErr(name, "int"+strconv.Itoa(bits)+"_t")
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if v.Kind != KindInt {
			return typeErr(full, "integer")
		}
		n, err := strconv.ParseUint(v.Str, 10, 64)
		bits := t.Bits()
		if err != nil || bits < 64 && n > math.MaxUint64>>(64-bits) {
			if bits == 64 {
				return rangeErr(name, "uint64")
			}
			return rangeErr(name, "uint"+strconv.Itoa(bits)+"_t")
		}
		return nil
	}
	return typeErr(full, "object")
}

func rangeErr(name, what string) *Error {
	if name == "" {
		name = "null"
	}
	return Errorf("Parameter '%s' expects %s", name, what)
}

// checkStruct visits the declared members in order (a missing or mistyped one is reported
// first), then refuses members the struct does not declare.
func checkStruct(t reflect.Type, v *Value, full string) *Error {
	ms := members(t)
	for _, m := range ms {
		mv, ok := v.Get(m.name)
		if !ok {
			if m.optional {
				continue
			}
			return Errorf("Parameter '%s' is missing", joinName(full, m.name))
		}
		if err := check(m.typ, mv, m.name, joinName(full, m.name)); err != nil {
			return err
		}
	}
outer:
	for _, k := range v.Keys {
		for _, m := range ms {
			if m.name == k {
				continue outer
			}
		}
		return Errorf("Parameter '%s' is unexpected", joinName(full, k))
	}
	return nil
}

// decodeArgs validates the arguments object and decodes it into a new A.
func decodeArgs[A any](args *Value) (A, *Error) {
	var a A
	t := reflect.TypeFor[A]()
	if isAny(t) {
		if err := json.Unmarshal(args.appendJSON(nil), &a); err != nil {
			return a, Errorf("%s", err.Error())
		}
		return a, nil
	}
	if err := check(t, args, "", ""); err != nil {
		return a, err
	}
	if err := json.Unmarshal(args.appendJSON(nil), &a); err != nil {
		// Validation mirrors encoding/json's rules, so this means a type snapvm declared
		// but check does not know; report it rather than run with a half-filled struct.
		return a, Errorf("%s", err.Error())
	}
	return a, nil
}
