package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/pgtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var t0 = time.Date(2026, 3, 2, 10, 15, 30, 0, time.UTC)

// MustOpenDB opens a migrated ledger in a fresh temporary directory, on a
// clock that starts at t0, and closes it when the test ends.
func MustOpenDB(tb testing.TB) (*DB, *clock) {
	tb.Helper()
	if testOnPostgres() {
		return MustOpenDBAt(tb, pgtest.NewDatabase(tb), Options{})
	}
	return MustOpenDBAt(tb, filepath.Join(tb.TempDir(), "runnerd.db"), Options{})
}

// MustOpenDBAt is MustOpenDB with a chosen path and options (opts.Now is
// replaced by the returned clock).
func MustOpenDBAt(tb testing.TB, path string, opts Options) (*DB, *clock) {
	tb.Helper()
	clk := newClock(t0)
	opts.Now = clk.Now
	db, err := Open(context.Background(), path, opts)
	if err != nil {
		tb.Fatalf("Open(%q) = %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close() = %v", err)
		}
	})
	return db, clk
}

func count(tb testing.TB, db *DB, q string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.reader.QueryRow(q, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestOpenPragmas(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sync string
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{
		{"default is FULL", "", 2},
		{"FULL", "FULL", 2},
		{"NORMAL", "normal", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := MustOpenDBAt(t, filepath.Join(t.TempDir(), "x.db"), Options{Synchronous: tc.sync})
			var mode string
			var syncMode, fk, timeout int
			w := db.writer
			if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if err := w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
				t.Fatal(err)
			}
			if err := w.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
				t.Fatal(err)
			}
			if err := w.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" || syncMode != tc.want || fk != 1 || timeout != 5000 {
				t.Errorf("writer pragmas: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal %d 1 5000",
					mode, syncMode, fk, timeout, tc.want)
			}
			if got := db.writer.Stats().MaxOpenConnections; got != 1 {
				t.Errorf("writer MaxOpenConnections = %d; want 1", got)
			}
			if _, err := db.reader.ExecContext(ctx, "INSERT INTO meta (key, value, updated_at) VALUES ('x', 'y', 0)"); err == nil {
				t.Errorf("insert through the read pool succeeded; want it refused (query_only)")
			}
		})
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "x.db"), Options{Synchronous: "OFF"}); err == nil {
		t.Errorf("Open(Synchronous OFF) = nil error; want refusal")
	}
	if _, err := Open(ctx, ":memory:", Options{}); err == nil {
		t.Errorf("Open(:memory:) = nil error; want refusal")
	}
}

func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := Open(ctx, path, Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	cur, latest, err := db.SchemaVersion(ctx)
	if err != nil || cur != 0 || latest < 2 {
		t.Fatalf("SchemaVersion() before migrating = %d, %d, %v; want 0, >=2, nil", cur, latest, err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	ms, _ := allMigrations()
	var want []string
	for _, m := range ms {
		want = append(want, m.name)
	}
	if !reflect.DeepEqual(applied, want) {
		t.Errorf("Migrate() applied %v; want %v", applied, want)
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Errorf("second Migrate() = %v, %v; want nothing applied", again, err)
	}
	cur, latest, _ = db.SchemaVersion(ctx)
	if cur != latest {
		t.Errorf("SchemaVersion() = %d, %d; want equal", cur, latest)
	}
	if n := count(t, db, "SELECT count(*) FROM schema_migrations"); n != len(want) {
		t.Errorf("schema_migrations rows = %d; want %d", n, len(want))
	}
	db.Close()
	// Reopening (with migration) applies nothing and keeps the data.
	db2, _ := MustOpenDBAt(t, path, Options{})
	if n := count(t, db2, "SELECT count(*) FROM schema_migrations"); n != len(want) {
		t.Errorf("after reopen schema_migrations rows = %d; want %d", n, len(want))
	}
}

func TestReadMigrationsRejectsBadNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"no number", []string{"init.sql"}},
		{"short number", []string{"1_init.sql"}},
		{"duplicate version", []string{"0001_a.sql", "0001_b.sql"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				os.WriteFile(filepath.Join(dir, f), []byte("SELECT 1;"), 0o600)
			}
			if _, err := readMigrations(os.DirFS(dir)); err == nil {
				t.Errorf("readMigrations(%v) = nil error; want one", tc.files)
			}
		})
	}
}

func TestOpenSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "new.db")
	db, _ := MustOpenDBAt(t, path, Options{})
	future := latestVersion() + 1
	if _, err := db.writer.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, '9999_future.sql', 0)`, future); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	for _, noMigrate := range []bool{false, true} {
		_, err := Open(ctx, path, Options{NoMigrate: noMigrate})
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open(NoMigrate=%v) = %v; want ErrSchemaTooNew", noMigrate, err)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "newer runnerd") {
			t.Errorf("error %q should name the file and say what to do", msg)
		}
	}
	after, _ := os.ReadFile(path)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the file changed after a refused open")
	}
}

func TestOpenCorrupt(t *testing.T) {
	ctx := context.Background()
	var callsRoot int
	for _, tc := range []struct {
		name   string
		damage func(b []byte, pageSize int)
		// deep: damage only the full quick_check sees, not the cheap check at
		// every open; refused with FullCheck (and after an unclean daemon
		// stop: TestDaemonUncleanStopCorrupt).
		deep bool
	}{
		{"header", func(b []byte, _ int) { fill(b[:100]) }, false},
		{"every page but the first", func(b []byte, ps int) { fill(b[ps:]) }, false},
		{"the schema page", func(b []byte, ps int) { fill(b[100:ps]) }, false},
		{"whole file", func(b []byte, _ int) { fill(b) }, false},
		{"cells of the calls table", func(b []byte, ps int) {
			// The calls table's root page (a leaf holding all 50 rows) keeps
			// its header; its cell content area, at the end, is overwritten.
			fill(b[callsRoot*ps-ps/2 : callsRoot*ps])
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			db, _ := MustOpenDBAt(t, path, Options{})
			seedCalls(t, db, 50)
			var ps int
			db.writer.QueryRow("PRAGMA page_size").Scan(&ps)
			db.writer.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'calls'").Scan(&callsRoot)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(b, ps)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.deep {
				// The cheap check passes; the query that meets the damage fails.
				db, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatalf("Open(deep damage, cheap check) = %v; want it opened", err)
				}
				if _, err := db.ListCalls(ctx, CallFilter{Status: -1}); err == nil {
					t.Errorf("ListCalls over damaged pages = nil error")
				}
				db.Close()
				if err := os.WriteFile(path, b, 0o600); err != nil { // the WAL mode open may have rewritten nothing, but be exact
					t.Fatal(err)
				}
				os.Remove(path + "-wal")
				os.Remove(path + "-shm")
			}
			_, err = Open(ctx, path, Options{FullCheck: tc.deep})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open(corrupt %s) = %v; want ErrCorrupt", tc.name, err)
			}
			t.Logf("Open: %v", err)
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "backup") {
				t.Errorf("error %q should name the file and say what to do", msg)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("the corrupt file is gone: %v", err)
			}
			if !reflect.DeepEqual(after, b) {
				t.Errorf("the corrupt file was changed by Open")
			}
		})
	}
}

// fill overwrites b with a deterministic garbage pattern.
func fill(b []byte) {
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

// seedCalls begins n calls an hour apart, ending with the clock's hour.
func seedCalls(tb testing.TB, db *DB, n int) {
	tb.Helper()
	for i := range n {
		if _, err := db.BeginCall(context.Background(), Call{Job: "seed", Method: "GET", Path: "/x",
			StartedAt: t0.Add(-time.Duration(i) * time.Hour)}); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestPingIntegrityCheckpoint(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	if err := db.Ping(ctx); err != nil {
		t.Errorf("Ping() = %v", err)
	}
	seedCalls(t, db, 10)
	if got, err := db.IntegrityCheck(ctx); err != nil || got != "ok" {
		t.Errorf("IntegrityCheck() = %q, %v; want ok", got, err)
	}
	if err := db.Checkpoint(ctx); err != nil {
		t.Errorf("Checkpoint() = %v", err)
	}
	if fi, err := os.Stat(db.Path() + "-wal"); err != nil || fi.Size() != 0 {
		t.Errorf("after Checkpoint the WAL is %v, %v; want empty", fi, err)
	}
	db.Close()
	if err := db.Ping(ctx); err == nil {
		t.Errorf("Ping() on a closed DB = nil; want an error")
	}
}

func TestRuns(t *testing.T) {
	ctx := context.Background()
	db, clk := MustOpenDB(t)
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	r, created, err := db.CreateRun(ctx, runnerd.Run{Job: "promote", Kind: "deploy", NominalTime: nominal, Estimate: 4})
	if err != nil || !created {
		t.Fatalf("CreateRun() = %v, %v, %v; want created", r, created, err)
	}
	if r.ID == 0 || r.State != runnerd.StatePlanned || !r.NominalTime.Equal(nominal) || r.Estimate != 4 || r.Kind != "deploy" {
		t.Errorf("CreateRun() stored %+v", r)
	}
	// The same slot again: not created, the existing run returned unchanged.
	dup, created, err := db.CreateRun(ctx, runnerd.Run{Job: "promote", Kind: "deploy", NominalTime: nominal.In(time.FixedZone("x", 3600)), Estimate: 99})
	if err != nil || created || dup.ID != r.ID || dup.Estimate != 4 {
		t.Errorf("CreateRun(same slot) = %+v, %v, %v; want run %d, created=false", dup, created, err, r.ID)
	}
	if _, _, err := db.CreateRun(ctx, runnerd.Run{Job: "promote"}); err == nil {
		t.Errorf("CreateRun(no nominal) = nil error")
	}

	// Calls bump runs.calls; UpdateRun does not overwrite it with a stale copy.
	for range 3 {
		if _, err := db.BeginCall(ctx, Call{RunID: r.ID, Job: "promote"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(t0.Add(time.Minute))
	upd := r
	upd.State, upd.Reason, upd.Attempt, upd.Error, upd.Detail = runnerd.StateFailed, "boom", 1, "500 from platform", `{"x":1}`
	upd.StartedAt, upd.FinishedAt, upd.NotBefore = t0, t0.Add(time.Minute), t0.Add(time.Hour)
	if err := db.UpdateRun(ctx, upd); err != nil {
		t.Fatalf("UpdateRun() = %v", err)
	}
	got, err := db.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := upd
	want.Calls = 3
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetRun(%d) = %+v; want %+v", r.ID, got, want)
	}
	byNom, err := db.RunByNominal(ctx, "promote", nominal)
	if err != nil || byNom.ID != r.ID {
		t.Errorf("RunByNominal() = %+v, %v", byNom, err)
	}

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"GetRun", func() error { _, err := db.GetRun(ctx, 999); return err }()},
		{"RunByNominal", func() error { _, err := db.RunByNominal(ctx, "nope", nominal); return err }()},
		{"UpdateRun", db.UpdateRun(ctx, runnerd.Run{ID: 999, State: runnerd.StateRunning})},
		{"BeginCall", func() error { _, err := db.BeginCall(ctx, Call{RunID: 999}); return err }()},
	} {
		if !errors.Is(tc.err, ErrNotFound) {
			t.Errorf("%s(missing) = %v; want ErrNotFound", tc.name, tc.err)
		}
	}
	if err := db.UpdateRun(ctx, runnerd.Run{ID: r.ID, State: "bogus"}); err == nil {
		t.Errorf("UpdateRun(state bogus) = nil; want the CHECK constraint to refuse it")
	}
}

func TestListRunsAndRecentCallCounts(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	// job a: 6 hourly runs with i calls each; states cycle.
	states := []runnerd.RunState{runnerd.StateSucceeded, runnerd.StateFailed, runnerd.StateDeferred, runnerd.StateSucceeded, runnerd.StateSkipped, runnerd.StateFailed}
	ids := map[string][]int64{}
	for i, st := range states {
		for _, job := range []string{"a", "b"} {
			r, _, err := db.CreateRun(ctx, runnerd.Run{Job: job, NominalTime: base.Add(time.Duration(i) * time.Hour), State: st})
			if err != nil {
				t.Fatal(err)
			}
			ids[job] = append(ids[job], r.ID)
			for range i + 1 {
				if _, err := db.BeginCall(ctx, Call{RunID: r.ID, Job: job}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		f    RunFilter
		want []int64 // ids, newest first
	}{
		{"job", RunFilter{Job: "a"}, rev(ids["a"])},
		{"job limit", RunFilter{Job: "a", Limit: 2}, []int64{ids["a"][5], ids["a"][4]}},
		{"states", RunFilter{Job: "b", States: []runnerd.RunState{runnerd.StateFailed, runnerd.StateDeferred}}, []int64{ids["b"][5], ids["b"][2], ids["b"][1]}},
		{"since", RunFilter{Job: "a", Since: base.Add(4 * time.Hour)}, []int64{ids["a"][5], ids["a"][4]}},
		{"all", RunFilter{Since: base.Add(5 * time.Hour)}, []int64{ids["b"][5], ids["a"][5]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := db.ListRuns(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, r := range runs {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListRuns(%+v) = %v; want %v", tc.f, got, tc.want)
			}
		})
	}
	// Finished (succeeded/failed) runs of a, newest first: i=5,3,1,0 → calls 6,4,2,1.
	for _, tc := range []struct {
		n    int
		want []int
	}{{3, []int{6, 4, 2}}, {10, []int{6, 4, 2, 1}}, {0, nil}} {
		h, err := db.JobHistory(ctx, "a", tc.n)
		if got := h.Costs; err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("JobHistory(%q, %d).Costs = %v, %v; want %v", "a", tc.n, got, err, tc.want)
		}
	}
}

func rev(s []int64) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestCalls(t *testing.T) {
	ctx := context.Background()
	db, clk := MustOpenDB(t)
	run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "exp", NominalTime: t0.Truncate(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := Call{RunID: run.ID, Job: "exp", RequestID: "req-1", Operation: "AuditLog.query", Method: "POST",
		Path: "/AuditLog/query", Safe: true, Recovery: true, Attempt: 2}
	id, err := db.BeginCall(ctx, c)
	if err != nil {
		t.Fatalf("BeginCall() = %v", err)
	}
	open, err := db.OpenCalls(ctx, run.ID)
	if err != nil || len(open) != 1 || open[0].ID != id {
		t.Fatalf("OpenCalls(%d) = %+v, %v; want call %d", run.ID, open, err, id)
	}
	want := c
	want.ID, want.StartedAt = id, t0.Truncate(time.Millisecond)
	if !reflect.DeepEqual(open[0], want) {
		t.Errorf("open call = %+v; want %+v", open[0], want)
	}
	// The same request id twice is refused: one row per attempt.
	if _, err := db.BeginCall(ctx, c); err == nil {
		t.Errorf("BeginCall(duplicate request id) = nil error")
	}

	clk.Set(t0.Add(2 * time.Second))
	long := strings.Repeat("é", 2000) // 4000 bytes
	if err := db.EndCall(ctx, Call{ID: id, Status: 200, DurationMS: 1500, Bytes: 4096, Error: long, PlatformID: "exec-1"}); err != nil {
		t.Fatalf("EndCall() = %v", err)
	}
	if err := db.EndCall(ctx, Call{ID: 12345}); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndCall(missing) = %v; want ErrNotFound", err)
	}
	if open, _ := db.OpenCalls(ctx, run.ID); len(open) != 0 {
		t.Errorf("OpenCalls after EndCall = %+v; want none", open)
	}
	got, err := db.ListCalls(ctx, CallFilter{RunID: run.ID, Status: -1})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListCalls() = %v, %v", got, err)
	}
	e := got[0]
	if e.Status != 200 || e.DurationMS != 1500 || e.Bytes != 4096 || e.PlatformID != "exec-1" ||
		!e.FinishedAt.Equal(t0.Add(2*time.Second)) {
		t.Errorf("ended call = %+v", e)
	}
	if len(e.Error) > MaxErrorExcerpt || !strings.HasPrefix(long, strings.TrimSuffix(e.Error, "…")) || !strings.HasSuffix(e.Error, "…") {
		t.Errorf("error excerpt is %d bytes (%q…); want ≤ %d, a valid prefix", len(e.Error), e.Error[:10], MaxErrorExcerpt)
	}
}

func TestListCallsFilters(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	run, _, _ := db.CreateRun(ctx, runnerd.Run{Job: "a", NominalTime: t0})
	type spec struct {
		job    string
		run    int64
		min    int // minutes after t0
		status int // 0: left open
	}
	specs := []spec{{"a", run.ID, 0, 200}, {"a", run.ID, 1, 503}, {"a", 0, 2, 0}, {"b", 0, 3, 200}, {"b", 0, 4, 0}}
	var ids []int64
	for _, s := range specs {
		id, err := db.BeginCall(ctx, Call{Job: s.job, RunID: s.run, StartedAt: t0.Add(time.Duration(s.min) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if s.status != 0 {
			if err := db.EndCall(ctx, Call{ID: id, Status: s.status}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		f    CallFilter
		want []int64
	}{
		{"any", CallFilter{Status: -1}, rev(ids)},
		{"unanswered", CallFilter{Status: 0}, []int64{ids[4], ids[2]}},
		{"status", CallFilter{Status: 200}, []int64{ids[3], ids[0]}},
		{"job", CallFilter{Job: "a", Status: -1}, []int64{ids[2], ids[1], ids[0]}},
		{"run", CallFilter{RunID: run.ID, Status: -1}, []int64{ids[1], ids[0]}},
		{"since", CallFilter{Since: t0.Add(3 * time.Minute), Status: -1}, []int64{ids[4], ids[3]}},
		{"limit", CallFilter{Status: -1, Limit: 2}, []int64{ids[4], ids[3]}},
		{"job and status", CallFilter{Job: "b", Status: 200}, []int64{ids[3]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, err := db.ListCalls(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, c := range calls {
				got = append(got, c.ID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListCalls(%+v) = %v; want %v", tc.f, got, tc.want)
			}
		})
	}
	all, _ := db.OpenCalls(ctx, 0)
	if len(all) != 2 || all[0].ID != ids[2] || all[1].ID != ids[4] {
		t.Errorf("OpenCalls(0) = %+v; want calls %d and %d", all, ids[2], ids[4])
	}
}

func TestHourlyUsage(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	h := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	at := []time.Duration{0, 59*time.Minute + 59*time.Second, time.Hour, 3*time.Hour + time.Millisecond}
	for _, d := range at {
		if _, err := db.BeginCall(ctx, Call{StartedAt: h.Add(d).In(time.FixedZone("x", -5*3600))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		since time.Time
		want  []HourUsage
	}{
		{"all", time.Time{}.Add(time.Hour), []HourUsage{{h, 2}, {h.Add(time.Hour), 1}, {h.Add(3 * time.Hour), 1}}},
		{"mid-hour includes its bucket", h.Add(90 * time.Minute), []HourUsage{{h.Add(time.Hour), 1}, {h.Add(3 * time.Hour), 1}}},
		{"future", h.Add(4 * time.Hour), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.HourlyUsage(ctx, tc.since)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("HourlyUsage(%v) = %v, %v; want %v", tc.since, got, err, tc.want)
			}
		})
	}
}

// TestHourlyUsagePlan checks, without timing anything, that HourlyUsage is a
// range search of the rollup's primary key and never touches the call rows.
func TestHourlyUsagePlan(t *testing.T) {
	sqliteOnly(t)
	db, _ := MustOpenDB(t)
	rows, err := db.reader.Query("EXPLAIN QUERY PLAN "+hourlyUsageQuery, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	if got != "SEARCH hourly_usage USING INTEGER PRIMARY KEY (rowid>?)" {
		t.Errorf("HourlyUsage plan = %q; want a primary-key range search of hourly_usage only", got)
	}
}

// TestListCallsPlans checks that each CLI filter is served by an index, so
// `runnerd calls` stays fast on a large ledger.
func TestListCallsPlans(t *testing.T) {
	sqliteOnly(t)
	db, _ := MustOpenDB(t)
	for _, tc := range []struct {
		name  string
		f     CallFilter
		index string
	}{
		{"newest", CallFilter{Status: -1, Limit: 50}, "calls_started"},
		{"since", CallFilter{Status: -1, Since: t0}, "calls_started"},
		{"job", CallFilter{Job: "a", Status: -1}, "calls_job_started"},
		{"status", CallFilter{Status: 503}, "calls_status_started"},
		{"run", CallFilter{RunID: 7, Status: -1}, "calls_run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, args := listCallsQuery(tc.f)
			rows, err := db.reader.Query("EXPLAIN QUERY PLAN "+q, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				rows.Scan(&id, &parent, &unused, &detail)
				plan = append(plan, detail)
			}
			got := strings.Join(plan, "; ")
			if !strings.Contains(got, "INDEX "+tc.index) {
				t.Errorf("ListCalls(%+v) plan = %q; want it to use %s", tc.f, got, tc.index)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	db, clk := MustOpenDB(t)
	// 100 calls a day apart, 0..99 days before t0.
	for i := range 100 {
		if _, err := db.BeginCall(ctx, Call{StartedAt: t0.Add(-time.Duration(i) * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := db.HourlyUsage(ctx, t0.Add(-200*24*time.Hour))
	n, err := db.Prune(ctx, DefaultRetention)
	// Calls 91..99 days old are strictly older than 90 days.
	if err != nil || n != 9 {
		t.Errorf("Prune(90d) = %d, %v; want 9", n, err)
	}
	if got := count(t, db, "SELECT count(*) FROM calls"); got != 91 {
		t.Errorf("calls after prune = %d; want 91", got)
	}
	after, _ := db.HourlyUsage(ctx, t0.Add(-200*24*time.Hour))
	if !reflect.DeepEqual(before, after) || len(after) != 100 {
		t.Errorf("rollups changed by Prune: %d buckets before, %d after", len(before), len(after))
	}
	// Batches: more than one prune transaction's worth.
	clk.Set(t0.Add(1000 * 24 * time.Hour))
	n, err = db.Prune(ctx, time.Hour)
	if err != nil || n != 91 {
		t.Errorf("Prune(all) = %d, %v; want 91", n, err)
	}
	if _, err := db.Prune(ctx, 0); err == nil {
		t.Errorf("Prune(0) = nil error; want refusal")
	}
}

func TestPruneBatches(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	insertCalls(t, db, pruneBatch*2+7, t0.Add(-365*24*time.Hour), time.Second)
	n, err := db.Prune(ctx, DefaultRetention)
	if err != nil || n != pruneBatch*2+7 {
		t.Errorf("Prune() = %d, %v; want %d", n, err, pruneBatch*2+7)
	}
}

// insertCalls adds n call rows (and their rollup) step apart from start in one
// statement, the way the benchmarks populate big ledgers.
func insertCalls(tb testing.TB, db *DB, n int, start time.Time, step time.Duration) {
	tb.Helper()
	tx, err := db.writer.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`WITH RECURSIVE seq(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
		INSERT INTO calls (job, operation, method, path, safe, attempt, started_at, finished_at, status, duration_ms, bytes)
		SELECT 'job-' || (i % 7), 'AuditLog.query', 'POST', '/AuditLog/query', 1, 1, CAST(?2 AS BIGINT) + i * CAST(?3 AS BIGINT),
			CAST(?2 AS BIGINT) + i * CAST(?3 AS BIGINT) + 250, 200, 250, 1024
		FROM seq`, n, start.UnixMilli(), step.Milliseconds()); err != nil {
		tb.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO hourly_usage (hour, calls)
		SELECT started_at - started_at % 3600000, count(*) FROM calls WHERE started_at >= ?1 AND started_at < CAST(?1 AS BIGINT) + CAST(?2 AS BIGINT) * CAST(?3 AS BIGINT)
		GROUP BY 1 ON CONFLICT (hour) DO UPDATE SET calls = hourly_usage.calls + excluded.calls`,
		start.UnixMilli(), n, step.Milliseconds()); err != nil {
		tb.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func TestBackup(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	seedCalls(t, db, 25)
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := db.Backup(ctx, dst); err != nil {
		t.Fatalf("Backup(%q) = %v", dst, err)
	}
	if err := db.Backup(ctx, dst); !errors.Is(err, os.ErrExist) {
		t.Errorf("Backup(existing) = %v; want os.ErrExist", err)
	}
	cp, _ := MustOpenDBAt(t, dst, Options{NoMigrate: true})
	if got, err := cp.IntegrityCheck(ctx); err != nil || got != "ok" {
		t.Errorf("backup IntegrityCheck() = %q, %v; want ok", got, err)
	}
	if n := count(t, cp, "SELECT count(*) FROM calls"); n != 25 {
		t.Errorf("backup has %d calls; want 25", n)
	}
	cur, latest, _ := cp.SchemaVersion(ctx)
	if cur != latest {
		t.Errorf("backup SchemaVersion() = %d, %d; want equal", cur, latest)
	}
}

func TestJobState(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	if s, err := db.JobState(ctx, "x"); err != nil || !reflect.DeepEqual(s, JobState{Job: "x"}) {
		t.Errorf("JobState(unknown) = %+v, %v; want zero with Job set", s, err)
	}
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	steps := []struct {
		name string
		do   func() error
		want JobState
	}{
		{"pause", func() error { return db.SetPaused(ctx, "x", true) }, JobState{Job: "x", Paused: true}},
		{"last nominal", func() error { return db.SetLastNominal(ctx, "x", t2) }, JobState{Job: "x", Paused: true, LastNominal: t2}},
		{"last nominal never moves back", func() error { return db.SetLastNominal(ctx, "x", t1) }, JobState{Job: "x", Paused: true, LastNominal: t2}},
		{"resume", func() error { return db.SetPaused(ctx, "x", false) }, JobState{Job: "x", LastNominal: t2}},
		{"watermark", func() error { return db.SetWatermark(ctx, "x", t2) }, JobState{Job: "x", LastNominal: t2, Watermark: t2}},
		{"watermark may move back", func() error { return db.SetWatermark(ctx, "x", t1) }, JobState{Job: "x", LastNominal: t2, Watermark: t1}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got, err := db.JobState(ctx, "x"); err != nil || !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: JobState(x) = %+v, %v; want %+v", st.name, got, err, st.want)
		}
	}
	if err := db.SetLastNominal(ctx, "fresh", t1); err != nil {
		t.Fatal(err)
	}
	all, err := db.JobStates(ctx)
	want := []JobState{{Job: "fresh", LastNominal: t1}, {Job: "x", LastNominal: t2, Watermark: t1}}
	if err != nil || !reflect.DeepEqual(all, want) {
		t.Errorf("JobStates() = %+v, %v; want %+v", all, err, want)
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	if _, err := db.Meta(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Meta(missing) = %v; want ErrNotFound", err)
	}
	for _, v := range []string{"one", "two", ""} {
		if err := db.SetMeta(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Meta(ctx, "k"); err != nil || got != v {
			t.Errorf("Meta(k) = %q, %v; want %q", got, err, v)
		}
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	d := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	recs := []AuditRecord{
		{DocumentID: "d1", AccountID: "acc", ContainerID: "atom-1", UserID: "ann", Date: d, Type: "as.process",
			Action: "EXECUTE", Modifier: "MANUAL", Level: "INFO", Source: "API", Message: "ran",
			Properties: []AuditProperty{{Name: "processId", Value: "p1"}, {Name: "status", Value: "ON", PreviousValue: "OFF"}}},
		{DocumentID: "d2", AccountID: "acc", ContainerID: "atom-2", UserID: "bob", Date: d.Add(time.Hour), Type: "as.deploy",
			Action: "DEPLOY", Modifier: "NONE", Level: "WARNING", Source: "UI"},
		{DocumentID: "d3", AccountID: "acc", ContainerID: "atom-1", UserID: "ann", Date: d.Add(2 * time.Hour), Type: "as.process",
			Action: "EXECUTE", Modifier: "SCHEDULED", Level: "INFO", Source: "API",
			Properties: []AuditProperty{{Name: "processId", Value: "p2"}}},
	}
	n, err := db.UpsertAudit(ctx, recs)
	if err != nil || n != 3 {
		t.Fatalf("UpsertAudit(3 new) = %d, %v; want 3", n, err)
	}
	// A re-export with one new record inserts only that one.
	d4 := AuditRecord{DocumentID: "d4", UserID: "cy", Date: d.Add(3 * time.Hour), Type: "as.process", Action: "EXECUTE"}
	changed := recs[0]
	changed.Message = "changed"
	n, err = db.UpsertAudit(ctx, []AuditRecord{changed, recs[1], d4})
	if err != nil || n != 1 {
		t.Errorf("UpsertAudit(re-export) = %d, %v; want 1", n, err)
	}
	if got := count(t, db, "SELECT count(*) FROM audit_records"); got != 4 {
		t.Errorf("audit_records = %d; want 4", got)
	}
	// A bad record fails the whole batch: one transaction.
	if _, err := db.UpsertAudit(ctx, []AuditRecord{{DocumentID: "d5", Date: d}, {Date: d}}); err == nil {
		t.Errorf("UpsertAudit(no document id) = nil error")
	}
	if got := count(t, db, "SELECT count(*) FROM audit_records WHERE document_id = 'd5'"); got != 0 {
		t.Errorf("a failed batch left %d rows", got)
	}
	for _, tc := range []struct {
		name string
		f    AuditFilter
		want []string
	}{
		{"all", AuditFilter{}, []string{"d1", "d2", "d3", "d4"}},
		{"user", AuditFilter{UserID: "ann"}, []string{"d1", "d3"}},
		{"type+action", AuditFilter{Type: "as.process", Action: "EXECUTE"}, []string{"d1", "d3", "d4"}},
		{"modifier", AuditFilter{Modifier: "SCHEDULED"}, []string{"d3"}},
		{"level", AuditFilter{Level: "WARNING"}, []string{"d2"}},
		{"source", AuditFilter{Source: "API"}, []string{"d1", "d3"}},
		{"container", AuditFilter{ContainerID: "atom-1"}, []string{"d1", "d3"}},
		{"property", AuditFilter{Property: "processId"}, []string{"d1", "d3"}},
		{"property value", AuditFilter{Property: "processId", PropertyValue: "p2"}, []string{"d3"}},
		{"since until", AuditFilter{Since: d.Add(time.Hour), Until: d.Add(3 * time.Hour)}, []string{"d2", "d3"}},
		{"limit", AuditFilter{Limit: 1}, []string{"d1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.ListAudit(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var docs []string
			for _, r := range got {
				docs = append(docs, r.DocumentID)
			}
			if !reflect.DeepEqual(docs, tc.want) {
				t.Errorf("ListAudit(%+v) = %v; want %v", tc.f, docs, tc.want)
			}
		})
	}
	got, _ := db.ListAudit(ctx, AuditFilter{UserID: "ann", Limit: 1})
	if len(got) != 1 || !reflect.DeepEqual(got[0], recs[0]) {
		t.Errorf("ListAudit round trip = %+v; want %+v", got, recs[0])
	}
}

func TestExportWindows(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	run, _, _ := db.CreateRun(ctx, runnerd.Run{Job: "audit", NominalTime: t0})
	w1 := ExportWindow{Job: "audit", Object: "AuditLog", From: t0.Add(-2 * time.Hour), To: t0.Add(-time.Hour), Rows: 10, RunID: run.ID, File: "/x/1.jsonl"}
	w2 := ExportWindow{Job: "audit", Object: "AuditLog", From: t0.Add(-time.Hour), To: t0, Rows: 3, File: "/x/2.jsonl"}
	w3 := ExportWindow{Job: "ex", Object: "ExecutionRecord", From: t0.Add(-3 * time.Hour), To: t0, Rows: 0}
	for _, w := range []ExportWindow{w2, w1, w3} {
		if err := db.RecordExportWindow(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	// Re-exporting w2 replaces its rows and file.
	w2b := w2
	w2b.Rows, w2b.File, w2b.RunID = 4, "/x/2b.jsonl", run.ID
	if err := db.RecordExportWindow(ctx, w2b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		object string
		want   []ExportWindow
	}{
		{"AuditLog", []ExportWindow{w1, w2b}},
		{"", []ExportWindow{w3, w1, w2b}},
		{"Event", nil},
	} {
		got, err := db.ExportWindows(ctx, tc.object)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExportWindows(%q) = %+v, %v; want %+v", tc.object, got, err, tc.want)
		}
	}
	if err := db.RecordExportWindow(ctx, ExportWindow{Job: "a", Object: "o", From: t0, To: t0.Add(-time.Hour)}); err == nil {
		t.Errorf("RecordExportWindow(to before from) = nil error")
	}
}

// TestRecoveryCalls counts, per run, the calls made with Recovery (the
// reconciliation lookups), and none for runs without.
func TestRecoveryCalls(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	var ids []int64
	for i := range 3 {
		r, _, err := db.CreateRun(ctx, runnerd.Run{Job: "exec", Kind: "execute", NominalTime: nominal.Add(time.Duration(i) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	for _, c := range []Call{
		{RunID: ids[0], Job: "exec"}, {RunID: ids[0], Job: "exec", Recovery: true}, {RunID: ids[0], Job: "exec", Recovery: true},
		{RunID: ids[1], Job: "exec"}, {RunID: ids[2], Job: "exec", Recovery: true}, {Job: "exec", Recovery: true},
	} {
		if _, err := db.BeginCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.RecoveryCalls(ctx, ids[:2])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[ids[0]] != 2 {
		t.Errorf("RecoveryCalls(runs 1, 2) = %v; want {%d: 2}", got, ids[0])
	}
	if got, err := db.RecoveryCalls(ctx, ids); err != nil || got[ids[2]] != 1 || len(got) != 2 {
		t.Errorf("RecoveryCalls(all) = %v, %v", got, err)
	}
	if got, err := db.RecoveryCalls(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("RecoveryCalls(none) = %v, %v", got, err)
	}
}

// TestRecentCallCountsLeaveOutRateLimits: a run's 503 and 429 answers are
// not its normal cost; the oldest deferred run's time is what decay starts
// from.
func TestRecentCallCountsLeaveOutRateLimits(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	r, _, err := db.CreateRun(ctx, runnerd.Run{Job: "j", Kind: "deploy", NominalTime: nominal})
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{200, 503, 503, 429, 200, 500, 0} {
		c := Call{RunID: r.ID, Job: "j", Method: "POST", Path: "/x"}
		id, err := db.BeginCall(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		c.ID, c.Status = id, status
		if err := db.EndCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	r.State = runnerd.StateSucceeded
	if err := db.UpdateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	// 7 calls, 3 of them refused for the rate: 4 (the 500 and the
	// unanswered one are the run's own).
	h, err := db.JobHistory(ctx, "j", 5)
	if got := h.Costs; err != nil || !reflect.DeepEqual(got, []int{4}) {
		t.Errorf("JobHistory.Costs = %v, %v; want [4]", got, err)
	}
	if at := h.OldestDeferred; !at.IsZero() {
		t.Errorf("OldestDeferred with none = %v; want zero", at)
	}
	for _, h := range []int{5, 3, 4} {
		if _, _, err := db.CreateRun(ctx, runnerd.Run{Job: "j", Kind: "deploy", NominalTime: nominal.Add(time.Duration(h) * time.Hour),
			State: runnerd.StateDeferred}); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := db.JobHistory(ctx, "j", 0); err != nil || !h.OldestDeferred.Equal(nominal.Add(3*time.Hour)) {
		at := h.OldestDeferred
		t.Errorf("OldestDeferred = %v, %v; want %v", at, err, nominal.Add(3*time.Hour))
	}
}

func TestCallSummary(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	for _, c := range []struct {
		job, op string
		status  int
	}{{"b", "query", 200}, {"a", "query", 200}, {"a", "query", 503}, {"a", "query", 200}, {"a", "execute", 0}} {
		id, err := db.BeginCall(ctx, Call{Job: c.job, Operation: c.op, StartedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		if c.status != 0 {
			if err := db.EndCall(ctx, Call{ID: id, Status: c.status}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := db.CallSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []CallGroup{{"a", "execute", 0, 1}, {"a", "query", 200, 2}, {"a", "query", 503, 1}, {"b", "query", 200, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("CallSummary() = %v; want %v", got, want)
	}
}

func TestRecentDurations(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	for i, took := range []time.Duration{3 * time.Hour, 0, 90 * time.Minute} {
		r, _, err := db.CreateRun(ctx, runnerd.Run{Job: "j", Kind: "export", NominalTime: nominal.Add(time.Duration(i) * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		r.State = runnerd.StateSucceeded
		if took > 0 { // the second never started (a run recorded as finished without a start does not count)
			r.StartedAt, r.FinishedAt = r.NominalTime.Add(time.Minute), r.NominalTime.Add(time.Minute+took)
		}
		if err := db.UpdateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	h, err := db.JobHistory(ctx, "j", 5)
	if got, want := h.Durations, []time.Duration{90 * time.Minute, 3 * time.Hour}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("JobHistory.Durations = %v, %v; want %v (newest first)", got, err, want)
	}
}

func TestCallsSince(t *testing.T) {
	db, _ := MustOpenDB(t)
	insertCalls(t, db, 120, t0, time.Second) // one a second from t0
	for _, tc := range []struct {
		since time.Time
		want  int
	}{{t0, 120}, {t0.Add(60 * time.Second), 60}, {t0.Add(119 * time.Second), 1}, {t0.Add(2 * time.Minute), 0}} {
		if n, err := db.CallsSince(context.Background(), tc.since); err != nil || n != tc.want {
			t.Errorf("CallsSince(t0+%v) = %d, %v; want %d", tc.since.Sub(t0), n, err, tc.want)
		}
	}
}
