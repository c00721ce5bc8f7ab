// Package qmp implements the QEMU Machine Protocol as QEMU 7.2 speaks it: the streaming JSON
// reader with QEMU's error texts and limits, the greeting and capability negotiation, command
// dispatch with QAPI-style argument validation done by reflection over each command's argument
// struct, events broadcast to every negotiated client, the unix and tcp listeners, and the
// introspection commands (query-qmp-schema, query-commands) generated from the same registry.
//
// The package knows nothing about the machine: commands and events are registered by the
// monitor and by the packages that own the features.
package qmp
