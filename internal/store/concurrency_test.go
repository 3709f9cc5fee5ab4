package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"

	"github.com/mattn/go-sqlite3"
)

// TestConcurrentBeginEnd runs 8 goroutines × 1,000 BeginCall/EndCall pairs
// against one DB: all writes queue on the single writer connection, so no
// "database is locked" surfaces, and rows and rollup both add up.
func TestConcurrentBeginEnd(t *testing.T) {
	const workers = 8
	per := 1000
	if testing.Short() {
		per = 100
	}
	ctx := context.Background()
	// NORMAL: the property is about locking, not fsync, and 16,000 fsyncs
	// would make the test slow on a shared CI disk.
	db, _ := MustOpenDBAt(t, filepath.Join(t.TempDir(), "c.db"), Options{Synchronous: "NORMAL"})
	run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "conc", NominalTime: t0})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				c := Call{RunID: run.ID, Job: "conc", RequestID: fmt.Sprintf("w%d-%d", w, i),
					StartedAt: t0.Add(time.Duration(w*per+i) * time.Second)}
				id, err := db.BeginCall(ctx, c)
				if err != nil {
					errs <- err
					return
				}
				// Readers run alongside the writers.
				if i%100 == 0 {
					if _, err := db.HourlyUsage(ctx, t0); err != nil {
						errs <- err
						return
					}
				}
				if err := db.EndCall(ctx, Call{ID: id, Status: 200, DurationMS: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent BeginCall/EndCall: %v", err)
	}
	want := workers * per
	if n := count(t, db, "SELECT count(*) FROM calls WHERE status = 200"); n != want {
		t.Errorf("ended calls = %d; want %d", n, want)
	}
	usage, err := db.HourlyUsage(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, u := range usage {
		sum += u.Calls
	}
	if sum != want {
		t.Errorf("sum of HourlyUsage = %d; want %d", sum, want)
	}
	if r, _ := db.GetRun(ctx, run.ID); r.Calls != want {
		t.Errorf("run.Calls = %d; want %d", r.Calls, want)
	}
}

// TestBusyBeyondTimeout holds the write lock from another connection (as a
// second process would) for longer than the busy timeout: BeginCall must
// fail with SQLITE_BUSY, record nothing, and work again after the release.
func TestBusyBeyondTimeout(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "busy.db")
	db, _ := MustOpenDBAt(t, path, Options{BusyTimeout: 100 * time.Millisecond})
	if _, err := db.BeginCall(ctx, Call{RequestID: "before"}); err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite3", path+"?_txlock=immediate&_busy_timeout=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.BeginCall(ctx, Call{RequestID: "during"})
	var se sqlite3.Error
	if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || !strings.HasPrefix(err.Error(), "store: begin call:") {
		t.Errorf("BeginCall() while another connection holds the write lock = %v; want a wrapped SQLITE_BUSY", err)
	}
	// Reads are not blocked by the writer (WAL).
	if _, err := db.ListCalls(ctx, CallFilter{Status: -1}); err != nil {
		t.Errorf("ListCalls() during the lock = %v", err)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.BeginCall(ctx, Call{RequestID: "after"}); err != nil {
		t.Errorf("BeginCall() after the lock was released = %v", err)
	}
	calls, _ := db.ListCalls(ctx, CallFilter{Status: -1})
	var got []string
	for _, c := range calls {
		got = append(got, c.RequestID)
	}
	if strings.Join(got, ",") != "after,before" {
		t.Errorf("request ids = %v; want [after before] (the refused call is not recorded)", got)
	}
}

// TestDiskFull caps the database size so that inserts fail with SQLITE_FULL:
// BeginCall reports the error, nothing committed is lost, and once space
// returns the ledger works again.
func TestDiskFull(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	db, _ := MustOpenDB(t)
	seedCalls(t, db, 20)
	var pages int
	if err := db.writer.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := db.writer.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	var full error
	for i := range 1000 { // fill the last free space
		if _, full = db.BeginCall(ctx, Call{RequestID: strings.Repeat("x", 200) + fmt.Sprint(i), StartedAt: t0.Add(time.Duration(i) * time.Hour)}); full != nil {
			break
		}
	}
	var se sqlite3.Error
	if !errors.As(full, &se) || se.Code != sqlite3.ErrFull {
		t.Fatalf("BeginCall() on a full database = %v; want SQLITE_FULL", full)
	}
	committed := count(t, db, "SELECT count(*) FROM calls")
	if rollup := count(t, db, "SELECT sum(calls) FROM hourly_usage"); rollup != committed {
		t.Errorf("after SQLITE_FULL: rollup %d, call rows %d; want equal (the failed call left nothing)", rollup, committed)
	}
	if _, err := db.writer.Exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.BeginCall(ctx, Call{RequestID: "after"}); err != nil {
		t.Errorf("BeginCall() after space returned = %v", err)
	}
	if n := count(t, db, "SELECT count(*) FROM calls"); n != committed+1 {
		t.Errorf("call rows = %d; want %d", n, committed+1)
	}
	if got, _ := db.IntegrityCheck(ctx); got != "ok" {
		t.Errorf("IntegrityCheck() = %q; want ok", got)
	}
}

// TestRollupMatchesCalls checks, over random timestamps, that HourlyUsage is
// exactly the count of calls begun in each UTC hour, and stays so after
// pruning (rollups are kept).
func TestRollupMatchesCalls(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			db, _ := MustOpenDBAt(t, filepath.Join(t.TempDir(), "r.db"), Options{Synchronous: "NORMAL"})
			rng := rand.New(rand.NewPCG(seed, 42))
			want := map[time.Time]int{}
			zones := []*time.Location{time.UTC, time.FixedZone("a", 5*3600+1800), time.FixedZone("b", -7*3600)}
			for range 300 {
				at := t0.Add(-time.Duration(rng.Int64N(int64(72 * time.Hour))))
				at = at.In(zones[rng.IntN(len(zones))])
				if _, err := db.BeginCall(ctx, Call{StartedAt: at}); err != nil {
					t.Fatal(err)
				}
				want[at.UTC().Truncate(time.Hour)]++
			}
			check := func(when string) {
				usage, err := db.HourlyUsage(ctx, t0.Add(-100*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				got := map[time.Time]int{}
				for _, u := range usage {
					if u.Hour.Location() != time.UTC || !u.Hour.Truncate(time.Hour).Equal(u.Hour) {
						t.Errorf("bucket %v is not a UTC hour", u.Hour)
					}
					got[u.Hour] = u.Calls
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: HourlyUsage = %v; want %v", when, got, want)
				}
			}
			check("after inserts")
			if _, err := db.Prune(ctx, time.Hour); err != nil {
				t.Fatal(err)
			}
			check("after prune")
		})
	}
}
