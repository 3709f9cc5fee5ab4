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

const forecastJobs = `
[[job]]
name = "promote"
kind = "deploy"
priority = "high"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "sync"
kind = "execute"
schedule = "30 * * * *"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "audit"
kind = "export"
priority = "low"
schedule = "0 18 * * *"
object = "AuditLog"
output = "DIR/{job}/{window_start}.jsonl"
`

// TestForecastMatchesPlan: the status page's next 24 hours, hour by hour,
// is what `runnerd plan` foresees from the ledger — each hour's projected
// window recomputed here from the plan's steps (their time, estimate and
// admission, as plan -json prints them) and the real window — with the
// high-priority deploy's estimate held in its hour and the low export that
// no longer fits foreseen deferred.
func TestForecastMatchesPlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 20)))
		r := newRig(t, 1000, forecastJobs, func(db *store.DB) {
			spend(t, db, atHour(day, 0, 30), 600) // in the window until 00:00 tomorrow
			history(t, db, "promote", "deploy", day, 120)
			history(t, db, "sync", "execute", day, 10)
			history(t, db, "audit", "export", day, 200)
		})
		now := time.Now().UTC()
		got := r.e.Forecast(now)
		p, err := PlanFromLedger(t.Context(), r.e.Config(), r.e.db, nil, now, 24)
		if err != nil {
			t.Fatal(err)
		}
		st := p.Window.Status(now)
		start := now.Truncate(time.Hour)
		if len(got.Hours) != 24 || !got.Start.Equal(start) {
			t.Fatalf("forecast = %d hours from %v; want 24 from %v", len(got.Hours), got.Start, start)
		}
		deferred := 0
		for i, h := range got.Hours {
			want := 0
			for _, b := range st.Hours {
				if b.Hour.After(h.Hour.Add(-24*time.Hour)) && !b.Hour.After(h.Hour) {
					want += b.Calls
				}
			}
			for _, s := range p.Steps {
				at := s.Nominal.Truncate(time.Hour)
				if at.Before(start) {
					at = start
				}
				if s.Admit && !at.After(h.Hour) {
					want += s.Estimate
				}
			}
			if h.Window != want {
				t.Errorf("hour %d (%s): forecast window %d; the plan's is %d", i, h.Hour.Format("15:04"), h.Window, want)
			}
			deferred += h.Deferred
		}
		high := 0
		for _, s := range p.Steps {
			if s.Admit && s.Priority == runnerd.PriorityHigh {
				high += s.Estimate
			}
		}
		if got.Held != high || high != 120 {
			t.Errorf("held for high = %d; the plan admits %d of high-priority work (want 120: one deploy)", got.Held, high)
		}
		if i := int(atHour(day, 2, 0).Sub(start) / time.Hour); got.Hours[i].High != 120 {
			t.Errorf("02:00: high %d; want the deploy's 120 held in its hour", got.Hours[i].High)
		}
		if deferred != 1 {
			t.Errorf("%d runs foreseen deferred; want 1 (the 200-call export at 18:00)", deferred)
		}
		if len(got.Runs) != len(p.Steps) {
			t.Errorf("forecast lists %d runs; the plan has %d steps", len(got.Runs), len(p.Steps))
		}
	})
}
