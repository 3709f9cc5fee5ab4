package budget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
)

func call(p runnerd.Priority, recovery bool) Ask {
	return Ask{Priority: p, Recovery: recovery}
}

func TestGateRefusal(t *testing.T) {
	l := Limits{DailyLimit: 10, Reserve: 2}
	now := mon.Add(5*time.Hour + 30*time.Minute)
	clock := newFakeClock(now)
	w := NewWindow(l)
	g := NewGate(l, w, NewRateLimiter(0), clock, nil)
	ctx := context.Background()
	for i := 0; i < l.Cap(); i++ {
		if err := g.Wait(ctx, call(runnerd.PriorityHigh, false)); err != nil {
			t.Fatalf("Wait #%d = %v; want nil", i+1, err)
		}
	}
	err := g.Wait(ctx, call(runnerd.PriorityHigh, false))
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Wait beyond the cap = %v; want *RefusedError", err)
	}
	if !errors.Is(err, ErrExhausted) || errors.Is(err, ErrPaused) {
		t.Errorf("Wait beyond the cap = %v; want errors.Is ErrExhausted only", err)
	}
	if want := mon.Add(29 * time.Hour); !re.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %v; want %v (when the 05:00 bucket falls out)", re.RetryAt, want)
	}
	if got := w.Used(now); got != 8 {
		t.Errorf("Used after a refusal = %d; want 8 (a refused call is not counted)", got)
	}

	// Recovery calls may use the reserve, up to the daily limit.
	for i := 0; i < l.Reserve; i++ {
		if err := g.Wait(ctx, call(runnerd.PriorityLow, true)); err != nil {
			t.Fatalf("recovery Wait #%d = %v; want nil (the reserve)", i+1, err)
		}
	}
	if err := g.Wait(ctx, call(runnerd.PriorityLow, true)); !errors.Is(err, ErrExhausted) {
		t.Errorf("recovery Wait beyond the daily limit = %v; want ErrExhausted", err)
	}
	if got := w.Used(now); got != l.DailyLimit {
		t.Errorf("Used = %d; want %d", got, l.DailyLimit)
	}
}

func TestGateCanceled(t *testing.T) {
	l := Limits{DailyLimit: 100}
	w := NewWindow(l)
	g := NewGate(l, w, NewRateLimiterMargin(1, 0), RealClock(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); err != nil {
		t.Fatalf("first Wait = %v; want nil", err)
	}
	cancel()
	// Canceled before the wait: nothing counted.
	if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(canceled) = %v; want context.Canceled", err)
	}
	// Canceled during the wait for a rate slot: the count is taken back.
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(l)
		g := NewGate(l, w, NewRateLimiterMargin(1, 0), RealClock(), nil)
		ctx := context.Background()
		if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); err != nil {
			t.Fatalf("Wait = %v", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait during the rate wait = %v; want DeadlineExceeded", err)
		}
		if got := w.Used(time.Now()); got != 1 {
			t.Errorf("Used = %d; want 1", got)
		}
	})
}

// TestGateExternalPause: while the classifier sees external usage, normal and
// low calls are refused until the next hour boundary, high and recovery calls
// pass; then one probe goes, and a 2xx ends the pause.
func TestGateExternalPause(t *testing.T) {
	l := Limits{DailyLimit: 1000, Reserve: 100}
	now := mon.Add(9*time.Hour + 20*time.Minute)
	clock := newFakeClock(now)
	w := NewWindow(l)
	cl := NewClassifier()
	g := NewGate(l, w, nil, clock, cl)
	ctx := context.Background()

	if s := g.Observe(true, 503); s.Kind != KindExternal {
		t.Fatalf("Observe(503, used 0 of 900) = %q; want external", s.Kind)
	}
	until := mon.Add(10 * time.Hour)
	for _, p := range []runnerd.Priority{runnerd.PriorityLow, runnerd.PriorityNormal} {
		err := g.Wait(ctx, call(p, false))
		var re *RefusedError
		if !errors.As(err, &re) || !errors.Is(err, ErrPaused) {
			t.Fatalf("Wait(%v) while external = %v; want *RefusedError wrapping ErrPaused", p, err)
		}
		if !re.RetryAt.Equal(until) {
			t.Errorf("Wait(%v) RetryAt = %v; want %v", p, re.RetryAt, until)
		}
	}
	if err := g.Wait(ctx, call(runnerd.PriorityHigh, false)); err != nil {
		t.Errorf("Wait(high) while external = %v; want nil", err)
	}
	if err := g.Wait(ctx, call(runnerd.PriorityLow, true)); err != nil {
		t.Errorf("Wait(recovery) while external = %v; want nil", err)
	}
	if got := w.Used(now); got != 2 {
		t.Errorf("Used = %d; want 2 (refused calls are not counted)", got)
	}

	// At the boundary one probe goes, the next normal call waits for its verdict.
	clock.Set(until)
	if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); err != nil {
		t.Fatalf("probe Wait at %v = %v; want nil", until, err)
	}
	if err := g.Wait(ctx, call(runnerd.PriorityNormal, false)); !errors.Is(err, ErrPaused) {
		t.Fatalf("second Wait while the probe is out = %v; want ErrPaused", err)
	}
	// The probe gets a 503: paused to the next boundary.
	clock.Set(until.Add(time.Second))
	s := g.Observe(true, 503)
	if s.Kind != KindExternal || !s.Until.Equal(until.Add(time.Hour)) {
		t.Fatalf("Observe(probe 503) = %+v; want external until %v", s, until.Add(time.Hour))
	}
	// Next boundary: a probe that succeeds ends the pause for everyone.
	clock.Set(until.Add(time.Hour))
	if err := g.Wait(ctx, call(runnerd.PriorityLow, false)); err != nil {
		t.Fatalf("second probe Wait = %v; want nil", err)
	}
	if s := g.Observe(true, 200); s.Kind != KindOK {
		t.Fatalf("Observe(probe 200) = %q; want ok", s.Kind)
	}
	for i := 0; i < 3; i++ {
		if err := g.Wait(ctx, call(runnerd.PriorityLow, false)); err != nil {
			t.Fatalf("Wait(low) after the pause = %v; want nil", err)
		}
	}
}

