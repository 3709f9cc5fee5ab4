package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"runnerd"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// planJSON is one line of `runnerd plan -json`.
type planJSON struct {
	Job            string `json:"job"`
	Time           string `json:"time"`
	Priority       string `json:"priority"`
	Estimate       int    `json:"estimate"`
	Basis          string `json:"estimate_basis"`
	Admit          bool   `json:"admit"`
	Reason         string `json:"reason,omitempty"`
	RemainingAfter int    `json:"remaining_after"`
}

func priorityOf(s string) runnerd.Priority {
	switch s {
	case "high":
		return runnerd.PriorityHigh
	case "low":
		return runnerd.PriorityLow
	}
	return runnerd.PriorityNormal
}

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
	horizon := now.Add(time.Duration(*hours) * time.Hour)
	jc, err := costs(ctx, cfg, now, 0, time.Duration(*hours)*time.Hour)
	if err != nil {
		return err
	}
	// The ledger: what the window already holds, and which jobs are paused.
	limits := budget.Limits{DailyLimit: cfg.Budget.DailyLimit, Reserve: cfg.Budget.Reserve, Rate: cfg.Budget.Rate}
	window := budget.NewWindow(limits)
	paused := map[string]bool{}
	if _, err := os.Stat(cfg.Store.Path); err == nil {
		db, err := openStore(ctx, cfg, store.Options{NoMigrate: true})
		if err != nil {
			return err
		}
		v, err := loadBudgetView(ctx, cfg, db, now)
		if err == nil {
			window = v.window
		}
		states, _ := db.JobStates(ctx)
		for _, s := range states {
			paused[s.Job] = s.Paused
		}
		db.Close()
	}
	var upcoming []budget.Candidate
	basis := map[string]string{}
	for _, x := range jc {
		if !x.job.Enabled || paused[x.job.Name] {
			continue
		}
		basis[x.job.Name] = x.estimate.Basis
		for _, t := range x.next {
			if t.After(horizon) {
				break
			}
			upcoming = append(upcoming, budget.Candidate{Job: x.job.Name, Nominal: t, Priority: priorityOf(x.job.Priority), Estimate: x.estimate.Calls})
		}
	}
	sort.SliceStable(upcoming, func(i, j int) bool { return upcoming[i].Nominal.Before(upcoming[j].Nominal) })
	for i := range upcoming {
		upcoming[i].Seq = int64(i)
	}
	steps := budget.NewPlanner(limits).Plan(now, window, *hours, upcoming)
	if c.json {
		for _, s := range steps {
			if err := jsonLines(e.stdout, planJSON{Job: s.Job, Time: rfc3339(s.Nominal), Priority: s.Priority.String(),
				Estimate: s.Estimate, Basis: basis[s.Job], Admit: s.Admit, Reason: s.Reason, RemainingAfter: s.RemainingAfter}); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(e.stdout, "next %d hours from %s: %d runs; %d calls left in the window now\n\n",
		*hours, now.Format(time.RFC3339), len(steps), window.Remaining(now))
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
