package main

import (
	"context"
	"fmt"
	"time"

	"runnerd/internal/engine"
	"runnerd/internal/report"
)

func cmdPlan(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "plan", &c, true)
	hours := fs.Int("hours", 24, "look `N` hours ahead")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *hours < 1 || *hours > 24*7 {
		return usagef("plan: -hours %d: want 1 to 168", *hours)
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	// One open, read-only: plan never creates or migrates a database.
	db, err := readLedger(ctx, cfg)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	p, err := engine.PlanFromLedger(ctx, cfg, db, nil, now, *hours)
	if err != nil {
		return configErr(err)
	}
	steps, window, basis := p.Steps, p.Window, p.Basis
	if c.json {
		for _, s := range steps {
			if err := jsonLines(e.stdout, report.Plan{Job: s.Job, Time: report.RFC3339(s.Nominal), Priority: s.Priority.String(),
				Estimate: s.Estimate, Basis: basis[s.Job], Admit: s.Admit, Reason: s.Reason, RemainingAfter: s.RemainingAfter}); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(e.stdout, "next %d hours from %s: %d runs; %d calls left in the window now\n\n",
		*hours, now.Format(time.RFC3339), len(steps), window.Remaining(now))
	if p.Unknown > 0 {
		fmt.Fprintf(e.stdout, "recovery: %d unknown runs to reconcile: about %d lookups foreseen, which may use the reserve of %d",
			p.Unknown, p.Lookups, cfg.Budget.Reserve)
		if p.BeyondReserve > 0 {
			fmt.Fprintf(e.stdout, "; the %d beyond what is left of it are planned first, as high-priority work", p.BeyondReserve)
		}
		fmt.Fprintln(e.stdout)
		fmt.Fprintln(e.stdout)
	}
	if short := engine.Oversubscribed(p.Costs, engine.Limits(cfg).Cap()); len(short) > 0 {
		for _, s := range short {
			fmt.Fprintf(e.stdout, "over-subscribed: %s\n", s)
		}
		fmt.Fprintln(e.stdout)
	}
	t := newTable(e.stdout, "TIME (UTC)", "JOB", "PRIORITY", "ESTIMATE", "REMAINING AFTER", "PLAN")
	for _, s := range steps {
		plan := "runs"
		if !s.Admit {
			plan = "DEFERRED: " + s.Reason
		}
		t.row(s.Nominal.UTC().Format("Jan 02 15:04"), s.Job, s.Priority.String(), fmt.Sprint(s.Estimate), fmt.Sprint(s.RemainingAfter), plan)
	}
	return t.flush()
}
