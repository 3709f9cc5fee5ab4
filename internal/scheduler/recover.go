package scheduler

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// CallLister is what Start needs, beyond Store, to tell an interrupted run
// whose unsafe call may have taken effect from one that may simply run again.
// *store.DB implements it; a Store without it has every interrupted run
// treated as unknown (the safe side).
type CallLister interface {
	ListCalls(ctx context.Context, f store.CallFilter) ([]store.Call, error)
}

// recoverInterrupted handles the runs the last process left admitted or
// running (it was killed, or lost power, mid-run). A run with an unsafe call
// that may have taken effect — open (sent, never answered), answered 2xx, or
// ended without an answer the client could vouch for as "not sent" — becomes
// unknown, for reconciliation by lookup: it is never re-fired blindly. Any
// other run made no call that could have started work, so it is planned again
// and resume carries it on under the catch-up rules.
func (s *Scheduler) recoverInterrupted(ctx context.Context, only func(job string) bool) error {
	runs, err := s.store.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{runnerd.StateAdmitted, runnerd.StateRunning}})
	if err != nil {
		return fmt.Errorf("recover runs left admitted or running: %w", err)
	}
	cl, _ := s.store.(CallLister)
	for _, r := range runs {
		if !only(r.Job) {
			continue // another instance's (a shared ledger)
		}
		var why string
		if cl == nil {
			why = "runnerd stopped mid-run and the ledger's calls cannot be read here"
		} else {
			calls, err := cl.ListCalls(ctx, store.CallFilter{RunID: r.ID, Status: -1})
			if err != nil {
				return fmt.Errorf("recover run %d: %w", r.ID, err)
			}
			why = mayHaveTakenEffect(calls)
		}
		if why != "" {
			r.State, r.Reason = runnerd.StateUnknown, why+"; reconciling by lookup"
			r.FinishedAt = s.now()
			s.update(ctx, &r)
			s.log.Warn("run left unknown by a stopped runnerd", "job", r.Job, "run_id", r.ID,
				"nominal", r.NominalTime, "reason", r.Reason)
			continue
		}
		r.State, r.Reason = runnerd.StatePlanned, "picked up again: runnerd stopped before it sent anything unsafe"
		s.update(ctx, &r)
		s.log.Info("run interrupted before any unsafe call; planned again", "job", r.Job, "run_id", r.ID, "nominal", r.NominalTime)
	}
	return nil
}

// mayHaveTakenEffect returns why one of calls (an unsafe one) may have taken
// effect on the platform, or "" if none may have.
func mayHaveTakenEffect(calls []store.Call) string {
	for _, c := range calls {
		if c.Safe || c.Recovery {
			continue
		}
		switch {
		case c.FinishedAt.IsZero():
			return fmt.Sprintf("runnerd stopped after %s was begun (request %s) and before its answer was recorded", c.Operation, c.RequestID)
		case c.Status >= 200 && c.Status <= 299:
			return fmt.Sprintf("runnerd stopped after %s was accepted (HTTP %d, request %s) and before the run's outcome was recorded",
				c.Operation, c.Status, c.RequestID)
		case c.Status == 0 && !strings.Contains(c.Error, "(not sent)"):
			return fmt.Sprintf("%s got no answer after it may have been sent (request %s)", c.Operation, c.RequestID)
		case c.Status >= 500 && c.Status != http.StatusServiceUnavailable:
			return fmt.Sprintf("%s answered HTTP %d, which may hide an accepted request (request %s)", c.Operation, c.Status, c.RequestID)
		}
	}
	return ""
}

// Refire starts a new attempt of an unknown run (on_unknown = refire, after
// reconciliation found nothing within its grace period): the run is planned
// again with its attempt counted up, and goes through admission like any
// other, unless its catch-up window has closed (then it is missed).
func (s *Scheduler) Refire(ctx context.Context, r runnerd.Run, reason string) error {
	j, rt, ok := s.lookup(r.Job)
	if !ok {
		return fmt.Errorf("refire run %d: %w", r.ID, ErrUnknownJob)
	}
	if deadline := r.NominalTime.Add(j.CatchUpWindow); !s.now().Before(deadline) {
		s.end(ctx, r, runnerd.StateMissed, reason+"; not refired: its catch-up window closed at "+describeSlot(deadline))
		return nil
	}
	r.State, r.Reason, r.Error = runnerd.StatePlanned, reason, ""
	r.FinishedAt = time.Time{}
	r.Attempt++
	s.update(ctx, &r)
	if !s.track(func() { s.lifecycle(j, rt, r, runOpts{}) }) {
		return fmt.Errorf("refire run %d: %w", r.ID, ErrStopped)
	}
	return nil
}
