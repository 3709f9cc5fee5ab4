package kinds

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
)

const (
	batchN   = 20
	batchFor = 10 * time.Minute
)

// pollWithPoller starts n executions (by ExecutionRequest, or by executeProcess
// when legacy) that all run for d, follows them with one Poller, and returns the
// poll calls spent. It checks that every waiter got its own execution.
func pollWithPoller(tb testing.TB, n int, d time.Duration, legacy bool) (calls int, f *fakeExec) {
	tb.Helper()
	c := newClock(t0)
	c.gate = make(chan struct{})
	f = newFakeExec(c)
	f.specs["proc-orders"] = procSpec{appear: time.Second, runFor: d, final: atomapi.StatusComplete}
	p := &Poller{Client: f, Now: c.Now, Sleep: c.Sleep}
	ws := make([]*Tracking, n)
	want := make([]string, n)
	for i := range n {
		reqID := ""
		if !legacy {
			reqID = fmt.Sprintf("req-%d", i)
		}
		x := f.start("proc-orders", "atom-test", reqID, t0)
		want[i] = x.id
		ctx := atomapi.WithCallInfo(context.Background(), atomapi.CallInfo{RunID: int64(i + 1), Priority: runnerd.Priority(i % 3)})
		ws[i] = p.Track(ctx, Target{RequestID: reqID, ProcessID: "proc-orders", AtomID: "atom-test", SentAt: t0})
	}
	close(c.gate)
	seen := map[string]bool{}
	for i, w := range ws {
		r := <-w.Done()
		if r.Err != nil {
			tb.Fatalf("waiter %d: %v", i, r.Err)
		}
		if r.Record.Status != atomapi.StatusComplete {
			tb.Errorf("waiter %d: status %s; want COMPLETE", i, r.Record.Status)
		}
		if !legacy && r.Record.ExecutionID != want[i] {
			tb.Errorf("waiter %d (requestId req-%d) got %s; want %s", i, i, r.Record.ExecutionID, want[i])
		}
		if seen[r.Record.ExecutionID] {
			tb.Errorf("execution %s given to two waiters", r.Record.ExecutionID)
		}
		seen[r.Record.ExecutionID] = true
	}
	if got := c.Now().Sub(t0); got < d {
		tb.Errorf("followed for %v; want at least %v", got, d)
	}
	return f.count("async") + f.count("query"), f
}

// pollFixed is the naive way: each execution polled on its own by
// ExecutionRecord/async every 10 s until terminal.
func pollFixed(n int, d time.Duration) int {
	c := newClock(t0)
	f := newFakeExec(c)
	f.specs["proc-orders"] = procSpec{appear: time.Second, runFor: d, final: atomapi.StatusComplete}
	for i := range n {
		f.start("proc-orders", "atom-test", fmt.Sprintf("req-%d", i), t0)
	}
	done := make([]bool, n)
	for left := n; left > 0; {
		c.Advance(10 * time.Second)
		for i := range n {
			if done[i] {
				continue
			}
			rec, pending, _ := f.ExecutionRecordAsync(context.Background(), fmt.Sprintf("req-%d", i))
			if !pending && atomapi.TerminalStatus(rec.Status) {
				done[i] = true
				left--
			}
		}
	}
	return f.count("async")
}

func TestPollerBatchesCalls(t *testing.T) {
	fixed := pollFixed(batchN, batchFor)
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			got, f := pollWithPoller(t, batchN, batchFor, legacy)
			t.Logf("%d executions for %v: %d poll calls with the Poller, %d polling each at 10 s", batchN, batchFor, got, fixed)
			if got*10 > fixed {
				t.Errorf("Poller calls = %d; want at most a tenth of %d", got, fixed)
			}
			// After the executions are identified, one query covers all of them.
			if len(f.exprs) == 0 {
				t.Fatal("no batch query made")
			}
			last := f.exprs[len(f.exprs)-1]
			if last.Operator != atomapi.OpOr || len(last.NestedExpression) != batchN {
				t.Errorf("last batch filter = %s %d parts; want or of %d executionId EQUALS", last.Operator, len(last.NestedExpression), batchN)
			}
		})
	}
}

