package scheduler

import (
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// TestChainPickedUpAfterRestart: the process stopped between a step's end and
// the next step's start. The next Start runs the next step on the first
// step's slot, once; a step that never ran before (just added to the
// configuration) is not run for an older start of the chain.
func TestChainPickedUpAfterRestart(t *testing.T) {
	inBubble(t, rt0, func(t *testing.T) {
		fs := newFakeStore()
		slot := rt0.Add(-10 * time.Minute)
		ctx := t.Context()
		head, _, _ := fs.CreateRun(ctx, runnerd.Run{Job: "a", Kind: "deploy", NominalTime: slot, State: runnerd.StatePlanned})
		head.State, head.StartedAt, head.FinishedAt = runnerd.StateSucceeded, slot, rt0.Add(-time.Minute)
		fs.UpdateRun(ctx, head)
		// b ran in an earlier start of the chain; c never did.
		old, _, _ := fs.CreateRun(ctx, runnerd.Run{Job: "b", Kind: "execute", NominalTime: slot.Add(-24 * time.Hour), State: runnerd.StatePlanned})
		old.State = runnerd.StateSucceeded
		fs.UpdateRun(ctx, old)

		kb, kc := &fakeKind{}, &fakeKind{}
		s := newTestScheduler(t, fs, Options{})
		mustSetJobs(t, s,
			Job{Name: "a", Kind: "deploy", Schedule: "@daily", Enabled: true, Runner: &fakeKind{}},
			Job{Name: "b", Kind: "execute", After: "a", Enabled: true, Runner: kb},
			Job{Name: "x", Kind: "execute", After: "a", Enabled: true, Runner: kc})
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitChains(ctx); err != nil {
			t.Fatal(err)
		}
		if calls := kb.Calls(); len(calls) != 1 || !calls[0].NominalTime.Equal(slot) {
			t.Fatalf("b ran %+v; want once, on a's slot", calls)
		}
		if calls := kc.Calls(); len(calls) != 0 {
			t.Errorf("x, a step that never ran, ran %d times for an older start of the chain", len(calls))
		}
		runs, _ := fs.ListRuns(ctx, store.RunFilter{Job: "b"})
		if len(runs) != 2 || runs[0].State != runnerd.StateSucceeded {
			t.Errorf("b's runs = %+v; want the old one and one new, succeeded", runs)
		}
		mustStop(t, s)
	})
}
