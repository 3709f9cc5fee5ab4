package main

import (
	"context"
	"errors"
	"time"

	"runnerd/internal/store"
	"runnerd/internal/web"
)

// The daemon is the status page's and /metrics' web.Source.
var _ web.Source = (*daemon)(nil)

func (d *daemon) Jobs(ctx context.Context) []web.JobStatus {
	d.mu.Lock()
	jobs := d.cfg.Jobs
	d.mu.Unlock()
	next := d.sched.Next()
	states, _ := d.db.JobStates(ctx)
	paused := map[string]bool{}
	for _, s := range states {
		paused[s.Job] = s.Paused
	}
	out := make([]web.JobStatus, 0, len(jobs))
	for _, j := range jobs {
		js := web.JobStatus{Name: j.Name, Kind: j.Kind, Priority: j.Priority, Schedule: j.Schedule,
			Timezone: j.Timezone, Next: next[j.Name], Paused: paused[j.Name]}
		if runs, err := d.db.ListRuns(ctx, store.RunFilter{Job: j.Name, Limit: 1}); err == nil && len(runs) > 0 {
			js.LastState, js.LastNominal, js.LastError = string(runs[0].State), runs[0].NominalTime, runs[0].Error
		}
		out = append(out, js)
	}
	return out
}

func (d *daemon) Budget(now time.Time) web.BudgetStatus {
	cl := d.classifier.State(now)
	st := d.window.Status(now)
	b := web.BudgetStatus{
		DailyLimit: st.DailyLimit, Reserve: st.Reserve, Rate: st.Rate, Used: st.Used, Remaining: st.Remaining,
		WindowStart: st.WindowStart, NextFreeAt: st.NextFreeAt, NextFrees: st.NextFrees,
		Classification: cl.Kind, ClassificationReason: cl.Reason,
	}
	for _, h := range st.Hours {
		b.Hours = append(b.Hours, web.HourCalls{Hour: h.Hour, Calls: h.Calls})
	}
	return b
}

func (d *daemon) RecentRuns(ctx context.Context, n int) []web.RunRow {
	runs, _ := d.db.ListRuns(ctx, store.RunFilter{Limit: n})
	out := make([]web.RunRow, 0, len(runs))
	for _, r := range runs {
		out = append(out, web.RunRow{ID: r.ID, Job: r.Job, Kind: r.Kind, State: string(r.State), Nominal: r.NominalTime,
			Started: r.StartedAt, Finished: r.FinishedAt, Calls: r.Calls, Error: firstNonEmpty(r.Error, r.Reason)})
	}
	return out
}

func (d *daemon) RecentCalls(ctx context.Context, n int) []web.CallRow {
	calls, _ := d.db.ListCalls(ctx, store.CallFilter{Status: -1, Limit: n})
	out := make([]web.CallRow, 0, len(calls))
	for _, c := range calls {
		out = append(out, web.CallRow{ID: c.ID, RunID: c.RunID, Job: c.Job, Operation: c.Operation, Method: c.Method,
			Path: c.Path, Status: c.Status, Started: c.StartedAt, DurationMS: c.DurationMS, Error: c.Error})
	}
	return out
}

// Healthy: the store answers and the scheduler has not stopped. An exhausted
// budget is not ill health.
func (d *daemon) Healthy(ctx context.Context) error {
	if err := d.db.Ping(ctx); err != nil {
		return err
	}
	if d.stopped.Load() {
		return errors.New("scheduler stopped")
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// startBackground starts the daemon's housekeeping: ledger retention once a day.
func (d *daemon) startBackground(ctx context.Context) {
	retention := d.cfg.Budget.Retention.Duration
	if retention <= 0 {
		retention = 90 * 24 * time.Hour
	}
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		var last time.Time
		for {
			if now := d.now(); now.Sub(last) >= 24*time.Hour {
				last = now
				if n, err := d.db.Prune(ctx, retention); err != nil {
					d.log.Warn("retention: prune failed", "err", err)
				} else if n > 0 {
					d.log.Info("retention: pruned call rows", "rows", n, "older_than", retention)
				}
				if _, err := d.db.PruneNotifyDeliveries(ctx, retention); err != nil {
					d.log.Warn("retention: prune of notification deliveries failed", "err", err)
				}
				if err := d.db.Checkpoint(ctx); err != nil {
					d.log.Warn("retention: WAL checkpoint failed", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}
