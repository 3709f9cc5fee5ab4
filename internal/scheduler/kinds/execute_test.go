package kinds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
)

func newExecute(f *fakeExec, c *fakeClock, process, method string, wait bool) *Execute {
	return &Execute{
		Client: f, ProcessID: process, AtomID: "atom-test", Method: method, Wait: wait,
		Priority: runnerd.PriorityHigh, Now: c.Now,
		Poller: &Poller{Client: f, Now: c.Now, Sleep: c.Sleep},
	}
}

func TestExecuteRequestWait(t *testing.T) {
	tests := []struct {
		name    string
		process string
		state   runnerd.RunState
		status  string
		errHas  string
	}{
		{"complete", "proc-orders", runnerd.StateSucceeded, atomapi.StatusComplete, ""},
		{"warn kept in detail", "proc-invoices", runnerd.StateSucceeded, atomapi.StatusCompleteWarn, ""},
		{"error fails with the message", "proc-fails", runnerd.StateFailed, atomapi.StatusError, "host unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			f := newFakeExec(c)
			k := newExecute(f, c, tt.process, MethodRequest, true)
			k.Properties = map[string]string{"B": "2", "A": "1"}
			out := k.Run(context.Background(), runCtx("run-orders", t0, c))
			if out.State != tt.state {
				t.Fatalf("Run() state = %s (%v); want %s", out.State, out.Err, tt.state)
			}
			if out.Retryable {
				t.Errorf("Run() Retryable = true; want false (the process ran)")
			}
			if tt.errHas != "" && (out.Err == nil || !strings.Contains(out.Err.Error(), tt.errHas)) {
				t.Errorf("Run() err = %v; want it to contain %q", out.Err, tt.errHas)
			}
			d := detailOf[ExecuteDetail](t, out)
			if d.RequestID != "executionrecord-1" || d.ExecutionID == "" || d.Status != tt.status {
				t.Errorf("Detail = %+v; want request id, execution id and status %s", d, tt.status)
			}
			if tt.status == atomapi.StatusCompleteWarn && d.Message != "2 documents skipped" {
				t.Errorf("Detail.Message = %q; want the warning", d.Message)
			}
			props := f.lastRequest.DynamicProcessProperties
			if props == nil || len(props.DynamicProcessProperty) != 2 || props.DynamicProcessProperty[0] != (atomapi.DynamicProcessProperty{Name: "A", Value: "1"}) {
				t.Errorf("request properties = %+v; want A=1, B=2 in order", props)
			}
			if info := f.infos[0]; info.RunID != 7 || info.Job != "run-orders" || info.Priority != runnerd.PriorityHigh {
				t.Errorf("CallInfo = %+v; want run 7, job run-orders, high", info)
			}
			// One execution in flight: followed by async alone.
			if q := f.count("query"); q != 0 {
				t.Errorf("QueryExecutionRecords calls = %d; want 0 with one execution in flight", q)
			}
		})
	}
}

func TestExecuteNoWait(t *testing.T) {
	c := newClock(t0)
	f := newFakeExec(c)
	out := newExecute(f, c, "proc-orders", MethodRequest, false).Run(context.Background(), runCtx("j", t0, c))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v); want succeeded", out.State, out.Err)
	}
	if d := detailOf[ExecuteDetail](t, out); d.RequestID == "" {
		t.Errorf("Detail = %q; want the request id", out.Detail)
	}
	if n := f.count("async") + f.count("query"); n != 0 {
		t.Errorf("poll calls = %d; want 0 without wait", n)
	}
}

