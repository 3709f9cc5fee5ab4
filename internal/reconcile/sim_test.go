package reconcile

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/budget"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

// The reconciliation branches against the simulated AtomSphere on 127.0.0.1,
// through the real client and the real ledger, on the simulator's fixed
// clock: one match (claimed and followed), none (skipped after the grace
// period), several (flagged, never acted on), a record appearing late
// (claimed once visible), and one execution for two runs (it satisfies one).

// simRig is a simulator, a client for reconciliation, a client that plays
// the platform's other users (starting executions), and a ledger.
type simRig struct {
	t      *testing.T
	sim    *atomsim.Server
	client *atomapi.Client
	other  *atomapi.Client
	db     *store.DB
	sent   time.Time // when the unknown runs' calls were sent
	url    string    // the simulator's base URL
}

func newSimRig(t *testing.T, recordDelay, execDuration time.Duration) *simRig {
	t.Helper()
	sim := atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: 30, Events: -1,
		RecordDelay: recordDelay, ExecDuration: execDuration})
	sim.SetNow(t0)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	mk := func() *atomapi.Client {
		c, err := atomapi.New(atomapi.Config{BaseURL: srv.URL + "/api/rest/v1", AccountID: "sim-account",
			Credentials: atomapi.NewCredentials("runnerd@sim", "sim-password"), Now: sim.Now,
			Retry: atomapi.RetryPolicy{MaxAttempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	db, err := ledger.Open(t, filepath.Join(t.TempDir(), "runnerd.db"), store.Options{Now: sim.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &simRig{t: t, sim: sim, client: mk(), other: mk(), db: db, sent: t0, url: srv.URL}
}

// unknownRun records a run of job "exec" left unknown: its ExecutionRequest
// was begun at r.sent and its answer never recorded.
func (r *simRig) unknownRun(nominal time.Time) runnerd.Run {
	r.t.Helper()
	ctx := context.Background()
	run, _, err := r.db.CreateRun(ctx, runnerd.Run{Job: "exec", Kind: "execute", NominalTime: nominal, State: runnerd.StateUnknown,
		StartedAt: r.sent, Reason: "runnerd stopped after ExecutionRequest.create was begun"})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.db.BeginCall(ctx, store.Call{RunID: run.ID, Job: "exec", RequestID: "lost-" + nominal.Format("150405"),
		Operation: "ExecutionRequest.create", Method: "POST", Path: "/ExecutionRequest", StartedAt: r.sent}); err != nil {
		r.t.Fatal(err)
	}
	return run
}

// execute starts an execution of proc-orders on atom-test at the simulator.
func (r *simRig) execute() string {
	r.t.Helper()
	ans, err := r.other.CreateExecutionRequest(context.Background(), atomapi.ExecutionRequest{Type: "ExecutionRequest",
		ProcessID: "proc-orders", AtomID: "atom-test"})
	if err != nil {
		r.t.Fatal(err)
	}
	return ans.RequestID
}

func (r *simRig) reconciler() *Reconciler {
	return New(Options{
		Client: r.client, Store: r.db, Now: r.sim.Now, Grace: 10 * time.Minute, Skew: time.Minute,
		Jobs: func(job string) (Target, bool) {
			return Target{Kind: "execute", Method: "request", ProcessID: "proc-orders", AtomID: "atom-test"}, job == "exec"
		},
	})
}

func (r *simRig) pass(rc *Reconciler) Summary {
	r.t.Helper()
	sum, err := rc.Pass(context.Background())
	if err != nil {
		r.t.Fatalf("Pass() = %v", err)
	}
	return sum
}

func (r *simRig) run(id int64) runnerd.Run {
	r.t.Helper()
	run, err := r.db.GetRun(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return run
}

// starts counts the ExecutionRequests the simulator received (the test's own).
func (r *simRig) starts() int {
	n := 0
	for _, q := range r.sim.Requests() {
		if q.Method == "POST" && strings.HasSuffix(q.Path, "/ExecutionRequest") {
			n++
		}
	}
	return n
}

func TestSimOneMatch(t *testing.T) {
	r := newSimRig(t, time.Second, 30*time.Second)
	run := r.unknownRun(t0)
	r.sim.Advance(time.Second)
	r.execute() // the lost request took effect
	r.sim.Advance(5 * time.Second)
	rc := r.reconciler()
	if sum := r.pass(rc); sum[Waiting] != 1 {
		t.Fatalf("Pass() = %v; want waiting (claimed, INPROCESS)", sum)
	}
	got := r.run(run.ID)
	execID := r.sim.Executions()[0].ExecutionID
	if holder, _ := r.db.ClaimedBy(context.Background(), execID); holder != run.ID || got.State != runnerd.StateUnknown ||
		!strings.Contains(got.Reason, "following it") {
		t.Fatalf("after the first pass: claim holder %d, run %s (%q); want claimed by run %d and followed", holder, got.State, got.Reason, run.ID)
	}
	r.sim.Advance(time.Minute) // the execution ends COMPLETE
	if sum := r.pass(rc); sum[Succeeded] != 1 {
		t.Fatalf("Pass() = %v; want succeeded", sum)
	}
	got = r.run(run.ID)
	if got.State != runnerd.StateSucceeded || !strings.Contains(got.Detail, execID) || !strings.Contains(got.Detail, `"reconciled":"window"`) {
		t.Errorf("run = %s, detail %s; want succeeded with %s found by window", got.State, got.Detail, execID)
	}
	if n := r.starts(); n != 1 {
		t.Errorf("ExecutionRequests at the simulator = %d; want 1 (reconciliation never re-sends)", n)
	}
}

func TestSimNoMatch(t *testing.T) {
	r := newSimRig(t, time.Second, time.Second)
	run := r.unknownRun(t0)
	r.sim.Advance(2 * time.Minute)
	rc := r.reconciler()
	if sum := r.pass(rc); sum[Waiting] != 1 {
		t.Fatalf("Pass() within the grace period = %v; want waiting", sum)
	}
	if got := r.run(run.ID); got.State != runnerd.StateUnknown || !strings.Contains(got.Reason, "looking again until") {
		t.Fatalf("run = %s (%q); want unknown, looking again", got.State, got.Reason)
	}
	r.sim.Advance(9 * time.Minute) // past the 10-minute grace period
	if sum := r.pass(rc); sum[Skipped] != 1 {
		t.Fatalf("Pass() after the grace period = %v; want skipped", sum)
	}
	if got := r.run(run.ID); got.State != runnerd.StateSkipped || !strings.Contains(got.Reason, "on_unknown = skip") {
		t.Errorf("run = %s (%q); want skipped by on_unknown = skip", got.State, got.Reason)
	}
	if n := r.starts(); n != 0 {
		t.Errorf("ExecutionRequests = %d; want 0", n)
	}
}

func TestSimSeveralMatches(t *testing.T) {
	r := newSimRig(t, time.Second, time.Second)
	run := r.unknownRun(t0)
	r.execute()
	r.sim.Advance(20 * time.Second)
	r.execute()
	r.sim.Advance(time.Minute)
	rc := r.reconciler()
	if sum := r.pass(rc); sum[Flagged] != 1 {
		t.Fatalf("Pass() = %v; want flagged", sum)
	}
	got := r.run(run.ID)
	if got.State != runnerd.StateUnknown || !strings.Contains(got.Reason, "flagged for an operator: 2 unclaimed executions") {
		t.Fatalf("run = %s (%q); want unknown, flagged with 2 executions", got.State, got.Reason)
	}
	for _, x := range r.sim.Executions() {
		if holder, _ := r.db.ClaimedBy(context.Background(), x.ExecutionID); holder != 0 {
			t.Errorf("execution %s claimed by run %d; want neither claimed", x.ExecutionID, holder)
		}
	}
	before := len(r.sim.Requests())
	r.sim.Advance(time.Hour)
	if sum := r.pass(rc); sum[Flagged] != 1 {
		t.Errorf("second Pass() = %v; want still flagged", sum)
	}
	if after := len(r.sim.Requests()); after != before {
		t.Errorf("a flagged run made %d more lookups; want none", after-before)
	}
}

func TestSimRecordAppearsLate(t *testing.T) {
	r := newSimRig(t, 3*time.Minute, 30*time.Second) // the record shows 3 minutes after the start
	run := r.unknownRun(t0)
	r.execute()
	r.sim.Advance(time.Minute)
	rc := r.reconciler()
	if sum := r.pass(rc); sum[Waiting] != 1 {
		t.Fatalf("Pass() before the record is visible = %v; want waiting", sum)
	}
	if got := r.run(run.ID); got.State != runnerd.StateUnknown || !strings.Contains(got.Reason, "no unclaimed execution") {
		t.Fatalf("run = %s (%q); want unknown, no execution yet", got.State, got.Reason)
	}
	r.sim.Advance(3 * time.Minute)
	if sum := r.pass(rc); sum[Succeeded] != 1 {
		t.Fatalf("Pass() once the record is visible = %v; want succeeded", sum)
	}
	got := r.run(run.ID)
	if holder, _ := r.db.ClaimedBy(context.Background(), r.sim.Executions()[0].ExecutionID); holder != run.ID || got.State != runnerd.StateSucceeded {
		t.Errorf("run = %s, claim holder %d; want succeeded, claimed by run %d", got.State, holder, run.ID)
	}
	if n := r.starts(); n != 1 {
		t.Errorf("ExecutionRequests = %d; want 1", n)
	}
}

// TestSimOneExecutionTwoRuns: two runs sent into the same window and one
// execution exists: it is claimed by one run only; the other finds nothing
// unclaimed and, after the grace period, is skipped.
func TestSimOneExecutionTwoRuns(t *testing.T) {
	r := newSimRig(t, time.Second, time.Second)
	first := r.unknownRun(t0)
	second := r.unknownRun(t0.Add(time.Second))
	r.execute()
	r.sim.Advance(time.Minute)
	rc := r.reconciler()
	sum := r.pass(rc)
	if sum[Succeeded] != 1 || sum[Waiting] != 1 {
		t.Fatalf("Pass() = %v; want one succeeded, one waiting", sum)
	}
	r.sim.Advance(15 * time.Minute)
	if sum := r.pass(rc); sum[Skipped] != 1 {
		t.Fatalf("Pass() after the grace period = %v; want the other run skipped", sum)
	}
	a, b := r.run(first.ID), r.run(second.ID)
	states := map[runnerd.RunState]int{a.State: 1}
	states[b.State]++
	if states[runnerd.StateSucceeded] != 1 || states[runnerd.StateSkipped] != 1 {
		t.Errorf("runs = %s and %s; want one succeeded, one skipped", a.State, b.State)
	}
}

// countingGate is the budget as the real client meets it: it counts the
// reconciler's calls by CallInfo.Recovery and, while overCap, refuses those
// without it, as budget.Gate does over its cap.
type countingGate struct {
	mu               sync.Mutex
	recovery, normal int
	refused          int
	overCap          bool
}

func (g *countingGate) Wait(ctx context.Context, c *atomapi.Call) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case c.Recovery:
		g.recovery++
	case g.overCap:
		g.refused++
		return &budget.RefusedError{Err: budget.ErrExhausted, Reason: "cap reached"}
	default:
		g.normal++
	}
	return ctx.Err()
}

// TestSimLongExecutionFollowedWithoutReserve: a 6-hour execution of an
// unknown run, a pass every minute through the real client. It is identified
// with the reserve (one window QUERY), then followed at normal priority with
// backoff — a few dozen lookups, not ~360 from the reserve — through an hour
// in which the budget refuses normal calls (the run waits; no pass errors).
func TestSimLongExecutionFollowedWithoutReserve(t *testing.T) {
	r := newSimRig(t, time.Second, 6*time.Hour)
	g := &countingGate{}
	c, err := atomapi.New(atomapi.Config{BaseURL: r.url + "/api/rest/v1", AccountID: "sim-account",
		Credentials: atomapi.NewCredentials("runnerd@sim", "sim-password"), Now: r.sim.Now,
		Retry: atomapi.RetryPolicy{MaxAttempts: 1}, Gate: g})
	if err != nil {
		t.Fatal(err)
	}
	r.client = c
	run := r.unknownRun(t0)
	r.sim.Advance(time.Second)
	r.execute()
	rc := r.reconciler()
	for i := 1; i <= 7*60+10; i++ { // the last look may come up to 1h after the end
		r.sim.Advance(time.Minute)
		g.mu.Lock()
		g.overCap = i >= 120 && i < 180
		g.mu.Unlock()
		r.pass(rc) // fails on a pass error
	}
	got := r.run(run.ID)
	if got.State != runnerd.StateSucceeded || !strings.Contains(got.Detail, `"reconciled":"window"`) {
		t.Fatalf("run = %s (%q, detail %s); want succeeded, found by window", got.State, got.Reason, got.Detail)
	}
	if g.recovery != 1 || g.normal == 0 || g.normal > 40 || g.refused == 0 {
		t.Errorf("lookups: %d recovery, %d normal, %d refused; want 1 recovery (identifying), 1..40 normal (following), some refused",
			g.recovery, g.normal, g.refused)
	}
	t.Logf("7h10m of passes: %d recovery, %d normal, %d refused lookups", g.recovery, g.normal, g.refused)
	if n := r.starts(); n != 1 {
		t.Errorf("ExecutionRequests = %d; want 1", n)
	}
}
