package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// auditPlainCases are records with whether auditPlain takes them. Every one
// it takes, qCheckAudit must take too (TestAuditPlainAgrees); those it does
// not are left to qCheckAudit, which accepts some of them.
var auditPlainCases = []struct {
	raw   string
	plain bool
}{
	{`{"@type":"AuditLog","documentId":"d1","accountId":"acc","containerId":"atom-1","userId":"ann@example.com","date":"2026-03-02T10:15:30Z","type":"as.atom.process","action":"ATTACH","modifier":"NONE","level":"INFO","source":"API","message":"Caf\u00e9 \"q\" \\ 100%","AuditLogProperty":[{"name":"ENVIRONMENT_ID","value":"env-1"},{"name":"NEW_VALUE","value":"b","previousValue":"a"}]}`, true},
	{` { "documentId" : "d2" , "date" : "2026-03-02T12:15:30.250+02:00" , "userId" : null , "AuditLogProperty" : null } `, true},
	{`{"documentId":"d3","date":"2026-03-02T10:15:30.123456789Z","extra":{"a":[1,-2.5e3,true,false,null,{"b":"c"}]}}`, true},
	{`{"documentId":"d4","date":"2024-02-29T00:00:00-14:59","AuditLogProperty":[]}`, true},
	{`{"documentId":"d7","date":"2026-03-02T10:15:30Z","AuditLogProperty":[{"previousvalue":"z","other":5},{}]}`, true},
	{`{"documentId":"d9","date":"0001-01-01T00:00:00Z"}`, true},
	{`{"documentId":"d4","date":"2026-02-30T10:15:30Z"}`, false},
	{`{"documentId":"d4","date":"2100-02-29T10:15:30Z"}`, false},
	{`{"documentId":"d5","date":"2026-03-02T10:15:30Z","userId":5}`, false},
	{`{"documentId":"d6","date":"2026-03-02T10:15:30Z","AuditLogProperty":{"name":"x"}}`, false},
	{`{"documentId":"d6","date":"2026-03-02T10:15:30Z","AuditLogProperty":["x"]}`, false},
	{`{"documentId":"d6","date":"2026-03-02T10:15:30Z","AuditLogProperty":[{"value":1}]}`, false},
	{`{"documentId":"","date":"2026-03-02T10:15:30Z"}`, false},
	{`{"documentId":null,"date":"2026-03-02T10:15:30Z"}`, false},
	{`{"date":"2026-03-02T10:15:30Z"}`, false},
	{`{"documentId":"d8"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T24:00:00Z"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T23:59:60Z"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30z"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30.Z"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30+15:00"}`, false},
	{`{"documentId":"d8","date":"2026-03-02 10:15:30Z"}`, false},
	{`{"documentId":"d8","date":"2026\u002d03-02T10:15:30Z"}`, false},
	{`{"document\u0049d":"d8","date":"2026-03-02T10:15:30Z"}`, false},
	{`{"documentId":"d8","documentId":"d9","date":"2026-03-02T10:15:30Z"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30Z","type":"a","type":"b"}`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30Z"} x`, false},
	{`{"documentId":"d8","date":"2026-03-02T10:15:30Z",}`, false},
	{`["x"]`, false}, {`"x"`, false}, {`null`, false}, {`{}`, false}, {``, false},
}

func TestAuditPlain(t *testing.T) {
	for _, c := range auditPlainCases {
		if got := auditPlain([]byte(c.raw)); got != c.plain {
			t.Errorf("auditPlain(%s) = %v; want %v", c.raw, got, c.plain)
		}
	}
}

// checkAuditPlainAgrees fails if auditPlain takes raw and qCheckAudit does not.
func checkAuditPlainAgrees(t *testing.T, db *DB, raw []byte) {
	t.Helper()
	if !auditPlain(raw) {
		return
	}
	var (
		bad      int
		why      string
		document sql.NullString
	)
	err := db.reader.QueryRowContext(context.Background(), qCheckAudit, "["+string(raw)+"]").Scan(&bad, &why, &document)
	if !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("auditPlain takes %s; qCheckAudit: %v %q", raw, err, why)
	}
}

