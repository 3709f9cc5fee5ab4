package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// posIndex maps every key of a TOML document to the line it is written on.
//
// BurntSushi/toml reports lines for syntax errors only; MetaData knows keys by
// dotted name, without array indices and without lines. The index is built by
// a small scanner over the source text that follows table headers ([a.b]),
// arrays of tables ([[job]], counted per parent so [[job.filter]] belongs to
// the last [[job]]), dotted keys, inline tables and arrays (elements get an
// index, so `events = [..., "x"]` can point at the element's line).
//
// The scanner assumes text the TOML parser has accepted, but never panics and
// always makes progress on any input.
type posIndex struct {
	lines map[string]int // path → first line it appears on
	flat  map[string]int // path without array indices (for tests)
	arr   map[string]int // array-of-tables path → number of elements so far
}

// A path is a list of segments; an array index is a segment idxMark+"N".
const idxMark = "\x00#"

func idx(i int) string { return idxMark + strconv.Itoa(i) }

func pathKey(segs []string) string { return strings.Join(segs, "\x00.") }

func flatKey(segs []string) string {
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		if !strings.HasPrefix(s, idxMark) {
			out = append(out, s)
		}
	}
	return strings.Join(out, "\x00.")
}

// Line returns the line of path, or of its nearest ancestor that has one; 0 if
// none does.
func (p *posIndex) Line(path ...string) int {
	if p == nil {
		return 0
	}
	for n := len(path); n > 0; n-- {
		if l, ok := p.lines[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 0
}

// Has reports whether path itself was seen.
func (p *posIndex) Has(path ...string) bool {
	_, ok := p.lines[pathKey(path)]
	return ok
}

func (p *posIndex) record(path []string, line int) {
	for n := 1; n <= len(path); n++ {
		k := pathKey(path[:n])
		if _, ok := p.lines[k]; !ok {
			p.lines[k] = line
		}
		f := flatKey(path[:n])
		if _, ok := p.flat[f]; !ok {
			p.flat[f] = line
		}
	}
}

// buildIndex scans src.
func buildIndex(src string) *posIndex {
	s := &scanner{src: src, line: 1, ix: &posIndex{
		lines: map[string]int{}, flat: map[string]int{}, arr: map[string]int{},
	}}
	s.document()
	return s.ix
}

type scanner struct {
	src  string
	pos  int
	line int
	cur  []string // current table, resolved (with indices)
	ix   *posIndex
	// depth bounds recursion into nested arrays and inline tables.
	depth int
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) has(prefix string) bool { return strings.HasPrefix(s.src[s.pos:], prefix) }

func (s *scanner) adv() {
	if s.eof() {
		return
	}
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

// skipSpace skips blanks; with nl, also newlines and comments.
func (s *scanner) skipSpace(nl bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.adv()
		case nl && c == '\n':
			s.adv()
		case nl && c == '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) skipComment() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

func (s *scanner) document() {
	for !s.eof() {
		start := s.pos
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == '[' {
			s.header()
		} else {
			s.keyValue(s.cur)
		}
		s.skipSpace(false)
		if s.peek() == '#' {
			s.skipComment()
		}
		if s.pos == start { // no progress: skip the offending line
			s.skipLine()
			if s.pos == start {
				s.adv()
			}
		}
	}
}

// header scans [a.b] or [[a.b]].
func (s *scanner) header() {
	line := s.line
	array := s.has("[[")
	if array {
		s.pos += 2
	} else {
		s.pos++
	}
	s.skipSpace(false)
	segs := s.key()
	s.skipSpace(false)
	if array && s.has("]]") {
		s.pos += 2
	} else if s.peek() == ']' {
		s.pos++
	}
	if len(segs) == 0 {
		s.skipLine()
		return
	}
	// Resolve every prefix that is an array of tables to its last element.
	var res []string
	for i, seg := range segs {
		res = append(res, seg)
		last := i == len(segs)-1
		if n := s.ix.arr[pathKey(res)]; n > 0 && !(last && array) {
			res = append(res, idx(n-1))
		}
	}
	if array {
		k := pathKey(res)
		n := s.ix.arr[k]
		s.ix.arr[k] = n + 1
		s.ix.record(res, line)
		res = append(res, idx(n))
	}
	s.ix.record(res, line)
	s.cur = res
}

// keyValue scans key = value, relative to base.
func (s *scanner) keyValue(base []string) {
	line := s.line
	segs := s.key()
	if len(segs) == 0 {
		return
	}
	path := append(append([]string(nil), base...), segs...)
	s.ix.record(path, line)
	s.skipSpace(false)
	if s.peek() != '=' {
		return
	}
	s.pos++
	s.skipSpace(false)
	s.value(path)
}

// key scans a possibly dotted key and returns its decoded segments.
func (s *scanner) key() []string {
	var segs []string
	for {
		s.skipSpace(false)
		var seg string
		switch c := s.peek(); {
		case c == '"':
			seg = s.basicString()
		case c == '\'':
			seg = s.literalString()
		case isBare(c):
			start := s.pos
			for !s.eof() && isBare(s.peek()) {
				s.pos++
			}
			seg = s.src[start:s.pos]
		default:
			return segs
		}
		segs = append(segs, seg)
		s.skipSpace(false)
		if s.peek() != '.' {
			return segs
		}
		s.pos++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value scans one value; inline tables and arrays record their members under path.
func (s *scanner) value(path []string) {
	if s.depth > 64 {
		s.skipLine()
		return
	}
	s.depth++
	defer func() { s.depth-- }()
	switch {
	case s.has(`"""`):
		s.multiline(`"""`, true)
	case s.has(`'''`):
		s.multiline(`'''`, false)
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[':
		s.pos++
		for i := 0; ; i++ {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.peek() == ']' {
				s.pos++
				return
			}
			el := append(append([]string(nil), path...), idx(i))
			s.ix.record(el, s.line)
			start := s.pos
			s.value(el)
			s.skipSpace(true)
			if s.peek() == ',' {
				s.pos++
			} else if s.pos == start {
				s.adv() // not a value: make progress
			}
		}
	case s.peek() == '{':
		s.pos++
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.peek() == '}' {
				s.pos++
				return
			}
			start := s.pos
			s.keyValue(path)
			s.skipSpace(true)
			if s.peek() == ',' {
				s.pos++
			} else if s.pos == start {
				s.adv()
			}
		}
	default: // number, bool, datetime: up to a delimiter
		for !s.eof() {
			switch s.peek() {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.pos++
		}
	}
}

// basicString scans "..." and returns its decoded contents.
func (s *scanner) basicString() string {
	s.pos++ // opening quote
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch c {
		case '"':
			s.pos++
			return b.String()
		case '\n': // not valid TOML; stop here
			return b.String()
		case '\\':
			s.pos++
			s.escape(&b)
		default:
			b.WriteByte(c)
			s.pos++
		}
	}
	return b.String()
}

// escape decodes the escape after a backslash into b.
func (s *scanner) escape(b *strings.Builder) {
	if s.eof() {
		return
	}
	c := s.peek()
	s.pos++
	hex := func(n int) {
		if s.pos+n > len(s.src) {
			s.pos = len(s.src)
			return
		}
		v, err := strconv.ParseUint(s.src[s.pos:s.pos+n], 16, 32)
		s.pos += n
		if err == nil && utf8.ValidRune(rune(v)) {
			b.WriteRune(rune(v))
		}
	}
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'x':
		hex(2)
	case 'u':
		hex(4)
	case 'U':
		hex(8)
	case '\n':
		s.line++
	default: // '"', '\\' and anything else: the character itself
		b.WriteByte(c)
	}
}

// literalString scans '...' and returns its contents.
func (s *scanner) literalString() string {
	s.pos++
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.pos++
	}
	v := s.src[start:s.pos]
	if s.peek() == '\'' {
		s.pos++
	}
	return v
}

// multiline scans a """ or ”' string, counting its lines.
func (s *scanner) multiline(delim string, escapes bool) {
	s.pos += 3
	for !s.eof() {
		if escapes && s.peek() == '\\' {
			s.pos++
			s.adv()
			continue
		}
		if s.has(delim) {
			s.pos += 3
			// Up to two more quotes belong to the content: """a""""".
			for i := 0; i < 2 && s.peek() == delim[0]; i++ {
				s.pos++
			}
			return
		}
		s.adv()
	}
}
