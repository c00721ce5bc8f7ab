// Package hmp is the human monitor: a line-oriented text front end reached through the
// QMP command human-monitor-command. Each command is a thin wrapper over the same code
// the QMP commands call; this package only owns parsing the line, dispatch, help and
// QEMU's output conventions ("Error: " prefixes, "\r\n" line ends, its "unknown command"
// text).
package hmp

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Handler runs one command. args is the rest of the line after the command name, with
// surrounding spaces removed. The returned text uses "\n" line ends; an error is printed
// after it as "Error: <text>".
type Handler func(ctx context.Context, args string) (string, error)

type entry struct {
	display string // the registered name with its aliases, e.g. "stop|s"
	help    string
	h       Handler
}

// Commands is a set of HMP commands. "info X" subcommands are registered under their full
// name ("info status").
type Commands struct {
	mu     sync.Mutex
	cmds   map[string]entry
	parent *Commands // consulted for names this set does not have
}

// New returns a command set that falls back to Default for names it does not define.
func New() *Commands { return &Commands{cmds: map[string]entry{}, parent: Default} }

// Default is the process-wide set that the package-level Register adds to.
var Default = &Commands{cmds: map[string]entry{}}

// Register adds a command to Default.
func Register(name string, help string, h Handler) { Default.Register(name, help, h) }

// Register adds a command. name may list aliases as QEMU's table does ("stop|s",
// "info status"). help is the text "help" prints after the name, either
// "PARAMS -- DESCRIPTION" or just a description.
func (c *Commands) Register(name string, help string, h Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := entry{display: name, help: help, h: h}
	prefix := ""
	if rest, ok := strings.CutPrefix(name, "info "); ok {
		prefix, name = "info ", rest
	}
	for _, alias := range strings.Split(name, "|") {
		c.cmds[prefix+alias] = e
	}
}

func (c *Commands) lookup(name string) (entry, bool) {
	for x := c; x != nil; x = x.parent {
		x.mu.Lock()
		e, ok := x.cmds[name]
		x.mu.Unlock()
		if ok {
			return e, true
		}
	}
	return entry{}, false
}

func (c *Commands) all() map[string]entry {
	out := map[string]entry{}
	var chain []*Commands
	for x := c; x != nil; x = x.parent {
		chain = append(chain, x)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		chain[i].mu.Lock()
		for k, v := range chain[i].cmds {
			out[k] = v
		}
		chain[i].mu.Unlock()
	}
	return out
}

// Names returns every command as registered (with aliases), sorted.
func (c *Commands) Names() []string {
	seen := map[string]bool{}
	var names []string
	for _, e := range c.all() {
		if !seen[e.display] {
			seen[e.display] = true
			names = append(names, e.display)
		}
	}
	sort.Strings(names)
	return names
}

func (c *Commands) byDisplay() map[string]entry {
	out := map[string]entry{}
	for _, e := range c.all() {
		out[e.display] = e
	}
	return out
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f'
}

// commandName splits off the command word the way QEMU does: leading spaces skipped, the
// name ends at a space or '/' (the start of a format, as in x/10i).
func commandName(s string) (name, rest string, end int) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := i
	for j < len(s) && s[j] != '/' && !isSpace(s[j]) {
		j++
	}
	return s[i:j], strings.TrimSpace(s[j:]), j
}

// Execute runs one command line and returns its output with "\r\n" line ends, as
// human-monitor-command returns it.
func (c *Commands) Execute(ctx context.Context, line string) string {
	return crlf(c.execute(ctx, line))
}

func (c *Commands) execute(ctx context.Context, line string) string {
	name, rest, end := commandName(line)
	if name == "" {
		return ""
	}
	switch name {
	case "help", "?":
		return c.help(rest)
	case "info":
		if rest == "" {
			return c.helpPrefix("info ")
		}
		sub, subRest, subEnd := commandName(rest)
		off := strings.Index(line, rest)
		e, ok := c.lookup("info " + sub)
		if !ok {
			return fmt.Sprintf("unknown command: '%s'\n", line[:off+subEnd])
		}
		if msg, bad := extraneous(e, subRest, line[:off+subEnd]); bad {
			return msg
		}
		return run(ctx, e, subRest)
	}
	e, ok := c.lookup(name)
	if !ok {
		return fmt.Sprintf("unknown command: '%s'\n", line[:end])
	}
	if msg, bad := extraneous(e, rest, line[:end]); bad {
		return msg
	}
	return run(ctx, e, rest)
}

// extraneous refuses arguments to a command that takes none, with QEMU's text: the
// command's name, then a pointer to help for the line up to the command.
func extraneous(e entry, args, upTo string) (string, bool) {
	if args == "" {
		return "", false
	}
	if params, _ := splitHelp(e.display, e.help); params != "" {
		return "", false
	}
	return fmt.Sprintf("%s: extraneous characters at the end of line\nTry \"help %s\" for more information\n",
		strings.TrimPrefix(e.display, "info "), strings.TrimRight(upTo, " \t")), true
}

func run(ctx context.Context, e entry, args string) (out string) {
	defer func() {
		if r := recover(); r != nil {
			out += fmt.Sprintf("Error: internal error: %v\n", r)
		}
	}()
	out, err := e.h(ctx, args)
	if err != nil {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += "Error: " + err.Error() + "\n"
	}
	return out
}

// splitHelp separates a help text into its parameter synopsis and description. The text
// may repeat the command name ("savevm [tag] -- ...").
func splitHelp(name, help string) (params, text string) {
	for _, alias := range strings.Split(strings.TrimPrefix(name, "info "), "|") {
		full := alias
		if strings.HasPrefix(name, "info ") {
			full = "info " + alias
		}
		if rest, ok := strings.CutPrefix(help, full+" "); ok {
			help = strings.TrimLeft(rest, " ")
			break
		}
	}
	if rest, ok := strings.CutPrefix(help, "-- "); ok {
		return "", rest
	}
	if p, t, ok := strings.Cut(help, " -- "); ok {
		return p, t
	}
	return "", help
}

// helpLine formats like QEMU: "name params -- text", so an empty params gives two spaces.
func helpLine(name string, e entry) string {
	params, text := splitHelp(name, e.help)
	return name + " " + params + " -- " + text + "\n"
}

func (c *Commands) helpPrefix(prefix string) string {
	var sb strings.Builder
	all := c.byDisplay()
	for _, n := range c.Names() {
		if strings.HasPrefix(n, prefix) {
			sb.WriteString(helpLine(n, all[n]))
		}
	}
	return sb.String()
}

// help lists every top-level command (or the one named), as QEMU's "help [cmd]".
func (c *Commands) help(arg string) string {
	all := c.byDisplay()
	if arg != "" {
		if arg == "info" {
			return c.helpPrefix("info ")
		}
		if e, ok := c.lookup(arg); ok {
			return helpLine(e.display, e)
		}
		return ""
	}
	var sb strings.Builder
	names := c.Names()
	top := append([]string{}, names...)
	top = append(top, "help|?", "info")
	sort.Strings(top)
	for _, n := range top {
		switch {
		case n == "help|?":
			sb.WriteString("help|? [cmd] -- show the help\n")
		case n == "info":
			sb.WriteString("info [subcommand] -- show various information about the system state\n")
		case strings.HasPrefix(n, "info "):
		default:
			sb.WriteString(helpLine(n, all[n]))
		}
	}
	return sb.String()
}

// crlf turns "\n" line ends into "\r\n" (the monitor's output convention).
func crlf(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}
