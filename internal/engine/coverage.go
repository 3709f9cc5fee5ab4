package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// AuditObject is the API object whose records the audit store keeps.
const AuditObject = "AuditLog"

// CoverageRange is one stretch of time in the coverage report.
type CoverageRange struct {
	From, To time.Time
	State    string   // covered | gap | failed
	Jobs     []string // covered: the jobs whose windows make it up
	Runs     []string // failed: "run N (state): error"
	Records  int      // stored records dated in it
}

// Coverage states.
const (
	CoverageCovered = "covered"
	CoverageGap     = "gap"    // never exported
	CoverageFailed  = "failed" // an export of it failed or was deferred, and nothing exported it since
)

// Interval is a half-open time range with a label.
type Interval struct {
	From, To time.Time
	Label    string
}

// AuditCoverage is what the store knows about the AuditLog time ranges.
type AuditCoverage struct {
	Windows  []Interval // exported windows, label = job
	Failures []Interval // windows of failed or deferred AuditLog export runs, label = the run in words
	Filtered []string   // AuditLog export jobs with filters: they cover only part of the records
}

// LoadAuditCoverage reads what db knows of the AuditLog time ranges: the
// exported windows, the failed or deferred exports, and the filtered jobs.
func LoadAuditCoverage(ctx context.Context, db *store.DB, cfg *config.Config) (AuditCoverage, error) {
	var cov AuditCoverage
	ws, err := db.ExportWindows(ctx, AuditObject)
	if err != nil {
		return cov, err
	}
	jobs := map[string]bool{}
	for _, w := range ws {
		if w.To.After(w.From) {
			cov.Windows = append(cov.Windows, Interval{w.From, w.To, w.Job})
		}
		jobs[w.Job] = true
	}
	for _, j := range cfg.Jobs {
		if j.Kind == "export" && j.Object == AuditObject {
			jobs[j.Name] = true
			if len(j.Filters) > 0 {
				var fs []string
				for _, f := range j.Filters {
					fs = append(fs, fmt.Sprintf("%s %s %s", f.Property, f.Operator, strings.Join(f.Arguments, ",")))
				}
				cov.Filtered = append(cov.Filtered, fmt.Sprintf("job %s exports only records with %s", j.Name, strings.Join(fs, " and ")))
			}
		}
	}
	names := make([]string, 0, len(jobs))
	for j := range jobs {
		names = append(names, j)
	}
	sort.Strings(names)
	for _, job := range names {
		runs, err := db.ListRuns(ctx, store.RunFilter{Job: job, States: []runnerd.RunState{runnerd.StateFailed, runnerd.StateDeferred}})
		if err != nil {
			return cov, err
		}
		for _, r := range runs {
			var d struct {
				Object string    `json:"object"`
				F      time.Time `json:"from"`
				T      time.Time `json:"to"`
			}
			if r.Detail == "" || json.Unmarshal([]byte(r.Detail), &d) != nil || d.Object != AuditObject || !d.T.After(d.F) {
				continue
			}
			why := r.Error
			if why == "" {
				why = r.Reason
			}
			if len(why) > 120 {
				why = why[:117] + "..."
			}
			label := fmt.Sprintf("run %d of %s %s", r.ID, r.Job, r.State)
			if why != "" {
				label += ": " + why
			}
			cov.Failures = append(cov.Failures, Interval{d.F.UTC(), d.T.UTC(), label})
		}
	}
	return cov, nil
}

