package qmp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the streaming reader. QEMU's texts are kept; the size and count limits are
// lower than QEMU's (64 MiB, 2 Mi tokens) because no snapvm command needs more and they
// bound the memory a single client can make the monitor hold.
const (
	MaxTokenSize  = 16 << 20 // bytes of tokens in one message (whitespace excluded)
	MaxTokenCount = 512 << 10
	MaxNesting    = 1024
)

// ParseError is a JSON syntax or limit error; its text is what QEMU reports as the
// GenericError description.
type ParseError struct{ Msg string }

func (e *ParseError) Error() string { return e.Msg }

type tokType uint8

const (
	tokLCurly tokType = iota + 1
	tokRCurly
	tokLSquare
	tokRSquare
	tokColon
	tokComma
	tokString
	tokInteger
	tokFloat
	tokKeyword
)

// lexer states
type lexState uint8

const (
	lexStart lexState = iota
	lexRecovery
	lexDQ
	lexDQEscape
	lexSQ
	lexSQEscape
	lexKeyword
	lexNeg
	lexZero
	lexDigits
	lexMantissa       // after '.'
	lexMantissaDigits // digits after '.'
	lexExpE           // after 'e'
	lexExpSign
	lexExpDigits
)

// Stream turns a byte stream into JSON values the way QEMU's json-lexer and json-streamer
// do: it is not line based, a message ends when its braces and brackets balance, a stray
// byte produces an error and the lexer skips to the next structural or control character,
// and limits are enforced while reading so memory stays bounded.
//
// Feed calls emit once per message with either a value or a *ParseError.
type Stream struct {
	// Limits; zero means the package's MaxTokenSize, MaxTokenCount and MaxNesting.
	MaxSize, MaxCount, MaxDepth int

	state lexState
	tok   []byte // text of the token being lexed

	braces, brackets int
	tokenSize        int
	tokenCount       int
	p                parser
}

// Feed lexes data and calls emit for every message completed by it.
func (s *Stream) Feed(data []byte, emit func(Value, error)) {
	for _, c := range data {
		s.feedByte(c, emit)
	}
}

func isStructural(c byte) bool {
	switch c {
	case '[', ']', '{', '}', ':', ',':
		return true
	}
	return false
}

func (s *Stream) feedByte(c byte, emit func(Value, error)) {
	for s.step(c, emit) {
	}
	// A single token may not grow without bound either.
	if len(s.tok) > s.maxSize() {
		s.tok = s.tok[:0]
		s.state = lexStart
		s.fail(emit, "JSON token size limit exceeded")
	}
}

