package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// Chains. A job with After runs when that job's run ends in AfterStatus
// (succeeded, failed or ended), instead of on a schedule: its run has the
// same nominal time as its predecessor's, so the unique (job, nominal) key
// keeps a chain from running a step twice for one start.
//
// A chain is admitted as a whole: the first step's admission asks the
// planner for the estimates of every step (its own and the rest of the
// chain's), and the look-ahead holds the rest of the chain for every step in
// flight and every slot of a first step ahead. The steps after the first are
// not asked again: their share was reserved, so the budget never stops a
// chain half-way (the gate still refuses a call past the cap, should the
// chain spend more than its estimates). A step that does not end in the state
// the next one waits for stops the chain: the steps after it are recorded as
// skipped (not notified), with the reason; the step's own failure is
// notified, once.

// Chain statuses (Job.AfterStatus).
const (
	AfterSucceeded = "succeeded"
	AfterFailed    = "failed"
	AfterEnded     = "ended" // succeeded or failed
)

// successors returns the jobs that follow job name, by name: from the map
// SetJobs builds, so that the look-ahead's cost does not grow with the
// number of jobs for each job it weighs.
func (s *Scheduler) successors(name string) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.next[name]
	if len(names) == 0 {
		return nil
	}
	out := make([]entry, 0, len(names))
	for _, n := range names {
		if e := s.entries[n]; e != nil && e.job.After == name {
			out = append(out, entry{job: e.job, rt: e.rt})
		}
	}
	return out
}

// chainRest is the estimate of every step after job name (its cached
// estimates), 0 for a job followed by none.
func (s *Scheduler) chainRest(name string) int {
	s.mu.Lock()
	none := len(s.next[name]) == 0
	s.mu.Unlock()
	if none {
		return 0
	}
	n := 0
	seen := map[string]bool{name: true}
	var walk func(string)
	walk = func(cur string) {
		for _, e := range s.successors(cur) {
			if seen[e.job.Name] {
				continue
			}
			seen[e.job.Name] = true
			n += int(e.rt.estimate.Load())
			walk(e.job.Name)
		}
	}
	walk(name)
	return n
}

// chainNames lists job name and every step after it: "a → b → c".
func (s *Scheduler) chainNames(name string) string {
	names := []string{name}
	seen := map[string]bool{name: true}
	var walk func(string)
	walk = func(cur string) {
		for _, e := range s.successors(cur) {
			if !seen[e.job.Name] {
				seen[e.job.Name] = true
				names = append(names, e.job.Name)
				walk(e.job.Name)
			}
		}
	}
	walk(name)
	return strings.Join(names, " → ")
}

// estimateRest refreshes the estimates of every step after job name.
func (s *Scheduler) estimateRest(ctx context.Context, name string) {
	seen := map[string]bool{name: true}
	var walk func(string)
	walk = func(cur string) {
		for _, e := range s.successors(cur) {
			if !seen[e.job.Name] {
				seen[e.job.Name] = true
				s.estimate(ctx, e.job, e.rt)
				walk(e.job.Name)
			}
		}
	}
	walk(name)
}

// chainWants reports whether a run that ended in state lets a step waiting
// for status go.
func chainWants(status string, state runnerd.RunState) bool {
	switch status {
	case AfterFailed:
		return state == runnerd.StateFailed
	case AfterEnded:
		return state == runnerd.StateSucceeded || state == runnerd.StateFailed
	}
	return state == runnerd.StateSucceeded
}

// chainNext starts the steps that follow r's job, or records them (and the
// steps after them) as skipped when r's outcome stops the chain.
func (s *Scheduler) chainNext(j Job, r runnerd.Run, o runOpts) {
	for _, next := range s.successors(j.Name) {
		sj, rt := next.job, next.rt
		if !chainWants(sj.AfterStatus, r.State) {
			s.chainStopped(sj, r, fmt.Sprintf("the chain stopped: %s (run %d) ended %s, and %s runs after it only when it ended %s",
				j.Name, r.ID, r.State, sj.Name, orText(sj.AfterStatus, AfterSucceeded)), map[string]bool{})
			continue
		}
		run, created, err := s.store.CreateRun(storeCtx, runnerd.Run{Job: sj.Name, Kind: sj.Kind, NominalTime: r.NominalTime, State: runnerd.StatePlanned})
		if err != nil {
			s.log.Error("chain: could not record the next step; the chain stops here", "job", sj.Name, "after", j.Name, "run_id", r.ID, "err", err)
			continue
		}
		if !created {
			continue // this start of the chain already has that step
		}
		s.log.Info("chain: next step", "job", sj.Name, "after", j.Name, "after_run", r.ID, "run_id", run.ID)
		bg := runOpts{chained: true, byHand: o.byHand}
		s.chains.Add(1)
		if !s.track(func() {
			defer s.chains.Done()
			s.lifecycle(sj, rt, run, bg)
		}) {
			s.chains.Done() // stopping: the planned step is picked up by the next Start
		}
	}
}

