package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/store"
)

// What reconciliation spends on runs that stay unknown for hours: following
// an identified execution is ordinary work (no reserve), looks back off with
// the run's age, and a run with no verdict by the ceiling is flagged.

// setDetail replaces run id's Detail.
func (s *fakeStore) setDetail(id int64, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[id]
	r.Detail = detail
	s.runs[id] = r
}

// lookups returns how many lookups the fake client has seen.
func (f *fakeClient) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// passEveryMinute runs a pass at each minute from `from` to `to` (inclusive)
// after the send at t0, as Loop does, and returns the times at which a pass
// made at least one lookup.
func (fx *fixture) passEveryMinute(t *testing.T, from, to time.Duration) []time.Time {
	t.Helper()
	var looked []time.Time
	for d := from; d <= to; d += time.Minute {
		fx.now = t0.Add(d)
		before := fx.c.lookups()
		fx.pass(t)
		if fx.c.lookups() > before {
			looked = append(looked, fx.now)
		}
	}
	return looked
}

// checkSpacing checks that consecutive looks are spaced as the backoff says:
// at least min(1h, max(1m, age/4)) apart (less one tick for the timer's
// granularity, and the end of the grace period may come sooner) and never
// more than 1h plus one tick.
func checkSpacing(t *testing.T, looked []time.Time, sent time.Time, grace time.Duration) {
	t.Helper()
	for i := 1; i < len(looked); i++ {
		gap := looked[i].Sub(looked[i-1])
		want := min(time.Hour, max(time.Minute, looked[i].Sub(sent)/4)) - time.Minute
		if gap < want && !looked[i].Equal(sent.Add(grace)) {
			t.Errorf("looks at %s and %s are %s apart; want at least %s", looked[i-1].Sub(sent), looked[i].Sub(sent), gap, want)
		}
		if gap > time.Hour+time.Minute {
			t.Errorf("looks at %s and %s are %s apart; want at most 1h1m", looked[i-1].Sub(sent), looked[i].Sub(sent), gap)
		}
	}
}

// The budget ran out while the run was polling: it ended unknown with the
// execution id. Following that execution for 6 hours takes a few dozen
// lookups at normal priority (the pass helper fails on a follow lookup with
// Recovery), not one a minute from the reserve.
func TestLongExecutionFollowedWithBackoffWithoutReserve(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "req-1")
	fx.s.setDetail(1, `{"method":"request","execution_id":"x-long"}`)
	fx.c.add("x-long", "proc", "atom", t0.Add(time.Second), atomapi.StatusInProcess)

	looked := fx.passEveryMinute(t, time.Minute, 6*time.Hour)
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "")
	if n := fx.c.follows; n > 40 || n != fx.c.lookups() {
		t.Fatalf("6 hours of passes made %d follow lookups (%d lookups in all); want at most 40, all following x-long",
			n, fx.c.lookups())
	}
	checkSpacing(t, looked, t0, fx.rc.o.Grace)
	t.Logf("6 hours of passes: %d follow lookups", fx.c.follows)

	fx.c.setStatus("x-long", atomapi.StatusComplete)
	fx.passEveryMinute(t, 6*time.Hour+time.Minute, 7*time.Hour+time.Minute)
	wantState(t, fx.s.get(1), runnerd.StateSucceeded, "")
}

// Over the cap, the gate refuses the follow lookup (it is not recovery): the
// run waits, the pass reports no error, and it settles once the budget
// allows. Identifying lookups still go (they may use the reserve).
func TestFollowRefusedByBudgetWaits(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.setDetail(1, `{"method":"request","execution_id":"x-1"}`)
	fx.c.add("x-1", "proc", "atom", t0.Add(time.Second), atomapi.StatusComplete)
	fx.s.unknownRun(2, "exec", t0.Add(2*time.Hour), "")
	fx.c.add("x-2", "proc", "atom", t0.Add(2*time.Hour+time.Second), atomapi.StatusComplete)
	fx.c.overCap = true
	fx.now = t0.Add(2*time.Hour + time.Minute)

	sum := fx.pass(t) // fails on a pass error
	if sum[Waiting] != 1 || sum[Succeeded] != 1 {
		t.Fatalf("Pass() over the cap = %v; want run 1 waiting (follow refused), run 2 succeeded (identified with the reserve)", sum)
	}
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "the budget refused the lookup")
	if fx.c.follows != 1 {
		t.Errorf("follow lookups = %d; want 1 (refused)", fx.c.follows)
	}

	fx.c.overCap = false
	fx.now = t0.Add(3*time.Hour + time.Minute) // past run 1's backoff (≤ 1h)
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("Pass() once the budget allows = %v; want succeeded", sum)
	}
	wantState(t, fx.s.get(1), runnerd.StateSucceeded, "")
}

