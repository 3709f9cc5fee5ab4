package engine

import (
	"context"
	"fmt"
	"math"
	"time"

	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/scheduler/kinds"
	"runnerd/internal/store"
)

// Backfill estimate.
const (
	backfillHistory = 48  // windows of the job's history the records-per-hour rate is taken from
	pageSize        = 100 // records per QUERY/queryMore page (atomsphere-api.md 2.3)
)

// BackfillEstimate is what re-exporting a window is expected to cost.
type BackfillEstimate struct {
	Windows int     // sub-windows the export splits the window into (kinds.DefaultMaxWindow each)
	Records float64 // expected records
	Calls   int     // expected calls: the pages of every sub-window, at least one each
	Basis   string  // in words
}

// EstimateBackfill estimates the calls of exporting [from, to) for job: every
// sub-window costs max(1, ceil(records/100)) pages, where records = the job's
// records per hour of window, over its latest 48 recorded windows (rows ÷
// hours), times the sub-window's hours. A job with no recorded window uses
// the export default (budget.DefaultEstimates().Export pages per sub-window).
func EstimateBackfill(ws []store.ExportWindow, job string, from, to time.Time) BackfillEstimate {
	from, to = from.UTC().Truncate(time.Second), to.UTC().Truncate(time.Second)
	var rows int
	var hours float64
	seen := 0
	for i := len(ws) - 1; i >= 0 && seen < backfillHistory; i-- { // ws are oldest first
		w := ws[i]
		if w.Job != job || !w.To.After(w.From) {
			continue
		}
		rows += w.Rows
		hours += w.To.Sub(w.From).Hours()
		seen++
	}
	var est BackfillEstimate
	perHour := -1.0
	if hours > 0 {
		perHour = float64(rows) / hours
		est.Basis = fmt.Sprintf("%.1f records/hour over the job's last %d exported windows (%.0f h)", perHour, seen, hours)
	} else {
		est.Basis = fmt.Sprintf("no exported window yet: the export default of %d pages per window", budget.DefaultEstimates().Export)
	}
	for s := from; s.Before(to); s = s.Add(kinds.DefaultMaxWindow) {
		e := s.Add(kinds.DefaultMaxWindow)
		if e.After(to) {
			e = to
		}
		est.Windows++
		if perHour < 0 {
			est.Calls += budget.DefaultEstimates().Export
			est.Records += float64(budget.DefaultEstimates().Export * pageSize)
			continue
		}
		n := perHour * e.Sub(s).Hours()
		est.Records += n
		est.Calls += max(1, int(math.Ceil(n/pageSize)))
	}
	return est
}

// BackfillShare is the default threshold of a backfill: without an explicit
// maximum, one estimated above this percentage of the remaining budget needs
// the operator's confirmation.
const BackfillShare = 10

// BackfillPlan is what re-exporting a past window of an export job would
// cost and whether it needs confirmation.
type BackfillPlan struct {
	Job       *config.Job
	Estimate  BackfillEstimate
	Remaining int    // calls left in the budget now
	Threshold int    // above it, confirmation is needed
	Why       string // the threshold in words
}

// NeedsConfirm reports whether the estimate is above the threshold.
func (p BackfillPlan) NeedsConfirm() bool { return p.Estimate.Calls > p.Threshold }

// PlanBackfill vets re-exporting [from, to) for the job name before anything
// is sent: it must be an export job with a window_property (a ConfigError
// otherwise). db may be nil (a host with no ledger yet: the defaults).
// maxCalls > 0 sets the threshold; else it is BackfillShare percent of the
// budget remaining.
func PlanBackfill(ctx context.Context, cfg *config.Config, db *store.DB, name string, from, to, now time.Time, maxCalls int) (BackfillPlan, error) {
	job := cfg.Job(name)
	switch {
	case job == nil:
		return BackfillPlan{}, configErrorf("no job %q in %s", name, cfg.File)
	case job.Kind != "export":
		return BackfillPlan{}, configErrorf("-from/-to re-export a past window; job %q is a %s job", name, job.Kind)
	case job.WindowProperty == "":
		return BackfillPlan{}, configErrorf("-from/-to: export job %q exports all of %s every run (no window_property): there is no window to re-export", name, job.Object)
	}
	var ws []store.ExportWindow
	if db != nil {
		var err error
		if ws, err = db.ExportWindows(ctx, job.Object); err != nil {
			return BackfillPlan{}, err
		}
	}
	view, err := LoadBudgetView(ctx, cfg, db, now)
	if err != nil {
		return BackfillPlan{}, err
	}
	p := BackfillPlan{Job: job, Estimate: EstimateBackfill(ws, name, from, to), Remaining: view.Window.Remaining(now)}
	p.Threshold, p.Why = BackfillThreshold(view, maxCalls, BackfillShare)
	return p, nil
}
