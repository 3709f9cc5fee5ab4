package budget

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"runnerd"
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

// Ask is one attempt as the gate sees it: on whose behalf, and whether it is
// a reconciliation lookup (which may use the reserve).
type Ask struct {
	Priority runnerd.Priority
	Recovery bool
}

// Gate decides whether each attempt may go: it refuses a call the window
// cannot afford, pauses normal and low work while the Classifier sees external
// usage, and otherwise waits for a rate slot and counts the call. The engine
// adapts it to the client's atomapi.Gate and atomapi.Pacer. It is safe for
// concurrent use.
type Gate struct {
	limits Limits
	window *Window
	rate   *RateLimiter
	clock  Clock
	cl     *Classifier
	shares func(now time.Time, p runnerd.Priority) *RefusedError
	sync   func(now time.Time)
	shared SharedRate

	// admitted are the calls Admit counted that have not been paced yet, oldest
	// first: Pace moves one of them into the hour it is sent in.
	mu       sync.Mutex
	admitted []admission
}

type admission struct {
	at    time.Time
	limit int
}

// SetShares makes the gate keep the shares of higher-priority runs while a
// lower-priority run spends: before each of its calls, shares(now, priority)
// says whether one more call still leaves every higher-priority run of the
// next 24 hours — waiting, running or scheduled — its share (the planner's
// rule, applied per call and not only at admission: a run may spend beyond
// its estimate). A refusal defers the run at a safe point. High-priority and
// recovery calls are not asked. Set it before the gate is used.
func (g *Gate) SetShares(shares func(now time.Time, p runnerd.Priority) *RefusedError) {
	g.shares = shares
}

// SharedRate takes a rate slot at now from a log shared by several
// processes (RateLimiter.TryStartOn under the ledger's lock) or says when to
// try again. An error (the ledger is unreachable) means no slot: the call is
// not sent.
type SharedRate func(ctx context.Context, now time.Time) (retry time.Time, ok bool, err error)

// SetShared makes the gate spend a budget shared with other processes:
// before each admission sync brings the window up to the shared ledger's
// counts, and rate slots come from shared instead of the gate's own limiter.
// The ledger still decides the last call of the window (store.Call.Limit);
// the window is what the gate plans with. Set it before the gate is used.
func (g *Gate) SetShared(sync func(now time.Time), shared SharedRate) {
	g.sync, g.shared = sync, shared
}

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

// Wait is Admit and Pace in one: it decides whether the attempt may start,
// and when. A refusal comes before any waiting. After the wait the call is
// counted in the hour it starts in.
func (g *Gate) Wait(ctx context.Context, a Ask) error {
	now, probe, err := g.admit(ctx, a)
	if err != nil {
		return err
	}
	start, err := g.pace(ctx, now)
	if err == nil {
		// The call starts in start's hour: count it there.
		err = g.moveTo(now, start, g.limitFor(a))
	}
	if err != nil {
		g.window.Add(now, -1)
		if probe {
			g.cl.releaseProbe(now)
		}
		return err
	}
	return nil
}

func (g *Gate) limitFor(a Ask) int {
	if a.Recovery {
		return g.limits.DailyLimit
	}
	return g.limits.Cap()
}

// moveTo counts a call admitted at from in the hour of start, when it is
// sent; a refusal when the windows of start's hour cannot take it.
func (g *Gate) moveTo(from, start time.Time, limit int) error {
	if g.window.move(from, start, limit) {
		return nil
	}
	at := g.window.FitsAt(start, 1, limit)
	return &RefusedError{
		Err:     ErrExhausted,
		RetryAt: at,
		Reason: fmt.Sprintf("paced into the %s hour, whose windows are full (%s)",
			start.UTC().Format("15:04"), freesWords(at)),
	}
}

