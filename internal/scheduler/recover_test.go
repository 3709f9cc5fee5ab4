package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// callStore is the fake store with the ledger's calls, so that Start can tell
// an interrupted run whose unsafe call may have taken effect from one that
// sent nothing unsafe.
type callStore struct {
	*fakeStore
	mu    sync.Mutex
	calls map[int64][]store.Call
}

func (c *callStore) ListCalls(_ context.Context, f store.CallFilter) ([]store.Call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]store.Call(nil), c.calls[f.RunID]...), nil
}

// rt0 is the time Start runs at in these tests.
var rt0 = time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)

// TestRecoverInterrupted: Start finds runs a killed runnerd left admitted or
// running. Each becomes unknown when an unsafe call of it may have taken
// effect — begun and never answered, answered 2xx, ended with no answer
// after it may have been sent, answered a 5xx other than 503 — and planned
// (then run again) when it made only safe calls, recovery lookups, or unsafe
// calls the platform refused (503, 4xx) or that were never sent.
func TestRecoverInterrupted(t *testing.T) {
	done := rt0.Add(-time.Minute)
	unsafe := func(c store.Call) store.Call {
		c.Operation, c.RequestID, c.StartedAt = "ExecutionRequest.create", "req-1", rt0.Add(-2*time.Minute)
		return c
	}
	cases := []struct {
		name    string
		calls   []store.Call
		unknown string // substring of the reason; "" = planned again
	}{
		{"no calls", nil, ""},
		{"open unsafe call", []store.Call{unsafe(store.Call{})}, "before its answer was recorded"},
		{"unsafe answered 2xx", []store.Call{unsafe(store.Call{Status: 200, FinishedAt: done})}, "was accepted (HTTP 200"},
		{"unsafe no answer, may have been sent", []store.Call{unsafe(store.Call{FinishedAt: done,
			Error: "atomapi: ExecutionRequest.create: transport error (may have been sent): reset"})}, "may have been sent"},
		{"unsafe 502", []store.Call{unsafe(store.Call{Status: 502, FinishedAt: done})}, "HTTP 502"},
		{"unsafe 503 refused", []store.Call{unsafe(store.Call{Status: 503, FinishedAt: done})}, ""},
		{"unsafe 400 refused", []store.Call{unsafe(store.Call{Status: 400, FinishedAt: done})}, ""},
		{"unsafe not sent", []store.Call{unsafe(store.Call{FinishedAt: done,
			Error: "atomapi: ExecutionRequest.create: transport error (not sent): record call: database is locked"})}, ""},
		{"safe open call", []store.Call{{Operation: "AuditLog.query", Safe: true}}, ""},
		{"recovery lookup open", []store.Call{{Operation: "ExecutionRecord.query", Recovery: true}}, ""},
		{"refused then open", []store.Call{unsafe(store.Call{}), unsafe(store.Call{Status: 503, FinishedAt: done})}, "before its answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inBubble(t, rt0, func(t *testing.T) {
				fs := newFakeStore()
				st := &callStore{fakeStore: fs, calls: map[int64][]store.Call{}}
				r, _, err := fs.CreateRun(t.Context(), runnerd.Run{Job: "j", Kind: "execute", NominalTime: rt0.Add(-5 * time.Minute), State: runnerd.StateRunning})
				if err != nil {
					t.Fatal(err)
				}
				for i := range c.calls {
					c.calls[i].RunID = r.ID
				}
				st.calls[r.ID] = c.calls
				k := &fakeKind{}
				s := newTestScheduler(t, st, Options{})
				mustSetJobs(t, s, Job{Name: "j", Kind: "execute", Schedule: "@daily", Enabled: true, Runner: k})
				if err := s.Start(t.Context()); err != nil {
					t.Fatalf("Start() = %v", err)
				}
				synctest.Wait()
				got, _ := fs.GetRun(t.Context(), r.ID)
				mustStop(t, s)
				if c.unknown != "" {
					if got.State != runnerd.StateUnknown || !strings.Contains(got.Reason, c.unknown) || !strings.Contains(got.Reason, "reconciling by lookup") {
						t.Errorf("run = %s (%q); want unknown, reason containing %q", got.State, got.Reason, c.unknown)
					}
					if n := len(k.Calls()); n != 0 {
						t.Errorf("the kind ran %d times; want 0 (an unknown run is never re-fired blindly)", n)
					}
					return
				}
				hist := fs.states(r.ID)
				if got.State == runnerd.StateUnknown || len(hist) < 2 || hist[1].State != runnerd.StatePlanned {
					t.Errorf("run = %s, history %v; want planned again, never unknown", got.State, hist)
				}
				if got.State != runnerd.StateSucceeded || len(k.Calls()) != 1 {
					t.Errorf("run = %s after %d kind calls; want run again once (catch-up) and succeeded", got.State, len(k.Calls()))
				}
			})
		})
	}
}

// TestRecoverWithoutCallLister: a store that cannot list calls leaves every
// interrupted run unknown (the safe side).
func TestRecoverWithoutCallLister(t *testing.T) {
	inBubble(t, rt0, func(t *testing.T) {
		fs := newFakeStore()
		r, _, _ := fs.CreateRun(t.Context(), runnerd.Run{Job: "j", NominalTime: rt0.Add(-time.Minute), State: runnerd.StateAdmitted})
		k := &fakeKind{}
		s := newTestScheduler(t, fs, Options{})
		mustSetJobs(t, s, Job{Name: "j", Schedule: "@daily", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustStop(t, s)
		got, _ := fs.GetRun(t.Context(), r.ID)
		if got.State != runnerd.StateUnknown || !strings.Contains(got.Reason, "cannot be read") || len(k.Calls()) != 0 {
			t.Errorf("run = %s (%q), kind calls %d; want unknown, never run", got.State, got.Reason, len(k.Calls()))
		}
	})
}
