package budget

import (
	"slices"
	"sync"
	"time"
)

// Bounds and sample of the adaptive rate margin.
const (
	MinAdaptiveMargin = 10 * time.Millisecond
	MaxAdaptiveMargin = 100 * time.Millisecond
	marginSamples     = 64 // round-trip times the spread is taken from
	marginMinSamples  = 16 // fewer: the starting margin stands
)

// MarginEstimator turns the round-trip times of recent calls into a rate
// margin. The margin exists for the spread of the delay between runnerd's
// pacing and the request's arrival at the platform: a request that leaves on
// time and arrives late can share a one-second window with the next second's
// first ones. That spread is not observable directly; the spread of the
// round trip is its bound (the delay there and back varies at least as much
// as one way). Two requests paced a window apart collide at the server when
// the first is delayed by the whole spread and the second by none, so the
// margin covers the whole observed spread, not a percentile, with a quarter
// more for the spread not yet seen: 1.25 × (slowest − fastest) of the last
// 64 round trips, within [MinAdaptiveMargin, MaxAdaptiveMargin]. A quiet
// link gets 10 ms (0.98 of the rate), 60 ms of jitter about 75 ms.
// (A 95th percentile let 60 ms of jitter through with 1 × 503 in 100 calls
// at rate 5; BENCHMARKS.md.) Until 16 round trips are seen the starting
// margin stands.
//
// It is safe for concurrent use.
type MarginEstimator struct {
	mu    sync.Mutex
	start time.Duration
	ring  []time.Duration
	next  int
}

// NewMarginEstimator returns an estimator whose margin is start until it
// has seen enough round trips.
func NewMarginEstimator(start time.Duration) *MarginEstimator {
	return &MarginEstimator{start: start, ring: make([]time.Duration, 0, marginSamples)}
}

// Observe records one call's round-trip time (an answer's; a call that got
// no answer says nothing about the link's spread and is not recorded).
func (m *MarginEstimator) Observe(rtt time.Duration) {
	if rtt <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ring) < marginSamples {
		m.ring = append(m.ring, rtt)
		return
	}
	m.ring[m.next] = rtt
	m.next = (m.next + 1) % marginSamples
}

// Margin returns the margin for the round trips seen so far.
func (m *MarginEstimator) Margin() time.Duration {
	m.mu.Lock()
	if len(m.ring) < marginMinSamples {
		m.mu.Unlock()
		return m.start
	}
	s := slices.Clone(m.ring)
	m.mu.Unlock()
	lo, hi := slices.Min(s), slices.Max(s)
	return min(MaxAdaptiveMargin, max(MinAdaptiveMargin, (hi-lo)*5/4))
}
