package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

var t0 = time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)

// fakeClient answers lookups from in-memory records and counts the calls,
// checking that the lookups that identify an execution or deployment carry
// CallInfo{Recovery: true} and that following an identified execution (a
// QUERY by executionId) does not.
type fakeClient struct {
	mu          sync.Mutex
	execs       []atomapi.ExecutionRecord
	byReq       map[string]string // requestId → executionId
	pkgs        []atomapi.DeployedPackage
	deps        []atomapi.Deployment
	calls       int
	nonRecov    int // identifying lookups without Recovery
	follows     int // follow lookups (QUERY by executionId), refused ones included
	followRecov int // follow lookups with Recovery
	failNext    error
	asked       []string // ids given to ExecutionRecordAsync
	// overCap: the budget is over its cap, so the gate refuses every call
	// without Recovery (as the client reports it: a TransportError, not sent).
	overCap bool
}

func (f *fakeClient) note(ctx context.Context, follow bool) error {
	f.calls++
	recovery := atomapi.CallInfoFrom(ctx).Recovery
	switch {
	case follow:
		f.follows++
		if recovery {
			f.followRecov++
		}
	case !recovery:
		f.nonRecov++
	}
	if f.overCap && !recovery {
		return &atomapi.TransportError{Operation: "ExecutionRecord.query", Err: fmt.Errorf("gate: %w",
			&budget.RefusedError{Err: budget.ErrExhausted, Reason: "9500 of 9500 calls used in the rolling 24 h window"})}
	}
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	return nil
}

func (f *fakeClient) ExecutionRecordAsync(ctx context.Context, id string) (atomapi.ExecutionRecord, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.note(ctx, false); err != nil {
		return atomapi.ExecutionRecord{}, false, err
	}
	f.asked = append(f.asked, id)
	xid, ok := f.byReq[id]
	if !ok {
		return atomapi.ExecutionRecord{}, false, &atomapi.APIError{Operation: "ExecutionRecord.async", Status: 400}
	}
	for _, r := range f.execs {
		if r.ExecutionID == xid {
			return r, false, nil
		}
	}
	return atomapi.ExecutionRecord{}, true, nil
}

