package store

import "strings"

// auditPlain reports whether raw is an AuditLog record that qCheckAudit is
// certain to accept, decided in Go by one pass over its bytes: a JSON object
// whose documentId is a non-empty string, whose date is an RFC 3339 date-time
// of a real calendar day, whose other named fields are strings or null, and
// whose AuditLogProperty is null or a list of objects with string or null
// name, value and previousValue.
//
// It is only a shortcut: false means "not sure", never "bad". Anything
// unusual — an escape in a key or in the date, a key given twice, a leap
// second, a year or an offset at the edge of SQLite's range — is false, and
// the page is then checked by qCheckAudit, which has the last word and
// names the record it refuses. The SQL check cost a third of an export's CPU
// (issue 16: ~1 ms of every 100-record page); the platform's records are
// all plain, so the check is run only for a page that is not.
// FuzzAuditPlainAgrees holds it to qCheckAudit.
func auditPlain(raw []byte) bool {
	s := jscan{b: raw}
	s.ws()
	var seen uint16
	ok := s.object(func(key []byte) bool {
		bit := auditFieldBit(key)
		if bit != 0 {
			if seen&bit != 0 {
				return false
			}
			seen |= bit
		}
		switch {
		case bit == fieldDocumentID:
			v, _, ok := s.str()
			return ok && len(v) > 0
		case bit == fieldDate:
			v, esc, ok := s.str()
			return ok && !esc && plainRFC3339(v)
		case bit == fieldProperties:
			return s.properties()
		case bit != 0:
			return s.strOrNull()
		default:
			return s.skip(0)
		}
	})
	s.ws()
	return ok && s.i == len(s.b) && seen&(fieldDocumentID|fieldDate) == fieldDocumentID|fieldDate
}

// object reads an object whose keys have no escapes, handing each value to
// field (positioned at it); false when the object is not that or field says
// so.
func (s *jscan) object(field func(key []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		s.ws()
		key, esc, ok := s.str()
		if !ok || esc {
			return false
		}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		if !field(key) {
			return false
		}
		s.ws()
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// The record's fields qCheckAudit looks at, as bits of a set.
const (
	fieldDocumentID uint16 = 1 << iota
	fieldDate
	fieldProperties
	fieldString // accountId, containerId, userId, type, action, modifier, level, source, message, @type
)

// auditFieldBit returns key's bit; the string fields each have their own, so
// that a repeated one is seen.
func auditFieldBit(key []byte) uint16 {
	switch string(key) {
	case "documentId":
		return fieldDocumentID
	case "date":
		return fieldDate
	case "AuditLogProperty":
		return fieldProperties
	}
	for i, f := range [...]string{"accountId", "containerId", "userId", "type", "action", "modifier", "level",
		"source", "message", "@type"} {
		if string(key) == f {
			return fieldString << i
		}
	}
	return 0
}

// properties reads an AuditLogProperty value: null, or a list of objects whose
// name, value, previousValue and previousvalue are strings or null.
func (s *jscan) properties() bool {
	if s.null() {
		return true
	}
	if !s.eat('[') {
		return false
	}
	s.ws()
	if s.eat(']') {
		return true
	}
	for {
		s.ws()
		if !s.object(func(key []byte) bool {
			switch string(key) {
			case "name", "value", "previousValue", "previousvalue":
				return s.strOrNull()
			default:
				return s.skip(0)
			}
		}) {
			return false
		}
		s.ws()
		if s.eat(']') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// plainRFC3339 reports whether d is yyyy-mm-ddThh:mm:ss[.f{1,9}](Z|±hh:mm) of
// a real calendar day and time, with a year of 0001–9998, an offset of at
// most ±14:59 and no leap second: a date qCheckAudit takes.
func plainRFC3339(d []byte) bool {
	if len(d) < 20 {
		return false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range d[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	if d[4] != '-' || d[7] != '-' || d[10] != 'T' || d[13] != ':' || d[16] != ':' {
		return false
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 1 || year > 9998 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return false
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month-1]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	if day > days {
		return false
	}
	rest := d[19:]
	z := 1
	if rest[len(rest)-1] != 'Z' {
		z = 6
		if len(rest) < 6 {
			return false
		}
		o := rest[len(rest)-6:]
		if o[0] != '+' && o[0] != '-' || o[3] != ':' {
			return false
		}
		if h, m := num(len(d)-5, 2), num(len(d)-2, 2); h < 0 || h > 14 || m < 0 || m > 59 {
			return false
		}
	}
	frac := rest[:len(rest)-z]
	if len(frac) == 0 {
		return true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return false
	}
	for _, c := range frac[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jscan reads JSON from b at i, one token at a time; a method that finds
// something else than it reads returns false (or ok = false).
type jscan struct {
	b []byte
	i int
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jscan) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jscan) null() bool {
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// str reads a string and returns its raw content (escapes as written) and
// whether it has any escape.
func (s *jscan) str() (v []byte, esc, ok bool) {
	if !s.eat('"') {
		return nil, false, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], esc, true
		case c == '\\':
			esc = true
			s.i += 2
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

func (s *jscan) strOrNull() bool {
	if s.null() {
		return true
	}
	_, _, ok := s.str()
	return ok
}

// skip reads any value; depth bounds the nesting.
func (s *jscan) skip(depth int) bool {
	if depth > 64 || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		s.ws()
		if s.eat(end) {
			return true
		}
		for {
			s.ws()
			if c == '{' {
				if _, _, ok := s.str(); !ok {
					return false
				}
				s.ws()
				if !s.eat(':') {
					return false
				}
				s.ws()
			}
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(end) {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return true
			}
		}
		// A number: its characters. One that is not JSON's is SQLite's to
		// refuse when it reads the page (the statement fails, as the check
		// would have).
		start := s.i
		for s.i < len(s.b) && strings.IndexByte("+-.0123456789eE", s.b[s.i]) >= 0 {
			s.i++
		}
		return s.i > start
	}
}
