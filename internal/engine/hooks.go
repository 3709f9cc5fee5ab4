package engine

import (
	"context"
	"math"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// callHooks is the client's Recorder: the ledger row before the first byte,
// completed after the answer (in the hour it was sent), and the answer shown
// to the 503 classifier, the metrics and the notifier.
type callHooks struct{ e *Engine }

var _ atomapi.Recorder = (*callHooks)(nil)

func (h *callHooks) Begin(ctx context.Context, c *atomapi.Call) error {
	id, err := h.e.db.BeginCall(ctx, store.Call{
		RunID: c.RunID, Job: c.Job, RequestID: c.RequestID, Operation: c.Operation, Method: c.Method,
		Path: c.Path, Safe: c.Safe, Recovery: c.Recovery, Attempt: c.Attempt, StartedAt: c.StartedAt,
		Limit: h.e.callLimit(c.Recovery), Instance: h.e.callInstance(),
	})
	if err != nil {
		return windowRefusal(err, h.e.now())
	}
	c.LedgerID = id
	if c.RunID != 0 {
		h.e.spentMu.Lock()
		h.e.spent[c.RunID]++
		h.e.spentMu.Unlock()
	}
	return nil
}

func (h *callHooks) End(ctx context.Context, c *atomapi.Call, r atomapi.Result) {
	e := h.e
	ctx = context.WithoutCancel(ctx)
	row := store.Call{ID: c.LedgerID, Status: r.Status, DurationMS: r.Duration.Milliseconds(), Bytes: r.Bytes,
		PlatformID: r.PlatformID, SentAt: c.SentAt}
	if r.Err != nil {
		row.Error = r.Err.Error()
	}
	if err := e.db.EndCall(ctx, row); err != nil {
		e.log.Error("ledger: could not complete a call row; it still counts against the budget",
			"request_id", c.RequestID, "err", err)
	}
	e.metrics.ObserveCall(c.Job, c.Operation, r.Status)
	if e.margin != nil && r.RoundTrip > 0 {
		e.margin.Observe(r.RoundTrip)
		if m := e.margin.Margin(); m != e.marginNow.Swap(m) {
			e.limiter.SetMargin(m)
		}
	}
	now := e.now()
	before := e.classifier.State(now)
	after := before
	if r.Sent || r.Status != 0 {
		// An attempt that never left says nothing about the platform.
		after = e.gate.Observe(r.Sent, r.Status)
	}
	if r.Status == 503 || r.Status == 429 {
		e.metrics.Observe503(after.Kind)
	}
	e.notifyCall(r.Status, before, after)
	if after.Kind != before.Kind {
		e.log.Warn("budget: 503 classification changed", "from", before.Kind, "to", after.Kind, "reason", after.Reason)
		e.saveClassification(ctx, after)
	}
}

// spentBy returns the calls begun for run id by this process (the scheduler's
// look-ahead subtracts them from a running run's estimate).
func (e *Engine) spentBy(id int64) int {
	e.spentMu.Lock()
	defer e.spentMu.Unlock()
	return e.spent[id]
}

// forget drops a finished run's call count.
func (e *Engine) forget(id int64) {
	e.spentMu.Lock()
	delete(e.spent, id)
	e.spentMu.Unlock()
}

// lookAhead is what every decision weighs a run against: each arrived,
// unfinished run and each scheduled slot of the next 24 hours, less the runs
// that can never fit (an estimate above the cap holds no share: it would
// block everything below it for nothing).
func (e *Engine) lookAhead(now time.Time) []budget.Candidate {
	all := e.sharedLookAhead(e.sched.LookAhead(now, 24*time.Hour))
	capacity := e.limits.Cap()
	out := all[:0]
	for _, c := range all {
		if c.Estimate <= capacity {
			out = append(out, c)
		}
	}
	return out
}

// shares is the gate's per-call check for normal and low calls: one more call
// must leave every higher-priority run — waiting, deferred, running or
// scheduled in the next 24 hours — its share, by the planner's own rule
// (DESIGN 3.5): a run may spend beyond its estimate.
func (e *Engine) shares(now time.Time, p runnerd.Priority) *budget.RefusedError {
	var above []budget.Candidate
	for _, u := range e.lookAhead(now) {
		if u.Priority > p {
			above = append(above, u)
		}
	}
	if len(above) == 0 {
		return nil
	}
	dec := e.planner.Admit(now, e.window, budget.Candidate{Job: "(call)", Nominal: now, Priority: p, Estimate: 1, Seq: math.MaxInt64}, above)
	if dec.Admit {
		return nil
	}
	return &budget.RefusedError{Err: budget.ErrExhausted, RetryAt: dec.EarliestAt,
		Reason: "keeping the share of higher-priority runs: " + dec.Reason}
}

// plannerAdapter is the scheduler's Planner: admission against the window,
// over the look-ahead the scheduler built (arrived runs and slots).
type plannerAdapter struct{ e *Engine }

func (p plannerAdapter) Admit(now time.Time, c budget.Candidate, upcoming []budget.Candidate) budget.Decision {
	capacity := p.e.limits.Cap()
	upcoming = p.e.sharedLookAhead(upcoming)
	kept := make([]budget.Candidate, 0, len(upcoming))
	for _, u := range upcoming {
		if u.Estimate <= capacity {
			kept = append(kept, u)
		}
	}
	return p.e.planner.Admit(now, p.e.window, c, kept)
}

type estimatorAdapter struct{ e *Engine }

func (a estimatorAdapter) Estimate(ctx context.Context, job, kind string) int {
	if j, err := a.e.Job(job); err == nil {
		kind = EstimateKind(j)
	}
	est := a.e.estimate(ctx, job, kind)
	a.e.estMu.Lock()
	a.e.estimates[job] = est
	a.e.estMu.Unlock()
	return est.Calls
}

// duration is the scheduler's Options.Duration: how long job's runs took,
// as of its last estimate.
func (e *Engine) duration(job string) time.Duration {
	return e.lastEstimate(job).Duration
}

// lastEstimate is job's estimate as the scheduler last asked for it (zero
// before the first).
func (e *Engine) lastEstimate(job string) budget.Estimate {
	e.estMu.Lock()
	defer e.estMu.Unlock()
	return e.estimates[job]
}

// EstimateKind is the estimator's kind for a job: an execute job that does not
// wait costs one call, not a start and its polls.
func EstimateKind(j *config.Job) string {
	if j.Kind == "execute" && !j.Wait {
		return budget.RunExecuteNoWait
	}
	return j.Kind
}

// estimate is a job's estimate from its recent runs in the ledger; when the
// ledger cannot be read it says so and uses the kind's default.
func (e *Engine) estimate(ctx context.Context, job, kind string) budget.Estimate {
	return Estimate(ctx, e.db, e.log, job, kind, e.now())
}

// Estimate is the estimate of job's next run at now from db's recent runs
// (their normal cost: store.JobHistory), decayed by how long the job's
// oldest deferred run has waited (budget.Decay); a read error is logged
// (with the cause) and the kind's default used.
func Estimate(ctx context.Context, db *store.DB, log interface {
	Warn(msg string, args ...any)
}, job, kind string, now time.Time) budget.Estimate {
	var h store.JobHistory
	if db != nil {
		var err error
		if h, err = db.JobHistory(ctx, job, 20); err != nil {
			log.Warn("estimate: the job's recent runs cannot be read; using the default for its kind", "job", job, "err", err)
			h = store.JobHistory{}
		}
	}
	recent, waiting, took := h.Costs, h.OldestDeferred, h.Durations
	if len(took) > 12 {
		took = took[:12]
	}
	est := budget.EstimateRun(kind, recent, budget.DefaultEstimates())
	if !waiting.IsZero() {
		est = budget.Decay(est, recent, now.Sub(waiting))
	}
	est.Duration = budget.TypicalDuration(took)
	return est
}

// onRun hears every run outcome once it is recorded (metrics, notifications).
func (e *Engine) onRun(r runnerd.Run) {
	// An outcome or a waiting state: the run's next admission, if any,
	// starts its count afresh.
	e.forget(r.ID)
	e.metrics.ObserveRun(r.Job, r.Kind, string(r.State), r.StartedAt, r.FinishedAt)
	e.queueEvidence(r)
	e.notifyRun(r)
}