// QueryExecutionRecords understands the two shapes reconcile sends: executionId
// EQUALS, or processId AND atomId AND executionTime BETWEEN.
func (f *fakeClient) QueryExecutionRecords(ctx context.Context, e *atomapi.Expression, _ *atomapi.QuerySort) ([]atomapi.ExecutionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	conds := []atomapi.Expression{*e}
	if e.Operator == atomapi.OpAnd {
		conds = e.NestedExpression
	}
	if err := f.note(ctx, len(conds) == 1 && conds[0].Property == "executionId"); err != nil {
		return nil, err
	}
	var out []atomapi.ExecutionRecord
	for _, r := range f.execs {
		ok := true
		for _, c := range conds {
			switch c.Property {
			case "executionId":
				ok = ok && r.ExecutionID == string(c.Argument[0])
			case "processId":
				ok = ok && r.ProcessID == string(c.Argument[0])
			case "atomId":
				ok = ok && r.AtomID == string(c.Argument[0])
			case "executionTime":
				ok = ok && r.ExecutionTime >= string(c.Argument[0]) && r.ExecutionTime <= string(c.Argument[1])
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeClient) QueryDeployedPackages(ctx context.Context, _ *atomapi.Expression) ([]atomapi.DeployedPackage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pkgs, f.note(ctx, false)
}

func (f *fakeClient) QueryDeployments(ctx context.Context, _ *atomapi.Expression) ([]atomapi.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deps, f.note(ctx, false)
}

func (f *fakeClient) add(id, proc, atom string, at time.Time, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, atomapi.ExecutionRecord{ExecutionID: id, ProcessID: proc, AtomID: atom,
		ExecutionTime: atomapi.FormatTime(at), Status: status, Message: "msg of " + id})
}

func (f *fakeClient) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.execs {
		if f.execs[i].ExecutionID == id {
			f.execs[i].Status = status
		}
	}
}

// fakeStore keeps runs, calls and claims in memory.
type fakeStore struct {
	mu     sync.Mutex
	runs   map[int64]runnerd.Run
	calls  []store.Call
	claims map[string]int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{runs: map[int64]runnerd.Run{}, claims: map[string]int64{}}
}

func (s *fakeStore) ListRuns(_ context.Context, f store.RunFilter) ([]runnerd.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runnerd.Run
	for id := int64(len(s.runs) + 100); id > 0; id-- {
		r, ok := s.runs[id]
		if !ok {
			continue
		}
		if len(f.States) > 0 && !containsState(f.States, r.State) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func containsState(ss []runnerd.RunState, s runnerd.RunState) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (s *fakeStore) ListCalls(_ context.Context, f store.CallFilter) ([]store.Call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Call
	for i := len(s.calls) - 1; i >= 0; i-- {
		c := s.calls[i]
		if (f.RunID != 0 && c.RunID != f.RunID) || (!f.Since.IsZero() && c.StartedAt.Before(f.Since)) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *fakeStore) UpdateRun(_ context.Context, r runnerd.Run) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.runs[r.ID]; !ok {
		return store.ErrNotFound
	}
	s.runs[r.ID] = r
	return nil
}

func (s *fakeStore) Claim(_ context.Context, id, kind string, runID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.claims[id]; ok && h != runID {
		return fmt.Errorf("claim %s: %w %d", id, store.ErrClaimed, h)
	}
	s.claims[id] = runID
	return nil
}

func (s *fakeStore) ClaimedBy(_ context.Context, id string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims[id], nil
}

func (s *fakeStore) get(id int64) runnerd.Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[id]
}

// unknownRun adds an unknown execute run whose unsafe call was sent at sent,
// with platformID recorded (or not).
func (s *fakeStore) unknownRun(id int64, job string, sent time.Time, platformID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[id] = runnerd.Run{ID: id, Job: job, Kind: "execute", NominalTime: sent.Truncate(time.Minute), State: runnerd.StateUnknown,
		StartedAt: sent, Detail: `{"method":"request"}`}
	s.calls = append(s.calls, store.Call{ID: int64(len(s.calls) + 1), RunID: id, Job: job, RequestID: fmt.Sprintf("rq-%d", id),
		Operation: "ExecutionRequest.create", StartedAt: sent, PlatformID: platformID})
}

type fixture struct {
	c       *fakeClient
	s       *fakeStore
	now     time.Time
	refired []int64
	rc      *Reconciler
}

func newFixture(t *testing.T, onUnknown string) *fixture {
	t.Helper()
	fx := &fixture{c: &fakeClient{byReq: map[string]string{}}, s: newFakeStore(), now: t0}
	fx.rc = New(Options{
		Client: fx.c, Store: fx.s, Now: func() time.Time { return fx.now },
		Grace: 10 * time.Minute, Skew: time.Minute,
		Jobs: func(job string) (Target, bool) {
			switch job {
			case "exec":
				return Target{Kind: "execute", Method: "request", ProcessID: "proc", AtomID: "atom", OnUnknown: onUnknown}, true
			case "deploy":
				return Target{Kind: "deploy", Method: "package", ProcessID: "proc", ToEnv: "env-prod", OnUnknown: onUnknown}, true
			case "legacy":
				return Target{Kind: "deploy", Method: "deployProcess", ProcessID: "proc", ToEnv: "env-prod", OnUnknown: onUnknown}, true
			}
			return Target{}, false
		},
		Refire: func(_ context.Context, r runnerd.Run, reason string) error {
			fx.refired = append(fx.refired, r.ID)
			r.State, r.Reason = runnerd.StatePlanned, reason
			return fx.s.UpdateRun(context.Background(), r)
		},
	})
	return fx
}

func (fx *fixture) pass(t *testing.T) Summary {
	t.Helper()
	sum, err := fx.rc.Pass(context.Background())
	if err != nil {
		t.Fatalf("Pass() error = %v", err)
	}
	fx.c.mu.Lock()
	defer fx.c.mu.Unlock()
	if fx.c.nonRecov != 0 {
		t.Fatalf("%d identifying lookups without CallInfo.Recovery", fx.c.nonRecov)
	}
	if fx.c.followRecov != 0 {
		t.Fatalf("%d lookups following an identified execution with CallInfo.Recovery; want none (no reserve)", fx.c.followRecov)
	}
	return sum
}

func wantState(t *testing.T, r runnerd.Run, state runnerd.RunState, reasonHas string) {
	t.Helper()
	if r.State != state || !strings.Contains(r.Reason+" "+r.Error, reasonHas) {
		t.Fatalf("run %d = %s (reason %q, error %q); want %s with %q", r.ID, r.State, r.Reason, r.Error, state, reasonHas)
	}
}

// One unclaimed execution in the window: claimed, followed to its end.
func TestOneMatchIsClaimedAndFollowed(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0.Add(-30*time.Second), "")
	fx.c.add("x-1", "proc", "atom", t0.Add(-29*time.Second), atomapi.StatusInProcess)
	fx.c.add("x-other-proc", "other", "atom", t0.Add(-29*time.Second), atomapi.StatusComplete)
	fx.c.add("x-too-early", "proc", "atom", t0.Add(-5*time.Minute), atomapi.StatusComplete)

	if sum := fx.pass(t); sum[Waiting] != 1 {
		t.Fatalf("first pass = %v; want the run waiting on its running execution", sum)
	}
	if got := fx.s.claims["x-1"]; got != 1 {
		t.Fatalf("claim of x-1 = run %d; want run 1", got)
	}
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "following")
	fx.c.setStatus("x-1", atomapi.StatusComplete)
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("second pass = %v; want succeeded", sum)
	}
	r := fx.s.get(1)
	wantState(t, r, runnerd.StateSucceeded, "")
	if !strings.Contains(r.Detail, `"execution_id":"x-1"`) || !strings.Contains(r.Detail, `"reconciled":"window"`) {
		t.Errorf("Detail = %s; want execution_id x-1 found by window", r.Detail)
	}
}

