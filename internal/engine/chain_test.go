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

const chainJobs = `
[[job]]
name = "promote-test"
kind = "deploy"
priority = "high"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "smoke"
kind = "execute"
after = "promote-test"
priority = "high"
process_id = "SMOKE"
atom_id = "atom-test"

[[job]]
name = "promote-prod"
kind = "deploy"
after = "smoke"
priority = "high"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`

// TestChainAdmittedAsAWhole: at 02:00 the chain's first step alone (4
// calls) would fit in the 10 calls left, the whole chain (4 + 7 + 4) does
// not: the first step is deferred, naming the chain, and nothing of it runs.
// At 03:00, when 20 calls of yesterday leave the window, the three steps run
// one after the other, on the first one's slot.
func TestChainAdmittedAsAWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		r := newRig(t, 30, strings.ReplaceAll(chainJobs, "SMOKE", "proc-orders"), func(db *store.DB) {
			spend(t, db, atHour(day, -21, 10), 20) // yesterday 03:10: in the window until 03:00 today
		})
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(atHour(day, 2, 30)))
		synctest.Wait()
		head := r.runs("promote-test")
		if len(head) != 1 || head[0].State != runnerd.StateDeferred ||
			!strings.Contains(head[0].Reason, "the chain promote-test → smoke → promote-prod needs 15 calls as a whole (4 for this step)") {
			t.Fatalf("02:30: promote-test = %+v; want one run deferred for the whole chain", head)
		}
		if n := len(r.runs("smoke")) + len(r.runs("promote-prod")); n != 0 {
			t.Fatalf("02:30: %d runs of the later steps; want none", n)
		}
		time.Sleep(time.Until(atHour(day, 4, 0)))
		synctest.Wait()
		var prev runnerd.Run
		for i, job := range []string{"promote-test", "smoke", "promote-prod"} {
			runs := r.runs(job)
			if len(runs) != 1 || runs[0].State != runnerd.StateSucceeded {
				t.Fatalf("04:00: %s runs = %+v; want one succeeded", job, runs)
			}
			x := runs[0]
			if !x.NominalTime.Equal(atHour(day, 2, 0)) || x.StartedAt.Before(atHour(day, 3, 0)) {
				t.Errorf("%s: slot %v started %v; want the 02:00 slot, started at 03:00 or later", job, x.NominalTime, x.StartedAt)
			}
			if i > 0 && x.StartedAt.Before(prev.FinishedAt) {
				t.Errorf("%s started %v before %s finished %v", job, x.StartedAt, prev.Job, prev.FinishedAt)
			}
			prev = x
		}
		if err := r.e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestChainStopsAtAFailure: the middle step fails; the last one is not run
// but recorded as skipped with the reason, and only the failure is an
// outcome the notifier hears as a problem.
func TestChainStopsAtAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		r := newRig(t, 1000, strings.ReplaceAll(chainJobs, "SMOKE", "proc-fails"), nil)
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(atHour(day, 3, 0)))
		synctest.Wait()
		head, smoke, last := r.runs("promote-test"), r.runs("smoke"), r.runs("promote-prod")
		if len(head) != 1 || head[0].State != runnerd.StateSucceeded || len(smoke) != 1 || smoke[0].State != runnerd.StateFailed {
			t.Fatalf("promote-test %+v, smoke %+v; want succeeded, then failed", head, smoke)
		}
		if len(last) != 1 || last[0].State != runnerd.StateSkipped || last[0].Calls != 0 ||
			!strings.Contains(last[0].Reason, "the chain stopped: smoke (run ") || !strings.Contains(last[0].Reason, "ended failed") {
			t.Fatalf("promote-prod = %+v; want skipped, no calls, saying the chain stopped at smoke", last)
		}
		if n := len(r.sim.Deploys()); n != 1 {
			t.Errorf("%d deploys at the simulator; want 1 (the last step never ran)", n)
		}
		if err := r.e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