func TestAuditPlainAgrees(t *testing.T) {
	db := openAuditPlainDB(t)
	for _, c := range auditPlainCases {
		checkAuditPlainAgrees(t, db, []byte(c.raw))
	}
	// What the export meets: the simulator's records, and UpsertAudit's.
	for _, r := range auditFixture(t, db, 50) {
		raw, err := json.Marshal(map[string]any{"documentId": r.DocumentID, "date": r.Date.Format(time.RFC3339Nano),
			"userId": r.UserID, "message": r.Message})
		if err != nil {
			t.Fatal(err)
		}
		if !auditPlain(raw) {
			t.Errorf("auditPlain(%s) = false: the shortcut would be missed", raw)
		}
	}
}

func openAuditPlainDB(tb testing.TB) *DB {
	tb.Helper()
	db, err := Open(context.Background(), filepath.Join(tb.TempDir(), "plain.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// FuzzAuditPlainAgrees holds auditPlain to qCheckAudit: a record the shortcut
// takes is one the SQL check takes. Seeds in testdata/fuzz/FuzzAuditPlainAgrees.
func FuzzAuditPlainAgrees(f *testing.F) {
	for _, c := range auditPlainCases {
		f.Add([]byte(c.raw))
	}
	db := openAuditPlainDB(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			if auditPlain(raw) {
				// Not a failure in itself (SQLite refuses the page when it
				// reads it), but the scanner is meant to refuse it first
				// where it can.
				t.Skip()
			}
			return
		}
		checkAuditPlainAgrees(t, db, raw)
	})
}

// checkAuditWhyAgrees fails if auditWhy, the PostgreSQL store's check of a
// record, and qCheckAudit, the SQLite store's, disagree on raw: whether it
// is refused, and with what words.
func checkAuditWhyAgrees(t *testing.T, db *DB, raw []byte) {
	t.Helper()
	var (
		bad      int
		why      string
		document sql.NullString
	)
	err := db.reader.QueryRowContext(context.Background(), qCheckAudit, "["+string(raw)+"]").Scan(&bad, &why, &document)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Skipf("SQLite cannot read %s: %v", raw, err)
	}
	got, doc := auditWhy(raw)
	if errors.Is(err, sql.ErrNoRows) {
		why = ""
		// The PostgreSQL store takes the dates plainRFC3339 takes: not the
		// year 0000 (PostgreSQL has none) nor 9999, an offset beyond ±14:59,
		// or more than nine digits of a second, which SQLite reads.
		if strings.HasPrefix(got, "has no RFC 3339 date") {
			return
		}
	}
	if got != why || got != "" && doc != document.String && why != "has no documentId" {
		t.Fatalf("%s:\nauditWhy    %q (%q)\nqCheckAudit %q (%q)", raw, got, doc, why, document.String)
	}
}

func TestAuditWhyAgrees(t *testing.T) {
	db := openAuditPlainDB(t)
	for _, c := range auditPlainCases {
		if strings.Contains(c.raw, `"documentId":"d8","documentId"`) || strings.Contains(c.raw, `"type":"a","type"`) ||
			!json.Valid([]byte(c.raw)) {
			continue // a repeated key: SQLite reads the first, PostgreSQL's jsonb the last
		}
		checkAuditWhyAgrees(t, db, []byte(c.raw))
	}
}

// repeatedKey reports whether some object in raw names a key twice (or two
// keys that differ only in their escapes, which SQLite and Go both unescape).
func repeatedKey(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: v == '{', key: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.keys[v] {
					return true
				}
				top.keys[v] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// FuzzAuditWhyAgrees holds the PostgreSQL store's check of a record
// (auditWhy) to the SQLite store's (qCheckAudit). Seeds in
// testdata/fuzz/FuzzAuditWhyAgrees.
func FuzzAuditWhyAgrees(f *testing.F) {
	for _, c := range auditPlainCases {
		f.Add([]byte(c.raw))
	}
	db := openAuditPlainDB(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) || !utf8.Valid(raw) || repeatedKey(raw) || bytes.Contains(bytes.ToLower(raw), []byte(`\ud`)) {
			t.Skip()
		}
		checkAuditWhyAgrees(t, db, raw)
	})
}