// The recorded requestId is authoritative: no window query is needed, and an
// ERROR record fails the run with its message.
func TestRequestIDFollowedToFailure(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0.Add(-30*time.Second), "req-1")
	fx.c.byReq["req-1"] = "x-1"
	fx.c.add("x-1", "proc", "atom", t0.Add(-29*time.Second), atomapi.StatusError)
	fx.c.add("x-2", "proc", "atom", t0.Add(-29*time.Second), atomapi.StatusComplete) // would make the window ambiguous
	if sum := fx.pass(t); sum[Failed] != 1 {
		t.Fatalf("Pass() = %v; want failed", sum)
	}
	wantState(t, fx.s.get(1), runnerd.StateFailed, "msg of x-1")
	if fx.c.calls != 1 {
		t.Errorf("lookups = %d; want 1 (the async record)", fx.c.calls)
	}
}

// None within the grace period: waits; after it, on_unknown decides.
func TestNoMatch(t *testing.T) {
	for _, tc := range []struct {
		onUnknown string
		want      runnerd.RunState
		refired   int
	}{
		{OnUnknownSkip, runnerd.StateSkipped, 0},
		{OnUnknownRefire, runnerd.StatePlanned, 1},
	} {
		t.Run(tc.onUnknown, func(t *testing.T) {
			fx := newFixture(t, tc.onUnknown)
			fx.s.unknownRun(1, "exec", t0, "")
			fx.now = t0.Add(9 * time.Minute)
			if sum := fx.pass(t); sum[Waiting] != 1 {
				t.Fatalf("Pass() inside the grace period = %v; want waiting", sum)
			}
			wantState(t, fx.s.get(1), runnerd.StateUnknown, "looking again until")
			fx.now = t0.Add(10 * time.Minute)
			fx.pass(t)
			wantState(t, fx.s.get(1), tc.want, "on_unknown = "+tc.onUnknown)
			if len(fx.refired) != tc.refired {
				t.Errorf("refired %v; want %d", fx.refired, tc.refired)
			}
		})
	}
}

// Several unclaimed executions match: flagged, never acted on again.
func TestSeveralMatchesAreFlagged(t *testing.T) {
	fx := newFixture(t, OnUnknownRefire)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.c.add("x-a", "proc", "atom", t0.Add(time.Second), atomapi.StatusComplete)
	fx.c.add("x-b", "proc", "atom", t0.Add(2*time.Second), atomapi.StatusComplete)
	fx.now = t0.Add(time.Hour)
	if sum := fx.pass(t); sum[Flagged] != 1 {
		t.Fatalf("Pass() = %v; want flagged", sum)
	}
	r := fx.s.get(1)
	wantState(t, r, runnerd.StateUnknown, "flagged for an operator: 2 unclaimed executions")
	if len(fx.s.claims) != 0 || len(fx.refired) != 0 {
		t.Fatalf("claims %v, refired %v; want nothing acted on", fx.s.claims, fx.refired)
	}
	before := fx.c.calls
	if sum := fx.pass(t); sum[Flagged] != 1 || fx.c.calls != before {
		t.Fatalf("second Pass() = %v with %d more lookups; want flagged, 0 lookups", sum, fx.c.calls-before)
	}
}

// The record appears only after a first look: the run waits, then claims it.
func TestRecordAppearingLate(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.now = t0.Add(2 * time.Minute)
	fx.pass(t)
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "no unclaimed execution")
	fx.c.add("x-late", "proc", "atom", t0.Add(3*time.Second), atomapi.StatusComplete)
	fx.now = t0.Add(5 * time.Minute)
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("Pass() = %v; want succeeded", sum)
	}
	if fx.s.claims["x-late"] != 1 {
		t.Errorf("claims = %v; want x-late by run 1", fx.s.claims)
	}
}