// Admit refuses, before any waiting, with a *RefusedError wrapping
// ErrExhausted when the window's used + 1 would exceed Cap (DailyLimit for
// recovery calls), or when one more normal or low call would take the share of
// a higher-priority run (SetShares); and with one wrapping ErrPaused for normal
// and low calls while the Classifier reports external usage (high and
// recovery calls pass; after the pause one probe goes). Otherwise it counts
// the call in the window and returns nil; the caller then records the call and
// calls Pace right before sending it (the daemon's order, so that the time a
// ledger commit takes cannot bunch requests up at the server: measured, a slow
// first commit put 6 requests in one second at the simulator with the rate
// wait before the commit).
func (g *Gate) Admit(ctx context.Context, a Ask) error {
	now, _, err := g.admit(ctx, a)
	if err == nil {
		g.mu.Lock()
		// Admissions older than two windows can no longer be paced usefully
		// (their caller gave up before Pace): forget them.
		i := 0
		for i < len(g.admitted) && now.Sub(g.admitted[i].at) > 2*WindowHours*time.Hour {
			i++
		}
		g.admitted = append(g.admitted[i:], admission{at: now, limit: g.limitFor(a)})
		g.mu.Unlock()
	}
	return err
}

func (g *Gate) admit(ctx context.Context, a Ask) (now time.Time, probe bool, err error) {
	if err := ctx.Err(); err != nil {
		return now, false, err
	}
	now = g.clock.Now()
	if g.sync != nil {
		g.sync(now)
	}
	limit := g.limitFor(a)
	if g.shares != nil && !a.Recovery && a.Priority < runnerd.PriorityHigh {
		if r := g.shares(now, a.Priority); r != nil {
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
		strong := a.Recovery || a.Priority >= runnerd.PriorityHigh
		var s Classification
		ok, probe, s = g.cl.admit(now, strong)
		if !ok {
			g.window.Add(now, -1)
			retry := s.Until
			if !now.Before(retry) {
				retry = now.Add(probeTimeout) // a probe is out
			}
			return now, false, &RefusedError{Err: ErrPaused, RetryAt: retry,
				Reason: fmt.Sprintf("%s-priority call held back until %s: %s", a.Priority, retry.UTC().Format("15:04:05"), s.Reason)}
		}
	}
	return now, probe, nil
}

// Pace waits for a rate slot for a call that Admit counted, and returns the
// time it may start. The call stays counted when ctx ends: its ledger row is
// begun, and a begun row counts against the budget.
//
// When the slot falls in a later hour than the one the call was admitted in,
// the call is counted in the hour it is sent in (the ledger's SentAt is the
// returned time), and the room it leaves in the earlier hour stays held for
// this process. If the windows of the later hour cannot take it, Pace refuses
// with a *RefusedError wrapping ErrExhausted and the call must not be sent.
func (g *Gate) Pace(ctx context.Context) (time.Time, error) {
	start, err := g.pace(ctx, g.clock.Now())
	g.mu.Lock()
	var a admission
	ok := len(g.admitted) > 0
	if ok {
		a = g.admitted[0]
		g.admitted = g.admitted[1:]
	}
	g.mu.Unlock()
	if err != nil || !ok {
		return start, err
	}
	if err := g.moveTo(a.at, start, a.limit); err != nil {
		return start, err
	}
	return start, nil
}

// pace waits for a rate slot from now. The slot is taken when the call really
// goes, so a late wake-up cannot crowd the next second.
func (g *Gate) pace(ctx context.Context, now time.Time) (time.Time, error) {
	start := now
	for {
		var retry time.Time
		var ok bool
		if g.shared != nil {
			var err error
			if retry, ok, err = g.shared(ctx, start); err != nil {
				return start, err
			}
		} else {
			retry, ok = g.rate.TryStart(start)
		}
		if ok {
			return retry, nil
		}
		if err := g.clock.Sleep(ctx, retry.Sub(start)); err != nil {
			return start, err
		}
		start = g.clock.Now()
	}
}

// Observe feeds the outcome of an attempt that went through Admit (or Wait)
// to the Classifier and returns its classification: status is the answer's
// HTTP status, 0 for none; sent is whether the request left. An attempt that
// was neither sent nor answered says nothing about the platform.
func (g *Gate) Observe(sent bool, status int) Classification {
	if g.cl == nil {
		return Classification{Kind: KindOK}
	}
	now := g.clock.Now()
	if !sent && status == 0 {
		return g.cl.State(now)
	}
	return g.cl.Observe(now, status, g.window.Used(now), g.limits.Cap())
}

func freesWords(at time.Time) string {
	if at.IsZero() {
		return "no room within 24 h"
	}
	return "room again at " + at.UTC().Format("Mon 15:04 UTC")
}
