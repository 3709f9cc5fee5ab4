package budget

import (
	"math"
	"sync"
	"time"
)

// DefaultRateMargin is added to the one-second window of the RateLimiter, so
// that the spread in delay between the gate and the server (goroutine wake-up,
// the network's jitter) does not let the server see more than Rate starts in
// one second. 20 ms was enough on an idle loopback (0.98 of the rate); on a
// loaded host the pace-to-arrival delay reached 60 ms and put 6 requests into
// one second at rate 5, and the internet's jitter is larger still. A 503 locks
// out every user of the account, so the default buys safety with 5% of the
// throughput (0.95 of the rate). It is the starting margin: unless [budget]
// rate_margin fixes one, the daemon adapts it to the round trips' spread
// (MarginEstimator).
const DefaultRateMargin = 50 * time.Millisecond

// RateLimiter keeps attempt starts to at most Rate in any one-second window. It
// is a sliding log: it remembers the last n = ⌊Rate⌋ starts it handed out and
// gives the next one no earlier than the oldest of them plus the window. Unlike
// a token bucket it cannot be fooled by rounding (a start exactly one window
// after the n-th previous one is the earliest allowed). Starts are also spread
// evenly, window/n apart: bursts would queue up behind each other on their way
// to the server and arrive late, next to the following second's first calls.
//
// For a rate below 1 the window stretches to 1/Rate seconds with n = 1; for a
// fractional rate above 1, ⌊Rate⌋ per second is the most that can be kept in
// every one-second window.
//
// It is safe for concurrent use.
type RateLimiter struct {
	n    int           // starts per window; 0 means unlimited
	base time.Duration // the window without the margin

	mu        sync.Mutex
	window    time.Duration // the window, margin included
	spacing   time.Duration // the least time between two starts: window / n
	log       []time.Time   // ring of the last n starts
	next      int           // index of the oldest entry in log, once it is full
	lastSched time.Time     // when the latest start was due: the spacing counts from it
	lastStart time.Time     // the latest start
}

// NewRateLimiter returns a limiter for rate starts per second with
// DefaultRateMargin. A rate ≤ 0 means unlimited.
func NewRateLimiter(rate float64) *RateLimiter {
	return NewRateLimiterMargin(rate, DefaultRateMargin)
}

// NewRateLimiterMargin returns a limiter for rate starts per second whose
// window is the one second (or 1/rate) plus margin.
func NewRateLimiterMargin(rate float64, margin time.Duration) *RateLimiter {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 1) {
		return &RateLimiter{}
	}
	n := int(math.Floor(rate))
	window := time.Second
	if n < 1 {
		n = 1
		window = time.Duration(math.Ceil(float64(time.Second) / rate))
	}
	r := &RateLimiter{n: n, base: window, log: make([]time.Time, 0, n)}
	r.setMargin(margin)
	return r
}

// SetMargin changes the margin from now on (an adaptive margin: see
// MarginEstimator). Starts already logged keep the limit they were given.
func (r *RateLimiter) SetMargin(margin time.Duration) {
	if r.n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setMargin(margin)
}

func (r *RateLimiter) setMargin(margin time.Duration) {
	r.window = r.base + max(0, margin)
	r.spacing = r.window / time.Duration(r.n)
}

// Limit returns how many starts the limiter allows per Window.
func (r *RateLimiter) Limit() (n int, window time.Duration) {
	if r.n == 0 {
		return 0, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.window
}

// Reserve reserves the earliest start at or after now that keeps the limit and
// returns how long to wait for it. The slot is taken whether or not the caller
// uses it.
func (r *RateLimiter) Reserve(now time.Time) time.Duration {
	if r.n == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.earliest(now)
	r.record(start, start)
	return start.Sub(now)
}

// TryStart starts an attempt at now if the limit allows it, and reports so;
// otherwise it returns the earliest time worth trying again and takes nothing.
// Unlike Reserve it logs the time the caller really went, so a caller that
// woke up late cannot crowd the next second: the Gate uses it.
func (r *RateLimiter) TryStart(now time.Time) (retry time.Time, ok bool) {
	if r.n == 0 {
		return now, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.lastStart) {
		now = r.lastStart // callers read the clock before the lock: keep the log in order
	}
	slot := r.slot()
	if now.Before(slot) {
		return slot, false
	}
	sched := slot
	if now.Sub(slot) >= r.spacing {
		sched = now // idle: no credit for the time nobody asked
	}
	r.record(sched, now)
	return now, true
}

// earliest returns the first start at or after now that the limit allows.
func (r *RateLimiter) earliest(now time.Time) time.Time {
	if s := r.slot(); now.Before(s) {
		return s
	}
	return now
}

// slot returns the next slot: the spacing after the last scheduled start, and
// the window after the n-th last start; the zero time when nothing started.
func (r *RateLimiter) slot() time.Time {
	var s time.Time
	if len(r.log) == 0 {
		return s
	}
	s = r.lastSched.Add(r.spacing)
	if len(r.log) == r.n {
		if w := r.log[r.next].Add(r.window); s.Before(w) {
			s = w
		}
	}
	return s
}

// record logs a start scheduled at sched that went at start.
func (r *RateLimiter) record(sched, start time.Time) {
	if len(r.log) < r.n {
		r.log = append(r.log, start)
	} else {
		r.log[r.next] = start
		r.next = (r.next + 1) % r.n
	}
	if start.After(r.lastStart) {
		r.lastStart = start
	}
	r.lastSched = sched
}

// Seed logs starts made before this limiter existed — by an earlier process,
// read back from the ledger — so that a new process does not spend the same
// second again. starts must be in ascending order; only the last n matter.
func (r *RateLimiter) Seed(starts []time.Time) {
	if r.n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(starts) > r.n {
		starts = starts[len(starts)-r.n:]
	}
	for _, t := range starts {
		if t.Before(r.lastStart) {
			continue
		}
		r.record(t, t)
	}
}

// RateState is a RateLimiter's log kept outside the process: in the shared
// ledger, when several runnerd spend one account's rate (a PostgreSQL store,
// issue 21). Starts are oldest first.
type RateState struct {
	LastSched, LastStart time.Time
	Starts               []time.Time
}

// TryStartOn is TryStart against st instead of the limiter's own log, with
// the limiter's rate and margin: the caller holds st's lock (a row lock in
// the ledger) and writes st back when ok. Every process sharing st so keeps
// the one limit together.
func (r *RateLimiter) TryStartOn(st *RateState, now time.Time) (retry time.Time, ok bool) {
	if r.n == 0 {
		return now, true
	}
	r.mu.Lock()
	t := &RateLimiter{n: r.n, base: r.base, window: r.window, spacing: r.spacing,
		lastSched: st.LastSched, lastStart: st.LastStart}
	r.mu.Unlock()
	starts := st.Starts
	if len(starts) > t.n {
		starts = starts[len(starts)-t.n:]
	}
	t.log = append([]time.Time(nil), starts...) // full: the oldest at next = 0
	retry, ok = t.TryStart(now)
	if ok {
		st.LastSched, st.LastStart = t.lastSched, t.lastStart
		st.Starts = append(append([]time.Time(nil), t.log[t.next:]...), t.log[:t.next]...)
	}
	return retry, ok
}
