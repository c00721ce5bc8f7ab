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
	names   []string
}

type schemaInfo struct {
	Name     string `json:"name"`
	MetaType string `json:"meta-type"`
	ArgType  string `json:"arg-type"`
	JSONType string `json:"json-type"`
	Members  []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"members"`
}

// LoadSchema asks the server for its schema. A server without query-qmp-schema gives an
// empty schema, and values are then taken as JSON whenever they parse.
func LoadSchema(c *Client) *Schema {
	s := &Schema{cmdArgs: map[string]string{}, members: map[string]map[string]string{}, strs: map[string]bool{}}
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
		case "builtin":
			if in.JSONType == "string" {
				s.strs[in.Name] = true
			}
		}
	}
	return s
}

// IsString reports whether the member at the dotted path of cmd's arguments is a string.
func (s *Schema) IsString(cmd, path string) bool {
	if s == nil {
		return false
	}
	t, ok := s.cmdArgs[cmd]
	if !ok {
		return false
	}
	for _, p := range strings.Split(path, ".") {
		m, ok := s.members[t]
		if !ok {
			return false
		}
		if t, ok = m[p]; !ok {
			return false
		}
	}
	return s.strs[t]
}

// Commands lists the server's commands (for completion).
func (s *Schema) Commands() []string {
	if s == nil {
		return nil
	}
	return s.names
}
