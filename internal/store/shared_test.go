package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/pgtest"
)

// TestSharedWindowOneStep: four instances (each its own connection pool on
// one PostgreSQL ledger) begin 200 calls at once against a window of 50:
// exactly 50 are recorded, the rest refused with ErrWindowFull, and the
// hourly rollup says 50. Without the advisory lock the check and the insert
// race, and more get through.
func TestSharedWindowOneStep(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	const instances, attempts, limit = 4, 200, 50
	dbs := make([]*DB, instances)
	for i := range dbs {
		db, err := Open(ctx, url, Options{Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := dbs[i%instances].BeginCall(ctx, Call{Job: "j", Operation: "AuditLog.query", StartedAt: t0, Limit: limit})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrWindowFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != limit || full.Load() != attempts-limit {
		t.Errorf("%d recorded, %d refused; want %d and %d", ok.Load(), full.Load(), limit, attempts-limit)
	}
	if n := count(t, dbs[0], "SELECT sum(calls) FROM hourly_usage"); n != limit {
		t.Errorf("hourly rollup = %d; want %d", n, limit)
	}
	// A later hour whose windows still hold these calls is as full.
	if _, err := dbs[1].BeginCall(ctx, Call{Job: "j", StartedAt: t0.Add(23 * time.Hour), Limit: limit}); !errors.Is(err, ErrWindowFull) {
		t.Errorf("23 hours later: %v; want ErrWindowFull", err)
	}
	// 24 hours later the hour has left every window.
	if _, err := dbs[1].BeginCall(ctx, Call{Job: "j", StartedAt: t0.Add(24 * time.Hour), Limit: limit}); err != nil {
		t.Errorf("24 hours later: %v", err)
	}
}

// TestSharedRateState: the rate log is one row that concurrent updates take
// in turn.
func TestSharedRateState(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	a, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := []*DB{a, b}[i%2]
			if err := db.UpdateRateState(ctx, func(st *RateState) bool {
				st.LastStart++
				st.Starts = append(st.Starts, st.LastStart)
				if len(st.Starts) > 5 {
					st.Starts = st.Starts[1:]
				}
				return true
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var got RateState
	if err := a.UpdateRateState(ctx, func(st *RateState) bool { got = *st; return false }); err != nil {
		t.Fatal(err)
	}
	if got.LastStart != 40 || len(got.Starts) != 5 || got.Starts[0] != 36 || got.Starts[4] != 40 {
		t.Errorf("after 40 updates from two pools: %+v; want last 40, starts 36…40", got)
	}
}

// TestLeases: a job is leased to one instance at a time; its lease is
// renewed by the holder's heartbeat, taken by another instance only once it
// ran out or was released; a call is recorded only by the holder.
func TestLeases(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	db, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, b := Instance{Name: "a", Host: "h", PID: 1}, Instance{Name: "b", Host: "h", PID: 2}
	held, err := db.Heartbeat(ctx, a, []string{"deploy", "export"}, 300*time.Millisecond)
	if err != nil || len(held) != 2 {
		t.Fatalf("a's first heartbeat: %v, %v; want both jobs", held, err)
	}
	if held, err := db.Heartbeat(ctx, b, []string{"deploy", "other"}, 300*time.Millisecond); err != nil || len(held) != 1 || held[0] != "other" {
		t.Fatalf("b while a holds deploy: %v, %v; want [other]", held, err)
	}
	if _, err := db.BeginCall(ctx, Call{Job: "deploy", Instance: "b"}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b's call for a's job: %v; want ErrLeaseLost", err)
	}
	// a's own connections name it (application_name): its calls are counted
	// as its share.
	dbA, err := Open(ctx, url, Options{Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()
	if _, err := dbA.BeginCall(ctx, Call{Job: "deploy", Instance: "a", StartedAt: time.Now()}); err != nil {
		t.Errorf("a's call for its job: %v", err)
	}
	// a renews; b still cannot take it. Then a stops heartbeating.
	time.Sleep(200 * time.Millisecond)
	if _, err := db.Heartbeat(ctx, a, []string{"deploy", "export"}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if held, _ := db.Heartbeat(ctx, b, []string{"deploy", "other"}, 300*time.Millisecond); len(held) != 1 {
		t.Errorf("b took deploy from a that renewed 200 ms ago: %v", held)
	}
	time.Sleep(200 * time.Millisecond)
	if held, _ := db.Heartbeat(ctx, b, []string{"deploy", "other"}, 300*time.Millisecond); len(held) != 2 {
		t.Errorf("b did not take deploy after a's lease ran out: %v", held)
	}
	if _, err := db.BeginCall(ctx, Call{Job: "deploy", Instance: "a"}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a's call after its lease was taken: %v; want ErrLeaseLost", err)
	}
	// A clean stop gives the leases up at once.
	if err := db.ReleaseLeases(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if held, _ := db.Heartbeat(ctx, a, []string{"deploy", "export"}, time.Minute); len(held) != 2 {
		t.Errorf("a after b released: %v; want both", held)
	}
	ins, err := db.Instances(ctx, time.Now())
	if err != nil || len(ins) != 2 || ins[0].Name != "a" || ins[0].Leases != 2 || ins[0].Calls != 1 || ins[1].Calls != 0 ||
		ins[1].StoppedAt.IsZero() {
		t.Errorf("Instances() = %+v, %v", ins, err)
	}
	ls, err := db.Leases(ctx)
	if err != nil || len(ls) != 2 || ls[0].Instance != "a" || ls[1].Instance != "a" { // b's "other" went with it
		t.Errorf("Leases() = %+v, %v", ls, err)
	}
}
