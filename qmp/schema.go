package qmp

import (
	"encoding/json"
	"reflect"
	"strconv"
)

// SchemaInfo is one record of query-qmp-schema (QEMU's SchemaInfo union flattened):
// which members are present depends on meta-type, exactly as in QEMU's introspection.
type SchemaInfo struct {
	Name        string          `json:"name"`
	MetaType    string          `json:"meta-type"`
	ArgType     *string         `json:"arg-type,omitempty"`     // command, event
	RetType     *string         `json:"ret-type,omitempty"`     // command
	Members     *[]SchemaMember `json:"members,omitempty"`      // object, enum
	Values      *[]string       `json:"values,omitempty"`       // enum
	ElementType *string         `json:"element-type,omitempty"` // array
	JSONType    *string         `json:"json-type,omitempty"`    // builtin
}

// SchemaMember is a member of an object (name, type, default) or of an enum (name).
type SchemaMember struct {
	Name    string           `json:"name"`
	Type    *string          `json:"type,omitempty"`
	Default *json.RawMessage `json:"default,omitempty"` // null for optional members
}

func strp(s string) *string { return &s }

var jsonNull = json.RawMessage("null")

// schemaBuilder names the types reachable from commands and events. Like QEMU's, the
// names of objects and enums are numbers and carry no meaning; arrays are "[element]".
type schemaBuilder struct {
	names map[reflect.Type]string
	seen  map[string]bool
	next  int
	types []SchemaInfo
}

// Schema returns the query-qmp-schema records: commands and events sorted by name, then
// every type they use.
func (s *Server) Schema() []SchemaInfo {
	b := &schemaBuilder{names: map[reflect.Type]string{}, seen: map[string]bool{}}
	b.typeName(emptyStruct) // the empty object is "0", as in QEMU
	var out []SchemaInfo
	s.mu.Lock()
	cmds := make(map[string]*command, len(s.commands))
	for k, v := range s.commands {
		cmds[k] = v
	}
	evs := make(map[string]reflect.Type, len(s.events))
	for k, v := range s.events {
		evs[k] = v
	}
	s.mu.Unlock()
	for _, n := range s.Commands() {
		c := cmds[n]
		out = append(out, SchemaInfo{Name: n, MetaType: "command", ArgType: strp(b.typeName(c.argType)), RetType: strp(b.typeName(c.retType))})
	}
	for _, n := range s.Events() {
		out = append(out, SchemaInfo{Name: n, MetaType: "event", ArgType: strp(b.typeName(evs[n]))})
	}
	return append(out, b.types...)
}

func (b *schemaBuilder) builtin(name, jsonType string) string {
	if !b.seen[name] {
		b.seen[name] = true
		b.types = append(b.types, SchemaInfo{Name: name, MetaType: "builtin", JSONType: strp(jsonType)})
	}
	return name
}

func (b *schemaBuilder) typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n, ok := b.names[t]; ok {
		return n
	}
	if isAny(t) {
		return b.builtin("any", "value")
	}
	if isEnum(t) {
		n := b.newName(t)
		values := enumValues(t)
		ms := []SchemaMember{}
		for _, v := range values {
			ms = append(ms, SchemaMember{Name: v})
		}
		b.types = append(b.types, SchemaInfo{Name: n, MetaType: "enum", Members: &ms, Values: &values})
		return n
	}
	switch t.Kind() {
	case reflect.String:
		return b.builtin("str", "string")
	case reflect.Bool:
		return b.builtin("bool", "boolean")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return b.builtin("int", "int")
	case reflect.Float32, reflect.Float64:
		return b.builtin("number", "number")
	case reflect.Slice, reflect.Array:
		elem := b.typeName(t.Elem())
		n := "[" + elem + "]"
		b.names[t] = n
		if !b.seen[n] {
			b.seen[n] = true
			b.types = append(b.types, SchemaInfo{Name: n, MetaType: "array", ElementType: strp(elem)})
		}
		return n
	case reflect.Struct:
		n := b.newName(t)
		idx := len(b.types)
		b.types = append(b.types, SchemaInfo{}) // keep the object before the types its members use
		ms := []SchemaMember{}
		for _, m := range members(t) {
			sm := SchemaMember{Name: m.name, Type: strp(b.typeName(m.typ))}
			if m.optional {
				sm.Default = &jsonNull
			}
			ms = append(ms, sm)
		}
		b.types[idx] = SchemaInfo{Name: n, MetaType: "object", Members: &ms}
		return n
	}
	return b.builtin("any", "value")
}

func (b *schemaBuilder) newName(t reflect.Type) string {
	n := strconv.Itoa(b.next)
	b.next++
	b.names[t] = n
	return n
}