// A run with no verdict 24 hours after the send is flagged for an operator
// and never looked up again: an execution that never ends, a request id that
// stays 202, an execution that never becomes visible.
func TestNoVerdictByCeilingIsFlagged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		detail string
		reqID  string
		setup  func(f *fakeClient)
		why    string
	}{
		{"execution never ends", `{"execution_id":"x-1"}`, "", func(f *fakeClient) {
			f.add("x-1", "proc", "atom", t0.Add(time.Second), atomapi.StatusInProcess)
		}, "following it"},
		{"request stays 202", `{}`, "req-1", func(f *fakeClient) {
			f.byReq["req-1"] = "x-never"
		}, "its record is not available yet"},
		{"execution never visible", `{"execution_id":"x-ghost"}`, "", func(*fakeClient) {}, "is not visible yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, OnUnknownRefire)
			fx.s.unknownRun(1, "exec", t0, tc.reqID)
			fx.s.setDetail(1, tc.detail)
			tc.setup(fx.c)

			looked := fx.passEveryMinute(t, time.Minute, 24*time.Hour-time.Minute)
			wantState(t, fx.s.get(1), runnerd.StateUnknown, tc.why)
			checkSpacing(t, looked, t0, fx.rc.o.Grace)
			if n := fx.c.lookups(); n > 60 {
				t.Fatalf("%d lookups in 24 hours; want at most 60", n)
			}
			t.Logf("%d lookups in the 24 hours before the ceiling", fx.c.lookups())

			fx.now = t0.Add(24 * time.Hour)
			if sum := fx.pass(t); sum[Flagged] != 1 {
				t.Fatalf("Pass() at the ceiling = %v; want flagged", sum)
			}
			r := fx.s.get(1)
			wantState(t, r, runnerd.StateUnknown, "flagged for an operator: no verdict 24h0m0s after the send")
			if !strings.Contains(r.Reason, tc.why) || !strings.Contains(r.Detail, `"flagged":true`) {
				t.Errorf("run = %q, detail %s; want the last reason (%q) and flagged", r.Reason, r.Detail, tc.why)
			}
			before := fx.c.lookups()
			fx.passEveryMinute(t, 24*time.Hour+time.Minute, 27*time.Hour)
			if n := fx.c.lookups() - before; n != 0 || len(fx.refired) != 0 {
				t.Errorf("after flagging: %d lookups, refired %v; want none", n, fx.refired)
			}
		})
	}
}

// Run looks a run up now, whatever its backoff; Pass then counts it NotDue
// until its backoff has passed.
func TestRunIgnoresBackoffPassHonoursIt(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.setDetail(1, `{"execution_id":"x-1"}`)
	fx.c.add("x-1", "proc", "atom", t0, atomapi.StatusInProcess)
	fx.now = t0.Add(2 * time.Hour) // backoff: min(1h, 2h/4) = 30m
	fx.pass(t)
	fx.now = fx.now.Add(10 * time.Minute)
	if sum := fx.pass(t); sum[NotDue] != 1 || fx.c.lookups() != 1 {
		t.Fatalf("Pass() 10m after a look at age 2h = %v after %d lookups; want not due, 1 lookup", sum, fx.c.lookups())
	}
	if v, err := fx.rc.Run(context.Background(), fx.s.get(1)); v != Waiting || err != nil || fx.c.lookups() != 2 {
		t.Fatalf("Run() = %v, %v after %d lookups; want waiting after a second lookup", v, err, fx.c.lookups())
	}
	fx.now = fx.now.Add(45 * time.Minute) // age 2h55m: backoff 43m45s since Run
	if sum := fx.pass(t); sum[Waiting] != 1 || fx.c.lookups() != 3 {
		t.Fatalf("Pass() 45m later = %v after %d lookups; want waiting after a third lookup", sum, fx.c.lookups())
	}
}

