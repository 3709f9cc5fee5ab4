package kinds

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

// TestReleaseResumesWhenStopped: the run's context ends (SIGTERM past the
// stop bound, or the job's timeout) while the deploy is on its way. The
// release still resumes what it paused — on a context its end did not
// cancel — and closes the obligations.
func TestReleaseResumesWhenStopped(t *testing.T) {
	env := newSimEnv(t, atomsim.Options{ListenerDelay: -1, ListenerStatusDelay: -1})
	db, err := ledger.Open(t, filepath.Join(t.TempDir(), "runnerd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run, _, err := db.CreateRun(context.Background(), runnerd.Run{Job: "rel", Kind: "release", NominalTime: simT0, State: runnerd.StateRunning})
	if err != nil {
		t.Fatal(err)
	}
	env.s.Inject(atomsim.Fault{Kind: atomsim.FaultLatency, Latency: 2 * time.Second, PathSuffix: "/DeployedPackage"})
	k := &Release{Client: env.client, Obligations: db, ProcessID: atomsim.ProcOrders, Atoms: []string{atomsim.AtomProd},
		PauseSchedules: true, Listeners: []string{atomsim.ProcListener}, ToEnv: atomsim.EnvProd,
		Deploy: &Deploy{Client: env.client, ProcessID: atomsim.ProcOrders, FromEnv: atomsim.EnvTest, ToEnv: atomsim.EnvProd}}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	rc := env.rc("rel")
	rc.Run.ID = run.ID
	out := k.Run(ctx, rc)
	if out.State == runnerd.StateSucceeded {
		t.Fatalf("Run() = %s; want the deploy cut off by the context", out.State)
	}
	if en, ok := env.s.ScheduleStatus(atomsim.AtomProd, atomsim.ProcOrders); !ok || !en {
		t.Errorf("the schedule is left paused after the run ended: %s (%v)", out.State, out.Err)
	}
	if st := env.s.ListenerState(atomsim.AtomProd, atomsim.ProcListener); st != atomapi.ListenerListening {
		t.Errorf("the listener is %s after the run ended; want listening", st)
	}
	if owed, err := db.OpenObligations(context.Background(), ""); err != nil || len(owed) != 0 {
		t.Errorf("open obligations %+v, %v; want none", owed, err)
	}
}
