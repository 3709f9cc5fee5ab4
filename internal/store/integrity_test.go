package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crash closes db as a killed process would leave it: the daemon marker is
// not cleared.
func crash(tb testing.TB, db *DB) {
	tb.Helper()
	db.daemon = false
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// damageCalls overwrites the cell area of the calls table's root page of the
// closed ledger at path: damage only the full quick_check finds.
func damageCalls(tb testing.TB, path string, ps, root int) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	fill(b[root*ps-ps/2 : root*ps])
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return b
}

// The daemon marker: a clean Close removes it (and the next daemon start runs
// no full check); a crash leaves it, and the next daemon start runs
// quick_check, which refuses a damaged file with ErrCorrupt and leaves it
// exactly as it was, while an undamaged one opens (checked) and is marked again.
func TestDaemonUncleanStopCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "runnerd.db")

	db, err := Open(ctx, path, Options{Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.UncleanStop() != "" || db.FullyChecked() {
		t.Errorf("first daemon open: unclean %q, checked %v; want neither", db.UncleanStop(), db.FullyChecked())
	}
	if m, _ := db.DaemonMarker(ctx); !strings.HasPrefix(m, "pid ") {
		t.Errorf("DaemonMarker() = %q while open; want pid …", m)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Clean stop: no marker, no full check.
	db, err = Open(ctx, path, Options{Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.UncleanStop() != "" || db.FullyChecked() {
		t.Errorf("after a clean stop: unclean %q, checked %v; want neither", db.UncleanStop(), db.FullyChecked())
	}
	seedCalls(t, db, 50)
	crash(t, db)

	// Unclean stop, sound file: opened after a full check.
	db, err = Open(ctx, path, Options{Daemon: true})
	if err != nil {
		t.Fatalf("Open after an unclean stop (sound file) = %v", err)
	}
	if db.UncleanStop() == "" || !db.FullyChecked() {
		t.Errorf("after an unclean stop: unclean %q, checked %v; want the marker and a full check", db.UncleanStop(), db.FullyChecked())
	}
	var ps, root int
	db.writer.QueryRow("PRAGMA page_size").Scan(&ps)
	db.writer.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'calls'").Scan(&root)
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	crash(t, db)
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")

	// Unclean stop, damaged file: refused, untouched.
	want := damageCalls(t, path, ps, root)
	_, err = Open(ctx, path, Options{Daemon: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("daemon Open after an unclean stop (damaged) = %v; want ErrCorrupt naming the file", err)
	}
	t.Logf("refused: %v", err)
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Errorf("the refused file was changed")
	}
	// The cheap check alone (a CLI command) does not see this damage.
	ro, err := OpenReadOnly(ctx, path, Options{})
	if err != nil {
		t.Fatalf("OpenReadOnly(damaged tables) = %v; the cheap check should pass", err)
	}
	if err := ro.QuickCheck(ctx); !errors.Is(err, ErrCorrupt) {
		t.Errorf("QuickCheck(damaged) = %v; want ErrCorrupt", err)
	}
	ro.Close()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Errorf("the damaged file was changed by a read-only open")
	}
}

func TestQuickCheckSound(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	seedCalls(t, db, 20)
	if err := db.QuickCheck(ctx); err != nil {
		t.Errorf("QuickCheck(sound) = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.QuickCheck(cctx); err == nil {
		t.Errorf("QuickCheck(cancelled) = nil; want an error")
	}
}

// A read-only open never creates a file, never migrates, refuses writes, and
// reads what is there.
func TestReadOnlyNeverCreatesOrMigrates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.db")
	_, err := OpenReadOnly(ctx, missing, Options{})
	if !errors.Is(err, ErrNoDatabase) || !strings.Contains(err.Error(), missing) {
		t.Errorf("OpenReadOnly(missing) = %v; want ErrNoDatabase naming the path", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a read-only open of a missing file created %v", ents)
	}

	// An unmigrated ledger stays unmigrated.
	bare := filepath.Join(dir, "bare.db")
	db, err := Open(ctx, bare, Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := Open(ctx, bare, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("OpenReadOnly(unmigrated) = %v", err)
	}
	if cur, _, err := ro.SchemaVersion(ctx); err != nil || cur != 0 {
		t.Errorf("SchemaVersion() = %d, %v; want 0 (not migrated)", cur, err)
	}
	if _, err := ro.Migrate(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Migrate(read-only) = %v; want ErrReadOnly", err)
	}
	ro.Close()

	// A migrated ledger with a writer open elsewhere: reads work, writes are
	// refused, nothing changes.
	path := filepath.Join(dir, "runnerd.db")
	w, _ := MustOpenDBAt(t, path, Options{})
	seedCalls(t, w, 3)
	before := w.WriteTransactions()
	ro, err = OpenReadOnly(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if calls, err := ro.ListCalls(ctx, CallFilter{Status: -1}); err != nil || len(calls) != 3 {
		t.Errorf("ListCalls(read-only) = %d, %v; want 3", len(calls), err)
	}
	if _, err := ro.BeginCall(ctx, Call{Job: "x"}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("BeginCall(read-only) = %v; want ErrReadOnly", err)
	}
	if err := ro.SetPaused(ctx, "x", true); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetPaused(read-only) = %v; want ErrReadOnly", err)
	}
	if ro.WriteTransactions() != 0 || w.WriteTransactions() != before {
		t.Errorf("write transactions: read-only %d, writer %d → %d", ro.WriteTransactions(), before, w.WriteTransactions())
	}
}

func TestCheckFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runnerd.db")
	db, _ := MustOpenDBAt(t, path, Options{})
	seedCalls(t, db, 5)
	if err := checkFiles(path, false); err != nil {
		t.Fatalf("checkFiles(sound, open WAL) = %v", err)
	}
	db.Close()
	// A WAL whose header is not SQLite's would be ignored by SQLite, losing
	// its commits: refused.
	if err := os.WriteFile(path+"-wal", bytes.Repeat([]byte{0xAB}, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "-wal") {
		t.Errorf("Open(garbage WAL) = %v; want ErrCorrupt naming the WAL", err)
	}
	if _, err := OpenReadOnly(ctx, path, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenReadOnly(garbage WAL) = %v; want ErrCorrupt", err)
	}
	os.Remove(path + "-wal")
	// A truncated file.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkFiles(path, false); !errors.Is(err, ErrCorrupt) {
		t.Errorf("checkFiles(truncated) = %v; want ErrCorrupt", err)
	}
}

// Issue 14, ledger side: a call begun at 12:59:59.9 and sent (after pacing)
// at 13:00:00.5 counts in 13:00, in the rollup and on its row.
func TestEndCallSentAtMovesHour(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	begun := time.Date(2026, 3, 2, 12, 59, 59, 900e6, time.UTC)
	sent := time.Date(2026, 3, 2, 13, 0, 0, 500e6, time.UTC)
	id, err := db.BeginCall(ctx, Call{Job: "j", Method: "GET", Path: "/x", StartedAt: begun})
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.BeginCall(ctx, Call{Job: "j", Method: "GET", Path: "/y", StartedAt: begun})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.EndCall(ctx, Call{ID: id, Status: 200, SentAt: sent}); err != nil {
		t.Fatal(err)
	}
	// Sent within its hour: nothing moves.
	if err := db.EndCall(ctx, Call{ID: other, Status: 200, SentAt: begun.Add(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	u, err := db.HourlyUsage(ctx, begun.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for _, h := range u {
		got[h.Hour.Hour()] = h.Calls
	}
	if got[12] != 1 || got[13] != 1 {
		t.Errorf("HourlyUsage = %v; want 12:00 → 1, 13:00 → 1", u)
	}
	calls, err := db.ListCalls(ctx, CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if c.ID == id && !c.StartedAt.Equal(sent) {
			t.Errorf("call %d StartedAt = %v; want the sent time %v", c.ID, c.StartedAt, sent)
		}
	}
	if n := count(t, db, "SELECT sum(calls) FROM hourly_usage"); n != 2 {
		t.Errorf("rollup sums to %d; want 2", n)
	}
	if err := db.EndCall(ctx, Call{ID: 999, SentAt: sent}); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndCall(missing, SentAt) = %v; want ErrNotFound", err)
	}
}

func TestSetLastNominalsOneTransaction(t *testing.T) {
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	if err := db.SetLastNominal(ctx, "b", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	last := map[string]time.Time{}
	for i := range 500 {
		last[string(rune('a'+i%26))+time.Duration(i).String()] = t0
	}
	last["b"] = t0 // earlier than stored: kept
	before := db.WriteTransactions()
	if err := db.SetLastNominals(ctx, last); err != nil {
		t.Fatal(err)
	}
	if n := db.WriteTransactions() - before; n != 1 {
		t.Errorf("SetLastNominals(501 jobs) took %d write transactions; want 1", n)
	}
	states, err := db.JobStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 501 {
		t.Errorf("JobStates() = %d; want 501", len(states))
	}
	if st, _ := db.JobState(ctx, "b"); !st.LastNominal.Equal(t0.Add(time.Hour)) {
		t.Errorf("b's last slot = %v; want it kept at %v (only moves forward)", st.LastNominal, t0.Add(time.Hour))
	}
	if err := db.SetLastNominals(ctx, map[string]time.Time{"": t0}); err == nil {
		t.Errorf("SetLastNominals(empty name) = nil")
	}
}

// TestReaderBesideCheckpoints: a command opening the ledger while the daemon
// writes and checkpoints it (page 1, with the new page count, is written
// before the pages that extend the file) is never told the file is corrupt.
// TestOpsNotify met this once in ten runs of the package.
func TestReaderBesideCheckpoints(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	path := db.Path()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		pad := strings.Repeat("x", 3000) // a page or so per call: the file grows at every checkpoint
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := db.BeginCall(ctx, Call{Job: "j", Method: "GET", Path: "/x", Error: pad, StartedAt: time.Now()}); err != nil {
				done <- err
				return
			}
			if i%4 == 0 {
				if err := db.Checkpoint(ctx); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if err := checkFiles(path, false); err != nil {
			t.Errorf("checkFiles beside a writer, try %d: %v", i, err)
			break
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
