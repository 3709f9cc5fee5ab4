package budget

import (
	"fmt"
	"sync"
	"time"
)

// Kinds of Classification.
const (
	KindOK       = "ok"       // answers come back
	KindRate     = "rate"     // a short burst of 503s right after our own burst: the per-second limit; the client backs off with jitter
	KindExternal = "external" // 503s while our window has headroom: someone else spends the account; normal and low work pause until Until
	KindOutage   = "outage"   // 500/502/504 or no answer for several minutes
)

// Classifier thresholds.
const (
	// burstSpan and burstCalls: our own attempts count as a burst when at
	// least burstCalls of them started within burstSpan before a 503.
	burstSpan  = 2 * time.Second
	burstCalls = 3
	// rateBurstMax and rateBurstSpan: at most this many 503s within this span
	// are read as the per-second limit; more, or longer, as external usage.
	rateBurstMax  = 3
	rateBurstSpan = 10 * time.Second
	// rateHold is how long a "rate" classification lasts without news.
	rateHold = 2 * time.Second
	// outageAfter and outageCalls: server errors for this long, and at least
	// this many of them, make an outage.
	outageAfter = 3 * time.Minute
	outageCalls = 3
	// probeTimeout: a probe that has not been observed within this time is
	// given up and another one is allowed.
	probeTimeout = time.Minute
)

// Classification is what the Classifier makes of the recent answers.
type Classification struct {
	Kind   string    // "ok" | "rate" | "external" | "outage"
	Since  time.Time // when this state began
	Until  time.Time // "external": normal and low calls wait until then; "rate": a hint; zero otherwise
	Reason string    // in words
	// Probe is set for "external" once Until has passed: the first normal or
	// low call is let through to see whether the account answers again.
	Probe bool
}

// Classifier reads the status of each attempt and tells whether 503s mean the
// per-second rate, someone else spending the account ("external usage"), or an
// outage. It is safe for concurrent use.
type Classifier struct {
	mu    sync.Mutex
	state Classification

	recent  [16]time.Time // the latest attempts observed, a ring
	nRecent int

	n503     int       // consecutive 503/429 answers
	first503 time.Time // the first of them

	nFail     int       // server errors since the last answer
	firstFail time.Time // the first of them

	probeAt time.Time // when the outstanding probe was let through; zero if none
}

// NewClassifier returns a classifier in state "ok".
func NewClassifier() *Classifier {
	return &Classifier{state: Classification{Kind: KindOK}}
}

// Observe records the status of an attempt that ended at now (0 when no answer
// came back), with the window's used and Cap (capacity) at that time; "well
// below" the cap means under 90% of it. It returns the new
// classification:
//   - 2xx resets to "ok"; so does any other answer below 500 except 429, as
//     it got past the platform's limits.
//   - 503 or 429: a short burst right after our own burst is "rate"; otherwise
//     (or when the burst goes on) "external" until the next hour boundary; a
//     503 while "external" (the probe's, say) extends it to the next boundary.
//   - 500, 502, 504 or no answer, persisting over several minutes: "outage".
//   - other 5xx end an outage but leave a 503 state.
func (c *Classifier) Observe(now time.Time, status int, used, capacity int) Classification {
	c.mu.Lock()
	defer c.mu.Unlock()
	burst := c.countRecent(now)
	c.recent[c.nRecent%len(c.recent)] = now
	c.nRecent++

	switch {
	case status >= 100 && status < 500 && status != 429:
		// An answer that got past the platform's limits.
		c.n503, c.nFail, c.probeAt = 0, 0, time.Time{}
		if c.state.Kind != KindOK {
			c.state = Classification{Kind: KindOK, Since: now, Reason: fmt.Sprintf("HTTP %d: the account answers", status)}
		}
	case status == 503 || status == 429:
		c.nFail = 0
		c.probeAt = time.Time{}
		if c.n503 == 0 {
			c.first503 = now
		}
		c.n503++
		c.on503(now, status, burst, used, capacity)
	case status == 0 || status == 500 || status == 502 || status == 504:
		if c.nFail == 0 {
			c.firstFail = now
		}
		c.nFail++
		c.probeAt = time.Time{} // a probe without a verdict: another may go
		if c.nFail >= outageCalls && now.Sub(c.firstFail) >= outageAfter && c.state.Kind != KindExternal {
			if c.state.Kind != KindOutage {
				c.state = Classification{Kind: KindOutage, Since: c.firstFail}
			}
			c.state.Reason = fmt.Sprintf("%d server errors or lost answers over %s (last: %s)",
				c.nFail, now.Sub(c.firstFail).Round(time.Second), statusWords(status))
		}
	default:
		// Another 5xx: the server answers, but tells nothing about the limits.
		c.nFail = 0
		c.probeAt = time.Time{}
		if c.state.Kind == KindOutage {
			c.state = Classification{Kind: KindOK, Since: now, Reason: fmt.Sprintf("HTTP %d: the server answers", status)}
		}
	}
	return c.stateLocked(now)
}

