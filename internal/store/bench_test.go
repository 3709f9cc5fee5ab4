package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"runnerd"
)

// BenchmarkBeginEnd measures one recorded attempt: BeginCall (committed
// before it returns) and EndCall, with synchronous=FULL (production) and
// NORMAL.
func BenchmarkBeginEnd(b *testing.B) {
	ctx := context.Background()
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run(sync, func(b *testing.B) {
			db, _ := MustOpenDBAt(b, filepath.Join(b.TempDir(), "b.db"), Options{Synchronous: sync})
			run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "bench", NominalTime: t0})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				id, err := db.BeginCall(ctx, Call{RunID: run.ID, Job: "bench", RequestID: fmt.Sprint("r", i),
					Operation: "ExecutionRecord.query", Method: "POST", Path: "/ExecutionRecord/query", Safe: true, Attempt: 1})
				if err != nil {
					b.Fatal(err)
				}
				if err := db.EndCall(ctx, Call{ID: id, Status: 200, DurationMS: 120, Bytes: 2048}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHourlyUsage reads the last 24 hours of usage from ledgers holding
// 10,000 and 10,000,000 call rows spread over the same 90 days (so the
// rollup and the answer are the same size): the cost must not grow with the
// number of call rows. The big ledger takes a while to build and is skipped
// with -short.
func BenchmarkHourlyUsage(b *testing.B) {
	ctx := context.Background()
	const span = 90 * 24 * time.Hour
	for _, rows := range []int{10_000, 10_000_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			if rows > 100_000 && testing.Short() {
				b.Skip("big ledger skipped with -short")
			}
			db, _ := MustOpenDBAt(b, filepath.Join(b.TempDir(), "h.db"), Options{Synchronous: "NORMAL"})
			step := (span / time.Duration(rows)).Truncate(time.Millisecond)
			start := t0.Add(-step * time.Duration(rows))
			insertCalls(b, db, rows, start, step)
			if n := count(b, db, "SELECT sum(calls) FROM hourly_usage"); n != rows {
				b.Fatalf("rollup sum = %d; want %d", n, rows)
			}
			// The bulk load is one huge transaction; a daemon's ledger grows a
			// call at a time and SQLite's auto-checkpoint keeps its WAL small.
			// Without this, every page read searches a WAL index of millions of
			// frames and the benchmark measures that instead.
			if err := db.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
			since := t0.Add(-24 * time.Hour)
			b.ResetTimer()
			for b.Loop() {
				u, err := db.HourlyUsage(ctx, since)
				if err != nil {
					b.Fatal(err)
				}
				if len(u) < 24 {
					b.Fatalf("HourlyUsage() = %d buckets; want ≥ 24", len(u))
				}
			}
		})
	}
}

// BenchmarkJobHistory is the estimator's read, once per job as the daemon
// loads 1,000 jobs (a different job each time, as at start-up). Its
// statement must not be re-prepared per call (see qJobHistory): ~10 µs/op
// here, ~60 µs when it was.
func BenchmarkJobHistory(b *testing.B) {
	db, _ := MustOpenDB(b)
	ctx := context.Background()
	jobs := make([]string, 1000)
	for i := range jobs {
		jobs[i] = fmt.Sprintf("job-%04d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.JobHistory(ctx, jobs[i%len(jobs)], HistoryRuns); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
