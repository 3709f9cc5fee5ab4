package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/budget"
)

// BenchmarkLedgerScaling measures, on ledgers of 10,000 and 10,000,000 call
// rows (90 days, as BenchmarkHourlyUsage builds them), the two things a
// growing ledger could slow down:
//
//   - usage: HourlyUsage for the last 24 hours (BenchmarkHourlyUsage's query).
//   - decision: a planner decision from the ledger up, as the daemon makes it
//     at start-up and `runnerd plan` each time: HourlyUsage for the last 25
//     hours, Window.Load, then Planner.Admit of one run against 1,000 upcoming
//     runs. (The running daemon keeps the window in memory and calls Admit
//     alone: see budget's BenchmarkAdmit.)
//   - BeginEnd: one recorded attempt with synchronous=FULL, the cost per call.
//
// cpu-µs/op is the process's user+system CPU per operation (SQLite's work
// included, the fsync wait not), steadier than ns/op on a loaded machine. The
// figures for the two sizes should be within 2× of each other. The big
// ledger takes a minute or more to build and is skipped with -short.
func BenchmarkLedgerScaling(b *testing.B) {
	ctx := context.Background()
	const span = 90 * 24 * time.Hour
	for _, rows := range []int{10_000, 10_000_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			if rows > 100_000 && testing.Short() {
				b.Skip("big ledger skipped with -short")
			}
			db, _ := MustOpenDBAt(b, filepath.Join(b.TempDir(), "s.db"), Options{Synchronous: "FULL"})
			step := (span / time.Duration(rows)).Truncate(time.Millisecond)
			insertCalls(b, db, rows, t0.Add(-step*time.Duration(rows)), step)
			if err := db.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
			limits := budget.Limits{DailyLimit: 10000, Reserve: 1000}
			upcoming := perfUpcoming(1000, t0)
			planner := budget.NewPlanner(limits)
			c := budget.Candidate{Job: "export", Nominal: t0, Priority: runnerd.PriorityNormal, Estimate: 300, Seq: 5000}

			b.Run("usage", func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := perfCPUTime(b)
				for b.Loop() {
					if u, err := db.HourlyUsage(ctx, t0.Add(-24*time.Hour)); err != nil || len(u) < 24 {
						b.Fatalf("HourlyUsage() = %d buckets, %v; want ≥ 24", len(u), err)
					}
				}
				b.ReportMetric(float64((perfCPUTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
			b.Run("decision", func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := perfCPUTime(b)
				for b.Loop() {
					usage, err := db.HourlyUsage(ctx, t0.Add(-25*time.Hour))
					if err != nil {
						b.Fatal(err)
					}
					hours := make([]budget.HourCount, len(usage))
					for i, u := range usage {
						hours[i] = budget.HourCount{Hour: u.Hour, Calls: u.Calls}
					}
					w := budget.NewWindow(limits)
					w.Load(hours)
					planner.Admit(t0, w, c, upcoming)
				}
				b.ReportMetric(float64((perfCPUTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
			b.Run("BeginEnd", func(b *testing.B) {
				run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "bench", NominalTime: t0})
				if err != nil {
					b.Fatal(err)
				}
				cpu0 := perfCPUTime(b)
				for i := 0; b.Loop(); i++ {
					id, err := db.BeginCall(ctx, Call{RunID: run.ID, Job: "bench", RequestID: fmt.Sprint("s", i),
						Operation: "AuditLog.query", Method: "POST", Path: "/AuditLog/query", Safe: true, Attempt: 1})
					if err != nil {
						b.Fatal(err)
					}
					if err := db.EndCall(ctx, Call{ID: id, Status: 200, DurationMS: 120, Bytes: 2048}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((perfCPUTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		})
	}
}

// perfUpcoming makes n runs spread over the next 24 hours (as budget's
// benchmarks do).
func perfUpcoming(n int, now time.Time) []budget.Candidate {
	rng := rand.New(rand.NewPCG(7, 7))
	out := make([]budget.Candidate, n)
	for i := range out {
		out[i] = budget.Candidate{Job: fmt.Sprintf("job-%d", i), Nominal: now.Add(time.Duration(rng.Int64N(int64(24 * time.Hour)))),
			Priority: runnerd.Priority(rng.IntN(3)), Estimate: 1 + rng.IntN(20), Seq: int64(i)}
	}
	return out
}

// perfCPUTime is this process's user+system CPU time so far.
func perfCPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
