package scheduler

import (
	"slices"
	"time"

	"runnerd"
	"runnerd/internal/budget"
)

// Arrived is a run that has arrived and not finished: waiting for its turn
// (overlap = queue, jitter, a resume time), deferred for budget, admitted or
// running. The planner keeps its share ahead of later and lower runs, so a
// deferred 02:00 deployment is not starved by the exports that come after it
// (DESIGN 3.5).
type Arrived struct {
	RunID    int64
	Job      string
	Priority runnerd.Priority
	Nominal  time.Time
	State    runnerd.RunState // planned (waiting), deferred, admitted or running
	// NotBefore: deferred, the earliest time the planner said it fits; a
	// waiting run, when it is offered to the planner; zero = now.
	NotBefore time.Time
	Estimate  int // the calls it is expected to spend in all
}

// arrival is an Arrived kept by the scheduler; guarded by Scheduler.arrMu.
type arrival struct{ Arrived }

// arrive registers r, for the look-ahead, until the returned func is called.
func (s *Scheduler) arrive(j Job, rt *jobRT, r runnerd.Run, notBefore time.Time) (*arrival, func()) {
	a := &arrival{Arrived{RunID: r.ID, Job: j.Name, Priority: j.Priority, Nominal: r.NominalTime,
		State: r.State, NotBefore: notBefore, Estimate: int(rt.estimate.Load())}}
	if a.State != runnerd.StateDeferred {
		a.State = runnerd.StatePlanned
	}
	s.arrMu.Lock()
	s.arrived[r.ID] = a
	s.arrMu.Unlock()
	return a, func() {
		s.arrMu.Lock()
		if s.arrived[r.ID] == a {
			delete(s.arrived, r.ID)
		}
		s.arrMu.Unlock()
	}
}

// set updates an arrival's state, earliest time and estimate (est < 0 keeps it).
func (s *Scheduler) set(a *arrival, state runnerd.RunState, notBefore time.Time, est int) {
	s.arrMu.Lock()
	a.State, a.NotBefore = state, notBefore
	if est >= 0 {
		a.Estimate = est
	}
	s.arrMu.Unlock()
}

// ArrivedRuns returns every arrived, unfinished run, in arrival order (run id).
func (s *Scheduler) ArrivedRuns() []Arrived {
	s.arrMu.Lock()
	out := make([]Arrived, 0, len(s.arrived))
	for _, a := range s.arrived {
		out = append(out, a.Arrived)
	}
	s.arrMu.Unlock()
	slices.SortFunc(out, func(a, b Arrived) int { return int(a.RunID - b.RunID) })
	return out
}

// LookAhead is what the planner weighs a run against: every arrived,
// unfinished run (Seq = its run id, so equal priorities go first come, first
// served), then every scheduled slot of the next horizon (Seq 0). A deferred
// or waiting run is projected at its earliest time (now if that has passed);
// an admitted or running run at now, with its estimate less the calls it has
// already spent (spent, from the ledger's hooks; nil counts none) — those are
// in the window already.
func (s *Scheduler) LookAhead(now time.Time, horizon time.Duration) []budget.Candidate {
	arrived := s.ArrivedRuns()
	up := s.Upcoming(now, horizon)
	out := make([]budget.Candidate, 0, len(arrived)+len(up))
	for _, a := range arrived {
		c := budget.Candidate{Job: a.Job, Nominal: now, Priority: a.Priority, Estimate: a.Estimate, Seq: a.RunID,
			Duration: s.duration(a.Job), Label: a.Job + " (" + string(a.State) + ")"}
		rest := s.chainRest(a.Job) // the steps after it are held with it
		switch a.State {
		case runnerd.StateAdmitted, runnerd.StateRunning:
			if s.spent != nil {
				c.Estimate, c.Duration = budget.Remaining(a.Estimate, s.spent(a.RunID), c.Duration)
			}
		default:
			if a.NotBefore.After(now) {
				c.Nominal = a.NotBefore
			}
		}
		c.Estimate += rest
		out = append(out, c)
	}
	return append(out, up...)
}