// step processes c in the current state. It returns true when c must be looked at again
// in the new state (QEMU's LOOKAHEAD).
func (s *Stream) step(c byte, emit func(Value, error)) bool {
	switch s.state {
	case lexRecovery:
		if c < 0x20 && c != '\t' || c >= 0xFE || isStructural(c) {
			s.state = lexStart
			return true
		}
		return false
	case lexStart:
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			return false
		case c == '"':
			s.tok = append(s.tok[:0], c)
			s.state = lexDQ
		case c == '\'':
			s.tok = append(s.tok[:0], c)
			s.state = lexSQ
		case c == '-':
			s.tok = append(s.tok[:0], c)
			s.state = lexNeg
		case c == '0':
			s.tok = append(s.tok[:0], c)
			s.state = lexZero
		case c >= '1' && c <= '9':
			s.tok = append(s.tok[:0], c)
			s.state = lexDigits
		case c >= 'a' && c <= 'z':
			s.tok = append(s.tok[:0], c)
			s.state = lexKeyword
		case c == '{':
			s.token(tokLCurly, "{", emit)
		case c == '}':
			s.token(tokRCurly, "}", emit)
		case c == '[':
			s.token(tokLSquare, "[", emit)
		case c == ']':
			s.token(tokRSquare, "]", emit)
		case c == ':':
			s.token(tokColon, ":", emit)
		case c == ',':
			s.token(tokComma, ",", emit)
		default:
			s.tok = append(s.tok[:0], c)
			s.lexError(emit)
		}
		return false
	case lexDQ, lexSQ:
		quote := byte('"')
		if s.state == lexSQ {
			quote = '\''
		}
		switch {
		case c < 0x20 || c >= 0xFE:
			s.tok = append(s.tok, c)
			s.lexError(emit)
		case c == '\\':
			s.tok = append(s.tok, c)
			s.state++ // the escape state follows each string state
		case c == quote:
			s.tok = append(s.tok, c)
			s.state = lexStart
			s.token(tokString, string(s.tok), emit)
		default:
			s.tok = append(s.tok, c)
		}
		return false
	case lexDQEscape, lexSQEscape:
		s.tok = append(s.tok, c)
		if c < 0x20 || c >= 0xFE {
			s.lexError(emit)
		} else {
			s.state--
		}
		return false
	case lexKeyword:
		if c >= 'a' && c <= 'z' {
			s.tok = append(s.tok, c)
			return false
		}
		return s.terminal(tokKeyword, emit)
	case lexNeg:
		switch {
		case c == '0':
			s.state = lexZero
		case c >= '1' && c <= '9':
			s.state = lexDigits
		default:
			s.tok = append(s.tok, c)
			s.lexError(emit)
			return false
		}
		s.tok = append(s.tok, c)
		return false
	case lexZero, lexDigits:
		switch {
		case c >= '0' && c <= '9':
			if s.state == lexZero {
				s.tok = append(s.tok, c)
				s.lexError(emit)
				return false
			}
		case c == '.':
			s.state = lexMantissa
		case c == 'e' || c == 'E':
			s.state = lexExpE
		default:
			return s.terminal(tokInteger, emit)
		}
		s.tok = append(s.tok, c)
		return false
	case lexMantissa, lexExpSign:
		s.tok = append(s.tok, c)
		if c >= '0' && c <= '9' {
			if s.state == lexMantissa {
				s.state = lexMantissaDigits
			} else {
				s.state = lexExpDigits
			}
		} else {
			s.lexError(emit)
		}
		return false
	case lexMantissaDigits:
		switch {
		case c >= '0' && c <= '9':
		case c == 'e' || c == 'E':
			s.state = lexExpE
		default:
			return s.terminal(tokFloat, emit)
		}
		s.tok = append(s.tok, c)
		return false
	case lexExpE:
		s.tok = append(s.tok, c)
		switch {
		case c == '+' || c == '-':
			s.state = lexExpSign
		case c >= '0' && c <= '9':
			s.state = lexExpDigits
		default:
			s.lexError(emit)
		}
		return false
	case lexExpDigits:
		if c >= '0' && c <= '9' {
			s.tok = append(s.tok, c)
			return false
		}
		return s.terminal(tokFloat, emit)
	}
	return false
}

// terminal ends a number or keyword token; the current byte is then looked at again from the
// start state (QEMU's TERMINAL: any byte ends such a token).
func (s *Stream) terminal(t tokType, emit func(Value, error)) bool {
	s.state = lexStart
	s.token(t, string(s.tok), emit)
	return true
}

// lexError reports the stray text and enters recovery, dropping the message in progress.
func (s *Stream) lexError(emit func(Value, error)) {
	msg := "JSON parse error, stray '" + string(s.tok) + "'"
	s.tok = s.tok[:0]
	s.state = lexRecovery
	s.fail(emit, msg)
}

func (s *Stream) maxSize() int { return or(s.MaxSize, MaxTokenSize) }

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func (s *Stream) reset() {
	s.braces, s.brackets = 0, 0
	s.tokenSize, s.tokenCount = 0, 0
	s.p = parser{}
}

func (s *Stream) fail(emit func(Value, error), msg string) {
	s.reset()
	emit(Value{}, &ParseError{Msg: msg})
}

