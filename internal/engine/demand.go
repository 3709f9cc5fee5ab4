package engine

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"time"

	"runnerd"
	"runnerd/internal/budget"
)

// On a shared ledger, priorities span every instance's runs: at each
// heartbeat an instance publishes its look-ahead (the runs of the jobs it
// holds) and reads the others'. The shares a lower-priority call must leave
// (shares) and a run's admission (plannerAdapter) count the other instances'
// higher-priority runs as they count their own.

// demandRun is one run of a published look-ahead.
type demandRun struct {
	Job        string `json:"job"`
	Nominal    int64  `json:"nominal"` // unix ms
	Priority   string `json:"priority"`
	Estimate   int    `json:"estimate"`
	DurationMS int64  `json:"duration_ms,omitempty"`
}

// ownLookAhead is the look-ahead of the jobs this instance holds. An engine
// that has not taken part yet (no heartbeat: a command reading the ledger,
// plan's foresight) counts every job of its configuration, as on SQLite.
func (e *Engine) ownLookAhead(all []budget.Candidate) []budget.Candidate {
	if !e.leasesActive() {
		return all
	}
	out := make([]budget.Candidate, 0, len(all))
	for _, c := range all {
		if e.owns(c.Job) {
			out = append(out, c)
		}
	}
	return out
}

// shareDemand publishes this instance's look-ahead and reads the others'.
func (e *Engine) shareDemand(ctx context.Context) error {
	now := e.now()
	mine := e.ownLookAhead(e.sched.LookAhead(now, 24*time.Hour))
	runs := make([]demandRun, len(mine))
	for i, c := range mine {
		runs[i] = demandRun{Job: c.Job, Nominal: c.Nominal.UnixMilli(), Priority: c.Priority.String(), Estimate: c.Estimate,
			DurationMS: c.Duration.Milliseconds()}
	}
	b, err := json.Marshal(runs)
	if err != nil {
		return err
	}
	l := e.leases
	if err := e.db.PublishDemand(ctx, l.instance.Name, string(b)); err != nil {
		return err
	}
	others, err := e.db.OthersDemand(ctx, l.instance.Name, 2*l.lease)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(others))
	for in := range others {
		names = append(names, in)
	}
	sort.Strings(names)
	var cands []budget.Candidate
	for _, in := range names {
		var rs []demandRun
		if json.Unmarshal([]byte(others[in]), &rs) != nil {
			continue
		}
		for _, r := range rs {
			p, err := runnerd.ParsePriority(r.Priority)
			if err != nil {
				continue
			}
			cands = append(cands, budget.Candidate{Job: r.Job, Nominal: time.UnixMilli(r.Nominal).UTC(), Priority: p,
				Estimate: r.Estimate, Duration: time.Duration(r.DurationMS) * time.Millisecond,
				// After this instance's own runs among equals.
				Seq: math.MaxInt64/2 + int64(len(cands)), Label: r.Job + " on " + in})
		}
	}
	l.mu.Lock()
	l.others = cands
	l.mu.Unlock()
	return nil
}

// sharedLookAhead is, on a shared ledger, all's runs of the jobs this
// instance holds and the other instances' published runs; all itself on
// SQLite.
func (e *Engine) sharedLookAhead(all []budget.Candidate) []budget.Candidate {
	if !e.leasesActive() {
		return all
	}
	own := e.ownLookAhead(all)
	e.leases.mu.Lock()
	defer e.leases.mu.Unlock()
	return append(own, e.leases.others...)
}
