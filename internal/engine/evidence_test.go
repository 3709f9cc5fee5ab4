package engine

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

const unknownJobs = `
[[job]]
name = "fails"
kind = "execute"
schedule = "0 12 * * *"
process_id = "proc-fails"
atom_id = "atom-test"
timeout = "10s"
on_timeout = "leave"
`

// TestReconciledFailureKeepsEvidence: a run left unknown (its job stopped
// following at the timeout, on_timeout = leave) is reconciled by lookup to
// the failure the platform recorded; that outcome queues the execution's
// process log like any failure, and the daemon fetches and keeps it.
func TestReconciledFailureKeepsEvidence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 0)))
		r := newRig(t, 1000, unknownJobs, nil)
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		run, err := r.e.RunNow(context.Background(), "fails", time.Time{}, time.Time{})
		if err != nil || run.State != runnerd.StateUnknown {
			t.Fatalf("RunNow = %s (%s), %v; want unknown at the timeout", run.State, run.Error, err)
		}
		if es, _ := r.e.RunEvidence(context.Background(), run.ID); len(es) != 0 {
			t.Fatalf("evidence of an unknown run: %+v; want none yet", es)
		}
		time.Sleep(15 * time.Minute)
		synctest.Wait()
		got, err := r.e.DB().GetRun(context.Background(), run.ID)
		if err != nil || got.State != runnerd.StateFailed || !strings.Contains(got.Error, "found by reconciliation") {
			t.Fatalf("after reconciliation: %s %q, %v; want failed, found by reconciliation", got.State, got.Error, err)
		}
		es, err := r.e.RunEvidence(context.Background(), run.ID)
		if err != nil || len(es) != 1 || es[0].State != store.EvidenceKept || es[0].Kind != store.EvidenceLog {
			t.Fatalf("evidence = %+v, %v; want the process log kept", es, err)
		}
		if err := r.e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