// executeProcess is queued while the runtime is busy or offline, so the
// execution may start minutes after the send: it is found anywhere between
// Skew before the send and the end of the grace period, and the run is not
// refired (which would run the process a second time). An execution that
// starts after the grace period is not this run's.
func TestQueuedExecutionStartingLate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   time.Duration // after the send
		at      time.Duration // the pass, after the send
		want    Verdict
		claimed bool
	}{
		{"5m after the send", 5 * time.Minute, 10 * time.Minute, Succeeded, true},
		{"9m59s after the send", 10*time.Minute - time.Second, 12 * time.Minute, Succeeded, true},
		{"after the grace period", 10*time.Minute + time.Second, 12 * time.Minute, Refired, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, OnUnknownRefire)
			fx.s.unknownRun(1, "exec", t0, "")
			fx.c.add("x-queued", "proc", "atom", t0.Add(tc.start), atomapi.StatusComplete)
			fx.now = t0.Add(tc.at)
			if sum := fx.pass(t); sum[tc.want] != 1 {
				t.Fatalf("Pass() = %v; want %s", sum, tc.want)
			}
			if got := fx.s.claims["x-queued"] == 1; got != tc.claimed {
				t.Errorf("x-queued claimed by run 1 = %v; want %v", got, tc.claimed)
			}
		})
	}
}

// The window ends at now: before a queued execution starts, the run waits.
func TestWindowEndsNow(t *testing.T) {
	fx := newFixture(t, OnUnknownRefire)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.now = t0.Add(3 * time.Minute)
	fx.pass(t)
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "and "+atomapi.FormatTime(t0.Add(3*time.Minute)))
	fx.c.add("x-queued", "proc", "atom", t0.Add(4*time.Minute), atomapi.StatusComplete)
	fx.now = t0.Add(5 * time.Minute)
	if sum := fx.pass(t); sum[Succeeded] != 1 || len(fx.refired) != 0 {
		t.Fatalf("Pass() = %v, refired %v; want succeeded, none refired", sum, fx.refired)
	}
}

// Another run's unsafe call into the window is unanswered: the one execution
// in the window may be its, so the run waits instead of claiming it; once the
// other run knows its execution, this run finds none of its own.
func TestBusyRunBlocksASingleCandidate(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.mu.Lock()
	fx.s.runs[2] = runnerd.Run{ID: 2, Job: "exec", Kind: "execute", NominalTime: t0, State: runnerd.StateRunning, StartedAt: t0}
	fx.s.calls = append(fx.s.calls, store.Call{ID: 2, RunID: 2, Job: "exec", RequestID: "rq-2",
		Operation: "ExecutionRequest.create", StartedAt: t0.Add(10 * time.Second)})
	fx.s.mu.Unlock()
	fx.c.add("x-2", "proc", "atom", t0.Add(11*time.Second), atomapi.StatusComplete)
	fx.now = t0.Add(2 * time.Minute)

	if sum := fx.pass(t); sum[Waiting] != 1 {
		t.Fatalf("Pass() = %v; want waiting", sum)
	}
	wantState(t, fx.s.get(1), runnerd.StateUnknown, "run 2, which sent into it too, has no known execution yet")
	if h, ok := fx.s.claims["x-2"]; ok {
		t.Fatalf("x-2 claimed by run %d while run 2's call is unanswered; want unclaimed", h)
	}

	fx.s.mu.Lock()
	fx.s.calls[1].PlatformID, fx.s.calls[1].Status = "req-2", 200 // run 2's answer arrives
	fx.s.mu.Unlock()
	fx.c.byReq["req-2"] = "x-2"
	fx.now = t0.Add(11 * time.Minute)
	if sum := fx.pass(t); sum[Skipped] != 1 {
		t.Fatalf("Pass() after run 2 knows x-2 = %v; want run 1 skipped", sum)
	}
	if _, ok := fx.s.claims["x-2"]; ok {
		t.Errorf("x-2 claimed by run %d; want it left to run 2", fx.s.claims["x-2"])
	}
}

