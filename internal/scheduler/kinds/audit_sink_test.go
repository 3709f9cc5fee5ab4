package kinds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"runnerd/internal/atomapi"
	"runnerd/internal/store"
)

// auditRecords decodes a page of AuditLog records in Go, as the export did
// before the store read the page's JSON itself: the reference the store's
// decoding is held to (FuzzAuditSinkAgrees) and what fakeState keeps.
func auditRecords(raws []json.RawMessage) ([]store.AuditRecord, error) {
	out := make([]store.AuditRecord, 0, len(raws))
	for i, raw := range raws {
		var a atomapi.AuditLog
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("audit record %d: %w", i, err)
		}
		if a.DocumentID == "" {
			return nil, fmt.Errorf("audit record %d: no documentId", i)
		}
		date, err := atomapi.ParseTime(a.Date)
		if err != nil {
			return nil, fmt.Errorf("audit record %s: %w", a.DocumentID, err)
		}
		r := store.AuditRecord{
			DocumentID: a.DocumentID, AccountID: a.AccountID, ContainerID: a.ContainerID, UserID: a.UserID,
			Date: date, Type: a.AuditType, Action: a.Action, Modifier: a.Modifier, Level: a.Level,
			Source: a.Source, Message: a.Message,
		}
		for _, p := range a.AuditLogProperty {
			r.Properties = append(r.Properties, store.AuditProperty{Name: p.Name, Value: p.Value, PreviousValue: p.PreviousValue})
		}
		out = append(out, r)
	}
	return out, nil
}

// auditFields are the names the platform spells (atomsphere-api.md 4.2).
var auditFields = map[string]bool{"@type": true, "documentId": true, "accountId": true, "containerId": true,
	"userId": true, "date": true, "type": true, "action": true, "modifier": true, "level": true, "source": true,
	"message": true, "AuditLogProperty": true, "name": true, "value": true, "previousValue": true, "previousvalue": true}

// loneSurrogate matches a \u escape of half a UTF-16 pair, which Go decodes
// to U+FFFD and SQLite keeps.
var loneSurrogate = regexp.MustCompile(`(?i)\\ud[89a-f]`)

// comparable reports whether Go's decoding is a fair reference for raw: Go
// matches object keys case-insensitively and takes the last of duplicated
// keys, and replaces invalid UTF-8, where SQLite takes keys as spelled; the
// platform sends neither.
func comparable(raw []byte) bool {
	if !utf8.Valid(raw) || loneSurrogate.Match(raw) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var keys []map[string]bool // per open object
	var inArray []bool
	expectKey := func() bool { return len(inArray) > 0 && !inArray[len(inArray)-1] }
	isKey := true
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				keys, inArray, isKey = append(keys, map[string]bool{}), append(inArray, false), true
				continue
			case '[':
				inArray = append(inArray, true)
			case '}':
				keys, inArray = keys[:len(keys)-1], inArray[:len(inArray)-1]
			case ']':
				inArray = inArray[:len(inArray)-1]
			}
		case string:
			if expectKey() && isKey {
				m := keys[len(keys)-1]
				if m[v] {
					return false // duplicated
				}
				m[v] = true
				if !auditFields[v] {
					for f := range auditFields {
						if strings.EqualFold(f, v) {
							return false // a case variant Go would take
						}
					}
				}
				isKey = false
				continue
			}
		}
		if expectKey() {
			isKey = true
		}
	}
}

// rfc3339 is the shape of an RFC 3339 date-time.
var rfc3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)