// TestGateConcurrent: goroutines sharing one gate on fake time (synctest) never
// start more than Rate calls in a second, are all counted, and get ≥ 0.99 of
// what the default margin allows (5 per 1.05 s: 0.952 × rate).
func TestGateConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, workers, each = 5, 10, 30
		l := Limits{DailyLimit: 10000, Reserve: 1000, Rate: rate}
		w := NewWindow(l)
		g := NewGate(l, w, NewRateLimiter(rate), RealClock(), NewClassifier())
		var mu sync.Mutex
		var starts []time.Time
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Go(func() {
				for j := 0; j < each; j++ {
					if err := g.Wait(context.Background(), call(runnerd.PriorityNormal, false)); err != nil {
						t.Errorf("Wait = %v", err)
						return
					}
					mu.Lock()
					starts = append(starts, time.Now())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if got := maxInWindow(starts, time.Second); got > rate {
			t.Errorf("max starts in a 1 s window = %d; want ≤ %d", got, rate)
		}
		allowed := rate * float64(time.Second) / float64(time.Second+DefaultRateMargin)
		if got := throughput(starts, rate); got < 0.99*allowed {
			t.Errorf("throughput = %.3f/s; want ≥ %.3f", got, 0.99*allowed)
		}
		if got := w.Used(time.Now()); got != workers*each {
			t.Errorf("Used = %d; want %d", got, workers*each)
		}
	})
}

// TestGateCountsInStartHour: a call that waits past an hour boundary for its
// rate slot is counted in the hour it starts in.
func TestGateCountsInStartHour(t *testing.T) {
	l := Limits{DailyLimit: 100}
	w := NewWindow(l)
	clock := newFakeClock(mon.Add(10*time.Hour - 100*time.Millisecond))
	g := NewGate(l, w, NewRateLimiterMargin(1, 0), clock, nil)
	for i := 0; i < 2; i++ {
		if err := g.Wait(context.Background(), call(runnerd.PriorityNormal, false)); err != nil {
			t.Fatal(err)
		}
	}
	hours := w.Hours(mon.Add(10 * time.Hour))
	if a, b := hours[22].Calls, hours[23].Calls; a != 1 || b != 1 {
		t.Errorf("buckets 09:00, 10:00 = %d, %d; want 1, 1", a, b)
	}
}

func BenchmarkGateWait(b *testing.B) {
	l := Limits{DailyLimit: 1 << 40}
	ctx := context.Background()
	c := call(runnerd.PriorityNormal, false)
	b.Run("unlimited rate", func(b *testing.B) {
		g := NewGate(l, NewWindow(l), NewRateLimiter(0), RealClock(), NewClassifier())
		b.ReportAllocs()
		for b.Loop() {
			if err := g.Wait(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fake clock rate 5", func(b *testing.B) {
		g := NewGate(l, NewWindow(l), NewRateLimiter(5), newFakeClock(mon), NewClassifier())
		b.ReportAllocs()
		for b.Loop() {
			if err := g.Wait(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel unlimited", func(b *testing.B) {
		g := NewGate(l, NewWindow(l), NewRateLimiter(0), RealClock(), NewClassifier())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := g.Wait(ctx, c); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// A lower-priority run spending beyond its estimate is stopped by the shares
// check before it eats a higher-priority run's share; high and recovery calls
// are not asked.
func TestGateShares(t *testing.T) {
	now := time.Date(2026, 1, 5, 23, 0, 0, 0, time.UTC)
	l := Limits{DailyLimit: 100, Reserve: 10, Rate: 0}
	w := NewWindow(l)
	clock := &fakeClock{t: now}
	g := NewGate(l, w, nil, clock, nil)
	p := NewPlanner(l)
	deploy := []Candidate{{Job: "deploy", Nominal: now.Add(3 * time.Hour), Priority: runnerd.PriorityHigh, Estimate: 40}}
	g.SetShares(func(now time.Time, prio runnerd.Priority) *RefusedError {
		var above []Candidate
		for _, u := range deploy {
			if u.Priority > prio {
				above = append(above, u)
			}
		}
		d := p.Admit(now, w, Candidate{Job: "call", Nominal: now, Priority: prio, Estimate: 1, Seq: 1 << 62}, above)
		if d.Admit {
			return nil
		}
		return &RefusedError{Err: ErrExhausted, Reason: d.Reason, RetryAt: d.EarliestAt}
	})
	spent := 0
	for ; spent < 100; spent++ {
		if err := g.Wait(context.Background(), call(runnerd.PriorityLow, false)); err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Wait(low) = %v; want ErrExhausted", err)
			}
			break
		}
	}
	if want := l.Cap() - 40; spent != want {
		t.Errorf("low-priority calls let through = %d; want %d (cap %d minus the deploy's 40)", spent, want, l.Cap())
	}
	if err := g.Wait(context.Background(), call(runnerd.PriorityHigh, false)); err != nil {
		t.Errorf("Wait(high) = %v; want nil: the share was kept for it", err)
	}
	if err := g.Wait(context.Background(), call(runnerd.PriorityLow, true)); err != nil {
		t.Errorf("Wait(low recovery) = %v; want nil: recovery calls are not asked", err)
	}
}
