package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

// countingDB is the real store, counting the per-job and batch reads Start
// makes.
type countingDB struct {
	*store.DB
	jobState, jobStates atomic.Int64
}

func (c *countingDB) JobState(ctx context.Context, job string) (store.JobState, error) {
	c.jobState.Add(1)
	return c.DB.JobState(ctx, job)
}

func (c *countingDB) JobStates(ctx context.Context) ([]store.JobState, error) {
	c.jobStates.Add(1)
	return c.DB.JobStates(ctx)
}

// Start with 1,000 jobs on an empty ledger and again after a restart costs a
// constant number of write transactions (each an fsync) and job-state
// queries, not one per job (issue 16, finding F2).
func TestStartTransactionsConstant(t *testing.T) {
	ctx := t.Context()
	path := t.TempDir() + "/runnerd.db"
	now := time.Date(2026, 3, 2, 10, 15, 30, 0, time.UTC)
	jobs := make([]Job, 1000)
	for i := range jobs {
		jobs[i] = Job{Name: fmt.Sprintf("job-%04d", i), Kind: "export", Schedule: "0 0 1 1 *", Enabled: true,
			CatchUp: CatchUpLatest, CatchUpWindow: time.Hour, Runner: sleepKind(0)}
	}
	first := now.Truncate(time.Second)
	for _, start := range []string{"empty ledger", "restart"} {
		db, err := ledger.Open(t, path, store.Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		cdb := &countingDB{DB: db}
		s := newTestScheduler(t, cdb, Options{Now: func() time.Time { return now }})
		mustSetJobs(t, s, jobs...)
		if n, m := cdb.jobState.Swap(0), cdb.jobStates.Swap(0); n != 0 || m != 1 {
			t.Errorf("%s: SetJobs of %d jobs made %d per-job and %d batch state queries; want 0 and 1", start, len(jobs), n, m)
		}
		before := db.WriteTransactions()
		if err := s.Start(ctx); err != nil {
			t.Fatalf("%s: Start: %v", start, err)
		}
		writes := db.WriteTransactions() - before
		t.Logf("%s: Start with %d jobs: %d write transactions, %d JobStates queries, %d JobState queries",
			start, len(jobs), writes, cdb.jobStates.Load(), cdb.jobState.Load())
		if writes > 1 {
			t.Errorf("%s: Start took %d write transactions for %d jobs; want at most 1", start, writes, len(jobs))
		}
		if cdb.jobStates.Load() != 1 || cdb.jobState.Load() != 0 {
			t.Errorf("%s: Start read job state with %d batch and %d per-job queries; want 1 and 0",
				start, cdb.jobStates.Load(), cdb.jobState.Load())
		}
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := db.JobState(ctx, "job-0999")
		// The first start records now; the restart an hour later has no
		// yearly slot to catch up, so it keeps it.
		if err != nil || !st.LastNominal.Equal(first) {
			t.Errorf("%s: job-0999's last slot = %v, %v; want %v recorded", start, st.LastNominal, err, first)
		}
		db.Close()
		now = now.Add(time.Hour)
	}
}