func (c *Classifier) on503(now time.Time, status, burst, used, capacity int) {
	until := hourTime(hourOf(now) + 1)
	if c.state.Kind == KindExternal {
		c.state.Until = until
		c.state.Reason = fmt.Sprintf("HTTP %d again while pausing for external usage (%d in a row, %d of %d used): paused until %s",
			status, c.n503, used, capacity, until.Format("15:04"))
		return
	}
	short := c.n503 <= rateBurstMax && now.Sub(c.first503) <= rateBurstSpan
	if short && burst >= burstCalls {
		if c.state.Kind != KindRate {
			c.state = Classification{Kind: KindRate, Since: c.first503}
		}
		c.state.Until = now.Add(rateHold)
		c.state.Reason = fmt.Sprintf("HTTP %d right after %d of our calls in %s: the per-second rate; back off with jitter",
			status, burst, burstSpan)
		return
	}
	var why string
	if used*10 < capacity*9 {
		why = fmt.Sprintf("HTTP %d with only %d of %d used in our window: someone else is spending the account", status, used, capacity)
	} else {
		why = fmt.Sprintf("HTTP %d with %d of %d used in our window: the account's allowance is spent", status, used, capacity)
	}
	c.state = Classification{
		Kind:   KindExternal,
		Since:  now,
		Until:  until,
		Reason: why + "; normal and low work paused until " + until.Format("15:04"),
	}
}

// countRecent returns how many observed attempts started within burstSpan
// before now.
func (c *Classifier) countRecent(now time.Time) int {
	n := 0
	for i := 0; i < min(c.nRecent, len(c.recent)); i++ {
		if t := c.recent[i]; !t.After(now) && now.Sub(t) < burstSpan {
			n++
		}
	}
	return n
}

// State returns the classification at now.
func (c *Classifier) State(now time.Time) Classification {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked(now)
}

func (c *Classifier) stateLocked(now time.Time) Classification {
	s := c.state
	switch s.Kind {
	case KindRate:
		if !now.Before(s.Until) {
			return Classification{Kind: KindOK, Since: s.Until, Reason: "rate backoff over"}
		}
	case KindExternal:
		if !now.Before(s.Until) {
			s.Probe = true
		}
	}
	return s
}

// admit tells whether a call of priority p (high or recovery when strong) may
// go now. While "external" and before Until only strong calls pass; after Until
// one probe at a time is let through.
func (c *Classifier) admit(now time.Time, strong bool) (ok, probe bool, s Classification) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s = c.stateLocked(now)
	if s.Kind != KindExternal || strong {
		return true, false, s
	}
	if now.Before(s.Until) {
		return false, false, s
	}
	if !c.probeAt.IsZero() && now.Sub(c.probeAt) < probeTimeout {
		return false, false, s
	}
	c.probeAt = now
	return true, true, s
}

// releaseProbe gives up the probe let through at at (its call was not sent).
func (c *Classifier) releaseProbe(at time.Time) {
	c.mu.Lock()
	if c.probeAt.Equal(at) {
		c.probeAt = time.Time{}
	}
	c.mu.Unlock()
}

func statusWords(status int) string {
	if status == 0 {
		return "no answer"
	}
	return fmt.Sprintf("HTTP %d", status)
}

// Seed tells the classifier of attempts made before it existed (by an earlier
// process, read back from the ledger), in ascending order, so that a 503 right
// after them is read as our own burst, not as someone else's usage.
func (c *Classifier) Seed(starts []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range starts {
		c.recent[c.nRecent%len(c.recent)] = t
		c.nRecent++
	}
}
