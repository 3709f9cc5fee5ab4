package store

import (
	"context"
	"fmt"
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
	more = append(more, AuditRecord{DocumentID: "new-1", Date: t0, Type: "account"})
	n, err := db.UpsertAudit(ctx, more)
	if err != nil || n != 1 {
		t.Fatalf("UpsertAudit(overlap) = %d, %v; want 1 new", n, err)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_records"); got != 51 {
		t.Errorf("audit_records = %d; want 51", got)
	}
	props := 0
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
