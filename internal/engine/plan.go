package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"runnerd"
	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/reconcile"
	"runnerd/internal/store"
)

// JobCost is a job's schedule and estimated cost, for validate and plan.
type JobCost struct {
	Job      *config.Job
	Next     []time.Time // the next n fires, or all of them up to the horizon
	Estimate budget.Estimate
	PerDay   int // fires in the next 24 hours
}

// JobCosts computes each job's next fire times — the next n, or with a
// horizon all of them up to it — on the daemon's own schedule reading, and
// its estimate from db's recorded runs (db nil: the kinds' defaults).
func JobCosts(ctx context.Context, cfg *config.Config, db *store.DB, log *slog.Logger, now time.Time, n int, horizon time.Duration) ([]JobCost, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var out []JobCost
	for i := range cfg.Jobs {
		j := &cfg.Jobs[i]
		next, err := j.NextFires(now, n)
		if horizon > 0 {
			next, err = j.FiresUntil(now, now.Add(horizon))
		}
		if err != nil {
			return nil, ConfigError{fmt.Errorf("job %q: %w", j.Name, err)}
		}
		day, err := j.FiresUntil(now, now.Add(24*time.Hour))
		if err != nil {
			return nil, ConfigError{fmt.Errorf("job %q: %w", j.Name, err)}
		}
		out = append(out, JobCost{Job: j, Next: next, Estimate: Estimate(ctx, db, log, j.Name, EstimateKind(j), now), PerDay: len(day)})
	}
	// A chain's later steps run as often as its first one does, when it is enabled.
	byName := map[string]int{}
	for i := range out {
		byName[out[i].Job.Name] = i
	}
	for i := range out {
		if out[i].Job.After == "" {
			continue
		}
		if h, ok := byName[cfg.ChainHead(out[i].Job.Name)]; ok && out[h].Job.Enabled {
			out[i].PerDay = out[h].PerDay
		}
	}
	return out, nil
}

// ChainCost is one chain: its jobs in order and what a run of it costs.
type ChainCost struct {
	Jobs    []string
	PerStep []int
	PerRun  int
}

// Chains lists cfg's chains (a job with a job after it, and every step
// after), with the estimates of costs.
func Chains(cfg *config.Config, costs []JobCost) []ChainCost {
	est := map[string]int{}
	for _, c := range costs {
		est[c.Job.Name] = c.Estimate.Calls
	}
	var out []ChainCost
	for i := range cfg.Jobs {
		j := &cfg.Jobs[i]
		if j.After != "" {
			continue
		}
		steps := cfg.Chain(j.Name)
		if len(steps) < 2 {
			continue
		}
		var c ChainCost
		for _, s := range steps {
			c.Jobs = append(c.Jobs, s.Name)
			c.PerStep = append(c.PerStep, est[s.Name])
			c.PerRun += est[s.Name]
		}
		out = append(out, c)
	}
	return out
}

// Plan is the engine's own foresight for the next hours: every arrived run
// and every slot, decided by the same rule admission applies.
func (e *Engine) Plan(now time.Time, hours int) []budget.PlanStep {
	return e.planner.Plan(now, e.window, hours, e.lookAheadFor(now, time.Duration(hours)*time.Hour))
}

func (e *Engine) lookAheadFor(now time.Time, horizon time.Duration) []budget.Candidate {
	all := e.sched.LookAhead(now, max(horizon, 24*time.Hour)+24*time.Hour)
	capacity := e.limits.Cap()
	out := all[:0]
	for _, c := range all {
		if c.Estimate <= capacity {
			out = append(out, c)
		}
	}
	return out
}

// LedgerPlan is what `runnerd plan` shows without asking the daemon: the
// look-ahead the daemon admits with, built from the configuration and the
// ledger — the runs recorded as waiting, deferred or running first (in
// arrival order), then the enabled, unpaused jobs' slots.
type LedgerPlan struct {
	Steps  []budget.PlanStep
	Window *budget.Window    // the rolling window as the ledger holds it
	Basis  map[string]string // each job's estimate basis, in words
	Costs  []JobCost
	// Unknown runs reconciliation has yet to settle (flagged ones left
	// out), and the recovery lookups foreseen for them
	// (reconcile.LookupsPerRun each). They may use the reserve; what the
	// reserve cannot hold is planned first, as high-priority work
	// (BeyondReserve).
	Unknown, Lookups, BeyondReserve int
}

