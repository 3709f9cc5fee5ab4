package budget

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"runnerd"
)

// The simulation replays a schedule of runs and recovery calls on fake time:
// at each run's due time the scheduler asks the Planner, with every run still
// pending as upcoming; an admitted run spends its calls through the Gate; a
// deferred one asks again at EarliestAt (or the next hour) until its catch-up
// window closes.

type simRun struct {
	Candidate
	calls    int // what it really spends, ≤ Estimate
	due      time.Time
	deadline time.Time
	done     bool
	missed   bool
	spent    int
	refused  int // gate refusals while running
	defers   int
}

type simSpec struct {
	limits   Limits
	start    time.Time
	end      time.Time
	catchUp  time.Duration
	runs     []*simRun
	recovery []time.Time // recovery calls (reconciliation lookups)
	// highsFit: the high-priority runs (and recovery calls) fit in Cap in every
	// window by construction, so any deferral or refusal of one while no
	// recovery call is in the window is starvation. (Recovery calls are not
	// planned: they take the room of ordinary work first, then the reserve, so
	// lower-priority runs admitted before them can leave a high run short.)
	highsFit bool
}

type simResult struct {
	errs        []string // invariant violations
	spent       int
	recovery    int
	hourly      map[int64]int // calls per hour, counted by the simulation itself
	recHourly   map[int64]int // recovery calls per hour
	highsServed int
	highs       int
}