// asyncAsked records the ids the fake client's async lookup was asked for.
func (f *fakeClient) asyncAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// A deploy's platform id is no requestId: the window search never sends it
// to the execution lookup (before, it cost a 400 per unknown run per pass).
func TestDeployIDNeverReachesExecutionLookup(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.mu.Lock()
	fx.s.runs[2] = runnerd.Run{ID: 2, Job: "promote", Kind: "deploy", NominalTime: t0, State: runnerd.StateSucceeded, StartedAt: t0}
	fx.s.calls = append(fx.s.calls, store.Call{ID: 2, RunID: 2, Job: "promote", RequestID: "rq-deploy",
		Operation: "DeployedPackage.create", Status: 200, PlatformID: "dp-123", StartedAt: t0.Add(5 * time.Second)})
	fx.s.mu.Unlock()
	fx.c.add("x-1", "proc", "atom", t0.Add(time.Second), atomapi.StatusComplete)
	fx.now = t0.Add(2 * time.Minute)
	if sum := fx.pass(t); sum[Succeeded] != 1 {
		t.Fatalf("Pass() = %v; want run 1 succeeded by the window", sum)
	}
	for _, id := range fx.c.asyncAsked() {
		if id == "dp-123" {
			t.Errorf("the deploy's id dp-123 was sent to ExecutionRecord/async")
		}
	}
}

// Two runs compete for one execution: run 2's request is accepted but its
// record is not available yet (pending), run 1 has no requestId and would
// find the one execution in the window. Run 1 must wait, not claim it: the
// execution is run 2's, and run 2 claims it by its requestId.
func TestPendingRequestKeepsWindowClaimWaiting(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0, "")
	fx.s.unknownRun(2, "exec", t0.Add(time.Second), "req-2")
	fx.c.add("x-2", "proc", "atom", t0.Add(2*time.Second), atomapi.StatusComplete)
	fx.c.mu.Lock()
	fx.c.byReq["req-2"] = "x-pending" // accepted; the record is not there yet
	fx.c.mu.Unlock()
	fx.now = t0.Add(2 * time.Minute)
	fx.pass(t)
	if h, ok := fx.s.claims["x-2"]; ok && h == 1 {
		t.Fatalf("run 1 claimed x-2 through the window while run 2's request was pending")
	}
	fx.c.mu.Lock()
	fx.c.byReq["req-2"] = "x-2" // run 2's record shows
	fx.c.mu.Unlock()
	fx.now = t0.Add(11 * time.Minute)
	fx.pass(t)
	if got := fx.s.get(2).State; got != runnerd.StateSucceeded {
		t.Errorf("run 2 = %s (%s); want succeeded, claimed by its requestId", got, fx.s.get(2).Reason)
	}
	if got := fx.s.get(1).State; got == runnerd.StateSucceeded || strings.Contains(fx.s.get(1).Reason, "claimed by another") {
		t.Errorf("run 1 = %s (%s); want it not to have x-2, and not flagged", got, fx.s.get(1).Reason)
	}
}

// A request sent before this run's window can start its execution inside
// it (the runtime queues executions). Found by TestCrashKill9: run 2 sent at
// t0 (its requestId recorded), its execution queued until t0+5m; run 1 sent
// at t0+3m and crashed before recording its requestId. Run 1's window began
// after run 2's send, so run 2's request was never resolved, and run 1
// claimed x-2 — leaving run 2 flagged "claimed by another run".
func TestEarlierRequestsExecutionInWindowIsTaken(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(1, "exec", t0.Add(3*time.Minute), "")
	fx.s.unknownRun(2, "exec", t0, "req-2")
	fx.c.add("x-1", "proc", "atom", t0.Add(3*time.Minute), atomapi.StatusComplete)
	fx.c.add("x-2", "proc", "atom", t0.Add(5*time.Minute), atomapi.StatusComplete)
	fx.c.mu.Lock()
	fx.c.byReq["req-2"] = "x-2"
	fx.c.mu.Unlock()
	fx.now = t0.Add(20 * time.Minute)
	fx.pass(t)
	for id, want := range map[int64]string{1: "x-1", 2: "x-2"} {
		r := fx.s.get(id)
		if r.State != runnerd.StateSucceeded || fx.s.claims[want] != id {
			t.Errorf("run %d = %s (%s), claims %v; want succeeded with %s", id, r.State, r.Reason, fx.s.claims, want)
		}
	}
}

