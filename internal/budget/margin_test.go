package budget

import (
	"flag"
	"math/rand/v2"
	"testing"
	"time"
)

var marginSeed = flag.Uint64("budget.seed", 0, "seed of TestMarginEstimator's jitter (0: from the clock, logged)")

func TestMarginEstimator(t *testing.T) {
	seed := *marginSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -budget.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	m := NewMarginEstimator(50 * time.Millisecond)
	for range marginMinSamples - 1 {
		m.Observe(time.Millisecond)
	}
	if got := m.Margin(); got != 50*time.Millisecond {
		t.Errorf("Margin() with %d samples = %v; want the start, 50ms", marginMinSamples-1, got)
	}
	m.Observe(0) // no answer: not a sample
	if got := m.Margin(); got != 50*time.Millisecond {
		t.Errorf("Margin() after a zero round trip = %v; want the start still", got)
	}
	// A quiet link: 1–3 ms round trips → the floor.
	for range 2 * marginSamples {
		m.Observe(time.Millisecond + time.Duration(rng.IntN(2000))*time.Microsecond)
	}
	if got := m.Margin(); got != MinAdaptiveMargin {
		t.Errorf("quiet link: Margin() = %v; want %v", got, MinAdaptiveMargin)
	}
	// 60 ms of jitter above a 5 ms base: the margin covers it (1.25 × the
	// spread seen, ≈ 74 ms).
	for range marginSamples {
		m.Observe(5*time.Millisecond + time.Duration(rng.IntN(60000))*time.Microsecond)
	}
	if got := m.Margin(); got < 65*time.Millisecond || got > 75*time.Millisecond {
		t.Errorf("60 ms jitter: Margin() = %v; want about 74ms", got)
	}
	// Seconds of jitter: capped.
	for range marginSamples {
		m.Observe(time.Duration(rng.IntN(2000)) * time.Millisecond)
	}
	if got := m.Margin(); got != MaxAdaptiveMargin {
		t.Errorf("wild link: Margin() = %v; want the cap %v", got, MaxAdaptiveMargin)
	}
}

func TestRateLimiterSetMargin(t *testing.T) {
	r := NewRateLimiterMargin(5, 50*time.Millisecond)
	if n, w := r.Limit(); n != 5 || w != 1050*time.Millisecond {
		t.Fatalf("Limit() = %d, %v", n, w)
	}
	r.SetMargin(10 * time.Millisecond)
	if n, w := r.Limit(); n != 5 || w != 1010*time.Millisecond {
		t.Errorf("after SetMargin(10ms): Limit() = %d, %v; want 5, 1.01s", n, w)
	}
	t0 := time.Unix(1000, 0)
	var starts []time.Time
	now := t0
	for len(starts) < 11 {
		if retry, ok := r.TryStart(now); ok {
			starts = append(starts, now)
		} else {
			now = retry
		}
	}
	// Eleven starts at 5 per 1.01 s: the 11th at least 2.02 s after the first.
	if d := starts[10].Sub(starts[0]); d < 2020*time.Millisecond {
		t.Errorf("11 starts span %v; want ≥ 2.02s", d)
	}
	NewRateLimiterMargin(0, time.Second).SetMargin(time.Second) // unlimited: no-op, no panic
}