func (r *simResult) failf(format string, args ...any) {
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

func simulate(spec simSpec) simResult {
	l := spec.limits
	w := NewWindow(l)
	clock := newFakeClock(spec.start)
	gate := NewGate(l, w, NewRateLimiter(l.Rate), clock, nil)
	planner := NewPlanner(l)
	ctx := context.Background()
	res := simResult{hourly: map[int64]int{}, recHourly: map[int64]int{}}
	// starved reports whether a high-priority run that falls short now counts
	// as starved: no recovery call is in the window.
	starved := func(p runnerd.Priority) bool {
		if !spec.highsFit || p != high {
			return false
		}
		h := hourOf(clock.Now())
		for k := h - 23; k <= h; k++ {
			if res.recHourly[k] > 0 {
				return false
			}
		}
		return true
	}
	runs := slices.Clone(spec.runs)
	slices.SortStableFunc(runs, func(a, b *simRun) int { return a.Nominal.Compare(b.Nominal) })
	for i, r := range runs {
		r.Seq = int64(i + 1)
		r.due = r.Nominal
		r.deadline = r.Nominal.Add(spec.catchUp)
	}
	rec := slices.Clone(spec.recovery)
	slices.SortFunc(rec, func(a, b time.Time) int { return a.Compare(b) })

	check := func(recovery bool) {
		now := clock.Now()
		used := w.Used(now)
		if !recovery && used > l.Cap() {
			res.failf("%v: used %d > cap %d after an ordinary call", now, used, l.Cap())
		}
		if used > l.DailyLimit {
			res.failf("%v: used %d > daily limit %d", now, used, l.DailyLimit)
		}
		if rem := w.Remaining(now); rem < 0 {
			res.failf("%v: Remaining %d < 0", now, rem)
		}
		// The window agrees with a recount of the calls.
		h, want := hourOf(now), 0
		for k := h - 23; k <= h; k++ {
			want += res.hourly[k]
		}
		if used != want {
			res.failf("Used(%v) = %d; the recount gives %d", now, used, want)
		}
	}
	spend := func(recovery bool, p runnerd.Priority) error {
		c := Ask{Priority: p, Recovery: recovery}
		if err := gate.Wait(ctx, c); err != nil {
			if !errors.Is(err, ErrExhausted) {
				res.failf("Wait = %v; want nil or ErrExhausted", err)
			}
			return err
		}
		res.hourly[hourOf(clock.Now())]++
		if recovery {
			res.recHourly[hourOf(clock.Now())]++
		}
		check(recovery)
		return nil
	}

	for {
		// The next event: a recovery call or the run due first (by Seq on ties).
		var next *simRun
		for _, r := range runs {
			if !r.done && !r.missed && (next == nil || r.due.Before(next.due)) {
				next = r
			}
		}
		if len(rec) > 0 && (next == nil || !rec[0].After(next.due)) {
			if rec[0].After(spec.end) {
				rec = nil
				continue
			}
			clock.Set(maxTime(clock.Now(), rec[0]))
			rec = rec[1:]
			if spend(true, runnerd.PriorityLow) == nil {
				res.recovery++
			}
			continue
		}
		if next == nil || next.due.After(spec.end) {
			break
		}
		r := next
		clock.Set(maxTime(clock.Now(), r.due))
		now := clock.Now()
		if now.After(r.deadline) {
			r.missed = true
			if starved(r.Priority) {
				res.failf("high run %s at %v missed after %d deferrals", r.Job, r.Nominal, r.defers)
			}
			continue
		}
		var upcoming []Candidate
		for _, u := range runs {
			if u != r && !u.done && !u.missed && !now.After(u.deadline) {
				upcoming = append(upcoming, u.Candidate)
			}
		}
		d := planner.Admit(now, w, r.Candidate, upcoming)
		if !d.Admit {
			r.defers++
			if starved(r.Priority) {
				res.failf("high run %s at %v deferred at %v: %s", r.Job, r.Nominal, now, d.Reason)
			}
			if d.Reason == "" {
				res.failf("deferral without a reason")
			}
			r.due = d.EarliestAt
			if r.due.IsZero() || !r.due.After(now) {
				r.due = hourTime(hourOf(now) + 1)
			}
			if r.due.After(r.deadline) {
				r.missed = true // it would fit only after its catch-up window
			}
			continue
		}
		r.done = true
		for i := 0; i < r.calls; i++ {
			if err := spend(false, r.Priority); err != nil {
				r.refused++
				if starved(r.Priority) {
					res.failf("high run %s at %v refused by the gate after %d calls: %v", r.Job, r.Nominal, i, err)
				}
				break // stops cleanly at a safe point
			}
			r.spent++
			res.spent++
		}
	}
	for _, r := range runs {
		if r.Priority == high && !r.Nominal.After(spec.end) {
			res.highs++
			if r.done && r.refused == 0 {
				res.highsServed++
			}
		}
	}
	return res
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// randomSpec makes a random schedule over days days: high runs that fit in Cap
// by construction (with the recovery calls), and normal and low runs that ask
// for far more than is left.
func randomSpec(rng *rand.Rand, days int, withRecovery bool) simSpec {
	daily := 50 + rng.IntN(2000)
	l := Limits{DailyLimit: daily, Reserve: rng.IntN(daily/5 + 1), Rate: float64(20 + rng.IntN(100))}
	start := mon.Add(time.Duration(rng.IntN(24)) * time.Hour)
	spec := simSpec{limits: l, start: start, end: start.Add(time.Duration(days) * 24 * time.Hour), catchUp: time.Duration(1+rng.IntN(12)) * time.Hour}
	capacity := l.Cap()
	recPerDay := 0
	if withRecovery {
		recPerDay = rng.IntN(capacity/10 + 1)
	}
	// Any 24-hour window spans at most two calendar days of the schedule.
	highPerDay := max(0, (capacity-2*recPerDay)/2)
	at := func(day int) time.Time {
		return start.Add(time.Duration(day)*24*time.Hour + time.Duration(rng.IntN(24))*time.Hour + time.Duration(rng.IntN(45))*time.Minute)
	}
	job := 0
	for day := 0; day <= days; day++ {
		left := highPerDay
		for n := rng.IntN(6); n > 0 && left > 0; n-- {
			est := 1 + rng.IntN(left)
			left -= est
			job++
			spec.runs = append(spec.runs, &simRun{Candidate: Candidate{Job: fmt.Sprintf("high-%d", job), Nominal: at(day), Priority: high, Estimate: est}, calls: est - rng.IntN(est/4+1)})
		}
		for n := 5 + rng.IntN(30); n > 0; n-- {
			est := 1 + rng.IntN(max(1, capacity/3))
			job++
			spec.runs = append(spec.runs, &simRun{Candidate: Candidate{Job: fmt.Sprintf("run-%d", job), Nominal: at(day), Priority: runnerd.Priority(rng.IntN(2)), Estimate: est}, calls: max(0, est-rng.IntN(est/2+1))})
		}
		for n := recPerDay; n > 0; n-- {
			spec.recovery = append(spec.recovery, at(day))
		}
	}
	spec.highsFit = true
	return spec
}

var flagSeeds = flag.Int("budget.seeds", 40, "TestBudgetRandom: how many seeds to simulate")

// TestBudgetRandom runs the simulation over many seeds: the window never
// exceeds Cap after an ordinary call nor DailyLimit at all, Remaining is never
// negative, the window agrees with a recount, and no high-priority run is
// deferred or refused when the high-priority runs fit by themselves.
func TestBudgetRandom(t *testing.T) {
	seeds := *flagSeeds
	if testing.Short() || raceEnabled {
		seeds = min(seeds, 10)
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 0xb0d6e7))
		spec := randomSpec(rng, 3, seed%2 == 1)
		res := simulate(spec)
		if len(res.errs) > 0 {
			t.Errorf("seed %d (limits %+v, %d runs, %d recovery calls):\n  %s", seed, spec.limits, len(spec.runs), len(spec.recovery), join(res.errs))
		}
		if len(spec.recovery) == 0 && res.highsServed != res.highs {
			t.Errorf("seed %d: %d of %d high-priority runs served", seed, res.highsServed, res.highs)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "\n  "
		}
		out += x
	}
	return out
}

// FuzzBudget: random schedules, priorities and call streams from the fuzzer's
// seed keep the same invariants as TestBudgetRandom.
func FuzzBudget(f *testing.F) {
	f.Add(uint64(1), uint8(2), false)
	f.Add(uint64(42), uint8(3), true)
	f.Add(uint64(7), uint8(1), true)
	f.Fuzz(func(t *testing.T, seed uint64, days uint8, withRecovery bool) {
		rng := rand.New(rand.NewPCG(seed, uint64(days)))
		spec := randomSpec(rng, 1+int(days%3), withRecovery)
		res := simulate(spec)
		if len(res.errs) > 0 {
			t.Fatalf("limits %+v: %s", spec.limits, join(res.errs))
		}
		if len(spec.recovery) == 0 && res.highsServed != res.highs {
			t.Fatalf("%d of %d high-priority runs served", res.highsServed, res.highs)
		}
	})
}