// An execution claimed by one run, or known to another run by its requestId,
// cannot satisfy a second run.
func TestClaimedExecutionSatisfiesOneRun(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.unknownRun(2, "exec", t0.Add(time.Second), "")
	fx.s.unknownRun(3, "exec", t0.Add(2*time.Second), "")
	fx.s.mu.Lock()
	r3 := fx.s.runs[3]
	r3.State = runnerd.StateSucceeded // run 3 knows its execution by its requestId
	fx.s.runs[3] = r3
	fx.s.calls[2].PlatformID = "req-3"
	fx.s.mu.Unlock()
	fx.c.byReq["req-3"] = "x-3"
	fx.c.add("x-1", "proc", "atom", t0, atomapi.StatusComplete)
	fx.c.add("x-3", "proc", "atom", t0.Add(2*time.Second), atomapi.StatusComplete)
	fx.now = t0.Add(11 * time.Minute)
	fx.pass(t)
	// Runs 1 and 2 both see x-1 (x-3 is run 3's); whichever goes first claims
	// it, the other finds nothing and is skipped.
	got := map[runnerd.RunState]int{}
	for _, id := range []int64{1, 2} {
		got[fx.s.get(id).State]++
	}
	if got[runnerd.StateSucceeded] != 1 || got[runnerd.StateSkipped] != 1 {
		t.Fatalf("states %v; want one succeeded, one skipped", got)
	}
	if h := fx.s.claims["x-1"]; h != 1 && h != 2 {
		t.Errorf("x-1 claimed by %d", h)
	}
	if _, ok := fx.s.claims["x-3"]; ok {
		t.Errorf("x-3 claimed by %d; want it left to run 3", fx.s.claims["x-3"])
	}
}

// A package deploy is found by the notes the deploy kind writes.
func TestDeployPackageByNotes(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	nominal := t0.Add(-time.Hour)
	fx.s.runs[1] = runnerd.Run{ID: 1, Job: "deploy", Kind: "deploy", NominalTime: nominal, State: runnerd.StateUnknown, StartedAt: nominal}
	fx.s.calls = append(fx.s.calls, store.Call{ID: 1, RunID: 1, Operation: "DeployedPackage.create", StartedAt: nominal})
	fx.c.pkgs = []atomapi.DeployedPackage{
		{DeploymentID: "d-other", Notes: "runnerd deploy " + atomapi.FormatTime(nominal.Add(-24*time.Hour))},
		{DeploymentID: "d-1", Notes: "runnerd deploy " + atomapi.FormatTime(nominal)},
	}
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("Pass() = %v; want succeeded", sum)
	}
	if r := fx.s.get(1); !strings.Contains(r.Detail, `"deployment_id":"d-1"`) {
		t.Errorf("Detail = %s; want d-1", r.Detail)
	}
}

// deployProcess: by deployedOn in the window; two in it are flagged.
func TestDeployProcessWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		deps []atomapi.Deployment
		want Verdict
	}{
		{"one", []atomapi.Deployment{{ID: "d-1", DeployedOn: atomapi.FormatTime(t0)}}, Succeeded},
		{"none", []atomapi.Deployment{{ID: "d-old", DeployedOn: atomapi.FormatTime(t0.Add(-time.Hour))}}, Skipped},
		{"several", []atomapi.Deployment{{ID: "d-1", DeployedOn: atomapi.FormatTime(t0)}, {ID: "d-2", DeployedOn: atomapi.FormatTime(t0)}}, Flagged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, OnUnknownSkip)
			fx.s.runs[1] = runnerd.Run{ID: 1, Job: "legacy", Kind: "deploy", NominalTime: t0, State: runnerd.StateUnknown}
			fx.s.calls = append(fx.s.calls, store.Call{ID: 1, RunID: 1, Operation: "deployProcess", StartedAt: t0})
			fx.c.deps = tc.deps
			fx.now = t0.Add(time.Hour)
			if sum := fx.pass(t); sum[tc.want] != 1 {
				t.Fatalf("Pass() = %v; want %s", sum, tc.want)
			}
		})
	}
}

// A failed lookup leaves the run unknown and is reported; the next pass retries.
func TestLookupErrorRetried(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.c.add("x-1", "proc", "atom", t0, atomapi.StatusComplete)
	fx.c.failNext = &atomapi.APIError{Operation: "ExecutionRecord.query", Status: 503}
	sum, err := fx.rc.Pass(context.Background())
	if err == nil || !errors.Is(err, atomapi.ErrRateLimited) || sum[Error] != 1 {
		t.Fatalf("Pass() = %v, %v; want one error wrapping the 503", sum, err)
	}
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "")
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("retry Pass() = %v; want succeeded", sum)
	}
}
