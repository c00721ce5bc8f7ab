// Package fdt writes (and, for checking, reads) flattened device trees:
// the DTB format version 17 that firmware and kernels parse.
package fdt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	magic      = 0xd00dfeed
	tokBegin   = 1
	tokEnd     = 2
	tokProp    = 3
	tokNop     = 4
	tokEndTree = 9
	headerSize = 40
	version    = 17
	lastComp   = 16
)

// Builder accumulates nodes and properties in document order.
type Builder struct {
	structs []byte
	strs    []byte
	offs    map[string]uint32
	depth   int
}

// NewBuilder returns an empty tree; the first node opened is the root ("").
func NewBuilder() *Builder { return &Builder{offs: map[string]uint32{}} }

func (b *Builder) u32(v uint32) { b.structs = binary.BigEndian.AppendUint32(b.structs, v) }

func (b *Builder) pad() {
	for len(b.structs)%4 != 0 {
		b.structs = append(b.structs, 0)
	}
}

// BeginNode opens a child of the current node.
func (b *Builder) BeginNode(name string) {
	b.u32(tokBegin)
	b.structs = append(b.structs, name...)
	b.structs = append(b.structs, 0)
	b.pad()
	b.depth++
}

// EndNode closes the current node.
func (b *Builder) EndNode() {
	b.u32(tokEnd)
	b.depth--
}

// Prop adds a property with raw bytes.
func (b *Builder) Prop(name string, val []byte) {
	off, ok := b.offs[name]
	if !ok {
		off = uint32(len(b.strs))
		b.offs[name] = off
		b.strs = append(b.strs, name...)
		b.strs = append(b.strs, 0)
	}
	b.u32(tokProp)
	b.u32(uint32(len(val)))
	b.u32(off)
	b.structs = append(b.structs, val...)
	b.pad()
}

// PropEmpty adds a property without a value (e.g. "interrupt-controller").
func (b *Builder) PropEmpty(name string) { b.Prop(name, nil) }

// PropU32 adds a property of 32-bit cells.
func (b *Builder) PropU32(name string, cells ...uint32) {
	v := make([]byte, 0, 4*len(cells))
	for _, c := range cells {
		v = binary.BigEndian.AppendUint32(v, c)
	}
	b.Prop(name, v)
}

// PropU64 adds a property of 64-bit values, each as two cells.
func (b *Builder) PropU64(name string, vals ...uint64) {
	v := make([]byte, 0, 8*len(vals))
	for _, x := range vals {
		v = binary.BigEndian.AppendUint64(v, x)
	}
	b.Prop(name, v)
}

// PropString adds a NUL-terminated string property; several strings make
// a string list.
func (b *Builder) PropString(name string, strs ...string) {
	var v []byte
	for _, s := range strs {
		v = append(v, s...)
		v = append(v, 0)
	}
	b.Prop(name, v)
}

// Finish returns the blob: header, an empty memory reservation map, the
// structure block and the strings block, packed without free space.
func (b *Builder) Finish(bootCPU uint32) ([]byte, error) {
	if b.depth != 0 {
		return nil, fmt.Errorf("fdt: %d nodes left open", b.depth)
	}
	structs := binary.BigEndian.AppendUint32(append([]byte(nil), b.structs...), tokEndTree)
	rsvOff := uint32(headerSize)
	structOff := rsvOff + 16
	strOff := structOff + uint32(len(structs))
	total := strOff + uint32(len(b.strs))
	out := make([]byte, 0, total)
	for _, v := range []uint32{magic, total, structOff, strOff, rsvOff, version, lastComp, bootCPU,
		uint32(len(b.strs)), uint32(len(structs))} {
		out = binary.BigEndian.AppendUint32(out, v)
	}
	out = append(out, make([]byte, 16)...)
	out = append(out, structs...)
	out = append(out, b.strs...)
	return out, nil
}

// Node is a parsed tree node.
type Node struct {
	Name     string
	Props    map[string][]byte
	Order    []string // property names in blob order
	Children []*Node
}

