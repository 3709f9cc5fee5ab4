//go:build linux

package scheduler

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"runnerd"
)

// benchJobs returns n jobs: a quarter hourly, the rest daily, half of them in
// Europe/Berlin, spread over the day.
func benchJobs(tb testing.TB, n int) []Job {
	berlin := mustLoad(tb, "Europe/Berlin")
	k := &fakeKind{}
	jobs := make([]Job, n)
	for i := range jobs {
		spec := fmt.Sprintf("%d %d * * *", i%60, (i/60)%24)
		if i%4 == 0 {
			spec = fmt.Sprintf("%d * * * *", i%60)
		}
		loc := time.UTC
		if i%2 == 1 {
			loc = berlin
		}
		jobs[i] = Job{Name: fmt.Sprintf("job-%05d", i), Kind: "execute", Schedule: spec, Location: loc,
			Priority: runnerd.Priority(i % 3), Enabled: true, Runner: k}
	}
	return jobs
}

var sizes = []int{10, 1000, 10000}

// cpuClock measures the CPU time of the calling goroutine's thread: on a
// shared machine wall time says more about the neighbours than about the
// code. Benchmarks report it as cpu-ns/op.
type cpuClock struct{ total time.Duration }

func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// time runs f on a locked thread and adds its CPU time.
func (c *cpuClock) time(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := threadCPU()
	f()
	c.total += threadCPU() - t0
}

func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkSetJobs measures installing n jobs in a new scheduler, and reports
// the heap it keeps per job.
func BenchmarkSetJobs(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			jobs := benchJobs(b, n)
			st := newFakeStore()
			var kept uint64
			var cpu cpuClock
			for b.Loop() {
				var before, after runtime.MemStats
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				var s *Scheduler
				var err error
				cpu.time(func() {
					s = New(Options{Store: st})
					err = s.SetJobs(b.Context(), jobs)
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				kept = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(s)
				b.StartTimer()
			}
			b.ReportMetric(float64(kept)/float64(n), "B/job")
			cpu.report(b)
		})
	}
}

// BenchmarkReload measures a SIGHUP reload that changes one job in n.
func BenchmarkReload(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			jobs := benchJobs(b, n)
			s := New(Options{Store: newFakeStore()})
			if err := s.SetJobs(b.Context(), jobs); err != nil {
				b.Fatal(err)
			}
			i := 0
			var cpu cpuClock
			for b.Loop() {
				jobs[i%n].Schedule = fmt.Sprintf("%d 3 * * *", i%60)
				var err error
				cpu.time(func() { err = s.SetJobs(b.Context(), jobs) })
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b)
		})
	}
}

// BenchmarkUpcoming measures the planner's 24-hour look-ahead:
//   - first: a scheduler's first call computes every job's slots (and reports
//     the heap the look-ahead keeps per job);
//   - reload: the first call after a reload that changed one job;
//   - warm: answered from the cache, as admissions are.
func BenchmarkUpcoming(b *testing.B) {
	now := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	for _, n := range sizes {
		jobs := benchJobs(b, n)
		b.Run(fmt.Sprintf("first/%d", n), func(b *testing.B) {
			var got int
			var kept uint64
			var cpu cpuClock
			for b.Loop() {
				b.StopTimer()
				s := New(Options{Store: newFakeStore(), Estimator: fixedEstimator{n: 3}})
				if err := s.SetJobs(b.Context(), jobs); err != nil {
					b.Fatal(err)
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				cpu.time(func() { got = len(s.Upcoming(now, LookAhead)) })
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				kept = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(s)
				b.StartTimer()
			}
			b.ReportMetric(float64(got), "slots")
			b.ReportMetric(float64(kept)/float64(n), "B/job")
			cpu.report(b)
		})
		s := New(Options{Store: newFakeStore(), Estimator: fixedEstimator{n: 3}})
		if err := s.SetJobs(b.Context(), jobs); err != nil {
			b.Fatal(err)
		}
		s.Upcoming(now, LookAhead)
		b.Run(fmt.Sprintf("reload/%d", n), func(b *testing.B) {
			i := 0
			var cpu cpuClock
			for b.Loop() {
				b.StopTimer()
				jobs[0].Schedule = fmt.Sprintf("%d 3 * * *", i%60)
				i++
				if err := s.SetJobs(b.Context(), jobs); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				cpu.time(func() { s.Upcoming(now, LookAhead) })
			}
			cpu.report(b)
		})
		b.Run(fmt.Sprintf("warm/%d", n), func(b *testing.B) {
			t := now
			var cpu cpuClock
			runtime.LockOSThread()
			t0 := threadCPU()
			for b.Loop() {
				t = t.Add(time.Second)
				s.Upcoming(t, LookAhead)
			}
			cpu.total = threadCPU() - t0
			runtime.UnlockOSThread()
			cpu.report(b)
		})
	}
}