// PlanFromLedger foresees the next hours from cfg and db (db nil: an empty
// ledger). Errors reading the ledger are returned, never shown as an empty
// window.
func PlanFromLedger(ctx context.Context, cfg *config.Config, db *store.DB, log *slog.Logger, now time.Time, hours int) (*LedgerPlan, error) {
	horizon := time.Duration(hours) * time.Hour
	// Slots up to a day past the horizon: a run near its end must make room
	// for the higher-priority runs that come after it.
	costs, err := JobCosts(ctx, cfg, db, log, now, 0, horizon+24*time.Hour)
	if err != nil {
		return nil, err
	}
	limits := Limits(cfg)
	p := &LedgerPlan{Window: budget.NewWindow(limits), Basis: map[string]string{}, Costs: costs}
	paused := map[string]bool{}
	var arrived []budget.Candidate
	if db != nil {
		if p.Window, err = LoadWindow(ctx, db, limits, now); err != nil {
			return nil, err
		}
		states, err := db.JobStates(ctx)
		if err != nil {
			return nil, fmt.Errorf("plan: read the jobs' state: %w", err)
		}
		for _, s := range states {
			paused[s.Job] = s.Paused
		}
		if arrived, err = arrivedFromLedger(ctx, cfg, db, costs, now); err != nil {
			return nil, err
		}
		unknown, err := db.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{runnerd.StateUnknown}})
		if err != nil {
			return nil, fmt.Errorf("plan: read the unknown runs: %w", err)
		}
		for _, r := range unknown {
			if !reconcile.IsFlagged(r) {
				p.Unknown++
			}
		}
		p.Lookups = p.Unknown * reconcile.LookupsPerRun
		// The reserve is what is left above the cap after the window's use.
		reserveLeft := min(limits.Reserve, max(0, limits.DailyLimit-p.Window.Used(now)))
		if p.BeyondReserve = max(0, p.Lookups-reserveLeft); p.BeyondReserve > 0 {
			arrived = append([]budget.Candidate{{Job: "reconciliation", Nominal: now, Priority: runnerd.PriorityHigh,
				Estimate: p.BeyondReserve, Label: fmt.Sprintf("reconciliation (%d unknown runs)", p.Unknown)}}, arrived...)
		}
	}
	upcoming := arrived
	for _, x := range costs {
		if !x.Job.Enabled || paused[x.Job.Name] {
			continue
		}
		p.Basis[x.Job.Name] = x.Estimate.Basis
		prio, err := runnerd.ParsePriority(x.Job.Priority)
		if err != nil {
			return nil, ConfigError{fmt.Errorf("job %q: %w", x.Job.Name, err)}
		}
		for _, t := range x.Next {
			upcoming = append(upcoming, budget.Candidate{Job: x.Job.Name, Nominal: t, Priority: prio, Estimate: x.Estimate.Calls,
				Duration: x.Estimate.Duration})
		}
	}
	capacity := limits.Cap()
	kept := upcoming[:0]
	for _, c := range upcoming {
		if c.Estimate <= capacity {
			kept = append(kept, c)
		}
	}
	p.Steps = budget.NewPlanner(limits).Plan(now, p.Window, hours, kept)
	return p, nil
}

// arrivedFromLedger returns the runs the ledger holds as waiting (planned),
// deferred, admitted or running, as the scheduler's LookAhead gives them.
func arrivedFromLedger(ctx context.Context, cfg *config.Config, db *store.DB, costs []JobCost, now time.Time) ([]budget.Candidate, error) {
	runs, err := db.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{
		runnerd.StatePlanned, runnerd.StateDeferred, runnerd.StateAdmitted, runnerd.StateRunning}})
	if err != nil {
		return nil, fmt.Errorf("plan: read the runs in flight: %w", err)
	}
	est := map[string]budget.Estimate{}
	for _, x := range costs {
		est[x.Job.Name] = x.Estimate
	}
	var out []budget.Candidate
	for _, r := range runs {
		j := cfg.Job(r.Job)
		if j == nil {
			continue // removed from the configuration: the daemon skips it
		}
		prio, err := runnerd.ParsePriority(j.Priority)
		if err != nil {
			return nil, ConfigError{fmt.Errorf("job %q: %w", j.Name, err)}
		}
		c := budget.Candidate{Job: r.Job, Nominal: now, Priority: prio, Estimate: est[r.Job].Calls, Seq: r.ID,
			Duration: est[r.Job].Duration, Label: r.Job + " (" + string(r.State) + ")"}
		switch r.State {
		case runnerd.StateAdmitted, runnerd.StateRunning:
			if r.Estimate > 0 {
				c.Estimate = r.Estimate
			}
			c.Estimate, c.Duration = budget.Remaining(c.Estimate, r.Calls, c.Duration)
		default:
			if r.NotBefore.After(now) {
				c.Nominal = r.NotBefore
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b budget.Candidate) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// BudgetView is the budget as the ledger shows it at Now, for `runnerd
// budget` and the backfill check: the window rebuilt from the hourly rollup,
// and the 503 classification the daemon last recorded, while it holds.
type BudgetView struct {
	Limits         budget.Limits
	Window         *budget.Window
	Classification budget.Classification
	Now            time.Time
}

// LoadBudgetView reads db's view of the budget at now; db nil is an empty
// ledger.
func LoadBudgetView(ctx context.Context, cfg *config.Config, db *store.DB, now time.Time) (*BudgetView, error) {
	v := &BudgetView{Limits: Limits(cfg), Now: now, Classification: budget.Classification{Kind: budget.KindOK}}
	v.Window = budget.NewWindow(v.Limits)
	if db == nil {
		return v, nil
	}
	var err error
	if v.Window, err = LoadWindow(ctx, db, v.Limits, now); err != nil {
		return nil, err
	}
	// The daemon records each change of its 503 classification; what it last
	// believed holds until its Until (an "ok" has none).
	s, err := db.Meta(ctx, MetaClassification)
	if errors.Is(err, store.ErrNotFound) {
		s, err = "", nil // no 503 seen yet
	}
	if err != nil {
		return nil, fmt.Errorf("budget: read the last 503 classification: %w", err)
	}
	if s != "" {
		var c budget.Classification
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return nil, fmt.Errorf("budget: the recorded 503 classification does not decode: %w", err)
		}
		if c.Until.IsZero() || c.Until.After(now) {
			v.Classification = c
		}
	}
	return v, nil
}

// BackfillThreshold is the number of estimated calls above which a backfill
// needs the operator's -yes: maxCalls when given, else share percent of what
// the window has left for ordinary work; why says which, in words.
func BackfillThreshold(v *BudgetView, maxCalls, share int) (threshold int, why string) {
	if maxCalls > 0 {
		return maxCalls, "-max-calls"
	}
	remaining := v.Window.Remaining(v.Now)
	return max(1, remaining*share/100), fmt.Sprintf("%d%% of the %d calls remaining in the budget", share, remaining)
}
