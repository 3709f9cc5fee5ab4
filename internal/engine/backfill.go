package engine

import (
	"fmt"
	"math"
	"time"

	"runnerd/internal/budget"
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
