package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"runnerd/internal/store"
	"runnerd/internal/web"
)

// The daemon is the status page's and /metrics' web.Source.
var _ web.Source = (*Engine)(nil)

func (e *Engine) Jobs(ctx context.Context) []web.JobStatus {
	jobs := e.Config().Jobs
	next := e.sched.Next()
	states, err := e.db.JobStates(ctx)
	if err != nil {
		e.log.Warn("status page: the jobs' state cannot be read; showing them as not paused", "err", err)
	}
	paused := map[string]bool{}
	for _, s := range states {
		paused[s.Job] = s.Paused
	}
	out := make([]web.JobStatus, 0, len(jobs))
	for _, j := range jobs {
		est := e.lastEstimate(j.Name)
		js := web.JobStatus{Name: j.Name, Kind: j.Kind, Priority: j.Priority, Schedule: j.Schedule,
			Timezone: j.Timezone, Next: next[j.Name], Paused: paused[j.Name], Estimate: est.Calls, Basis: est.Basis}
		if runs, err := e.db.ListRuns(ctx, store.RunFilter{Job: j.Name, Limit: 1}); err != nil {
			e.log.Warn("status page: the job's last run cannot be read", "job", j.Name, "err", err)
		} else if len(runs) > 0 {
			js.LastState, js.LastNominal, js.LastError = string(runs[0].State), runs[0].NominalTime, runs[0].Error
		}
		out = append(out, js)
	}
	return out
}

func (e *Engine) Budget(now time.Time) web.BudgetStatus {
	cl := e.classifier.State(now)
	st := e.window.Status(now)
	b := web.BudgetStatus{
		DailyLimit: st.DailyLimit, Reserve: st.Reserve, Rate: st.Rate, Used: st.Used, Remaining: st.Remaining,
		WindowStart: st.WindowStart, NextFreeAt: st.NextFreeAt, NextFrees: st.NextFrees,
		Classification: cl.Kind, ClassificationReason: cl.Reason,
	}
	for _, h := range st.Hours {
		b.Hours = append(b.Hours, web.HourCalls{Hour: h.Hour, Calls: h.Calls})
	}
	if e.client != nil {
		b.AuthOpen, b.AuthNextProbe = e.client.AuthBreaker()
	}
	if n, err := e.db.CallsSince(context.Background(), now.Add(-time.Minute)); err != nil {
		e.log.Warn("status page: the last minute's calls cannot be counted", "err", err)
	} else {
		b.RateUsed = float64(n) / 60
	}
	for _, x := range e.oversubscribed(now) {
		b.Oversubscribed = append(b.Oversubscribed, x.String())
	}
	if ins, _, err := LoadInstances(context.Background(), e.db, e.Config(), now); err != nil {
		e.log.Warn("status page: the instances sharing the ledger cannot be read", "err", err)
	} else {
		for _, in := range ins {
			b.Instances = append(b.Instances, InstanceText(in, now))
		}
	}
	if owed, err := e.db.OpenObligations(context.Background(), ""); err != nil {
		e.log.Warn("status page: the open resume obligations cannot be read", "err", err)
	} else {
		for _, o := range owed {
			b.Owed = append(b.Owed, fmt.Sprintf("%s (job %s, run %d): resumed first at the next start", ObligationText(o), o.Job, o.RunID))
		}
	}
	return b
}

// oversubRefresh is how long the status page's over-subscription figures
// are kept before they are computed again (a day's fire times and an
// estimate per job).
const oversubRefresh = 10 * time.Minute

// oversubscribed is Oversubscribed for the configuration in force, cached
// for oversubRefresh (a reload computes it afresh).
func (e *Engine) oversubscribed(now time.Time) []Shortfall {
	cfg := e.Config()
	e.oversubMu.Lock()
	defer e.oversubMu.Unlock()
	if e.oversubCfg == cfg && now.Sub(e.oversubAt).Abs() < oversubRefresh {
		return e.oversub
	}
	costs, err := JobCosts(context.Background(), cfg, e.db, e.log, now, 0, 0)
	if err != nil {
		e.log.Warn("status page: the jobs' daily demand cannot be computed", "err", err)
		return nil
	}
	e.oversub, e.oversubAt, e.oversubCfg = Oversubscribed(costs, Limits(cfg).Cap()), now, cfg
	return e.oversub
}

func (e *Engine) RecentRuns(ctx context.Context, n int) []web.RunRow {
	runs, err := e.db.ListRuns(ctx, store.RunFilter{Limit: n})
	if err != nil {
		e.log.Warn("status page: recent runs cannot be read", "err", err)
	}
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	lookups, err := e.db.RecoveryCalls(ctx, ids)
	if err != nil {
		e.log.Warn("status page: recovery lookups cannot be read", "err", err)
	}
	out := make([]web.RunRow, 0, len(runs))
	for _, r := range runs {
		out = append(out, web.RunRow{ID: r.ID, Job: r.Job, Kind: r.Kind, State: string(r.State), Nominal: r.NominalTime,
			Started: r.StartedAt, Finished: r.FinishedAt, Calls: r.Calls, Lookups: lookups[r.ID], Error: r.Error, Reason: r.Reason})
	}
	return out
}

