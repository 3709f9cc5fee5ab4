package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// TestRunDetail: the status page's run view has exactly the ledger's calls of
// that run, oldest first, with the run's decision (a deferred run's reason
// and earliest time), its priority from the configuration and its detail.
func TestRunDetail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		var ran, other, waiting int64
		r := newRig(t, 1000, decayJobs, func(db *store.DB) {
			finishedRun(t, db, "promote", "deploy", atHour(day, -22, 0), 3, 1)
			finishedRun(t, db, "promote", "deploy", atHour(day, -46, 0), 2, 0)
			runs, err := db.ListRuns(t.Context(), store.RunFilter{Job: "promote"})
			if err != nil || len(runs) != 2 {
				t.Fatalf("seed: %v, %d runs", err, len(runs))
			}
			ran, other = runs[0].ID, runs[1].ID
			w, _, err := db.CreateRun(t.Context(), runnerd.Run{Job: "promote", Kind: "deploy", NominalTime: atHour(day, -1, 0),
				State: runnerd.StateDeferred, Reason: "does not fit", NotBefore: atHour(day, 4, 0), Estimate: 9,
				Detail: `{"package":"p-1"}`})
			if err != nil {
				t.Fatal(err)
			}
			waiting = w.ID
		})
		d, ok := r.e.Run(t.Context(), ran)
		if !ok {
			t.Fatalf("Run(%d) = not found", ran)
		}
		calls, err := r.e.db.ListCalls(t.Context(), store.CallFilter{RunID: ran, Status: -1})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Ledger) != len(calls) || len(calls) != 3 {
			t.Fatalf("Run(%d) lists %d calls; the ledger has %d (want 3)", ran, len(d.Ledger), len(calls))
		}
		for i, c := range d.Ledger {
			if want := calls[len(calls)-1-i]; c.ID != want.ID || c.RunID != ran || c.Status != want.Status {
				t.Errorf("call %d = %+v; want ledger row %+v (oldest first)", i, c, want)
			}
		}
		if d.Priority != "normal" || d.State != "succeeded" || d.Calls != 3 {
			t.Errorf("Run(%d) = priority %q, state %q, %d calls; want normal (the job's default), succeeded, 3", ran, d.Priority, d.State, d.Calls)
		}
		if o, _ := r.e.Run(t.Context(), other); len(o.Ledger) != 2 {
			t.Errorf("the other run lists %d calls; want its own 2", len(o.Ledger))
		}
		w, ok := r.e.Run(t.Context(), waiting)
		if !ok || w.Reason != "does not fit" || !w.NotBefore.Equal(atHour(day, 4, 0)) || w.Estimate != 9 ||
			w.Detail != "{\n  \"package\": \"p-1\"\n}" || len(w.Ledger) != 0 {
			t.Errorf("deferred run = %+v, %v", w, ok)
		}
		if _, ok := r.e.Run(t.Context(), 4242); ok {
			t.Errorf("Run(4242) found a run that does not exist")
		}
	})
}