func TestExecuteSendErrors(t *testing.T) {
	deadline := &atomapi.TransportError{Operation: "ExecutionRequest.create", Sent: true, Err: context.DeadlineExceeded}
	tests := []struct {
		name      string
		err       error
		state     runnerd.RunState
		retryable bool
	}{
		{"transport sent", &atomapi.TransportError{Sent: true, Err: io.ErrUnexpectedEOF}, runnerd.StateUnknown, false},
		{"deadline after send", deadline, runnerd.StateUnknown, false},
		{"decode error", &atomapi.DecodeError{Status: 200, Err: errors.New("bad json")}, runnerd.StateUnknown, false},
		{"server error", &atomapi.APIError{Status: 502}, runnerd.StateUnknown, false},
		{"transport not sent", &atomapi.TransportError{Sent: false, Err: errors.New("connection refused")}, runnerd.StateFailed, true},
		{"rate limited", &atomapi.APIError{Status: 503}, runnerd.StateFailed, true},
		{"bad request", &atomapi.APIError{Status: 400, Message: "invalid process"}, runnerd.StateFailed, false},
		{"budget", budgetErr(), runnerd.StateDeferred, false},
	}
	for _, method := range []string{MethodRequest, MethodExecuteProcess} {
		for _, tt := range tests {
			t.Run(method+"/"+tt.name, func(t *testing.T) {
				c := newClock(t0)
				f := newFakeExec(c)
				f.createErr, f.executeErr = tt.err, tt.err
				out := newExecute(f, c, "proc-orders", method, true).Run(context.Background(), runCtx("j", t0, c))
				if out.State != tt.state || out.Retryable != tt.retryable {
					t.Errorf("Run() = %s retryable=%v (%v); want %s retryable=%v", out.State, out.Retryable, out.Err, tt.state, tt.retryable)
				}
				if !errors.Is(out.Err, tt.err) {
					t.Errorf("Run() err = %v; want it to wrap %v", out.Err, tt.err)
				}
				if n := f.count("async") + f.count("query"); n != 0 {
					t.Errorf("poll calls = %d; want 0 after a failed send", n)
				}
			})
		}
	}
}

func TestExecuteFollowErrors(t *testing.T) {
	t.Run("budget stop while following is unknown with the request id", func(t *testing.T) {
		c := newClock(t0)
		f := newFakeExec(c)
		f.asyncErr = budgetErr()
		out := newExecute(f, c, "proc-orders", MethodRequest, true).Run(context.Background(), runCtx("j", t0, c))
		if out.State != runnerd.StateUnknown {
			t.Fatalf("Run() = %s (%v); want unknown", out.State, out.Err)
		}
		if d := detailOf[ExecuteDetail](t, out); d.RequestID == "" {
			t.Errorf("Detail = %s; want the request id for reconciliation", out.Detail)
		}
	})
	t.Run("transient poll errors are waited out", func(t *testing.T) {
		c := newClock(t0)
		f := newFakeExec(c)
		f.asyncErr = &atomapi.APIError{Status: 503}
		k := newExecute(f, c, "proc-orders", MethodRequest, true)
		k.Poller.Sleep = func(ctx context.Context, d time.Duration) error {
			if c.Now().Sub(t0) > 30*time.Second {
				f.mu.Lock()
				f.asyncErr = nil
				f.mu.Unlock()
			}
			return c.Sleep(ctx, d)
		}
		out := k.Run(context.Background(), runCtx("j", t0, c))
		if out.State != runnerd.StateSucceeded {
			t.Errorf("Run() = %s (%v); want succeeded after the 503s pass", out.State, out.Err)
		}
	})
	t.Run("cancelled while following is unknown with the ids", func(t *testing.T) {
		c := newClock(t0)
		f := newFakeExec(c)
		f.specs["proc-orders"] = procSpec{runFor: time.Hour, final: atomapi.StatusComplete}
		k := newExecute(f, c, "proc-orders", MethodRequest, true)
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		k.Poller.Sleep = func(sctx context.Context, d time.Duration) error {
			if f.count("async") >= 3 {
				cancel()
				<-runDone // time stands still until Run has given up
				return context.Canceled
			}
			return c.Sleep(sctx, d)
		}
		out := k.Run(ctx, runCtx("j", t0, c))
		close(runDone)
		// The process may still succeed: never "failed", always looked up.
		if out.State != runnerd.StateUnknown || out.Retryable ||
			!strings.Contains(fmt.Sprint(out.Err), "stopped following as runnerd stopped") ||
			!strings.Contains(fmt.Sprint(out.Err), "outcome is looked up") || !errors.Is(out.Err, context.Canceled) {
			t.Fatalf("Run() = %s retryable=%v (%v); want unknown, not retryable, saying the outcome is looked up", out.State, out.Retryable, out.Err)
		}
		d := detailOf[ExecuteDetail](t, out)
		if d.RequestID == "" || d.ExecutionID == "" || d.Status != atomapi.StatusInProcess {
			t.Errorf("Detail = %+v; want ids and the last status", d)
		}
		if n := k.Poller.InFlight(); n != 0 {
			t.Errorf("InFlight() = %d after Run; want 0", n)
		}
	})
}