// token is the streamer: it counts nesting, enforces limits, feeds the parser and ends the
// message when the nesting balances (or goes negative).
func (s *Stream) token(t tokType, text string, emit func(Value, error)) {
	switch t {
	case tokLCurly:
		s.braces++
	case tokRCurly:
		s.braces--
	case tokLSquare:
		s.brackets++
	case tokRSquare:
		s.brackets--
	}
	if s.tokenSize+len(text)+1 > s.maxSize() {
		s.fail(emit, "JSON token size limit exceeded")
		return
	}
	if s.tokenCount+1 > or(s.MaxCount, MaxTokenCount) {
		s.fail(emit, "JSON token count limit exceeded")
		return
	}
	if s.braces+s.brackets > or(s.MaxDepth, MaxNesting) {
		s.fail(emit, "JSON nesting depth limit exceeded")
		return
	}
	s.tokenSize += len(text)
	s.tokenCount++
	s.p.feed(t, text)
	if (s.braces > 0 || s.brackets > 0) && s.braces >= 0 && s.brackets >= 0 {
		return
	}
	p := s.p
	s.reset()
	switch {
	case p.err != "":
		emit(Value{}, &ParseError{Msg: "JSON parse error, " + p.err})
	case !p.done:
		emit(Value{}, &ParseError{Msg: "JSON parse error, premature EOI"})
	default:
		emit(p.result, nil)
	}
}

// parser is a push-down version of QEMU's recursive-descent json-parser: tokens arrive one at
// a time, the first error wins and later tokens of the message are ignored.
type parser struct {
	stack  []frame
	err    string
	done   bool
	result Value
}

type frameState uint8

const (
	objFirst frameState = iota // after '{': a key or '}'
	objKey                     // after ',': a key
	objColon                   // after a key
	objValue                   // after ':'
	objSep                     // after a member: ',' or '}'
	arrFirst                   // after '[': a value or ']'
	arrValue                   // after ',': a value
	arrSep                     // after an element: ',' or ']'
)

type frame struct {
	state frameState
	v     Value
	key   string
	seen  map[string]struct{} // member names, once the object is big enough to need it
}

// hasKey reports a duplicate member name without quadratic cost on huge objects.
func (f *frame) hasKey(k string) bool {
	if f.seen == nil {
		if len(f.v.Keys) < 16 {
			_, dup := f.v.Get(k)
			return dup
		}
		f.seen = make(map[string]struct{}, 2*len(f.v.Keys))
		for _, x := range f.v.Keys {
			f.seen[x] = struct{}{}
		}
	}
	_, dup := f.seen[k]
	return dup
}

func (p *parser) setErr(msg string) {
	if p.err == "" {
		p.err = msg
	}
}

func (p *parser) feed(t tokType, text string) {
	if p.err != "" || p.done {
		if p.done {
			p.setErr("expecting value") // cannot happen: messages end when a value completes
		}
		return
	}
	if n := len(p.stack); n > 0 {
		f := &p.stack[n-1]
		switch f.state {
		case objFirst:
			if t == tokRCurly {
				p.pop()
				return
			}
		case objColon:
			if t != tokColon {
				p.setErr("missing : in object pair")
				return
			}
			f.state = objValue
			return
		case objSep:
			switch t {
			case tokRCurly:
				p.pop()
			case tokComma:
				f.state = objKey
			default:
				p.setErr("expected separator in dict")
			}
			return
		case arrFirst:
			if t == tokRSquare {
				p.pop()
				return
			}
		case arrSep:
			switch t {
			case tokRSquare:
				p.pop()
			case tokComma:
				f.state = arrValue
			default:
				p.setErr("expected separator in list")
			}
			return
		}
	}
	// A value must start here.
	switch t {
	case tokLCurly:
		p.stack = append(p.stack, frame{state: objFirst, v: Value{Kind: KindObject}})
	case tokLSquare:
		p.stack = append(p.stack, frame{state: arrFirst, v: Value{Kind: KindArray}})
	case tokString:
		s, err := unquote(text)
		if err != "" {
			p.setErr(err)
			return
		}
		p.deliver(Value{Kind: KindString, Str: s})
	case tokInteger, tokFloat:
		p.deliver(numberValue(text, t == tokFloat))
	case tokKeyword:
		switch text {
		case "true":
			p.deliver(Value{Kind: KindBool, Bool: true})
		case "false":
			p.deliver(Value{Kind: KindBool})
		case "null":
			p.deliver(Value{Kind: KindNull})
		default:
			p.setErr("invalid keyword '" + text + "'")
		}
	default:
		p.setErr("expecting value")
	}
}

