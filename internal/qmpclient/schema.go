package qmpclient

import (
	"encoding/json"
	"strings"
)

// Schema is what the client needs from query-qmp-schema: the argument members of each
// command and which of them are strings, so "tag=1" is sent as "1".
type Schema struct {
	cmdArgs map[string]string            // command -> arg-type
	members map[string]map[string]string // object type -> member -> type
	strs    map[string]bool              // type names that travel as JSON strings
	arrays  map[string]string            // array type -> element type
	names   []string
}

type schemaInfo struct {
	Name        string `json:"name"`
	MetaType    string `json:"meta-type"`
	ArgType     string `json:"arg-type"`
	JSONType    string `json:"json-type"`
	ElementType string `json:"element-type"`
	Members     []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"members"`
}

// LoadSchema asks the server for its schema. A server without query-qmp-schema gives an
// empty schema, and values are then taken as JSON whenever they parse.
func LoadSchema(c *Client) *Schema {
	s := &Schema{cmdArgs: map[string]string{}, members: map[string]map[string]string{}, strs: map[string]bool{}, arrays: map[string]string{}}
	raw, err := c.Execute("query-qmp-schema", nil)
	if err != nil {
		return s
	}
	var infos []schemaInfo
	if json.Unmarshal(raw, &infos) != nil {
		return s
	}
	for _, in := range infos {
		switch in.MetaType {
		case "command":
			s.cmdArgs[in.Name] = in.ArgType
			s.names = append(s.names, in.Name)
		case "object":
			m := map[string]string{}
			for _, mb := range in.Members {
				m[mb.Name] = mb.Type
			}
			s.members[in.Name] = m
		case "enum":
			s.strs[in.Name] = true
		case "array":
			s.arrays[in.Name] = in.ElementType
		case "builtin":
			if in.JSONType == "string" {
				s.strs[in.Name] = true
			}
		}
	}
	return s
}

// memberType returns the type name of the member at the dotted path of cmd's arguments.
func (s *Schema) memberType(cmd, path string) string {
	if s == nil {
		return ""
	}
	t, ok := s.cmdArgs[cmd]
	if !ok {
		return ""
	}
	for _, p := range strings.Split(path, ".") {
		m, ok := s.members[t]
		if !ok {
			return ""
		}
		if t, ok = m[p]; !ok {
			return ""
		}
	}
	return t
}

// IsString reports whether the member at the dotted path of cmd's arguments is a string.
func (s *Schema) IsString(cmd, path string) bool {
	t := s.memberType(cmd, path)
	return t != "" && s.strs[t]
}

// IsStringList reports whether the member is a list of strings (devices=d0,d1 is then
// sent as ["d0", "d1"]).
func (s *Schema) IsStringList(cmd, path string) bool {
	t := s.memberType(cmd, path)
	if t == "" {
		return false
	}
	e, ok := s.arrays[t]
	return ok && s.strs[e]
}

// Commands lists the server's commands (for completion).
func (s *Schema) Commands() []string {
	if s == nil {
		return nil
	}
	return s.names
}