func TestPollerForeignExecutionBoundedCost(t *testing.T) {
	// Two requests in flight whose records never show (an Atom offline), and a
	// foreign execution of the same process in the window: the foreign one
	// triggers one binding attempt per waiter once, not on every tick.
	c := newClock(t0)
	c.gate = make(chan struct{})
	f := newFakeExec(c)
	f.specs["proc-orders"] = procSpec{appear: time.Hour, runFor: time.Minute, final: atomapi.StatusComplete}
	f.specs["foreign"] = procSpec{appear: 0, runFor: 20 * time.Minute, final: atomapi.StatusComplete}
	var ws []*Tracking
	var once sync.Once
	sleep := func(ctx context.Context, d time.Duration) error {
		err := c.Sleep(ctx, d) // waits for the gate: ws is complete after it
		if c.Now().Sub(t0) > 4*time.Minute {
			once.Do(func() {
				for _, w := range ws {
					w.Stop()
				}
			})
		}
		return err
	}
	p := &Poller{Client: f, Now: c.Now, Sleep: sleep}
	for i := range 2 {
		reqID := fmt.Sprintf("req-%d", i)
		f.start("proc-orders", "atom-test", reqID, t0)
		ws = append(ws, p.Track(context.Background(), Target{RequestID: reqID, ProcessID: "proc-orders", AtomID: "atom-test", SentAt: t0}))
	}
	x := f.start("proc-orders", "atom-test", "", t0)
	x.spec = f.specs["foreign"]
	close(c.gate)
	for p.InFlight() > 0 {
		time.Sleep(time.Millisecond)
	}
	if a := f.count("async"); a > 2 {
		t.Errorf("async calls = %d; want at most 2 (one binding attempt per waiter for the foreign execution)", a)
	}
	if q := f.count("query"); q == 0 {
		t.Errorf("query calls = 0; want batch queries")
	}
}

func BenchmarkPollerVsFixed(b *testing.B) {
	fixed := pollFixed(batchN, batchFor)
	var got int
	for b.Loop() {
		got, _ = pollWithPoller(b, batchN, batchFor, false)
	}
	b.ReportMetric(float64(got), "poller-calls")
	b.ReportMetric(float64(fixed), "fixed10s-calls")
	b.ReportMetric(float64(got)/float64(fixed), "ratio")
}

func TestPollerMixedLegacyAndRequest(t *testing.T) {
	// Two ExecutionRequests and one executeProcess of the same process on the
	// same atom, all started in the same second: the window correlation of the
	// executeProcess must not take a record that belongs to a request.
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newClock(t0)
			c.gate = make(chan struct{})
			f := newFakeExec(c)
			p := &Poller{Client: f, Now: c.Now, Sleep: c.Sleep}
			// The legacy execution is started first, so a correlation that ignores
			// the requests would pick a request's record only by chance; start
			// order varies with i.
			var ws []*Tracking
			want := map[*Tracking]string{}
			for j := range 3 {
				reqID := ""
				if j != i%3 {
					reqID = fmt.Sprintf("req-%d", j)
				}
				x := f.start("proc-orders", "atom-test", reqID, t0)
				w := p.Track(context.Background(), Target{RequestID: reqID, ProcessID: "proc-orders", AtomID: "atom-test", SentAt: t0})
				ws = append(ws, w)
				want[w] = x.id
			}
			close(c.gate)
			got := map[string]bool{}
			for _, w := range ws {
				r := <-w.Done()
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				if w.target.RequestID != "" && r.Record.ExecutionID != want[w] {
					t.Errorf("request %s got %s; want %s", w.target.RequestID, r.Record.ExecutionID, want[w])
				}
				if got[r.Record.ExecutionID] {
					t.Errorf("execution %s given to two waiters", r.Record.ExecutionID)
				}
				got[r.Record.ExecutionID] = true
			}
		})
	}
}

func TestPollerHoldsGuessWhileRequestInFlight(t *testing.T) {
	// An ExecutionRequest and an executeProcess of one process start in the
	// same second; the request's answer is still on its way back when the
	// executeProcess waiter sees both records, the request's listed first. The
	// window guess must wait for the request to be tracked and asked, and then
	// each gets its own execution.
	c := newClock(t0)
	f := newFakeExec(c)
	p := &Poller{Client: f, Now: c.Now, Sleep: c.Sleep}
	reqX := f.start("proc-orders", "atom-test", "req-1", t0)
	legX := f.start("proc-orders", "atom-test", "", t0)
	endSend := p.beginSend(Target{ProcessID: "proc-orders", AtomID: "atom-test"})
	leg := p.Track(context.Background(), Target{ProcessID: "proc-orders", AtomID: "atom-test", SentAt: t0})
	// Both records are terminal 22 s after t0; let the poller run well past it.
	for c.Now().Before(t0.Add(2 * time.Minute)) {
		select {
		case r := <-leg.Done():
			t.Fatalf("executeProcess waiter finished on %s while a request of its process was being sent", r.Record.ExecutionID)
		case <-time.After(time.Millisecond):
		}
	}
	req := p.Track(context.Background(), Target{RequestID: "req-1", ProcessID: "proc-orders", AtomID: "atom-test", SentAt: t0})
	endSend()
	for w, want := range map[*Tracking]string{leg: legX.id, req: reqX.id} {
		r := <-w.Done()
		if r.Err != nil || r.Record.ExecutionID != want {
			t.Errorf("waiter %q got %s (%v); want %s", w.target.RequestID, r.Record.ExecutionID, r.Err, want)
		}
	}
	leg.Stop()
	req.Stop()
	p.Wait()
}