// fracDigits is the number of fractional-second digits of an RFC 3339 time.
func fracDigits(date string) int {
	if len(date) < 20 || date[19] != '.' {
		return 0
	}
	n := 0
	for _, c := range date[20:] {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	return n
}

// checkAuditSinkAgrees stores one record through the store's JSON decoding
// and compares the outcome with Go's.
func checkAuditSinkAgrees(t *testing.T, db *store.DB, raw []byte) {
	t.Helper()
	ctx := context.Background()
	page := []json.RawMessage{raw}
	want, werr := auditRecords(page)
	n, err := db.UpsertAuditJSON(ctx, page)
	var a atomapi.AuditLog
	json.Unmarshal(raw, &a)
	if werr == nil && !rfc3339.MatchString(a.Date) {
		// Go's time.Parse takes more than RFC 3339 (a one-digit hour); the
		// platform writes RFC 3339, and that is what the store takes.
		return
	}
	if werr != nil {
		if err == nil && n > 0 {
			t.Fatalf("the store took %s, which Go refuses: %v", raw, werr)
		}
		return
	}
	if err != nil {
		t.Fatalf("the store refused %s, which Go takes as %+v: %v", raw, want[0], err)
	}
	if n == 0 {
		return // the same (date, documentId) as an earlier input: kept as it was
	}
	w := want[0]
	listed, err := db.ListAudit(ctx, store.AuditFilter{Since: w.Date.Add(-time.Millisecond), Until: w.Date.Add(2 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	var got []store.AuditRecord
	for _, r := range listed {
		if r.DocumentID == w.DocumentID {
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%s: stored %d, found %d by date and documentId", raw, n, len(got))
	}
	g := got[0]
	if len(g.Properties) == 0 {
		g.Properties = nil
	}
	// Go truncates to the millisecond, SQLite rounds to the nearest.
	if d := g.Date.Sub(w.Date); fracDigits(a.Date) > 3 && d >= 0 && d <= time.Millisecond {
		g.Date = w.Date
	}
	w.Date = w.Date.Truncate(time.Millisecond)
	if fracDigits(a.Date) > 3 {
		g.Date = g.Date.Truncate(time.Millisecond)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\nstore %+v\n   Go %+v", raw, g, w)
	}
}

// FuzzAuditSinkAgrees holds the store's reading of an AuditLog record's JSON
// to Go's decoding into atomapi.AuditLog: what Go takes, the store stores
// with the same fields; what Go refuses, the store refuses. Seeds in
// testdata/fuzz/FuzzAuditSinkAgrees.
func FuzzAuditSinkAgrees(f *testing.F) {
	for _, s := range []string{
		`{"@type":"AuditLog","documentId":"d1","accountId":"acc","containerId":"atom-1","userId":"ann@example.com","date":"2026-03-02T10:15:30Z","type":"as.atom.process","action":"ATTACH","modifier":"NONE","level":"INFO","source":"API","message":"Caf\u00e9 \"q\" \\ 100%","AuditLogProperty":[{"name":"ENVIRONMENT_ID","value":"env-1"},{"name":"NEW_VALUE","value":"b","previousValue":"a"}]}`,
		`{"documentId":"d2","date":"2026-03-02T12:15:30.250+02:00","userId":null,"AuditLogProperty":null}`,
		`{"documentId":"d3","date":"2026-03-02T10:15:30.123456789Z"}`,
		`{"documentId":"d4","date":"2026-02-30T10:15:30Z"}`,
		`{"documentId":"d5","date":"2026-03-02T10:15:30Z","userId":5}`,
		`{"documentId":"d6","date":"2026-03-02T10:15:30Z","AuditLogProperty":{"name":"x"}}`,
		`{"documentId":"d7","date":"2026-03-02T10:15:30Z","AuditLogProperty":[{"previousvalue":"z"}]}`,
		`{"documentId":"","date":"2026-03-02T10:15:30Z"}`,
		`{"documentId":"d8","date":"2026-03-02T24:00:00Z"}`,
		`{"documentId":"d9","date":"0001-01-01T00:00:00Z"}`,
		`["x"]`, `"x"`, `null`,
	} {
		f.Add([]byte(s))
	}
	db, err := store.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"), store.Options{Synchronous: "NORMAL"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) || !comparable(raw) {
			t.Skip()
		}
		checkAuditSinkAgrees(t, db, raw)
	})
}
