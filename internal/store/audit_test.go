package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// auditFixture stores n records, one a minute back from t0 (record i is
// "doc-i", dated t0 - i minutes), with a varied mix of fields, and returns them.
func auditFixture(tb testing.TB, db *DB, n int) []AuditRecord {
	tb.Helper()
	var recs []AuditRecord
	for i := range n {
		r := AuditRecord{
			DocumentID: fmt.Sprintf("doc-%d", i), AccountID: "acct", ContainerID: []string{"atom-a", "atom-b"}[i%2],
			UserID: []string{"ann", "bob", "cy"}[i%3], Date: t0.Add(-time.Duration(i) * time.Minute),
			Type:   []string{"as.atom.process", "as.schedules", "account", "as.process.manual_execution"}[i%4],
			Action: []string{"ATTACH", "DETACH", "UPDATE", "STOP"}[i%4/2*2+i%5%2], Modifier: "NONE",
			Level: []string{"INFO", "ERROR"}[min(1, i%7)], Source: []string{"UI", "API"}[i%2],
			Message: []string{"plain", "100% done", "a_b and ab", `back\slash`, "Mixed CASE"}[i%5],
		}
		if i%3 == 0 {
			r.Properties = append(r.Properties, AuditProperty{Name: "ENVIRONMENT_ID", Value: []string{"env-test", "env-prod"}[i%2]})
		}
		if i%11 == 0 {
			r.Properties = append(r.Properties, AuditProperty{Name: "NEW_VALUE", Value: "x", PreviousValue: "y"})
		}
		recs = append(recs, r)
	}
	if _, err := db.UpsertAudit(context.Background(), recs); err != nil {
		tb.Fatal(err)
	}
	return recs
}

// matchAudit is the reference for AuditFilter: the same selection in plain Go.
func matchAudit(r AuditRecord, f AuditFilter) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if !eq(f.UserID, r.UserID) || !eq(f.Type, r.Type) || !eq(f.Action, r.Action) || !eq(f.Modifier, r.Modifier) ||
		!eq(f.Level, r.Level) || !eq(f.Source, r.Source) || !eq(f.ContainerID, r.ContainerID) {
		return false
	}
	if len(f.Actions) > 0 && !slices.Contains(f.Actions, r.Action) {
		return false
	}
	if !f.Since.IsZero() && r.Date.Before(f.Since) || !f.Until.IsZero() && !r.Date.Before(f.Until) {
		return false
	}
	if f.Property != "" && !slices.ContainsFunc(r.Properties, func(p AuditProperty) bool {
		return p.Name == f.Property && (f.PropertyValue == "" || p.Value == f.PropertyValue)
	}) {
		return false
	}
	return f.Text == "" || strings.Contains(strings.ToLower(r.Message), strings.ToLower(f.Text))
}

