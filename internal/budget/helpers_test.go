package budget

import (
	"context"
	"sort"
	"sync"
	"time"
)

// fakeClock is a Clock whose Sleep moves time forward at once. It is meant for
// one goroutine at a time; concurrent tests use RealClock in a synctest bubble.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return nil
}

// maxInWindow returns the most starts in any half-open window [t, t+w).
func maxInWindow(starts []time.Time, w time.Duration) int {
	s := append([]time.Time(nil), starts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	best, j := 0, 0
	for i := range s {
		// The busiest window can be taken to begin at a start.
		for j < len(s) && s[j].Before(s[i].Add(w)) {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// throughput returns starts per second over the span of starts, counting the
// last start's slot: n / (last − first + 1/rate).
func throughput(starts []time.Time, rate float64) float64 {
	if len(starts) < 2 {
		return 0
	}
	s := append([]time.Time(nil), starts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	span := s[len(s)-1].Sub(s[0]).Seconds() + 1/rate
	return float64(len(s)) / span
}

// mon is Monday 1 January 2024, 00:00 UTC.
var mon = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
