package budget

import (
	"context"
	"errors"
	"fmt"
	"time"

	"runnerd/internal/atomapi"
)

// Sentinel errors of a refusal; a *RefusedError unwraps to one of them.
var (
	// ErrExhausted: the call would take the rolling window beyond its cap.
	ErrExhausted = errors.New("budget exhausted")
	// ErrPaused: someone else is spending the account; normal and low work
	// waits for the next hour boundary.
	ErrPaused = errors.New("budget paused for external usage")
)

// RefusedError is the Gate's refusal: the call was not sent.
type RefusedError struct {
	Reason  string    // in words
	RetryAt time.Time // the earliest time the call could go; zero if not known within 24 hours
	Err     error     // ErrExhausted or ErrPaused
}

func (e *RefusedError) Error() string {
	return e.Err.Error() + ": " + e.Reason
}

// Unwrap returns ErrExhausted or ErrPaused.
func (e *RefusedError) Unwrap() error { return e.Err }

// Gate is the atomapi.Gate of runnerd: it refuses a call the window cannot
// afford, pauses normal and low work while the Classifier sees external usage,
// and otherwise waits for a rate slot and counts the call. It is safe for
// concurrent use.
type Gate struct {
	limits Limits
	window *Window
	rate   *RateLimiter
	clock  Clock
	cl     *Classifier
	shares func(now time.Time, p atomapi.Priority) *RefusedError
}

// SetShares makes the gate keep the shares of higher-priority runs while a
// lower-priority run spends: before each of its calls, shares(now, priority)
// says whether one more call still leaves every higher-priority run scheduled
// in the next 24 hours its share (the planner's rule, applied per call and not
// only at admission: a run may spend beyond its estimate). A refusal defers
// the run at a safe point. High-priority and recovery calls are not asked.
// Set it before the gate is used.
func (g *Gate) SetShares(shares func(now time.Time, p atomapi.Priority) *RefusedError) {
	g.shares = shares
}

var _ atomapi.Gate = (*Gate)(nil)

// NewGate returns a gate over w, r and cl. r and cl may be nil (no rate limit,
// no 503 classification); c nil means RealClock.
func NewGate(l Limits, w *Window, r *RateLimiter, c Clock, cl *Classifier) *Gate {
	if c == nil {
		c = RealClock()
	}
	if r == nil {
		r = NewRateLimiter(0)
	}
	return &Gate{limits: l, window: w, rate: r, clock: c, cl: cl}
}

// Wait decides whether the attempt c may start, and when. It refuses, before
// any waiting, with a *RefusedError wrapping ErrExhausted when the window's used
// + 1 would exceed Cap (DailyLimit for recovery calls), and with one wrapping
// ErrPaused for normal and low calls while the Classifier reports external
// usage (high and recovery calls pass; after the pause one probe goes).
// Otherwise it waits for a rate slot, honouring ctx, counts the call in the
// window and returns nil.
func (g *Gate) Wait(ctx context.Context, c *atomapi.Call) error {
	now, probe, err := g.admit(ctx, c)
	if err != nil {
		return err
	}
	start, err := g.pace(ctx, now)
	if err != nil {
		g.window.Add(now, -1)
		if probe {
			g.cl.releaseProbe(now)
		}
		return err
	}
	// The call starts in start's hour: count it there.
	g.window.move(now, start, 1)
	return nil
}