func TestListAuditFilters(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	recs := auditFixture(t, db, 300)
	for _, tc := range []struct {
		name string
		f    AuditFilter
	}{
		{"all", AuditFilter{}},
		{"actions", AuditFilter{Actions: []string{"ATTACH", "STOP"}}},
		{"type+actions", AuditFilter{Type: "as.atom.process", Actions: []string{"ATTACH", "DETACH"}}},
		{"action+actions", AuditFilter{Action: "ATTACH", Actions: []string{"DETACH"}}},
		{"text", AuditFilter{Text: "plain"}},
		{"text case", AuditFilter{Text: "mixed case"}},
		{"text percent is literal", AuditFilter{Text: "0% d"}},
		{"text underscore is literal", AuditFilter{Text: "a_b"}},
		{"text backslash", AuditFilter{Text: `k\s`}},
		{"text no match", AuditFilter{Text: "%" + "zz"}},
		{"property", AuditFilter{Property: "ENVIRONMENT_ID"}},
		{"property value", AuditFilter{Property: "ENVIRONMENT_ID", PropertyValue: "env-prod"}},
		{"since until", AuditFilter{Since: t0.Add(-100 * time.Minute), Until: t0.Add(-50 * time.Minute)}},
		{"mixed", AuditFilter{UserID: "ann", Level: "ERROR", Source: "API", ContainerID: "atom-b"}},
	} {
		for _, newest := range []bool{false, true} {
			for _, limit := range []int{0, 7} {
				f := tc.f
				f.Newest, f.Limit = newest, limit
				t.Run(fmt.Sprintf("%s/newest=%v/limit=%d", tc.name, newest, limit), func(t *testing.T) {
					var want []string
					for _, r := range recs { // recs are newest first
						if matchAudit(r, f) {
							want = append(want, r.DocumentID)
						}
					}
					total := len(want)
					if !newest {
						slices.Reverse(want)
					}
					if limit > 0 && len(want) > limit {
						want = want[:limit]
					}
					got, err := db.ListAudit(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					var docs []string
					for _, r := range got {
						docs = append(docs, r.DocumentID)
					}
					if !reflect.DeepEqual(docs, want) {
						t.Errorf("ListAudit(%+v) = %v; want %v", f, docs, want)
					}
					if n, err := db.CountAudit(ctx, f); err != nil || n != total {
						t.Errorf("CountAudit(%+v) = %d, %v; want %d", f, n, err, total)
					}
				})
			}
		}
	}
	if _, err := db.ListAudit(ctx, AuditFilter{PropertyValue: "x"}); err == nil {
		t.Errorf("ListAudit(value without name) = nil error")
	}
	if _, err := db.CountAudit(ctx, AuditFilter{PropertyValue: "x"}); err == nil {
		t.Errorf("CountAudit(value without name) = nil error")
	}
}

// TestListAuditPropertyStrategies: a common property (walked newest first
// with a probe per record) and a rare one (read through the property index)
// give what the reference gives, properties included.
func TestListAuditPropertyStrategies(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	recs := auditFixture(t, db, 2000)
	for _, tc := range []struct {
		name      string
		f         AuditFilter
		wantProbe bool
	}{
		// ENVIRONMENT_ID is on 1 record in 3: 667² > 10 × 2000.
		{"common", AuditFilter{Property: "ENVIRONMENT_ID", Limit: 10, Newest: true}, true},
		{"common value", AuditFilter{Property: "ENVIRONMENT_ID", PropertyValue: "env-test", Limit: 10}, true},
		// NEW_VALUE is on 1 in 11 (182): 182² < 1000 × 2000.
		{"rare", AuditFilter{Property: "NEW_VALUE", Limit: 1000, Newest: true}, false},
		{"no limit", AuditFilter{Property: "ENVIRONMENT_ID"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe, err := db.probeProperty(ctx, tc.f)
			if err != nil || probe != tc.wantProbe {
				t.Errorf("probeProperty(%+v) = %v, %v; want %v", tc.f, probe, err, tc.wantProbe)
			}
			var want []AuditRecord
			for _, r := range recs {
				if matchAudit(r, tc.f) {
					want = append(want, r)
				}
			}
			if !tc.f.Newest {
				slices.Reverse(want)
			}
			if tc.f.Limit > 0 && len(want) > tc.f.Limit {
				want = want[:tc.f.Limit]
			}
			got, err := db.ListAudit(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ListAudit(%+v) = %d records; want %d (first got %+v, want %+v)", tc.f, len(got), len(want), first(got), first(want))
			}
		})
	}
}

func first(rs []AuditRecord) any {
	if len(rs) == 0 {
		return nil
	}
	return rs[0]
}

// TestUpsertAuditOverlap: storing an overlapping batch again adds only the
// records not yet stored, and leaves the stored ones (and their properties) as
// they were.
func TestUpsertAuditOverlap(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	recs := auditFixture(t, db, 50)
	more := append([]AuditRecord(nil), recs[30:]...)
	more[0].Message = "changed"
	more = append(more, AuditRecord{DocumentID: "new-1", Date: t0, Type: "account",
		Properties: []AuditProperty{{Name: "PROCESS_ID", Value: "p-1"}}})
	n, err := db.UpsertAudit(ctx, more)
	if err != nil || n != 1 {
		t.Fatalf("UpsertAudit(overlap) = %d, %v; want 1 new", n, err)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_records"); got != 51 {
		t.Errorf("audit_records = %d; want 51", got)
	}
	// Ids stay dense through a page with stored records in it (probeProperty
	// counts records by the highest id in SQLite; PostgreSQL's sequences are
	// never dense, and it counts there by the table's statistics).
	if got := count(t, db, "SELECT max(id) FROM audit_records"); got != 51 && !db.pg {
		t.Errorf("highest record id = %d; want 51", got)
	}
	if got, _ := db.ListAudit(ctx, AuditFilter{Property: "PROCESS_ID", PropertyValue: "p-1"}); len(got) != 1 ||
		got[0].DocumentID != "new-1" || !reflect.DeepEqual(got[0].Properties, more[len(more)-1].Properties) {
		t.Errorf("the new record's property: %+v", got)
	}
	props := 1
	for _, r := range recs {
		props += len(r.Properties)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_properties"); got != props {
		t.Errorf("audit_properties = %d; want %d", got, props)
	}
	got, _ := db.ListAudit(ctx, AuditFilter{Text: "changed"})
	if len(got) != 0 {
		t.Errorf("a re-stored record changed its message: %+v", got)
	}
}

// TestMigrateAuditLean: a ledger with audit records written under schema 4
// keeps every record and property through migration 0005, which rekeys the
// records on (date, document_id): re-exports still add nothing, a property
// still goes with its record, and the dropped indexes are gone.
func TestMigrateAuditLean(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "v4.db"), Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for v := 1; v <= 4; v++ {
		m, ok := migrationByVersion(v)
		if !ok {
			t.Fatalf("no migration %d", v)
		}
		if _, err := db.migrateFile(ctx, m); err != nil {
			t.Fatalf("migration %s: %v", m.name, err)
		}
	}
	d := t0.UnixMilli()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO audit_records (id, document_id, user_id, date, type, action, message) VALUES
			(1, 'doc-a', 'ann', %d, 'as.atom.process', 'ATTACH', 'first'),
			(2, 'doc-b', 'bob', %d, 'account', 'ON_ENTRY', 'second')`, d, d+60_000),
		`INSERT INTO audit_properties (record_id, seq, name, value, previous_value) VALUES
			(1, 0, 'ENVIRONMENT_ID', 'env-prod', ''), (1, 1, 'NEW_VALUE', 'x', 'y'), (2, 0, 'TOKEN_ID', 't', '')`,
	} {
		if _, err := db.writer.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := db.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != "0005_audit_lean.sql" {
		t.Fatalf("Migrate() = %v, %v; want 0005 applied first", applied, err)
	}
	got, err := db.ListAudit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []AuditRecord{
		{DocumentID: "doc-a", UserID: "ann", Date: t0, Type: "as.atom.process", Action: "ATTACH", Message: "first",
			Properties: []AuditProperty{{Name: "ENVIRONMENT_ID", Value: "env-prod"}, {Name: "NEW_VALUE", Value: "x", PreviousValue: "y"}}},
		{DocumentID: "doc-b", UserID: "bob", Date: t0.Add(time.Minute), Type: "account", Action: "ON_ENTRY", Message: "second",
			Properties: []AuditProperty{{Name: "TOKEN_ID", Value: "t"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after migration:\n got %+v\nwant %+v", got, want)
	}
	// Exporting the same records again adds nothing; a new one is added
	// with its property.
	n, err := db.UpsertAudit(ctx, append(want, AuditRecord{DocumentID: "doc-c", Date: t0.Add(2 * time.Minute),
		Properties: []AuditProperty{{Name: "P", Value: "v"}}}))
	if err != nil || n != 1 {
		t.Errorf("UpsertAudit(2 old, 1 new) after migration = %d, %v; want 1", n, err)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_properties"); got != 4 {
		t.Errorf("audit_properties = %d rows; want 4", got)
	}
	// The foreign key still points at the rebuilt table: deleting a record
	// takes its properties.
	if _, err := db.writer.ExecContext(ctx, `DELETE FROM audit_records WHERE document_id = 'doc-a'`); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_properties"); got != 2 {
		t.Errorf("audit_properties after deleting doc-a = %d rows; want 2 (cascade)", got)
	}
	var indexes []string
	rows, err := db.reader.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index'
		AND tbl_name IN ('audit_records', 'audit_properties') AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		indexes = append(indexes, s)
	}
	rows.Close()
	if w := []string{"audit_properties_name_value", "audit_type_date", "audit_user_date"}; !slices.Equal(indexes, w) {
		t.Errorf("audit indexes = %v; want %v", indexes, w)
	}
	if msg, err := db.IntegrityCheck(ctx); err != nil || msg != "ok" {
		t.Errorf("integrity_check after migration = %q, %v", msg, err)
	}
}

// TestUpsertAuditJSON: a page is stored as the platform sent it — missing and
// null fields empty, properties in order, previousvalue as the XML example
// spells it — and a page with one bad record stores nothing and names it.
func TestUpsertAuditJSON(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	page := []json.RawMessage{
		json.RawMessage(`{"@type":"AuditLog","documentId":"d1","accountId":"acc","containerId":"atom-1","userId":"ann@example.com",
			"date":"2026-03-02T10:15:30Z","type":"as.atom.process","action":"ATTACH","modifier":"NONE","level":"INFO",
			"source":"API","message":"Caf\u00e9 \"quoted\" \\ 100%","AuditLogProperty":[{"name":"ENVIRONMENT_ID","value":"env-1"},
			{"name":"NEW_VALUE","value":"b","previousValue":"a"},{"name":"OLD","previousvalue":"z"}]}`),
		json.RawMessage(`{"documentId":"d2","date":"2026-03-02T12:15:30.250+02:00","userId":null}`),
	}
	n, err := db.UpsertAuditJSON(ctx, page)
	if err != nil || n != 2 {
		t.Fatalf("UpsertAuditJSON(2 new) = %d, %v; want 2", n, err)
	}
	got, err := db.ListAudit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Date(2026, 3, 2, 10, 15, 30, 0, time.UTC)
	want := []AuditRecord{
		{DocumentID: "d1", AccountID: "acc", ContainerID: "atom-1", UserID: "ann@example.com", Date: d, Type: "as.atom.process",
			Action: "ATTACH", Modifier: "NONE", Level: "INFO", Source: "API", Message: `Café "quoted" \ 100%`,
			Properties: []AuditProperty{{Name: "ENVIRONMENT_ID", Value: "env-1"}, {Name: "NEW_VALUE", Value: "b", PreviousValue: "a"},
				{Name: "OLD", PreviousValue: "z"}}},
		{DocumentID: "d2", Date: d.Add(250 * time.Millisecond)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stored:\n got %+v\nwant %+v", got, want)
	}
	if n, err := db.UpsertAuditJSON(ctx, page); err != nil || n != 0 {
		t.Errorf("UpsertAuditJSON(same page) = %d, %v; want 0", n, err)
	}
	for _, tc := range []struct{ rec, want string }{
		{`{"date":"2026-03-02T10:15:30Z"}`, "record 2 of 2 has no documentId"},
		{`{"documentId":"","date":"2026-03-02T10:15:30Z"}`, "has no documentId"},
		{`{"documentId":"x","date":"2026-02-30T10:15:30Z"}`, `record 2 of 2 ("x") has no RFC 3339 date ('"2026-02-30T10:15:30Z"')`},
		{`{"documentId":"x","date":"2026-03-02 10:15:30Z"}`, "no RFC 3339 date"},
		{`{"documentId":"x","date":"yesterday"}`, "no RFC 3339 date"},
		{`{"documentId":"x","date":1700000000}`, "no RFC 3339 date"},
		{`{"documentId":"x"}`, "no RFC 3339 date (NULL)"},
		{`{"documentId":"x","date":"2026-03-02T10:15:30Z","userId":7}`, "a field that is not a string"},
		{`{"documentId":"x","date":"2026-03-02T10:15:30Z","message":{"a":1}}`, "a field that is not a string"},
		{`{"documentId":"x","date":"2026-03-02T10:15:30Z","AuditLogProperty":{"name":"a"}}`, "not a list"},
		{`{"documentId":"x","date":"2026-03-02T10:15:30Z","AuditLogProperty":["a"]}`, "a property that is not"},
		{`{"documentId":"x","date":"2026-03-02T10:15:30Z","AuditLogProperty":[{"name":1}]}`, "a property that is not"},
		{`["not","an","object"]`, "record 2 of 2 is not a JSON object"},
	} {
		fresh := json.RawMessage(`{"documentId":"ok","date":"2026-03-03T00:00:00Z"}`)
		_, err := db.UpsertAuditJSON(ctx, []json.RawMessage{fresh, json.RawMessage(tc.rec)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("UpsertAuditJSON(%s) = %v; want an error with %q", tc.rec, err, tc.want)
		}
	}
	if got := count(t, db, "SELECT count(*) FROM audit_records WHERE document_id = 'ok'"); got != 0 {
		t.Errorf("failed pages left %d records of theirs", got)
	}
}
