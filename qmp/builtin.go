package qmp

import "context"

// QMPCapability is QEMU's QMPCapability enum. snapvm offers none of them (the greeting's
// capabilities list is empty), so every value is refused by qmp_capabilities.
type QMPCapability string

// EnumValues lists the enum's values.
func (QMPCapability) EnumValues() []string { return []string{"oob"} }

// CapabilitiesArgs are the arguments of qmp_capabilities.
type CapabilitiesArgs struct {
	Enable *[]QMPCapability `json:"enable,omitempty"`
}

// CommandInfo is one element of query-commands.
type CommandInfo struct {
	Name string `json:"name"`
}

func (s *Server) registerBuiltins() {
	Register(s, "qmp_capabilities", func(ctx context.Context, a CapabilitiesArgs) (struct{}, error) {
		ss, _ := ctx.Value(sessionKey{}).(*session)
		if ss == nil || ss.negotiated.Load() {
			return struct{}{}, NewError(ClassCommandNotFound, "Capabilities negotiation is already complete, command ignored")
		}
		if a.Enable != nil && len(*a.Enable) > 0 {
			// No capability is offered, so the first one asked for is refused.
			return struct{}{}, Errorf("Capability %s not available", (*a.Enable)[0])
		}
		ss.negotiated.Store(true)
		return struct{}{}, nil
	})
	Register(s, "query-version", func(context.Context, struct{}) (VersionInfo, error) {
		return s.version, nil
	})
	Register(s, "query-commands", func(context.Context, struct{}) ([]CommandInfo, error) {
		var out []CommandInfo
		for _, n := range s.Commands() {
			out = append(out, CommandInfo{Name: n})
		}
		return out, nil
	})
	Register(s, "query-qmp-schema", func(context.Context, struct{}) ([]SchemaInfo, error) {
		return s.Schema(), nil
	})
}