// Child returns the direct child with the given name.
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Lookup follows a path like "/soc/serial@10000000".
func (n *Node) Lookup(path string) *Node {
	cur := n
	start := 1
	for i := 1; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if i > start {
				if cur = cur.Child(path[start:i]); cur == nil {
					return nil
				}
			}
			start = i + 1
		}
	}
	return cur
}

// U32s decodes a property as cells.
func (n *Node) U32s(prop string) []uint32 {
	v := n.Props[prop]
	out := make([]uint32, len(v)/4)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(v[4*i:])
	}
	return out
}

// String decodes a string property (the first string of a list).
func (n *Node) String(prop string) string {
	v := n.Props[prop]
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// ErrFormat reports a malformed blob.
var ErrFormat = errors.New("fdt: malformed blob")

// Parse decodes a blob into its root node, checking every offset.
func Parse(blob []byte) (*Node, error) {
	if len(blob) < headerSize || binary.BigEndian.Uint32(blob) != magic {
		return nil, fmt.Errorf("%w: bad header", ErrFormat)
	}
	be := binary.BigEndian
	total := be.Uint32(blob[4:])
	structOff, strOff := be.Uint32(blob[8:]), be.Uint32(blob[12:])
	strSize, structSize := be.Uint32(blob[32:]), be.Uint32(blob[36:])
	if uint64(total) > uint64(len(blob)) || uint64(structOff)+uint64(structSize) > uint64(total) ||
		uint64(strOff)+uint64(strSize) > uint64(total) {
		return nil, fmt.Errorf("%w: blocks outside the blob", ErrFormat)
	}
	s := blob[structOff : structOff+structSize]
	strs := blob[strOff : strOff+strSize]
	pos := 0
	word := func() (uint32, bool) {
		if pos+4 > len(s) {
			return 0, false
		}
		v := be.Uint32(s[pos:])
		pos += 4
		return v, true
	}
	cstr := func(b []byte, at int) (string, int, bool) {
		for i := at; i < len(b); i++ {
			if b[i] == 0 {
				return string(b[at:i]), i + 1, true
			}
		}
		return "", 0, false
	}
	var stack []*Node
	var root *Node
	for {
		tok, ok := word()
		if !ok {
			return nil, fmt.Errorf("%w: structure block ends early", ErrFormat)
		}
		switch tok {
		case tokBegin:
			name, next, ok := cstr(s, pos)
			if !ok {
				return nil, fmt.Errorf("%w: unterminated node name", ErrFormat)
			}
			pos = (next + 3) &^ 3
			n := &Node{Name: name, Props: map[string][]byte{}}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, n)
			} else if root != nil {
				return nil, fmt.Errorf("%w: second root", ErrFormat)
			} else {
				root = n
			}
			stack = append(stack, n)
		case tokEnd:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unbalanced end", ErrFormat)
			}
			stack = stack[:len(stack)-1]
		case tokProp:
			l, ok1 := word()
			off, ok2 := word()
			if !ok1 || !ok2 || len(stack) == 0 || uint64(pos)+uint64(l) > uint64(len(s)) {
				return nil, fmt.Errorf("%w: bad property", ErrFormat)
			}
			name, _, ok := cstr(strs, int(off))
			if !ok || int(off) >= len(strs) {
				return nil, fmt.Errorf("%w: bad property name offset", ErrFormat)
			}
			n := stack[len(stack)-1]
			n.Props[name] = s[pos : pos+int(l)]
			n.Order = append(n.Order, name)
			pos = (pos + int(l) + 3) &^ 3
		case tokNop:
		case tokEndTree:
			if len(stack) != 0 || root == nil {
				return nil, fmt.Errorf("%w: tree ends inside a node", ErrFormat)
			}
			return root, nil
		default:
			return nil, fmt.Errorf("%w: token %#x", ErrFormat, tok)
		}
	}
}
