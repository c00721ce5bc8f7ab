package qmp

import (
	"encoding/json"
	"reflect"
	"strconv"
)

// The SchemaInfo records of query-qmp-schema, one Go type per meta-type so each carries
// exactly the members QEMU's introspection defines for it.
type (
	schemaCommand struct {
		Name     string `json:"name"`
		MetaType string `json:"meta-type"`
		ArgType  string `json:"arg-type"`
		RetType  string `json:"ret-type"`
	}
	schemaEvent struct {
		Name     string `json:"name"`
		MetaType string `json:"meta-type"`
		ArgType  string `json:"arg-type"`
	}
	schemaObject struct {
		Name     string         `json:"name"`
		MetaType string         `json:"meta-type"`
		Members  []schemaMember `json:"members"`
	}
	schemaMember struct {
		Name    string           `json:"name"`
		Type    string           `json:"type"`
		Default *json.RawMessage `json:"default,omitempty"` // null for optional members
	}
	schemaEnum struct {
		Name     string             `json:"name"`
		MetaType string             `json:"meta-type"`
		Members  []schemaEnumMember `json:"members"`
		Values   []string           `json:"values"`
	}
	schemaEnumMember struct {
		Name string `json:"name"`
	}
	schemaArray struct {
		Name        string `json:"name"`
		MetaType    string `json:"meta-type"`
		ElementType string `json:"element-type"`
	}
	schemaBuiltin struct {
		Name     string `json:"name"`
		MetaType string `json:"meta-type"`
		JSONType string `json:"json-type"`
	}
)

var jsonNull = json.RawMessage("null")

// schemaBuilder names the types reachable from commands and events. Like QEMU's, the
// names of objects and enums are numbers and carry no meaning; arrays are "[element]".
type schemaBuilder struct {
	names map[reflect.Type]string
	seen  map[string]bool
	next  int
	types []any
}

// Schema returns the query-qmp-schema records: commands and events sorted by name, then
// every type they use.
func (s *Server) Schema() []any {
	b := &schemaBuilder{names: map[reflect.Type]string{}, seen: map[string]bool{}}
	b.typeName(emptyStruct) // the empty object is "0", as in QEMU
	var out []any
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
		out = append(out, schemaCommand{Name: n, MetaType: "command", ArgType: b.typeName(c.argType), RetType: b.typeName(c.retType)})
	}
	for _, n := range s.Events() {
		out = append(out, schemaEvent{Name: n, MetaType: "event", ArgType: b.typeName(evs[n])})
	}
	return append(out, b.types...)
}

func (b *schemaBuilder) builtin(name, jsonType string) string {
	if !b.seen[name] {
		b.seen[name] = true
		b.types = append(b.types, schemaBuiltin{Name: name, MetaType: "builtin", JSONType: jsonType})
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
		e := schemaEnum{Name: n, MetaType: "enum", Values: enumValues(t), Members: []schemaEnumMember{}}
		for _, v := range e.Values {
			e.Members = append(e.Members, schemaEnumMember{Name: v})
		}
		b.types = append(b.types, e)
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
			b.types = append(b.types, schemaArray{Name: n, MetaType: "array", ElementType: elem})
		}
		return n
	case reflect.Struct:
		n := b.newName(t)
		idx := len(b.types)
		b.types = append(b.types, nil) // keep the object before the types its members use
		o := schemaObject{Name: n, MetaType: "object", Members: []schemaMember{}}
		for _, m := range members(t) {
			sm := schemaMember{Name: m.name, Type: b.typeName(m.typ)}
			if m.optional {
				sm.Default = &jsonNull
			}
			o.Members = append(o.Members, sm)
		}
		b.types[idx] = o
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
