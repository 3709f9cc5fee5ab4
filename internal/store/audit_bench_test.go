package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// benchAuditSpan is the time the benchmark's records are spread over.
const benchAuditSpan = 90 * 24 * time.Hour

// fillAudit inserts n synthetic audit records (and their properties) in one
// transaction with INSERT … SELECT, in date order over the benchAuditSpan
// before t0. The mix follows the simulator's: 30% manual executions with a
// PROCESS_ID property, 12% process attach/detach with ENVIRONMENT_ID, 12%
// schedule changes, 15% logins, …; 9 users, plus one rare user on 1 record in
// 10,000; 5% ERROR level; 2 containers.
func fillAudit(tb testing.TB, db *DB, n int) {
	tb.Helper()
	sqliteOnly(tb) // SQLite's printf; the generator is the benchmarks'
	ctx := context.Background()
	start := t0.Add(-benchAuditSpan).UnixMilli()
	step := benchAuditSpan.Milliseconds() / int64(n)
	tx, err := db.begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	stmts := []string{
		`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1),
		h(i, a, b, c) AS (SELECT i, (i * 2654435761) % 4294967296, (i * 40503) % 65537, (i * 7919) % 10007 FROM seq),
		k(i, t, u, b, c) AS (SELECT i, a % 100, (a / 100) % 9, b, c FROM h)
		INSERT INTO audit_records (id, document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message)
		SELECT i, printf('doc-%08d', i), 'sim-account',
			CASE WHEN b % 2 = 0 THEN 'atom-test' ELSE 'atom-prod' END,
			CASE WHEN c = 0 THEN 'rare.user@example.com' ELSE printf('user%d@example.com', u) END,
			?2 + i * ?3,
			CASE WHEN t < 30 THEN 'as.process.manual_execution' WHEN t < 42 THEN 'as.atom.process' WHEN t < 54 THEN 'as.schedules'
				WHEN t < 62 THEN 'as.extensions' WHEN t < 70 THEN 'as.atom' WHEN t < 85 THEN 'account'
				WHEN t < 90 THEN 'user.token' WHEN t < 94 THEN 'as.packaged.component' ELSE 'as.environment' END,
			CASE WHEN t < 30 THEN 'EXECUTE' WHEN t < 42 THEN (CASE WHEN b % 5 = 0 THEN 'DETACH' ELSE 'ATTACH' END)
				WHEN t < 54 THEN (CASE b % 3 WHEN 0 THEN 'UPDATE' WHEN 1 THEN 'RESUME' ELSE 'STOP' END)
				WHEN t < 62 THEN 'EDIT' WHEN t < 70 THEN 'PAUSE' WHEN t < 85 THEN 'ON_ENTRY' WHEN t < 90 THEN 'ADD'
				WHEN t < 94 THEN 'DELETE' ELSE 'UPDATE' END,
			CASE WHEN t < 30 THEN 'MANUAL' WHEN t < 62 THEN 'NONE' WHEN t < 70 THEN 'MANUAL' WHEN t < 85 THEN 'SUCCESS'
				WHEN t < 90 THEN 'AUTHENTICATION' ELSE 'NONE' END,
			CASE WHEN b % 20 = 0 THEN 'ERROR' WHEN b % 10 = 1 THEN 'WARNING' ELSE 'INFO' END,
			CASE WHEN c % 10 < 5 THEN 'UI' WHEN c % 10 < 8 THEN 'API' ELSE 'INTERNAL' END,
			CASE WHEN t < 30 THEN printf('Process "%s" executed manually on atom "%s"',
					CASE b % 3 WHEN 0 THEN 'Orders Sync' WHEN 1 THEN 'Invoice Export' ELSE 'Always Fails' END,
					CASE WHEN b % 2 = 0 THEN 'Test Atom' ELSE 'Production Molecule' END)
				WHEN t < 42 THEN printf('Process version %d attached to environment', 1 + c % 9)
				WHEN t < 85 AND t >= 70 THEN printf('User user%d@example.com signed in', u)
				ELSE printf('Change number %d', c) END
		FROM k`,
		`INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT id, 0, 'PROCESS_ID', CASE (id * 40503) % 65537 % 3 WHEN 0 THEN 'proc-orders' WHEN 1 THEN 'proc-invoices' ELSE 'proc-fails' END, ''
		FROM audit_records WHERE type = 'as.process.manual_execution'`,
		`INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT id, 0, 'ENVIRONMENT_ID', CASE WHEN container_id = 'atom-test' THEN 'env-test' ELSE 'env-prod' END, ''
		FROM audit_records WHERE type IN ('as.atom.process', 'as.extensions', 'as.environment')`,
		`INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT id, 1, 'TOKEN_ID', 'ci-rare', '' FROM audit_records WHERE (id * 7919) % 10007 = 1`,
	}
	for i, q := range stmts {
		var args []any
		if i == 0 {
			args = []any{n, start, step}
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			tb.Fatalf("fill audit: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if got := count(tb, db, "SELECT count(*) FROM audit_records"); got != n {
		tb.Fatalf("fill audit: %d records; want %d", got, n)
	}
	// As BenchmarkHourlyUsage: one huge transaction leaves a huge WAL, which a
	// daemon's store (auto-checkpointed page by page) never has.
	if err := db.Checkpoint(ctx); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkListAudit answers `runnerd audit` queries (newest first, the
// command's default limit of 1000, properties included) over 1,000,000 stored
// records spread over 90 days. Built in about 10 s; skipped with -short.
//
//	go test -run '^$' -bench BenchmarkListAudit -benchtime 20x ./internal/store
func BenchmarkListAudit(b *testing.B) {
	if testing.Short() {
		b.Skip("1,000,000 audit records skipped with -short")
	}
	const n = 1_000_000
	db, _ := MustOpenDBAt(b, filepath.Join(b.TempDir(), "audit.db"), Options{Synchronous: "NORMAL"})
	built := time.Now()
	fillAudit(b, db, n)
	b.Logf("built %d records in %s", n, time.Since(built).Round(time.Millisecond))
	ctx := context.Background()
	week := t0.Add(-7 * 24 * time.Hour)
	day := t0.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		name string
		f    AuditFilter
	}{
		{"newest", AuditFilter{}},
		{"user", AuditFilter{UserID: "user3@example.com"}},
		{"rare-user", AuditFilter{UserID: "rare.user@example.com"}},
		{"rare-user-7d", AuditFilter{UserID: "rare.user@example.com", Since: week}},
		{"type", AuditFilter{Type: "as.process.manual_execution"}},
		{"deploys", AuditFilter{Type: "as.atom.process", Actions: []string{"ATTACH", "DETACH"}}},
		{"detach-7d", AuditFilter{Type: "as.atom.process", Action: "DETACH", Since: week}},
		{"schedule-changes", AuditFilter{Type: "as.schedules", Actions: []string{"UPDATE", "RESUME", "STOP"}}},
		{"level-error", AuditFilter{Level: "ERROR"}},
		{"source-container", AuditFilter{Source: "API", ContainerID: "atom-prod"}},
		{"one-day", AuditFilter{Since: day, Until: day.Add(24 * time.Hour)}},
		{"property", AuditFilter{Property: "PROCESS_ID", PropertyValue: "proc-fails"}},
		{"property-7d", AuditFilter{Property: "ENVIRONMENT_ID", PropertyValue: "env-prod", Since: week}},
		{"property-rare", AuditFilter{Property: "TOKEN_ID", PropertyValue: "ci-rare"}},
		{"text", AuditFilter{Text: "always fails"}},
		{"text-rare", AuditFilter{Text: "Change number 77"}},
		{"user-type-7d", AuditFilter{UserID: "user3@example.com", Type: "account", Since: week}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := tc.f
			f.Newest, f.Limit = true, 1000
			rows := 0
			for b.Loop() {
				recs, err := db.ListAudit(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					b.Fatalf("ListAudit(%+v) = no records", f)
				}
				rows = len(recs)
			}
			b.ReportMetric(float64(rows), "rows")
		})
	}
	b.Run("count-one-day", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.CountAudit(ctx, AuditFilter{Since: day, Until: day.Add(24 * time.Hour)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestFillAudit checks the benchmark's generator on a small scale, so the
// benchmark measures what it claims (mix, dates, properties).
func TestFillAudit(t *testing.T) {
	db, _ := MustOpenDB(t)
	const n = 20_000
	fillAudit(t, db, n)
	for _, tc := range []struct {
		q        string
		min, max int
	}{
		{"SELECT count(*) FROM audit_records WHERE type = 'as.process.manual_execution'", n * 25 / 100, n * 35 / 100},
		{"SELECT count(*) FROM audit_records WHERE type = 'as.atom.process' AND action = 'DETACH'", n * 1 / 100, n * 5 / 100},
		{"SELECT count(*) FROM audit_records WHERE user_id = 'rare.user@example.com'", 1, n / 1000},
		{"SELECT count(*) FROM audit_records WHERE level = 'ERROR'", n * 3 / 100, n * 7 / 100},
		{"SELECT count(*) FROM audit_properties WHERE name = 'PROCESS_ID'", n * 25 / 100, n * 35 / 100},
		{"SELECT count(*) FROM audit_properties WHERE name = 'TOKEN_ID'", 1, n / 1000},
		{fmt.Sprintf("SELECT count(*) FROM audit_records WHERE date >= %d AND date < %d",
			t0.Add(-benchAuditSpan).UnixMilli(), t0.UnixMilli()+1), n, n},
	} {
		if got := count(t, db, tc.q); got < tc.min || got > tc.max {
			t.Errorf("%s = %d; want %d..%d", tc.q, got, tc.min, tc.max)
		}
	}
}
