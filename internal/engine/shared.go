package engine

import (
	"context"
	"errors"
	"time"

	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// A PostgreSQL ledger is shared by every runnerd that names it (issue 21),
// and so is the account's budget: the gate plans with the shared hourly
// rollup (syncWindow, before each admission), takes rate slots from the
// shared log (sharedRate: the limiter's rule on a row every instance locks),
// and the last word on the window is BeginCall's, under an advisory lock, in
// the transaction that records the call (callLimit). On SQLite none of this
// runs: one runnerd, and its own gate.

// shareBudget makes the gate spend the budget of a shared ledger.
func (e *Engine) shareBudget() {
	if !e.db.IsPostgres() {
		return
	}
	e.gate.SetShared(e.syncWindow, e.sharedRate)
}

// syncWindow brings the window up to the shared ledger's hourly counts. A
// ledger that does not answer leaves the window as it is: BeginCall, which
// needs the ledger too, then refuses the call.
func (e *Engine) syncWindow(now time.Time) {
	usage, err := e.db.HourlyUsage(e.bg, now.Add(-25*time.Hour))
	if err != nil {
		e.log.Debug("budget: could not read the shared ledger's hourly usage", "err", err)
		return
	}
	hours := make([]budget.HourCount, len(usage))
	for i, u := range usage {
		hours[i] = budget.HourCount{Hour: u.Hour, Calls: u.Calls}
	}
	e.window.Merge(hours)
}

// sharedRate takes a rate slot from the shared ledger's log.
func (e *Engine) sharedRate(ctx context.Context, now time.Time) (retry time.Time, ok bool, err error) {
	err = e.db.UpdateRateState(ctx, func(st *store.RateState) bool {
		bs := budget.RateState{LastSched: fromUnixMS(st.LastSched), LastStart: fromUnixMS(st.LastStart)}
		for _, s := range st.Starts {
			bs.Starts = append(bs.Starts, fromUnixMS(s))
		}
		if retry, ok = e.limiter.TryStartOn(&bs, now); !ok {
			return false
		}
		st.LastSched, st.LastStart, st.Starts = toUnixMS(bs.LastSched), toUnixMS(bs.LastStart), st.Starts[:0]
		for _, s := range bs.Starts {
			st.Starts = append(st.Starts, toUnixMS(s))
		}
		return true
	})
	return retry, ok, err
}

// callLimit is the window's cap BeginCall checks a call against on a shared
// ledger (0 on SQLite: the gate alone decides there).
func (e *Engine) callLimit(recovery bool) int {
	if !e.db.IsPostgres() {
		return 0
	}
	if recovery {
		return e.limits.DailyLimit
	}
	return e.limits.Cap()
}

// callInstance is the instance name BeginCall fences a call with: this
// engine's, once it takes part in the leases (a daemon, or runnerd run
// holding its job's lease); "" for a command's one-off lookups (release
// -dry-run, logs), which run no job and so hold none.
func (e *Engine) callInstance() string {
	if !e.leasesActive() {
		return ""
	}
	return e.leases.instance.Name
}

// windowRefusal turns BeginCall's ErrWindowFull into the gate's refusal, so
// that a run defers (until the next hour, when a bucket may fall out) instead
// of failing.
func windowRefusal(err error, now time.Time) error {
	if !errors.Is(err, store.ErrWindowFull) {
		return err
	}
	next := now.UTC().Truncate(time.Hour).Add(time.Hour)
	return &budget.RefusedError{Err: budget.ErrExhausted, RetryAt: next, Reason: err.Error() + " (other instances spend the same account)"}
}

func fromUnixMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func toUnixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
