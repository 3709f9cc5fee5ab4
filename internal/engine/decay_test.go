package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

const decayJobs = `
[[job]]
name = "promote"
kind = "deploy"
schedule = "0 2 * * *"
catch_up_window = "12h"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`

// TestInflatedEstimateDecays: a deploy whose history holds two runs of 90
// calls (p90 90, median 4) is deferred at 02:00 with 28 calls left in the
// window for the rest of the day. Its estimate decays while it waits, so it
// runs within its 12-hour catch-up window instead of being missed; and 503
// answers in a run's history are not counted as its cost at all.
func TestInflatedEstimateDecays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		r := newRig(t, 100, decayJobs, func(db *store.DB) {
			spend(t, db, atHour(day, 1, 10), 72) // in this day's 01:00 hour: 28 left until tomorrow 01:00
			for i := range 12 {
				calls := 4
				if i == 3 || i == 7 {
					calls = 90
				}
				finishedRun(t, db, "promote", "deploy", atHour(day, -24*(i+1)+2, 0), calls, 0)
			}
		})
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(atHour(day, 2, 30)))
		synctest.Wait()
		pr := r.runs("promote")
		if len(pr) != 1 || pr[0].State != runnerd.StateDeferred {
			t.Fatalf("02:30: promote runs = %+v; want one deferred (estimate 90, 28 left)", pr)
		}
		time.Sleep(time.Until(atHour(day, 14, 0)))
		synctest.Wait()
		pr = r.runs("promote")
		if len(pr) != 1 || pr[0].State != runnerd.StateSucceeded {
			t.Fatalf("14:00: promote = %+v; want it run within its catch-up window once its estimate decayed", pr)
		}
		if pr[0].StartedAt.Before(atHour(day, 6, 0)) {
			t.Errorf("promote started at %v; want it deferred while the excess decays (≈ 7.4 h to fit 28)", pr[0].StartedAt)
		}
		t.Logf("promote deferred at 02:00 with estimate 90, ran at %s with estimate %d", pr[0].StartedAt.Format("15:04"), pr[0].Estimate)
		r.e.Close()
	})
}

// TestStormCallsAreNotCost: a run that met 25 refusals (503) in a storm
// costs its other calls: the estimate stays at the job's normal cost.
func TestStormCallsAreNotCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		r := newRig(t, 1000, decayJobs, func(db *store.DB) {
			for i := range 12 {
				storm := 0
				if i < 3 {
					storm = 25 // the three latest runs met the storm
				}
				finishedRun(t, db, "promote", "deploy", atHour(day, -24*(i+1)+2, 0), 4+storm, storm)
			}
		})
		est := r.e.estimate(context.Background(), "promote", "deploy")
		if est.Calls != 4 {
			t.Errorf("estimate after a storm = %+v; want 4 (the 503s are not the job's cost)", est)
		}
		r.e.Close()
	})
}

// finishedRun records a succeeded run of job at nominal with calls calls,
// the first refused of them answered 503.
func finishedRun(t *testing.T, db *store.DB, job, kind string, nominal time.Time, calls, refused int) {
	t.Helper()
	run, _, err := db.CreateRun(t.Context(), runnerd.Run{Job: job, Kind: kind, NominalTime: nominal, State: runnerd.StatePlanned})
	if err != nil {
		t.Fatal(err)
	}
	for k := range calls {
		id, err := db.BeginCall(t.Context(), store.Call{RunID: run.ID, Job: job, RequestID: fmt.Sprintf("hist-%d-%d", run.ID, k),
			Operation: "Process.query", Method: "POST", Path: "/Process/query", Safe: true, Attempt: 1, StartedAt: nominal})
		if err != nil {
			t.Fatal(err)
		}
		status := 200
		if k < refused {
			status = 503
		}
		if err := db.EndCall(t.Context(), store.Call{ID: id, Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	run, err = db.GetRun(t.Context(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	run.State, run.FinishedAt = runnerd.StateSucceeded, nominal.Add(time.Minute)
	if err := db.UpdateRun(t.Context(), run); err != nil {
		t.Fatal(err)
	}
}

// TestEstimateCarriesDuration: a job whose last runs took 3 h, 2 h and 4 h
// is estimated to take 3 h (the median), which the planner spreads its calls
// over; with no timed runs it takes none (all in the start hour).
func TestEstimateCarriesDuration(t *testing.T) {
	db, err := ledger.Open(t, filepath.Join(t.TempDir(), "runnerd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	if est := Estimate(t.Context(), db, log, "nightly", "export", day); est.Duration != 0 {
		t.Errorf("no history: Duration = %v; want 0", est.Duration)
	}
	for i, took := range []time.Duration{3 * time.Hour, 2 * time.Hour, 4 * time.Hour} {
		nominal := day.Add(-time.Duration(i+1) * 24 * time.Hour).Add(time.Hour)
		r, _, err := db.CreateRun(t.Context(), runnerd.Run{Job: "nightly", Kind: "export", NominalTime: nominal})
		if err != nil {
			t.Fatal(err)
		}
		r.State, r.StartedAt, r.FinishedAt = runnerd.StateSucceeded, nominal, nominal.Add(took)
		if err := db.UpdateRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if est := Estimate(t.Context(), db, log, "nightly", "export", day); est.Duration != 3*time.Hour {
		t.Errorf("Duration = %v; want 3h (the median of 3h, 2h, 4h)", est.Duration)
	}
}
