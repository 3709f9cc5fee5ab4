package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// jobCost is a job's schedule and estimated cost, shared by validate and plan.
type jobCost struct {
	job      *config.Job
	next     []time.Time
	estimate budget.Estimate
	perDay   int // fires in the next 24 hours
}

// costs computes each enabled job's next fire times (the next n, or with a
// horizon all of them up to it) and estimates. When the
// database exists, estimates come from the jobs' recorded runs.
func costs(ctx context.Context, cfg *config.Config, now time.Time, n int, horizon time.Duration) ([]jobCost, error) {
	var db *store.DB
	if _, err := os.Stat(cfg.Store.Path); err == nil {
		if db, err = openStore(ctx, cfg, store.Options{NoMigrate: true}); err != nil {
			return nil, err
		}
		defer db.Close()
	}
	var out []jobCost
	for i := range cfg.Jobs {
		j := &cfg.Jobs[i]
		next, err := j.NextFires(now, n)
		if horizon > 0 {
			next, err = j.FiresUntil(now, now.Add(horizon))
		}
		if err != nil {
			return nil, usageError{err}
		}
		day, err := j.FiresUntil(now, now.Add(24*time.Hour))
		if err != nil {
			return nil, usageError{err}
		}
		per := len(day)
		var recent []int
		if db != nil {
			recent, _ = db.RecentCallCounts(ctx, j.Name, 20)
		}
		out = append(out, jobCost{job: j, next: next, estimate: budget.EstimateRun(estimateKind(j), recent, budget.DefaultEstimates()), perDay: per})
	}
	return out, nil
}

func cmdValidate(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "validate", &c, true)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	now := time.Now()
	jc, err := costs(ctx, cfg, now, 3, 0)
	if err != nil {
		return err
	}
	capacity := cfg.Budget.DailyLimit - cfg.Budget.Reserve
	total := 0
	type jobJSON struct {
		Job         string   `json:"job"`
		Kind        string   `json:"kind"`
		Enabled     bool     `json:"enabled"`
		Priority    string   `json:"priority"`
		Timezone    string   `json:"timezone"`
		Next        []string `json:"next"`
		PerRun      int      `json:"estimate_per_run"`
		Basis       string   `json:"estimate_basis"`
		RunsPerDay  int      `json:"runs_per_day"`
		CallsPerDay int      `json:"calls_per_day"`
	}
	var rows []jobJSON
	for _, x := range jc {
		loc, _ := x.job.Location()
		r := jobJSON{Job: x.job.Name, Kind: x.job.Kind, Enabled: x.job.Enabled, Priority: x.job.Priority,
			Timezone: x.job.Timezone, PerRun: x.estimate.Calls, Basis: x.estimate.Basis, RunsPerDay: x.perDay,
			CallsPerDay: x.perDay * x.estimate.Calls}
		for _, t := range x.next {
			r.Next = append(r.Next, t.In(loc).Format(time.RFC3339))
		}
		if x.job.Enabled {
			total += r.CallsPerDay
		}
		rows = append(rows, r)
	}
	if c.json {
		for _, r := range rows {
			if err := jsonLines(e.stdout, r); err != nil {
				return err
			}
		}
		return jsonLines(e.stdout, map[string]any{"config": cfg.File, "valid": true, "jobs": len(rows),
			"calls_per_day": total, "daily_limit": cfg.Budget.DailyLimit, "reserve": cfg.Budget.Reserve, "capacity": capacity})
	}
	fmt.Fprintf(e.stdout, "%s: ok, %d jobs\n\n", cfg.File, len(rows))
	t := newTable(e.stdout, "JOB", "KIND", "PRIORITY", "NEXT (job's zone)", "CALLS/RUN", "RUNS/DAY", "CALLS/DAY", "ESTIMATE BASIS")
	for _, r := range rows {
		next := strings.Join(r.Next, ", ")
		if !r.Enabled {
			next = "disabled"
		}
		t.row(r.Job, r.Kind, r.Priority, next, fmt.Sprint(r.PerRun), fmt.Sprint(r.RunsPerDay), fmt.Sprint(r.CallsPerDay), r.Basis)
	}
	if err := t.flush(); err != nil {
		return err
	}
	pct := 0.0
	if capacity > 0 {
		pct = 100 * float64(total) / float64(capacity)
	}
	fmt.Fprintf(e.stdout, "\nschedule: about %d calls a day of %d available (daily_limit %d − reserve %d): %.0f%%\n",
		total, capacity, cfg.Budget.DailyLimit, cfg.Budget.Reserve, pct)
	if total > capacity {
		fmt.Fprintf(e.stdout, "warning: the schedule needs more than the allowance; lower-priority runs will be deferred\n")
	}
	return nil
}