// The job's timeout ends the run's context while the execution runs: the run
// is unknown (the process may still succeed), with the ids to look it up.
func TestExecuteTimeoutWhileFollowingIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClock(t0)
		f := newFakeExec(c)
		f.specs["proc-orders"] = procSpec{runFor: time.Hour, final: atomapi.StatusComplete}
		k := newExecute(f, c, "proc-orders", MethodRequest, true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		runDone := make(chan struct{})
		k.Poller.Sleep = func(sctx context.Context, d time.Duration) error {
			if f.count("async") >= 3 {
				<-ctx.Done() // the execution outlives the job's timeout (bubble time)
				<-runDone
				return context.Canceled
			}
			return c.Sleep(sctx, d)
		}
		out := k.Run(ctx, runCtx("j", t0, c))
		close(runDone)
		if out.State != runnerd.StateUnknown || out.Retryable {
			t.Fatalf("Run() = %s retryable=%v (%v); want unknown, not retryable", out.State, out.Retryable, out.Err)
		}
		for _, want := range []string{"stopped following at the timeout", "the execution's outcome is looked up"} {
			if !strings.Contains(fmt.Sprint(out.Err), want) {
				t.Errorf("Run() error = %v; want it to say %q", out.Err, want)
			}
		}
		if !errors.Is(out.Err, context.DeadlineExceeded) {
			t.Errorf("Run() error = %v; want it to wrap context.DeadlineExceeded", out.Err)
		}
		d := detailOf[ExecuteDetail](t, out)
		if d.RequestID == "" || d.ExecutionID == "" || d.Status != atomapi.StatusInProcess {
			t.Errorf("Detail = %+v; want the request and execution ids and the last status", d)
		}
	})
}

func TestExecuteProcessCorrelation(t *testing.T) {
	c := newClock(t0)
	f := newFakeExec(c)
	// Someone else's runs: the same process long before (outside the skew), the
	// same process on another atom, and another process right now.
	f.start("proc-fails", "atom-test", "", t0.Add(-10*time.Minute)).process = "proc-orders"
	f.start("proc-orders", "atom-prod", "", t0)
	f.start("proc-invoices", "atom-test", "", t0)
	f.execs[0].spec = f.specs["proc-fails"]
	k := newExecute(f, c, "proc-orders", MethodExecuteProcess, true)
	k.Properties = map[string]string{"priority": "medium"}
	out := k.Run(context.Background(), runCtx("j", t0, c))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v); want succeeded (the ERROR run 10 minutes before is not ours)", out.State, out.Err)
	}
	d := detailOf[ExecuteDetail](t, out)
	if want := f.execs[3].id; d.ExecutionID != want || d.Correlated != "window" {
		t.Errorf("Detail = %+v; want execution %s correlated by window", d, want)
	}
	pp := f.lastExecute.ProcessProperties
	if pp == nil || len(pp.ProcessProperty) != 1 || pp.ProcessProperty[0].Name != "priority" || pp.ProcessProperty[0].Value != "medium" {
		t.Errorf("executeProcess properties = %+v; want Name=priority Value=medium", pp)
	}
	if f.count("async") != 0 {
		t.Errorf("async calls = %d; want 0 for executeProcess", f.count("async"))
	}
	// The window: process, atom, executionTime >= send − skew.
	e := f.exprs[0]
	if e.Operator != atomapi.OpAnd || len(e.NestedExpression) != 3 ||
		e.NestedExpression[2].Operator != atomapi.OpGreaterThanOrEqual ||
		string(e.NestedExpression[2].Argument[0]) != atomapi.FormatTime(t0.Add(-DefaultPollSkew)) {
		t.Errorf("window filter = %+v; want processId, atomId, executionTime >= send-skew", e)
	}
}