func (p *parser) pop() {
	v := p.stack[len(p.stack)-1].v
	p.stack = p.stack[:len(p.stack)-1]
	p.deliver(v)
}

// deliver hands a completed value to the enclosing container (or ends the message).
func (p *parser) deliver(v Value) {
	n := len(p.stack)
	if n == 0 {
		p.done, p.result = true, v
		return
	}
	f := &p.stack[n-1]
	switch f.state {
	case objFirst, objKey:
		if v.Kind != KindString {
			p.setErr("key is not a string in object")
			return
		}
		f.key = v.Str
		f.state = objColon
	case objValue:
		if f.hasKey(f.key) {
			p.setErr("duplicate key")
			return
		}
		if f.seen != nil {
			f.seen[f.key] = struct{}{}
		}
		f.v.Keys = append(f.v.Keys, f.key)
		f.v.Items = append(f.v.Items, v)
		f.state = objSep
	case arrFirst, arrValue:
		f.v.Items = append(f.v.Items, v)
		f.state = arrSep
	}
}

// unquote decodes a string token (double or single quoted). It returns QEMU's message on
// error.
func unquote(tok string) (string, string) {
	body := tok[1 : len(tok)-1]
	if !strings.ContainsAny(body, "\\") && utf8.ValidString(body) {
		return body, ""
	}
	// QEMU quotes a bad \u escape as the 6 (or 12) bytes from the backslash, which
	// may run into the closing quote; offsets below are into body, tok is body+1.
	var sb strings.Builder
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			r, size := utf8.DecodeRuneInString(body[i:])
			if r == utf8.RuneError && size <= 1 {
				// QEMU accepts the modified-UTF-8 encoding of NUL.
				if c == 0xC0 && i+1 < len(body) && body[i+1] == 0x80 {
					sb.WriteByte(0)
					i += 2
					continue
				}
				return "", "invalid UTF-8 sequence in string"
			}
			sb.WriteString(body[i : i+size])
			i += size
			continue
		}
		if i+1 >= len(body) {
			return "", "invalid escape sequence in string"
		}
		e := body[i+1]
		switch e {
		case '"', '\'', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			start := i
			cp := hex4(body, i+2)
			i += 6
			if cp >= 0xD800 && cp <= 0xDBFF && i+1 < len(body) && body[i] == '\\' && body[i+1] == 'u' {
				if lo := hex4(body, i+2); lo >= 0xDC00 && lo <= 0xDFFF {
					cp = 0x10000 + (cp-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				} else {
					cp = -1
				}
			}
			if cp < 0 || cp >= 0xD800 && cp <= 0xDFFF || cp > utf8.MaxRune {
				end := min(i+1, len(tok))
				return "", tok[start+1:end] + " is not a valid Unicode character"
			}
			sb.WriteRune(rune(cp))
			continue
		default:
			return "", "invalid escape sequence in string"
		}
		i += 2
	}
	return sb.String(), ""
}

func hex4(s string, at int) int {
	if at+4 > len(s) {
		return -1
	}
	n, err := strconv.ParseUint(s[at:at+4], 16, 32)
	if err != nil || strings.ContainsAny(s[at:at+4], "+-") {
		return -1
	}
	return int(n)
}

// ParseValue parses exactly one JSON value from b (QEMU syntax: single quotes allowed,
// duplicate keys refused).
func ParseValue(b []byte) (Value, error) {
	var s Stream
	var out []Value
	var first error
	s.Feed(b, func(v Value, err error) {
		if err != nil && first == nil {
			first = err
		}
		out = append(out, v)
	})
	s.Feed([]byte{' '}, func(v Value, err error) { // a trailing number or keyword ends at a space
		if err != nil && first == nil {
			first = err
		}
		out = append(out, v)
	})
	if first != nil {
		return Value{}, first
	}
	if s.state != lexStart || s.tokenCount > 0 {
		return Value{}, &ParseError{Msg: "JSON parse error, premature EOI"}
	}
	if len(out) != 1 {
		return Value{}, errors.New(fmt.Sprintf("expected one JSON value, got %d", len(out)))
	}
	return out[0], nil
}