// Ranges lays cov out over [from, to): covered ranges (windows merged where
// they touch or overlap), and between them gaps, split where failed runs'
// windows begin and end. A zero from/to is the first/last recorded window
// (or failure).
func (cov AuditCoverage) Ranges(from, to time.Time) []CoverageRange {
	ws := slices.Clone(cov.Windows)
	sort.Slice(ws, func(i, j int) bool { return ws[i].From.Before(ws[j].From) })
	var covered []CoverageRange
	for _, w := range ws {
		if n := len(covered); n > 0 && !w.From.After(covered[n-1].To) {
			c := &covered[n-1]
			if w.To.After(c.To) {
				c.To = w.To
			}
			if !slices.Contains(c.Jobs, w.Label) {
				c.Jobs = append(c.Jobs, w.Label)
			}
			continue
		}
		covered = append(covered, CoverageRange{From: w.From, To: w.To, State: CoverageCovered, Jobs: []string{w.Label}})
	}
	// The natural bounds: the first and last recorded window or failure.
	var lo, hi time.Time
	for _, c := range covered {
		lo, hi = minTime(lo, c.From), maxTime(hi, c.To)
	}
	for _, f := range cov.Failures {
		lo, hi = minTime(lo, f.From), maxTime(hi, f.To)
	}
	if !from.IsZero() {
		lo = from
	}
	if !to.IsZero() {
		hi = to
	}
	if lo.IsZero() || hi.IsZero() || !lo.Before(hi) {
		return nil
	}
	var out []CoverageRange
	gap := func(a, b time.Time) {
		if !a.Before(b) {
			return
		}
		// Split [a, b) at every failure bound inside it.
		cuts := []time.Time{a, b}
		for _, f := range cov.Failures {
			for _, t := range []time.Time{f.From, f.To} {
				if t.After(a) && t.Before(b) {
					cuts = append(cuts, t)
				}
			}
		}
		sort.Slice(cuts, func(i, j int) bool { return cuts[i].Before(cuts[j]) })
		cuts = slices.CompactFunc(cuts, time.Time.Equal)
		for i := 0; i+1 < len(cuts); i++ {
			r := CoverageRange{From: cuts[i], To: cuts[i+1], State: CoverageGap}
			for _, f := range cov.Failures {
				if f.From.Before(r.To) && f.To.After(r.From) && !slices.Contains(r.Runs, f.Label) {
					r.State = CoverageFailed
					r.Runs = append(r.Runs, f.Label)
				}
			}
			if n := len(out); n > 0 && out[n-1].State == r.State && out[n-1].To.Equal(r.From) && slices.Equal(out[n-1].Runs, r.Runs) {
				out[n-1].To = r.To
				continue
			}
			out = append(out, r)
		}
	}
	at := lo
	for _, c := range covered {
		if !c.To.After(lo) || !c.From.Before(hi) {
			continue
		}
		c.From, c.To = maxTime(c.From, lo), minTime(c.To, hi)
		gap(at, c.From)
		out = append(out, c)
		at = c.To
	}
	gap(at, hi)
	return out
}

// LastCovered is the end of the latest covered range in rs, zero if none.
func LastCovered(rs []CoverageRange) time.Time {
	var last time.Time
	for _, r := range rs {
		if r.State == CoverageCovered {
			last = r.To
		}
	}
	return last
}

// Counted is Ranges over [since, until) — until is now when only since is
// given — with the records db stores dated in each, and how many of them are
// gaps (never exported, or failed).
func (cov AuditCoverage) Counted(ctx context.Context, db *store.DB, since, until, now time.Time) (rs []CoverageRange, gaps int, err error) {
	if !since.IsZero() && until.IsZero() {
		until = now
	}
	rs = cov.Ranges(since, until)
	for i := range rs {
		if rs[i].Records, err = db.CountAudit(ctx, store.AuditFilter{Since: rs[i].From, Until: rs[i].To}); err != nil {
			return nil, 0, err
		}
		if rs[i].State != CoverageCovered {
			gaps++
		}
	}
	return rs, gaps, nil
}

// Hole is a part of an asked range the local store does not cover, and why:
// "never exported", "export failed", or "not exported yet" (after the latest
// covered range).
type Hole struct {
	From, To time.Time
	Why      string
}

// Holes returns the parts of [since, until) the store does not cover, so
// that no rows is not read as nothing happened (a zero since is the first
// recorded window). recorded is false when no AuditLog window is recorded
// at all: then the store may hold nothing of the range.
func (cov AuditCoverage) Holes(since, until time.Time) (holes []Hole, recorded bool) {
	rs := cov.Ranges(since, until)
	if len(rs) == 0 {
		return nil, false
	}
	last := LastCovered(rs)
	for _, r := range rs {
		if r.State == CoverageCovered {
			continue
		}
		why := "never exported"
		switch {
		case r.State == CoverageFailed:
			why = "export failed"
		case !last.IsZero() && !r.From.Before(last):
			why = "not exported yet"
		}
		holes = append(holes, Hole{From: r.From, To: r.To, Why: why})
	}
	return holes, true
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// maxTime is the later of a and b; a zero a counts as unset.
func maxTime(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}