// A request another run sent resolves to one execution for good: the runs
// whose windows it falls in ask for it once, not once each (nor once per
// pass).
func TestResolvedRequestIsAskedOnce(t *testing.T) {
	fx := newFixture(t, OnUnknownSkip)
	fx.s.unknownRun(2, "exec", t0, "req-2")
	fx.s.mu.Lock()
	r2 := fx.s.runs[2]
	r2.State = runnerd.StateSucceeded
	fx.s.runs[2] = r2
	fx.s.mu.Unlock()
	fx.s.unknownRun(1, "exec", t0.Add(3*time.Minute), "")
	fx.s.unknownRun(3, "exec", t0.Add(4*time.Minute), "")
	fx.c.add("x-2", "proc", "atom", t0.Add(5*time.Minute), atomapi.StatusComplete)
	fx.c.mu.Lock()
	fx.c.byReq["req-2"] = "x-2"
	fx.c.mu.Unlock()
	fx.now = t0.Add(20 * time.Minute)
	fx.pass(t)
	fx.c.add("x-1", "proc", "atom", t0.Add(6*time.Minute), atomapi.StatusComplete)
	fx.now = t0.Add(2 * time.Hour)
	fx.pass(t)
	fx.c.mu.Lock()
	defer fx.c.mu.Unlock()
	n := 0
	for _, id := range fx.c.asked {
		if id == "req-2" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("req-2 asked %d times over two passes and two runs (asked %v); want 1", n, fx.c.asked)
	}
}

// Two runs compete for the executions in the first one's window: the
// execution that started within the clock tolerance of its send, and of no
// other unknown run's, is claimed by start time; the other run then finds
// only its own. Where the start times leave doubt, the run is flagged.
func TestCompetingRunsClaimedByStartTime(t *testing.T) {
	t.Run("one fits", func(t *testing.T) {
		fx := newFixture(t, OnUnknownSkip)
		fx.s.unknownRun(1, "exec", t0, "")
		fx.s.unknownRun(2, "exec", t0.Add(3*time.Minute), "")
		fx.c.add("x-1", "proc", "atom", t0.Add(20*time.Second), atomapi.StatusComplete)
		fx.c.add("x-2", "proc", "atom", t0.Add(3*time.Minute+20*time.Second), atomapi.StatusComplete)
		fx.now = t0.Add(20 * time.Minute)
		fx.pass(t)
		for id, want := range map[int64]string{1: "x-1", 2: "x-2"} {
			if r := fx.s.get(id); r.State != runnerd.StateSucceeded || fx.s.claims[want] != id {
				t.Errorf("run %d = %s (%s), claims %v; want succeeded with %s", id, r.State, r.Reason, fx.s.claims, want)
			}
		}
		if !strings.Contains(fx.s.get(1).Detail, "start_time") {
			t.Errorf("run 1 detail = %s; want it reconciled by start_time", fx.s.get(1).Detail)
		}
	})
	for _, tc := range []struct {
		name       string
		sent2      time.Duration
		exec1, ex2 time.Duration
	}{
		{"both fit its send", 30 * time.Second, 5 * time.Second, 35 * time.Second},
		{"another send fits its execution", 90 * time.Second, 50 * time.Second, 100 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, OnUnknownSkip)
			fx.s.unknownRun(1, "exec", t0, "")
			fx.s.unknownRun(2, "exec", t0.Add(tc.sent2), "")
			fx.c.add("x-1", "proc", "atom", t0.Add(tc.exec1), atomapi.StatusComplete)
			fx.c.add("x-2", "proc", "atom", t0.Add(tc.ex2), atomapi.StatusComplete)
			fx.now = t0.Add(20 * time.Minute)
			fx.pass(t)
			if r := fx.s.get(1); r.State == runnerd.StateSucceeded {
				t.Errorf("run 1 = %s with claims %v; want it left for an operator (the start times leave doubt)", r.State, fx.s.claims)
			}
			for x, id := range fx.s.claims {
				if id == 1 {
					t.Errorf("run 1 claimed %s; want no claim", x)
				}
			}
		})
	}
}