// chainStopped records job j's step for r's start, and every step after it,
// as skipped for why.
func (s *Scheduler) chainStopped(j Job, r runnerd.Run, why string, seen map[string]bool) {
	if seen[j.Name] {
		return
	}
	seen[j.Name] = true
	run, created, err := s.store.CreateRun(storeCtx, runnerd.Run{Job: j.Name, Kind: j.Kind, NominalTime: r.NominalTime, State: runnerd.StatePlanned})
	if err != nil || !created {
		return
	}
	s.end(storeCtx, run, runnerd.StateSkipped, why)
	for _, next := range s.successors(j.Name) {
		s.chainStopped(next.job, r, why, seen)
	}
}

// WaitChains waits until every chain step started so far has ended, or ctx
// ends: `runnerd run FIRST` without a daemon runs the whole chain.
func (s *Scheduler) WaitChains(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.chains.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chainDecision words a chain's refusal: the whole chain's estimate is what
// did not fit.
func (s *Scheduler) chainDecision(name string, own, rest int, dec budget.Decision) budget.Decision {
	if rest > 0 && !dec.Admit {
		dec.Reason = fmt.Sprintf("the chain %s needs %d calls as a whole (%d for this step): %s", s.chainNames(name), own+rest, own, dec.Reason)
	}
	return dec
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// chainPickup bounds how long after its predecessor ended a chain step a
// stop kept from starting is still started at the next Start.
const chainPickup = time.Hour

// resumeChains starts the chain steps a stop or a crash kept from starting:
// for each enabled job with After, when After's latest run ended in the state
// it waits for, within the step's catch-up window and chainPickup of its end,
// the step has run before, and it has no run
// for that slot, it is created and run (its share was reserved with the
// chain's first step). Start calls it after resume, before cron.
func (s *Scheduler) resumeChains(ctx context.Context, now time.Time, only func(job string) bool) error {
	var errs []error
	for _, e := range s.snapshot() {
		j := e.job
		if j.After == "" || !j.Enabled || !only(j.Name) {
			continue
		}
		prev, err := s.store.ListRuns(ctx, store.RunFilter{Job: j.After, Limit: 1})
		if err != nil {
			errs = append(errs, fmt.Errorf("chain %s after %s: %w", j.Name, j.After, err))
			continue
		}
		if len(prev) == 0 || !chainWants(j.AfterStatus, prev[0].State) || !now.Before(prev[0].NominalTime.Add(j.CatchUpWindow)) ||
			now.Sub(prev[0].FinishedAt) > chainPickup {
			continue
		}
		p := prev[0]
		// Only a step that has run before: a step just added to the
		// configuration does not run for a start of the chain it was not in.
		if mine, err := s.store.ListRuns(ctx, store.RunFilter{Job: j.Name, Limit: 1}); err != nil || len(mine) == 0 {
			continue
		}
		run, created, err := s.store.CreateRun(ctx, runnerd.Run{Job: j.Name, Kind: j.Kind, NominalTime: p.NominalTime, State: runnerd.StatePlanned})
		if err != nil {
			errs = append(errs, fmt.Errorf("chain %s after %s: %w", j.Name, j.After, err))
			continue
		}
		if !created {
			continue
		}
		s.log.Info("chain: next step picked up after a restart", "job", j.Name, "after", j.After, "after_run", p.ID, "run_id", run.ID)
		rt := e.rt
		s.chains.Add(1)
		if !s.track(func() {
			defer s.chains.Done()
			s.lifecycle(j, rt, run, runOpts{chained: true})
		}) {
			s.chains.Done()
		}
	}
	return errors.Join(errs...)
}