// cancelFake is a fakeExec that can cancel executions.
type cancelFake struct {
	*fakeExec
	mu    sync.Mutex
	ids   []string
	infos []atomapi.CallInfo
	out   atomapi.CancelOutcome
}

func (f *cancelFake) CancelExecution(ctx context.Context, id string) (atomapi.CancelOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx.Err() != nil {
		return atomapi.CancelOutcome{}, ctx.Err()
	}
	f.ids = append(f.ids, id)
	f.infos = append(f.infos, atomapi.CallInfoFrom(ctx))
	return f.out, nil
}

// At the job's timeout, with an execution id known, the execution is
// cancelled (one call, on a context the timeout did not end, as a recovery
// call of the run) and the run fails saying how the cancel went; with
// on_timeout = "leave" nothing is cancelled and the run is unknown.
func TestExecuteTimeoutCancels(t *testing.T) {
	for _, tc := range []struct {
		name, onTimeout string
		out             atomapi.CancelOutcome
		state           runnerd.RunState
		want            string
		cancels         int
	}{
		{"sent", "", atomapi.CancelOutcome{Result: atomapi.CancelSent, Message: "Operation completed successfully."},
			runnerd.StateFailed, "timed out after 10m0s (cancel: sent): execution execution-", 1},
		{"unavailable", "cancel", atomapi.CancelOutcome{Result: atomapi.CancelUnavailable, Message: "not offered by the platform base (HTTP 404)"},
			runnerd.StateFailed, "(cancel: unavailable): execution execution-", 1},
		{"refused", "cancel", atomapi.CancelOutcome{Result: atomapi.CancelRefused, Message: "the runtime is not running"},
			runnerd.StateFailed, "(cancel: refused)", 1},
		{"leave", "leave", atomapi.CancelOutcome{Result: atomapi.CancelSent}, runnerd.StateUnknown, "stopped following at the timeout", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newClock(t0)
				f := newFakeExec(c)
				f.specs["proc-orders"] = procSpec{runFor: time.Hour, final: atomapi.StatusComplete}
				k := newExecute(f, c, "proc-orders", MethodRequest, true)
				cf := &cancelFake{fakeExec: f, out: tc.out}
				k.Client, k.Timeout, k.OnTimeout = cf, 10*time.Minute, tc.onTimeout
				ctx, cancel := context.WithTimeout(atomapi.WithCallInfo(context.Background(), atomapi.CallInfo{RunID: 7, Job: "j"}), 10*time.Minute)
				defer cancel()
				runDone := make(chan struct{})
				k.Poller.Sleep = func(sctx context.Context, d time.Duration) error {
					if f.count("async") >= 3 {
						<-ctx.Done()
						<-runDone
						return context.Canceled
					}
					return c.Sleep(sctx, d)
				}
				out := k.Run(ctx, runCtx("j", t0, c))
				close(runDone)
				if out.State != tc.state || out.Retryable || !strings.Contains(fmt.Sprint(out.Err), tc.want) {
					t.Fatalf("Run() = %s retryable=%v (%v); want %s saying %q", out.State, out.Retryable, out.Err, tc.state, tc.want)
				}
				if len(cf.ids) != tc.cancels {
					t.Fatalf("%d cancels; want %d", len(cf.ids), tc.cancels)
				}
				if tc.cancels == 0 {
					return
				}
				d := detailOf[ExecuteDetail](t, out)
				if cf.ids[0] != d.ExecutionID || d.Cancel != tc.out.Result || d.CancelMessage != tc.out.Message {
					t.Errorf("cancelled %q, detail %+v; want the run's execution and the cancel's outcome", cf.ids[0], d)
				}
				if info := cf.infos[0]; info.RunID != 7 || !info.Recovery {
					t.Errorf("cancel call info %+v; want the run's, as a recovery call", info)
				}
			})
		})
	}
}