// TestPassLookupsBoundedByUnknownRuns: K unknown runs whose windows hold the
// sends of C finished runs (their executions known from their detail) make
// lookups in proportion to K, not K × C, nor K + C: a run whose execution is
// known needs no lookup to be excluded.
func TestPassLookupsBoundedByUnknownRuns(t *testing.T) {
	const K, C = 4, 12
	fx := newFixture(t, OnUnknownSkip)
	for i := range C {
		id := int64(100 + i)
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		fx.s.unknownRun(id, "exec", at, fmt.Sprintf("req-%d", id))
		x := fmt.Sprintf("x-%d", id)
		fx.c.add(x, "proc", "atom", at.Add(time.Second), atomapi.StatusComplete)
		fx.c.mu.Lock()
		fx.c.byReq[fmt.Sprintf("req-%d", id)] = x
		fx.c.mu.Unlock()
		fx.s.mu.Lock()
		r := fx.s.runs[id]
		r.State, r.Detail = runnerd.StateSucceeded, fmt.Sprintf(`{"method":"request","execution_id":%q}`, x)
		fx.s.runs[id] = r
		fx.s.mu.Unlock()
	}
	for i := range K {
		id := int64(1 + i)
		at := t0.Add(time.Duration(i)*3*time.Minute + 5*time.Second)
		fx.s.unknownRun(id, "exec", at, "")
		fx.c.add(fmt.Sprintf("x-%d", id), "proc", "atom", at.Add(time.Second), atomapi.StatusComplete)
	}
	fx.now = t0.Add(20 * time.Minute)
	before := fx.c.calls
	fx.pass(t)
	n := fx.c.calls - before
	if n > 3*K {
		t.Errorf("one pass over %d unknown runs with %d other sends in their windows made %d lookups; want at most %d", K, C, n, 3*K)
	}
	for i := range K {
		if r := fx.s.get(int64(1 + i)); r.State != runnerd.StateSucceeded {
			t.Errorf("run %d = %s (%s); want succeeded (its execution started at its send, 3 min from the others)", r.ID, r.State, r.Reason)
		}
	}
}

// TestSettleAfterBurst: 40 runs left unknown by a burst of crashes, two
// minutes apart, half with a recorded requestId, half without (executeProcess):
// they settle in one pass, at under two lookups each (figure in
// RELIABILITY.md).
func TestSettleAfterBurst(t *testing.T) {
	const runs = 40
	fx := newFixture(t, OnUnknownSkip)
	for i := range runs {
		id := int64(1 + i)
		at := t0.Add(time.Duration(i) * 2 * time.Minute)
		req := ""
		if i%2 == 0 {
			req = fmt.Sprintf("req-%d", id)
		}
		fx.s.unknownRun(id, "exec", at, req)
		x := fmt.Sprintf("x-%d", id)
		fx.c.add(x, "proc", "atom", at.Add(2*time.Second), atomapi.StatusComplete)
		if req != "" {
			fx.c.mu.Lock()
			fx.c.byReq[req] = x
			fx.c.mu.Unlock()
		}
	}
	fx.now = t0.Add(3 * time.Hour)
	passes := 0
	for ; passes < 10; passes++ {
		left := 0
		for i := range runs {
			if fx.s.get(int64(1+i)).State == runnerd.StateUnknown {
				left++
			}
		}
		if left == 0 {
			break
		}
		fx.pass(t)
		fx.now = fx.now.Add(time.Minute)
	}
	for i := range runs {
		id := int64(1 + i)
		if r := fx.s.get(id); r.State != runnerd.StateSucceeded || fx.s.claims[fmt.Sprintf("x-%d", id)] != id {
			t.Errorf("run %d = %s (%s); want succeeded with x-%d", id, r.State, r.Reason, id)
		}
	}
	fx.c.mu.Lock()
	lookups := fx.c.calls
	fx.c.mu.Unlock()
	t.Logf("%d unknown runs settled in %d passes with %d lookups", runs, passes, lookups)
	if passes > 2 || lookups > 2*runs {
		t.Errorf("%d passes, %d lookups; want at most 2 passes and %d lookups", passes, lookups, 2*runs)
	}
}