func (e *Engine) RecentCalls(ctx context.Context, n int) []web.CallRow {
	calls, err := e.db.ListCalls(ctx, store.CallFilter{Status: -1, Limit: n})
	if err != nil {
		e.log.Warn("status page: recent calls cannot be read", "err", err)
	}
	out := make([]web.CallRow, 0, len(calls))
	for _, c := range calls {
		out = append(out, web.CallRow{ID: c.ID, RunID: c.RunID, Job: c.Job, Operation: c.Operation, Method: c.Method,
			Path: c.Path, Status: c.Status, Started: c.StartedAt, DurationMS: c.DurationMS, Error: c.Error})
	}
	return out
}

func (e *Engine) Run(ctx context.Context, id int64) (web.RunDetail, bool) {
	r, err := e.db.GetRun(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			e.log.Warn("status page: the run cannot be read", "run_id", id, "err", err)
		}
		return web.RunDetail{}, false
	}
	calls, err := e.db.ListCalls(ctx, store.CallFilter{RunID: id, Status: -1})
	if err != nil {
		e.log.Warn("status page: the run's calls cannot be read", "run_id", id, "err", err)
	}
	d := web.RunDetail{
		RunRow: web.RunRow{ID: r.ID, Job: r.Job, Kind: r.Kind, State: string(r.State), Nominal: r.NominalTime,
			Started: r.StartedAt, Finished: r.FinishedAt, Calls: r.Calls, Error: r.Error, Reason: r.Reason},
		NotBefore: r.NotBefore, Estimate: r.Estimate, Attempt: r.Attempt, Detail: indentJSON(r.Detail),
	}
	if j := e.Config().Job(r.Job); j != nil {
		d.Priority = j.Priority
	}
	for i := len(calls) - 1; i >= 0; i-- { // oldest first: the run's story in order
		c := calls[i]
		if c.Recovery {
			d.Lookups++
		}
		d.Ledger = append(d.Ledger, web.CallRow{ID: c.ID, RunID: c.RunID, Job: c.Job, Operation: c.Operation, Method: c.Method,
			Path: c.Path, Status: c.Status, Started: c.StartedAt, DurationMS: c.DurationMS, Error: c.Error,
			Attempt: c.Attempt, Recovery: c.Recovery, PlatformID: c.PlatformID})
	}
	es, err := e.db.RunEvidence(ctx, id)
	if err != nil {
		e.log.Warn("status page: the run's evidence cannot be read", "run_id", id, "err", err)
	}
	for _, x := range es {
		row := web.EvidenceRow{Kind: x.Kind, State: x.State, Reason: x.Reason, ExecutionID: x.ExecutionID,
			Path: x.Path, Bytes: x.Bytes, SHA256: x.SHA256}
		if x.State == store.EvidencePending {
			row.NextAt = x.NextAt
		}
		d.Evidence = append(d.Evidence, row)
	}
	return d, true
}

// indentJSON indents a run's detail for reading; text that is not JSON is
// shown as it is.
func indentJSON(s string) string {
	var b bytes.Buffer
	if s == "" || json.Indent(&b, []byte(s), "", "  ") != nil {
		return s
	}
	return b.String()
}

// housekeeping is the daemon's upkeep until ctx ends: ledger retention once
// a day, and, when the last daemon did not stop cleanly, a full integrity
// check of the file at low priority.
func (e *Engine) housekeeping(ctx context.Context) {
	retention := e.Config().Budget.Retention.Duration
	if retention <= 0 {
		retention = 90 * 24 * time.Hour
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	var last time.Time
	for {
		if now := e.now(); now.Sub(last) >= 24*time.Hour {
			last = now
			if n, err := e.db.Prune(ctx, retention); err != nil {
				e.log.Warn("retention: prune failed", "err", err)
			} else if n > 0 {
				e.log.Info("retention: pruned call rows", "rows", n, "older_than", retention)
			}
			if _, err := e.db.PruneNotifyDeliveries(ctx, retention); err != nil {
				e.log.Warn("retention: prune of notification deliveries failed", "err", err)
			}
			if n, err := e.evidence.Prune(ctx, retention); err != nil {
				e.log.Warn("retention: prune of failure evidence failed", "err", err)
			} else if n > 0 {
				e.log.Info("retention: pruned failure evidence", "pieces", n, "older_than", retention)
			}
			if err := e.db.Checkpoint(ctx); err != nil {
				e.log.Warn("retention: WAL checkpoint failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
