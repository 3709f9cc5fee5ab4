package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// resume picks up the runs the last process left planned (waiting for jitter
// or a queue) or deferred (waiting for the budget): each goes on where it was,
// if its catch-up window is still open.
func (s *Scheduler) resume(ctx context.Context, now time.Time, only func(job string) bool) error {
	runs, err := s.store.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{runnerd.StatePlanned, runnerd.StateDeferred}})
	if err != nil {
		return fmt.Errorf("pick up runs left planned or deferred: %w", err)
	}
	slices.SortFunc(runs, func(a, b runnerd.Run) int {
		if c := a.NominalTime.Compare(b.NominalTime); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	for _, r := range runs {
		if !only(r.Job) {
			continue // another instance's (a shared ledger)
		}
		j, rt, ok := s.lookup(r.Job)
		if !ok || !j.Enabled {
			s.end(ctx, r, runnerd.StateSkipped, "the job is no longer configured, or is disabled")
			continue
		}
		if deadline := r.NominalTime.Add(j.CatchUpWindow); !now.Before(deadline) {
			s.end(ctx, r, runnerd.StateMissed, fmt.Sprintf("its catch-up window closed at %s while runnerd was down",
				describeSlot(deadline)))
			continue
		}
		// A deferred run waits for the time the planner named; a planned one
		// whose retry backoff a stop cut short, for the backoff's end.
		at := now
		if r.NotBefore.After(now) {
			at = r.NotBefore
		}
		s.log.Info("run picked up", "job", r.Job, "run_id", r.ID, "nominal", r.NominalTime, "state", r.State, "at", at)
		// A chain's later step left planned had its share reserved by the
		// chain's first step: it is not asked again.
		o := runOpts{resumeAt: at, chained: j.After != "" && r.State == runnerd.StatePlanned}
		s.track(func() { s.lifecycle(j, rt, r, o) })
	}
	return nil
}

// BatchStore is what Start uses, when the Store has it, to start in O(1)
// transactions whatever the number of jobs: every job's state in one query,
// every job's last slot in one transaction. *store.DB implements it; a Store
// without it is read and written one job at a time.
type BatchStore interface {
	JobStates(ctx context.Context) ([]store.JobState, error)
	SetLastNominals(ctx context.Context, last map[string]time.Time) error
}

// catchUp handles, for each enabled job, the slots that passed while runnerd
// was down: those after the job's last handled slot, up to now. A job the
// store has never seen does not backfill. Slots older than the catch-up
// window are missed; of the others, catch_up = none misses all, latest runs
// the newest and misses the rest, all runs each, oldest first. Missed slots
// are recorded as missed runs, so history shows them.
//
// With a BatchStore, the job states are read in one query and the last slots
// written in one transaction after every job is handled, before any caught-up
// run starts; a crash in between leaves runs planned, which the next start
// resumes, and slots whose runs exist, which it does not create twice.
func (s *Scheduler) catchUp(ctx context.Context, now time.Time, only func(job string) bool) error {
	var errs []error
	bs, batch := s.store.(BatchStore)
	var states map[string]store.JobState
	if batch {
		all, err := bs.JobStates(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("catch up: read the jobs' state: %w", err))
			batch = false // one job at a time, as without a BatchStore
		} else {
			states = make(map[string]store.JobState, len(all))
			for _, st := range all {
				states[st.Job] = st
			}
		}
	}
	last := map[string]time.Time{}
	advance := func(name string, rt *jobRT, t time.Time) {
		if !batch {
			s.advance(ctx, name, rt, t)
			return
		}
		// s.advance's bookkeeping; the write is batched below.
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.After(rt.lastNominal) {
			rt.lastNominal = t
			last[name] = t.UTC()
		}
	}
	var starts []func()
	for _, e := range s.snapshot() {
		j := e.job
		if !j.Enabled || !only(j.Name) {
			continue
		}
		var st store.JobState
		if batch {
			var ok bool
			if st, ok = states[j.Name]; !ok {
				st = store.JobState{Job: j.Name}
			}
		} else {
			var err error
			if st, err = s.store.JobState(ctx, j.Name); err != nil {
				errs = append(errs, fmt.Errorf("catch up job %q: %w", j.Name, err))
				continue
			}
		}
		e.rt.paused.Store(st.Paused)
		if st.LastNominal.IsZero() {
			// New: from now on. Recording now lets the next start catch up
			// a downtime that begins before this job's first fire.
			advance(j.Name, e.rt, now.Truncate(time.Second))
			continue
		}
		slots, dropped := slotsBetween(e.sched, st.LastNominal, now, maxCatchUpSlots)
		if len(slots) == 0 {
			continue
		}
		lastSlot := slots[len(slots)-1]
		if st.Paused {
			advance(j.Name, e.rt, lastSlot)
			s.log.Info("catch-up: job paused; slots passed", "job", j.Name, "slots", len(slots)+dropped)
			continue
		}
		cutoff := now.Add(-j.CatchUpWindow)
		var toRun []runnerd.Run
		missed := 0
		for i, t := range slots {
			var reason string
			switch {
			case t.Before(cutoff):
				reason = fmt.Sprintf("runnerd was down; older than the catch-up window (%s)", j.CatchUpWindow)
			case j.CatchUp == CatchUpNone:
				reason = "runnerd was down; catch_up = none"
			case j.CatchUp == CatchUpLatest && i < len(slots)-1:
				reason = fmt.Sprintf("runnerd was down; catch_up = latest runs only the slot at %s", describeSlot(lastSlot))
			}
			state := runnerd.StatePlanned
			if reason != "" {
				state = runnerd.StateMissed
			}
			r, created, err := s.store.CreateRun(ctx, runnerd.Run{Job: j.Name, Kind: j.Kind, NominalTime: t.UTC(), State: state, Reason: reason})
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("catch up job %q at %s: %w", j.Name, describeSlot(t), err))
			case !created:
				// Handled already (a run left planned or deferred is resumed).
			case state == runnerd.StateMissed:
				missed++
			default:
				toRun = append(toRun, r)
			}
		}
		advance(j.Name, e.rt, lastSlot)
		s.log.Info("catch-up", "job", j.Name, "since", st.LastNominal, "slots", len(slots)+dropped,
			"missed", missed, "not_recorded", dropped, "to_run", len(toRun), "catch_up", j.CatchUp)
		if len(toRun) > 0 {
			rt := e.rt
			starts = append(starts, func() {
				s.track(func() {
					for _, r := range toRun {
						if s.isStopping() {
							return // stopping: the rest stay planned for the next start
						}
						s.lifecycle(j, rt, r, runOpts{jitter: true})
					}
				})
			})
		}
	}
	if batch && len(last) > 0 {
		if err := bs.SetLastNominals(ctx, last); err != nil {
			s.log.Error("could not record the jobs' last slots", "jobs", len(last), "err", err)
		}
	}
	for _, start := range starts {
		start()
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}
