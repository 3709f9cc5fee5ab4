package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/engine"
	"runnerd/internal/store"
)

// readLedger opens cfg's database read-only for estimates, or returns nil
// when there is none yet (a new host: estimates are the kinds' defaults).
func readLedger(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	if _, err := os.Stat(cfg.Store.Path); err != nil && cfg.Store.URL == "" {
		return nil, nil
	}
	db, err := openStore(ctx, cfg, store.Options{ReadOnly: true})
	if err != nil || cfg.Store.URL == "" {
		return db, err
	}
	// A PostgreSQL database no daemon has migrated yet holds no ledger.
	if v, _, err := db.SchemaVersion(ctx); err != nil || v == 0 {
		db.Close()
		return nil, err
	}
	return db, nil
}

func cmdValidate(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "validate", &c, true)
	strict := fs.Bool("strict", false, "exit 1 when the schedule needs more than the allowance (jobs that cannot run at their priority)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, c.config)
	var problems config.ErrorList
	if c.json && errors.As(err, &problems) {
		// -json answers in JSON for a bad file too: each problem with its line
		// and key, then the verdict; exit 2 as without -json.
		for _, p := range problems {
			jsonLines(e.stdout, map[string]any{"file": p.File, "line": p.Line, "job": p.Job, "key": p.Key, "problem": p.Msg})
		}
		jsonLines(e.stdout, map[string]any{"config": c.config, "valid": false, "problems": len(problems)})
		return usageError{errSilent}
	}
	if err != nil {
		return err
	}
	now := time.Now()
	db, err := readLedger(ctx, cfg)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	jc, err := engine.JobCosts(ctx, cfg, db, nil, now, 3, 0)
	if err != nil {
		return configErr(err)
	}
	capacity := engine.Limits(cfg).Cap()
	short := engine.Oversubscribed(jc, capacity)
	total := engine.DailyDemand(jc)
	type jobJSON struct {
		Job         string   `json:"job"`
		Kind        string   `json:"kind"`
		Enabled     bool     `json:"enabled"`
		Priority    string   `json:"priority"`
		Timezone    string   `json:"timezone"`
		Next        []string `json:"next"`
		After       string   `json:"after,omitempty"`
		PerRun      int      `json:"estimate_per_run"`
		Basis       string   `json:"estimate_basis"`
		RunsPerDay  int      `json:"runs_per_day"`
		CallsPerDay int      `json:"calls_per_day"`
	}
	var rows []jobJSON
	for _, x := range jc {
		loc, _ := x.Job.Location()
		r := jobJSON{Job: x.Job.Name, Kind: x.Job.Kind, Enabled: x.Job.Enabled, Priority: x.Job.Priority,
			Timezone: x.Job.Timezone, After: x.Job.After, PerRun: x.Estimate.Calls, Basis: x.Estimate.Basis, RunsPerDay: x.PerDay,
			CallsPerDay: x.PerDay * x.Estimate.Calls}
		for _, t := range x.Next {
			r.Next = append(r.Next, t.In(loc).Format(time.RFC3339))
		}
		rows = append(rows, r)
	}
	if c.json {
		for _, r := range rows {
			if err := jsonLines(e.stdout, r); err != nil {
				return err
			}
		}
		over := []map[string]any{}
		for _, s := range short {
			over = append(over, map[string]any{"priority": s.Priority.String(), "jobs": s.Jobs, "calls_per_day": s.Demand,
				"available": s.Available})
		}
		chains := []map[string]any{}
		for _, ch := range engine.Chains(cfg, jc) {
			chains = append(chains, map[string]any{"jobs": ch.Jobs, "estimates": ch.PerStep, "calls_per_run": ch.PerRun})
		}
		if err := jsonLines(e.stdout, map[string]any{"config": cfg.File, "valid": true, "jobs": len(rows),
			"calls_per_day": total, "daily_limit": cfg.Budget.DailyLimit, "reserve": cfg.Budget.Reserve, "capacity": capacity,
			"oversubscribed": over, "chains": chains}); err != nil {
			return err
		}
		return strictErr(e, *strict, short)
	}
	fmt.Fprintf(e.stdout, "%s: ok, %d jobs\n\n", cfg.File, len(rows))
	t := newTable(e.stdout, "JOB", "KIND", "PRIORITY", "NEXT (job's zone)", "CALLS/RUN", "RUNS/DAY", "CALLS/DAY", "ESTIMATE BASIS")
	for _, r := range rows {
		next := strings.Join(r.Next, ", ")
		switch {
		case !r.Enabled:
			next = "disabled"
		case r.After != "":
			next = "after " + r.After
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
	for _, ch := range engine.Chains(cfg, jc) {
		parts := make([]string, len(ch.PerStep))
		for i, n := range ch.PerStep {
			parts[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(e.stdout, "\nchain %s: about %d calls a run (%s), admitted as a whole", strings.Join(ch.Jobs, " → "), ch.PerRun, strings.Join(parts, " + "))
	}
	fmt.Fprintf(e.stdout, "\nschedule: about %d calls a day of %d available (daily_limit %d − reserve %d): %.0f%%\n",
		total, capacity, cfg.Budget.DailyLimit, cfg.Budget.Reserve, pct)
	for _, s := range short {
		fmt.Fprintf(e.stdout, "warning: %s\n", s)
	}
	return strictErr(e, *strict, short)
}

// strictErr is validate -strict's verdict: exit 1 when jobs cannot run
// within the allowance.
func strictErr(e *env, strict bool, short []engine.Shortfall) error {
	if !strict || len(short) == 0 {
		return nil
	}
	fmt.Fprintf(e.stderr, "runnerd validate -strict: %d priority class(es) cannot run within the allowance\n", len(short))
	return errSilent
}