// yieldSpec is a day's workload that asks for about twice the allowance,
// repeated for days days: a high-priority deploy at 02:00 and an hourly
// high-priority execute, an hourly normal export and a low-priority export
// every half hour. Runs really spend 90-100% of their estimate.
func yieldSpec(days int) simSpec {
	l := Limits{DailyLimit: 5000, Reserve: 500, Rate: 5}
	rng := rand.New(rand.NewPCG(3, 4))
	spec := simSpec{limits: l, start: mon, end: mon.Add(time.Duration(days)*24*time.Hour - time.Second), catchUp: 6 * time.Hour}
	add := func(job string, at time.Time, p runnerd.Priority, est int) {
		spec.runs = append(spec.runs, &simRun{Candidate: Candidate{Job: job, Nominal: at, Priority: p, Estimate: est}, calls: est - rng.IntN(est/10+1)})
	}
	for day := 0; day < days; day++ {
		d := mon.Add(time.Duration(day) * 24 * time.Hour)
		add("promote", d.Add(2*time.Hour), high, 60)
		for h := 0; h < 24; h++ {
			t := d.Add(time.Duration(h) * time.Hour)
			add("orders", t.Add(5*time.Minute), high, 20)
			add("audit-export", t.Add(10*time.Minute), normal, 150)
			add("events-export", t.Add(15*time.Minute), low, 110)
			add("events-export", t.Add(45*time.Minute), low, 110)
		}
	}
	spec.highsFit = true
	return spec
}

type yieldFigures struct {
	demandPerDay int     // estimated calls asked for per day
	yield        float64 // calls spent in days 2…n ÷ (Cap × days)
	minWindow    float64 // the least-used window in days 2…n, ÷ Cap
	meanWindow   float64
	highs        string
}

func measureYield(tb testing.TB, days int) yieldFigures {
	tb.Helper()
	spec := yieldSpec(days)
	demand := 0
	for _, r := range spec.runs {
		demand += r.Estimate
	}
	res := simulate(spec)
	if len(res.errs) > 0 {
		tb.Fatalf("yield simulation: %s", join(res.errs))
	}
	capacity := spec.limits.Cap()
	// Day 1 fills an empty window; measure the days after it.
	spent, windows, minW, sumW := 0, 0, 1.0, 0.0
	for h := hourOf(mon) + 24; h < hourOf(mon)+int64(24*days); h++ {
		spent += res.hourly[h]
		used := 0
		for k := h - 23; k <= h; k++ {
			used += res.hourly[k]
		}
		if used > capacity {
			tb.Fatalf("window of %v: %d calls; want ≤ %d", hourTime(h), used, capacity)
		}
		u := float64(used) / float64(capacity)
		minW = min(minW, u)
		sumW += u
		windows++
	}
	if res.highsServed != res.highs {
		tb.Errorf("high-priority runs served: %d of %d; want all", res.highsServed, res.highs)
	}
	if testing.Verbose() {
		for h := hourOf(mon); h < hourOf(mon)+int64(24*days); h++ {
			used := 0
			for k := h - 23; k <= h; k++ {
				used += res.hourly[k]
			}
			tb.Logf("%v spent %4d window %4d", hourTime(h).Format("Mon 15:04"), res.hourly[h], used)
		}
	}
	return yieldFigures{
		demandPerDay: demand / days,
		yield:        float64(spent) / float64(capacity*(days-1)),
		minWindow:    minW,
		meanWindow:   sumW / float64(windows),
		highs:        fmt.Sprintf("%d/%d", res.highsServed, res.highs),
	}
}

// TestBudgetYield: a workload asking for twice the allowance, replayed over
// three simulated days, stays within Cap in every window, uses ≥ 95% of it,
// and serves every high-priority run.
func TestBudgetYield(t *testing.T) {
	f := measureYield(t, 3)
	capacity := yieldSpec(1).limits.Cap()
	if f.demandPerDay < 2*capacity {
		t.Fatalf("demand %d/day; the test wants ≥ 2 × cap %d", f.demandPerDay, capacity)
	}
	t.Logf("demand %.2f × cap per day; yield %.4f; windows min %.4f mean %.4f; high runs served %s",
		float64(f.demandPerDay)/float64(capacity), f.yield, f.minWindow, f.meanWindow, f.highs)
	if f.yield < 0.95 {
		t.Errorf("yield = %.4f; want ≥ 0.95", f.yield)
	}
}

func BenchmarkBudgetYield(b *testing.B) {
	var f yieldFigures
	for b.Loop() {
		f = measureYield(b, 3)
	}
	b.ReportMetric(f.yield, "yield")
	b.ReportMetric(f.minWindow, "min-window")
	b.ReportMetric(f.meanWindow, "mean-window")
}