// admit refuses a call the window cannot afford or that must wait for external
// usage to pass, and otherwise counts it in the window at now.
func (g *Gate) admit(ctx context.Context, c *atomapi.Call) (now time.Time, probe bool, err error) {
	if err := ctx.Err(); err != nil {
		return now, false, err
	}
	now = g.clock.Now()
	limit := g.limits.Cap()
	if c.Recovery {
		limit = g.limits.DailyLimit
	}
	if g.shares != nil && !c.Recovery && c.Priority < atomapi.PriorityHigh {
		if r := g.shares(now, c.Priority); r != nil {
			return now, false, r
		}
	}
	// Count the call at once, so that concurrent callers cannot all pass the
	// check; it is taken back if the call does not go.
	ok, used := g.window.tryAdd(now, 1, limit)
	if !ok {
		at := g.window.FitsAt(now, 1, limit)
		return now, false, &RefusedError{
			Err:     ErrExhausted,
			RetryAt: at,
			Reason: fmt.Sprintf("%d of %d calls used in the rolling 24 h window (%s)",
				used, limit, freesWords(at)),
		}
	}
	if g.cl != nil {
		strong := c.Recovery || c.Priority >= atomapi.PriorityHigh
		var s Classification
		ok, probe, s = g.cl.admit(now, strong)
		if !ok {
			g.window.Add(now, -1)
			retry := s.Until
			if !now.Before(retry) {
				retry = now.Add(probeTimeout) // a probe is out
			}
			return now, false, &RefusedError{Err: ErrPaused, RetryAt: retry,
				Reason: fmt.Sprintf("%s-priority call held back until %s: %s", c.Priority, retry.UTC().Format("15:04:05"), s.Reason)}
		}
	}
	return now, probe, nil
}

// pace waits for a rate slot from now. The slot is taken when the call really
// goes, so a late wake-up cannot crowd the next second.
func (g *Gate) pace(ctx context.Context, now time.Time) (time.Time, error) {
	start := now
	for {
		retry, ok := g.rate.TryStart(start)
		if ok {
			return retry, nil
		}
		if err := g.clock.Sleep(ctx, retry.Sub(start)); err != nil {
			return start, err
		}
		start = g.clock.Now()
	}
}

// Paced returns the gate split for a client that paces (atomapi.Pacer): its
// Wait admits and counts the call, and its Pace waits for the rate slot after
// the ledger row is committed, right before the request is written. The daemon
// uses it, so that the time a commit takes cannot bunch requests up at the
// server (measured: a slow first commit put 6 requests in one second at the
// simulator with the rate wait before the commit).
func (g *Gate) Paced() *PacedGate { return &PacedGate{g: g} }

// PacedGate is a Gate whose rate wait is the separate Pace step.
type PacedGate struct{ g *Gate }

var (
	_ atomapi.Gate  = (*PacedGate)(nil)
	_ atomapi.Pacer = (*PacedGate)(nil)
)

// Wait admits c (budget, external pause) and counts it; it does not wait for
// the rate.
func (p *PacedGate) Wait(ctx context.Context, c *atomapi.Call) error {
	_, _, err := p.g.admit(ctx, c)
	return err
}

// Pace waits for a rate slot. The call stays counted when ctx ends: its
// ledger row is begun, and a begun row counts against the budget.
func (p *PacedGate) Pace(ctx context.Context, c *atomapi.Call) error {
	_, err := p.g.pace(ctx, p.g.clock.Now())
	return err
}

// Observe is the wrapped Gate's Observe.
func (p *PacedGate) Observe(c *atomapi.Call, r atomapi.Result) Classification {
	return p.g.Observe(c, r)
}

// Observe feeds the outcome of an attempt that went through Wait to the
// Classifier and returns its classification. Attempts that were not sent are
// ignored.
func (g *Gate) Observe(c *atomapi.Call, r atomapi.Result) Classification {
	if g.cl == nil {
		return Classification{Kind: KindOK}
	}
	now := g.clock.Now()
	if !r.Sent && r.Status == 0 {
		return g.cl.State(now)
	}
	return g.cl.Observe(now, r.Status, g.window.Used(now), g.limits.Cap())
}

// Recorder wraps next so that every completed attempt is also given to
// Observe. next may be nil.
func (g *Gate) Recorder(next atomapi.Recorder) atomapi.Recorder {
	return &observingRecorder{g: g, next: next}
}

type observingRecorder struct {
	g    *Gate
	next atomapi.Recorder
}

func (o *observingRecorder) Begin(ctx context.Context, c *atomapi.Call) error {
	if o.next == nil {
		return nil
	}
	return o.next.Begin(ctx, c)
}

func (o *observingRecorder) End(ctx context.Context, c *atomapi.Call, r atomapi.Result) {
	if o.next != nil {
		o.next.End(ctx, c, r)
	}
	o.g.Observe(c, r)
}

func freesWords(at time.Time) string {
	if at.IsZero() {
		return "no room within 24 h"
	}
	return "room again at " + at.UTC().Format("Mon 15:04 UTC")
}
