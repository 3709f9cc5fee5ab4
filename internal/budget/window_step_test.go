package budget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// admitAll asks for calls at now until the gate refuses, and returns how many
// it admitted (at most max).
func admitAll(t *testing.T, g *Gate, max int) int {
	t.Helper()
	n := 0
	for ; n < max; n++ {
		if err := g.Wait(context.Background(), Ask{}); err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Wait = %v; want ErrExhausted", err)
			}
			break
		}
	}
	return n
}

// TestWindowClockStepsBack: limit 10, 10 calls at 12:30, the clock stepped
// back to 11:30 (NTP, a VM restore). The platform counts the 12:00 calls until
// the next day's 12:00, in every window that holds them; so does the window.
func TestWindowClockStepsBack(t *testing.T) {
	l := Limits{DailyLimit: 10}
	clock := newFakeClock(mon.Add(12*time.Hour + 30*time.Minute))
	g := NewGate(l, NewWindow(l), nil, clock, nil)
	if n := admitAll(t, g, 20); n != 10 {
		t.Fatalf("admitted %d at 12:30; want 10", n)
	}
	clock.Set(mon.Add(11*time.Hour + 30*time.Minute))
	if n := admitAll(t, g, 20); n != 0 {
		t.Errorf("after the clock stepped back to 11:30, %d more admitted; want 0 (20 in the platform's 12:00 window)", n)
	}
}

// TestWindowLoadedLaterHours: the same after a restart, when the ledger's
// rollup holds hours later than now.
func TestWindowLoadedLaterHours(t *testing.T) {
	l := Limits{DailyLimit: 10}
	w := NewWindow(l)
	w.Load([]HourCount{{Hour: mon.Add(12 * time.Hour), Calls: 10}})
	clock := newFakeClock(mon.Add(11*time.Hour + 30*time.Minute))
	g := NewGate(l, w, nil, clock, nil)
	if n := admitAll(t, g, 20); n != 0 {
		t.Errorf("with 10 calls loaded at 12:00 and now 11:30, %d admitted; want 0", n)
	}
	// A day after 12:00 the hour has fallen out of every window.
	clock.Set(mon.Add(36*time.Hour + 30*time.Minute))
	if n := admitAll(t, g, 20); n != 10 {
		t.Errorf("a day later, %d admitted; want 10", n)
	}
}

// TestPacedAcrossHourBoundary: a call admitted at 12:59:59.9 and paced to
// 13:00:00.5 is counted in 13:00, where the platform counts it, and moving it
// frees nothing in 12:00 for a concurrent caller.
func TestPacedAcrossHourBoundary(t *testing.T) {
	l := Limits{DailyLimit: 3, Rate: 1}
	w := NewWindow(l)
	clock := newFakeClock(mon.Add(12*time.Hour + 59*time.Minute + 59*time.Second + 900*time.Millisecond))
	rl := NewRateLimiterMargin(1, 0)
	// The rate slot is taken until 13:00:00.5: the next call waits for it.
	rl.Seed([]time.Time{clock.Now().Add(-400 * time.Millisecond)})
	g := NewGate(l, w, rl, clock, nil)
	ctx := context.Background()
	if err := g.Admit(ctx, Ask{}); err != nil {
		t.Fatal(err)
	}
	sent, err := g.Pace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hourOf(sent) != hourOf(mon.Add(13*time.Hour)) {
		t.Fatalf("Pace returned %v; want a time in the 13:00 hour", sent)
	}
	if got := w.Hours(sent); got[len(got)-1].Calls != 1 || got[len(got)-2].Calls != 0 {
		t.Errorf("after the move: 12:00 has %d, 13:00 has %d; want 0 and 1", got[len(got)-2].Calls, got[len(got)-1].Calls)
	}
	// 12:00's room stays held: a caller whose clock still reads 12:59:59.95
	// finds at most cap − 1 more, never cap.
	clock.Set(mon.Add(12*time.Hour + 59*time.Minute + 59*time.Second + 950*time.Millisecond))
	g2 := NewGate(l, w, nil, clock, nil)
	if n := admitAll(t, g2, 10); n > 2 {
		t.Errorf("after the move, %d admitted in 12:00; want at most 2 (limit 3, one call held)", n)
	}
}

// TestRaceAcrossHourBoundary: callers racing across an hour boundary never
// admit more than the cap into any window.
func TestRaceAcrossHourBoundary(t *testing.T) {
	for round := range 20 {
		l := Limits{DailyLimit: 50}
		w := NewWindow(l)
		base := mon.Add(12*time.Hour + 59*time.Minute + 59*time.Second)
		var mu sync.Mutex
		tick := 0
		clk := clockFunc(func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			tick++
			return base.Add(time.Duration(tick) * 20 * time.Millisecond) // crosses 13:00 mid-way
		})
		g := NewGate(l, w, nil, clk, nil)
		var wg sync.WaitGroup
		var admitted sync.Map
		for i := range 8 {
			wg.Go(func() {
				for k := range 20 {
					if g.Wait(context.Background(), Ask{}) == nil {
						admitted.Store(i*100+k, true)
					}
				}
			})
		}
		wg.Wait()
		n := 0
		admitted.Range(func(any, any) bool { n++; return true })
		if n > l.DailyLimit {
			t.Fatalf("round %d: %d admitted across the boundary; want ≤ %d", round, n, l.DailyLimit)
		}
		if used := w.Used(base.Add(2 * time.Hour)); used > l.DailyLimit {
			t.Fatalf("round %d: window holds %d; want ≤ %d", round, used, l.DailyLimit)
		}
	}
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }
func (f clockFunc) Sleep(ctx context.Context, d time.Duration) error {
	return ctx.Err()
}
